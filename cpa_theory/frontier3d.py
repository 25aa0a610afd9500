"""The space engine (d = 3): cells are polyhedra in flat face tables, all cut cells split at once (issue #12).

A :class:`cpa_theory.frontier.FlatFrontier` (same charts, float64 filters and error bounds, exact rational
fallbacks and certificates as every engine) whose cells are convex polyhedra held as their faces: a face is a
convex polygon — a cycle of vertex ids, counter-clockwise seen from outside — on a hyperplane of the table with
the inside's sign; cell c is the face list ``fpool[start[c] : start[c] + count[c]]``.

Splitting all cut cells at once: every face clipped by Sutherland–Hodgman (the masked interleave of
:mod:`cpa_theory.frontier2d`); a crossing point is made once per cell edge (its two faces agree on it: the edge
is keyed by its two vertex ids) as the intersection of the edge's two face planes and the cut (vectorised solve
with the error bound of :func:`cpa_theory.polytope._solve_vertices`, exact fallback); the new cap face is
chained from the clipped faces' segments on the cut (each cap vertex has one successor — no angular sort, so
slivers below float64 resolution are ordered correctly). Completeness adds the Euler characteristic
V − E + F − C = 1 of the regions' complex.
"""

from __future__ import annotations


import numpy as np

from .errors import CPAInternalError
from .frontier import (FlatFrontier, Geometry, _cyclic_next, _distinct, _Grow, _ranges, _segment_ids,
                       _with_kernels, count_flat)
from .polytope import Polytope, _solve_systems, facet_clearance
from .tolerances import FACET_BALANCE_RTOL, UNIT_ROUNDOFF

__all__ = ["Frontier3D", "supports", "count_space"]

U = UNIT_ROUNDOFF


def supports(cond) -> bool:
    """Whether the space engine handles ``cond``: input dimension 3 and elementwise CPA activations only
    (max-pooling layers take the cell engine)."""
    from .maxgroups import is_max_groups

    return cond.input_dim == 3 and not any(is_max_groups(l.activation) for l in cond.layers)


def _ccw_faces(P: Polytope):
    """The faces of the root polytope as vertex lists, counter-clockwise seen from outside."""
    out = []
    for f, (H, s) in enumerate(P.facets):
        idx = np.flatnonzero(P.inc[:, f])
        if len(idx) < 3:
            continue
        n = s * H.a / np.linalg.norm(H.a)
        e = np.eye(3)[np.argmin(np.abs(n))]
        u = np.cross(n, e)
        u /= np.linalg.norm(u)
        w = np.cross(n, u)
        rel = P.V[idx] - P.V[idx].mean(axis=0)
        out.append((f, idx[np.argsort(np.arctan2(rel @ w, rel @ u))]))
    return out


class Frontier3D(FlatFrontier):
    """The 3-D engine's state for one window (see the module docstring): cell c is the face list
    ``fpool[start[c] : start[c] + count[c]]``; face f is the vertex cycle ``pv[fstart[f] : fstart[f] + fcount[f]]``
    on hyperplane ``fplane[f]`` with the inside's sign ``fsign[f]``."""

    d = 3
    _ENTRIES_PER_CELL = 6  # a cell's faces list each vertex about three times

    def __init__(self, cond, root: Polytope, p, y0, radius, stats):
        self._init_tables(cond, p, y0, radius, stats, [H for H, _ in root.facets], root.scale)
        self.VE.extend(np.column_stack([root.V, root.err]))
        G = np.array([H.a for H, _ in root.facets])
        for i in range(len(root.V)):  # three independent facets through each root vertex (exact fallback)
            rows = np.flatnonzero(root.inc[i])
            chosen = []
            for r in rows:
                if np.linalg.matrix_rank(G[chosen + [r]]) == len(chosen) + 1:
                    chosen.append(r)
                if len(chosen) == 3:
                    break
            self.vdef.extend([chosen if len(chosen) == 3 else (list(rows[:3]) + [0, 0, 0])[:3]])
        self.vex = {i: v for i, v in enumerate(root.ex) if v is not None}
        # faces and cells
        self.pv = _Grow((), np.int64)
        self.fplane, self.fsign = _Grow((), np.int64), _Grow((), np.int8)
        self.fstart, self.fcount = _Grow((), np.intp), _Grow((), np.intp)
        for f, order in _ccw_faces(root):
            self.fstart.extend([self.pv.n])
            self.fcount.extend([len(order)])
            self.pv.extend(order)
            self.fplane.extend([f])
            self.fsign.extend([root.facets[f][1]])
        self.fpool = _Grow((), np.int64)
        self.fpool.extend(np.arange(self.fplane.n))
        self.start = np.zeros(1, dtype=np.intp)
        self.count = np.array([self.fplane.n], dtype=np.intp)

    # -- cells' entries ----------------------------------------------------------------------------------------------
    def entries(self, cstart, ccount):
        """Pool entries of the given cells' faces: ``(faces, fcells, ent, ecells, fcnt)`` — face ids, the index
        (into the given cells) of each face's cell, vertex-pool positions, each entry's cell index, and the
        entries per face. Entries are grouped by face, faces by cell."""
        faces = self.fpool.a[_ranges(cstart, ccount)]
        fcells = np.repeat(np.arange(len(cstart)), ccount)
        fcnt = self.fcount.a[faces]
        ent = _ranges(self.fstart.a[faces], fcnt)
        return faces, fcells, ent, np.repeat(fcells, fcnt), fcnt

    def _boxes(self, cstart, ccount):
        _, _, ent, ecells, _ = self.entries(cstart, ccount)
        VE = self.VE.a[self.pv.a[ent]]
        bounds = _group_starts(ecells, len(cstart))  # entries are grouped by cell
        lo = np.minimum.reduceat(VE[:, :3] - VE[:, 3:4], bounds, axis=0)
        hi = np.maximum.reduceat(VE[:, :3] + VE[:, 3:4], bounds, axis=0)
        return np.concatenate([lo - 2 * U * np.abs(lo), hi + 2 * U * np.abs(hi)], axis=1)

    def _cell_signs(self, cstart, ccount, boxes, T, rows, exact_row):
        side = self.kernels.box_sides(boxes, T[rows])
        smax, smin = side.copy(), side.copy()
        tested = np.flatnonzero(side == 0)
        info = None
        if len(tested):
            faces, fcells, ent, ecells, fcnt = self.entries(cstart[tested], ccount[tested])
            s = self._signs(self.pv.a[ent], T, rows[tested][ecells], exact_row)
            bounds = _group_starts(ecells, len(tested))
            smax[tested], smin[tested] = np.maximum.reduceat(s, bounds), np.minimum.reduceat(s, bounds)
            info = (tested, faces, fcells, ent, ecells, fcnt, s)
        return smax, smin, info

    def _split(self, cells, cut, info, live, hyp, jc):
        """Split the cut cells (``cells[cut]``) by their hyperplanes ``hyp[cut]`` (index ``jc[cut]`` of their
        parent's list): every face clipped, crossings made once per edge, caps chained."""
        tested, faces, fcells, ent, ecells, fcnt, s = info
        # keep the cut cells only (cut is over `cells`; info covers cells[tested])
        cut_t = cut[tested]
        fkeep = cut_t[fcells]
        ekeep = cut_t[ecells]
        remap = np.cumsum(cut_t) - 1
        faces, fcells, fcnt = faces[fkeep], remap[fcells[fkeep]], fcnt[fkeep]
        ent, s = ent[ekeep], s[ekeep]
        ccells = cells[tested][cut_t]
        j = jc[tested][cut_t]
        nc = len(ccells)
        cut_plane = hyp[tested][cut_t]  # per cut cell
        ecell = np.repeat(fcells, fcnt)
        eface = np.repeat(np.arange(len(faces)), fcnt)
        nxt = _cyclic_next(fcnt)
        sn = s[nxt]
        vid = self.pv.a[ent]
        cross = (s.astype(np.int16) * sn) < 0
        # one crossing point per cell edge: key (cell, min vid, max vid); the edge's two faces give its planes
        xi = np.flatnonzero(cross)
        u, w = vid[xi], vid[nxt[xi]]
        nvt = np.int64(self.VE.n)
        key = (ecell[xi].astype(np.int64) * nvt + np.minimum(u, w)) * nvt + np.maximum(u, w)
        order = np.argsort(key, kind="stable")  # each key exactly twice: sorted, the pairs (0, 1), (2, 3), …
        sk = key[order]
        if len(sk) % 2 or np.any(sk[0::2] != sk[1::2]) or np.any(sk[2::2] == sk[1:-1:2]):
            raise CPAInternalError("a polyhedron edge is not shared by exactly two of its faces; please report this "
                                   "network and window.")
        inv = np.empty(len(key), dtype=np.intp)
        inv[order] = np.arange(len(key)) // 2
        f1 = faces[eface[xi[order[0::2]]]]
        f2 = faces[eface[xi[order[1::2]]]]
        q1, q2 = self.fplane.a[f1], self.fplane.a[f2]
        qc = cut_plane[ecell[xi[order[0::2]]]]
        X, Xerr = self._solve3(q1, q2, qc)
        new_ids = self.VE.extend(np.c_[X, Xerr])
        self.vdef.extend(np.stack([q1, q2, qc], axis=1))
        for k in np.flatnonzero(~np.isfinite(Xerr)).tolist():
            self.stats["exact_vertices"] = self.stats.get("exact_vertices", 0) + 1
            ex = self.exact_vertex(int(new_ids[k]))
            v = np.array([float(c) for c in ex])
            self.VE.a[new_ids[k]] = [v[0], v[1], v[2], U * float(np.abs(v).max())]
        xid = np.full(len(s), -1, dtype=np.int64)
        xid[xi] = new_ids[inv]
        fbounds = np.concatenate([[0], np.cumsum(fcnt)[:-1]])
        new_cells = []
        for keep, csign in ((-1, 1), (1, -1)):
            emit_v = (s == 0) | (s == keep)
            cut_v = (s == 0) & (sn != keep)
            cut_x = sn != keep
            mask2 = np.stack([emit_v, cross], axis=1)
            per = np.add.reduceat(mask2.sum(axis=1), fbounds) if len(fbounds) else np.zeros(0, dtype=np.intp)
            mask = mask2.ravel()
            o_v = np.stack([vid, xid], axis=1).ravel()[mask]
            o_cut = np.stack([cut_v, cut_x], axis=1).ravel()[mask]
            o_face = np.repeat(np.arange(len(faces)), per)
            # a clipped face with fewer than 3 vertices has no area on this side, nor one whose kept vertices all
            # lie on the cut (it touches the cap in a segment: degenerate arrangements, cf. polytope._live_facets)
            strict = np.add.reduceat((s == keep).astype(np.intp), fbounds) if len(fbounds) else per
            good = (per >= 3) & (strict > 0)
            # segments on the cut: from an emitted point labelled cut to the next emitted point of its face
            o_next = _cyclic_next(per)
            seg = np.flatnonzero(o_cut & good[o_face])
            seg_cell = fcells[o_face[seg]]
            # the cap's boundary runs the other way: from the next point back to this one
            a_, b_ = o_v[o_next[seg]], o_v[seg]
            cap_v, cap_n = _chain(seg_cell, a_, b_, nc, int(self.VE.n))
            # new faces: the good clipped ones (plane and sign kept), then one cap per cell
            gface = np.flatnonzero(good)
            keep_ent = good[o_face]
            base_v = self.pv.n
            self.pv.extend(o_v[keep_ent])
            gstart = base_v + np.concatenate([[0], np.cumsum(per[gface])[:-1]])
            base_f = self.fplane.n
            self.fstart.extend(gstart)
            self.fcount.extend(per[gface])
            self.fplane.extend(self.fplane.a[faces[gface]])
            self.fsign.extend(self.fsign.a[faces[gface]])
            gids = base_f + np.arange(len(gface))
            base_cap_v = self.pv.n
            self.pv.extend(cap_v)
            cap_ids = self.fplane.extend(cut_plane)
            self.fstart.extend(base_cap_v + np.concatenate([[0], np.cumsum(cap_n)[:-1]]))
            self.fcount.extend(cap_n)
            self.fsign.extend(np.full(nc, csign, dtype=np.int8))
            # each cell's face list: its good faces (grouped by cell: faces are grouped by cell) and its cap
            gcell = fcells[gface]
            nf = np.bincount(gcell, minlength=nc) + 1
            fl = np.concatenate([gids, cap_ids])
            cl = np.concatenate([gcell, np.arange(nc)])
            fl = fl[np.argsort(cl, kind="stable")]
            fstart = self.fpool.n + np.concatenate([[0], np.cumsum(nf)[:-1]])
            self.fpool.extend(fl)
            new_cells.append((fstart, nf))
        self._after_split(live, ccells, j, new_cells[0], new_cells[1])

    def _solve3(self, q1, q2, q3):
        """Points on three planes each (rows), with the error bound of :func:`cpa_theory.polytope._solve_vertices`
        (inf where float64 cannot bound the point: the caller computes it exactly)."""
        Q = np.stack([q1, q2, q3], axis=1)
        M, b = self.ha.a[Q], self.hb.a[Q]
        EM, Eb = self.hea.a[Q], self.heb.a[Q]
        return _solve_stack(M, b, EM, Eb, self.scale)

    def compact(self, start, count):
        """Rewrite the face and vertex pools with only the live cells."""
        faces, fcells, ent, ecells, fcnt = self.entries(start, count)
        pv = self.pv.a[ent]
        fplane, fsign = self.fplane.a[faces], self.fsign.a[faces]
        self.pv = _Grow((), np.int64, len(pv) + 1)
        self.pv.extend(pv)
        self.fplane, self.fsign = _Grow((), np.int64, len(faces) + 1), _Grow((), np.int8, len(faces) + 1)
        self.fplane.extend(fplane)
        self.fsign.extend(fsign)
        self.fstart, self.fcount = _Grow((), np.intp, len(faces) + 1), _Grow((), np.intp, len(faces) + 1)
        self.fstart.extend(np.concatenate([[0], np.cumsum(fcnt)[:-1]]))
        self.fcount.extend(fcnt)
        self.fpool = _Grow((), np.int64, len(faces) + 1)
        self.fpool.extend(np.arange(len(faces)))
        self.start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.intp)
        self.count = np.asarray(count, dtype=np.intp)


def _group_starts(groups, n):
    """Start of each of ``n`` non-empty, contiguous, ordered groups in ``groups`` (for ``ufunc.reduceat``)."""
    return np.concatenate([[0], np.cumsum(np.bincount(groups, minlength=n))[:-1]])


def _chain(cell, a, b, ncells, nv):
    """Order each cell's cap: segments a → b (every cap vertex starts exactly one segment of its cap) chained
    into one cycle per cell. Returns (vertex ids cap by cap, vertices per cap)."""
    n = np.bincount(cell, minlength=ncells)
    if np.any(n < 3):
        raise CPAInternalError("a cut polyhedron has a cap with fewer than 3 vertices; please report this network "
                               "and window.")
    key = cell.astype(np.int64) * nv + a
    order = np.argsort(key, kind="stable")
    ks = key[order]
    if np.any(ks[1:] == ks[:-1]):
        raise CPAInternalError("a cap vertex starts two segments (non-convex cut); please report this network and "
                               "window.")
    tgt = cell.astype(np.int64) * nv + b
    at = np.searchsorted(ks, tgt)
    at = np.minimum(at, len(ks) - 1)
    if not np.all(ks[at] == tgt):
        raise CPAInternalError("a cap's segments do not close up; please report this network and window.")
    succ = order[at]  # segment index → the segment that starts where it ends
    starts = np.concatenate([[0], np.cumsum(n)[:-1]])
    first = order[starts]  # per cell: its first segment in key order
    out = np.empty(len(a), dtype=np.int64)
    cur = first.copy()
    alive = np.arange(ncells)
    for k in range(int(n.max())):
        alive = alive[n[alive] > k]
        out[starts[alive] + k] = a[cur[alive]]
        cur[alive] = succ[cur[alive]]
    okey = np.sort(np.repeat(np.arange(ncells), n).astype(np.int64) * nv + out)
    if not np.array_equal(cur, first) or np.any(okey[1:] == okey[:-1]):  # one cycle through every segment
        raise CPAInternalError("a cap's segments form more than one cycle; please report this network and window.")
    return out, n


def _solve_stack(M, b, EM, Eb, scale):
    """:func:`cpa_theory.polytope._solve_systems` (the bound of :func:`cpa_theory.polytope._solve_vertices`) with
    overflow silenced and the rows it cannot bound (error +inf) set to 0, for the exact fallback to replace."""
    if not len(b):
        return np.zeros(b.shape), np.full(0, np.inf)
    with np.errstate(all="ignore"):
        V, err = _solve_systems(M, b, EM, Eb, scale)
    return np.where(np.isfinite(err)[:, None], V, 0.0), err


# -- driver and certificates -----------------------------------------------------------------------------------
def refine(cond, root, p, y0, radius, stats, progress=None, kernels=None):
    """All layers in 3-D (the layer loop of :func:`cpa_theory.frontier.run_layers`)."""
    from .frontier import run_layers

    fr = _with_kernels(Frontier3D(cond, root, p, y0, radius, stats), kernels)
    return run_layers(fr, cond, p, y0, radius, progress)


def _cell_vertices(fr):
    """Distinct (cell, vertex id) pairs: ``(cells, vids)`` sorted by cell."""
    _, _, ent, ecells, _ = fr.entries(fr.start, fr.count)
    key = _distinct(ecells.astype(np.int64) * np.int64(fr.VE.n) + fr.pv.a[ent])
    return key // fr.VE.n, key % fr.VE.n


def _witnesses(fr, p):
    C = len(fr.count)
    vc, vv = _cell_vertices(fr)
    VE = fr.VE.a[vv]
    nvert = np.bincount(vc, minlength=C)
    cys = np.stack([np.bincount(vc, weights=VE[:, k], minlength=C) for k in range(3)], axis=1) / nvert[:, None]
    errs = np.maximum.reduceat(VE[:, 3], _group_starts(vc, C)) + U * np.abs(cys).max(axis=1) * 4
    faces = fr.fpool.a[_ranges(fr.start, fr.count)]
    fcell = _segment_ids(fr.count)
    q = fr.fplane.a[faces]
    A, B, EA, EB = fr.ha.a[q], fr.hb.a[q], fr.hea.a[q], fr.heb.a[q]
    sg = fr.fsign.a[faces].astype(np.float64)
    r = facet_clearance(A, B, EA, EB, sg, cys[fcell], errs[fcell])
    wit = cys + p
    rad = np.minimum.reduceat(r, fr.start) - 2 * U * np.abs(wit).max(axis=1)
    return wit, rad, cys


def _face_areas(fr, faces):
    """Area vectors (½ Σ (v_i − c) × (v_{i+1} − c), outward for counter-clockwise faces) and centroids."""
    fcnt = fr.fcount.a[faces]
    ent = _ranges(fr.fstart.a[faces], fcnt)
    X = fr.VE.a[fr.pv.a[ent], :3]
    seg = _segment_ids(fcnt)
    cen = np.stack([np.bincount(seg, weights=X[:, k], minlength=len(faces)) for k in range(3)], axis=1) / fcnt[:, None]
    rel = X - cen[seg]
    cr = 0.5 * np.cross(rel, rel[_cyclic_next(fcnt)])
    area = np.stack([np.bincount(seg, weights=cr[:, k], minlength=len(faces)) for k in range(3)], axis=1)
    return area, cen


def _volumes(fr, cys):
    faces = fr.fpool.a[_ranges(fr.start, fr.count)]
    fcell = _segment_ids(fr.count)
    area, cen = _face_areas(fr, faces)
    contrib = np.einsum("fd,fd->f", cen - cys[fcell], area) / 3.0
    return np.bincount(fcell, weights=contrib, minlength=len(fr.count))


def polytope_of(fr, i) -> Polytope:
    """Region i as a :class:`cpa_theory.polytope.Polytope` (the rare exact paths and ``keep_regions``)."""
    faces = fr.fpool.a[fr.start[i]: fr.start[i] + fr.count[i]]
    vids = np.unique(fr.pv.a[_ranges(fr.fstart.a[faces], fr.fcount.a[faces])])
    facets, inc = [], np.zeros((len(vids), len(faces)), dtype=bool)
    for k, f in enumerate(faces.tolist()):
        facets.append((fr.hyper(int(fr.fplane.a[f])), int(fr.fsign.a[f])))
        fv = fr.pv.a[fr.fstart.a[f]: fr.fstart.a[f] + fr.fcount.a[f]]
        inc[np.searchsorted(vids, fv), k] = True
    VE = fr.VE.a[vids]
    return Polytope(VE[:, :3].copy(), VE[:, 3].copy(), [fr.vex.get(int(v)) for v in vids], facets, inc, fr.scale)


def _adjacency(fr):
    """Faces inside W matched with the region across them (the rule of :func:`cpa_theory.frontier2d._adjacency`)."""
    from .frontier import _match_codes

    faces = fr.fpool.a[_ranges(fr.start, fr.count)]
    fcell = _segment_ids(fr.count)
    meta = fr.hmeta.a[fr.fplane.a[faces]]
    pairs, unmatched = _match_codes(fr, fcell, meta)
    return pairs, unmatched, faces


def _balance_ok(fr, unmatched, faces) -> bool:
    if not len(unmatched):
        return True
    planes = np.unique(fr.fplane.a[faces[unmatched]])
    on = np.flatnonzero(np.isin(fr.fplane.a[faces], planes))
    area, _ = _face_areas(fr, faces[on])
    meas = np.linalg.norm(area, axis=1)
    key = np.searchsorted(planes, fr.fplane.a[faces[on]]) * 2 + (fr.fsign.a[faces[on]] > 0)
    sums = np.bincount(key, weights=meas, minlength=2 * len(planes)).reshape(-1, 2)
    a, b = sums[:, 0], sums[:, 1]
    return bool(np.all((np.abs(a - b) <= FACET_BALANCE_RTOL * np.maximum(np.maximum(a, b), 1e-300)) & (a > 0)))


def _euler_pass(fr, labels, nv, faces, fcnt):
    """χ = V − E + F − C of the cell complex whose vertices are the corner groups ``labels`` (one per face
    entry): edges are distinct vertex pairs along the faces' cycles, faces distinct vertex sets (a face shared by
    two cells counts once)."""
    nxt = _cyclic_next(fcnt)
    u, w = labels, labels[nxt]
    keep = u != w
    lo, hi = np.minimum(u, w)[keep], np.maximum(u, w)[keep]
    E = len(_distinct(lo.astype(np.int64) * nv + hi))
    rng = np.random.default_rng(2027)  # face identity by its vertex set: a sum of random words per vertex
    R = rng.integers(1, 2**63, size=nv, dtype=np.uint64)
    starts = np.concatenate([[0], np.cumsum(fcnt)[:-1]])
    with np.errstate(over="ignore"):
        h = np.add.reduceat(R[labels], starts) if len(labels) else np.zeros(0, dtype=np.uint64)
        h = h ^ (fcnt.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))  # and its size
    F = len(_distinct(h))
    return nv - E + F - len(fr.count)


def euler_check(fr):
    """Euler characteristic V − E + F − C of the regions' complex (1 for a tiling of the window). Vertices are
    identified as in the plane (:func:`cpa_theory.frontier._vertex_clusters`: proven error boxes, then exact
    equality where the first pass does not give 1)."""
    from .frontier import _mixed, _vertex_clusters

    faces = fr.fpool.a[_ranges(fr.start, fr.count)]
    fcnt = fr.fcount.a[faces]
    vid = fr.pv.a[_ranges(fr.fstart.a[faces], fcnt)]
    labels, nv = _vertex_clusters(fr, vid)
    chi = _euler_pass(fr, labels, nv, faces, fcnt)
    if chi != 1:
        labels, nv = _vertex_clusters(fr, vid, exact_ids=_mixed(labels, nv, vid))
        chi = _euler_pass(fr, labels, nv, faces, fcnt)
    return int(chi), chi == 1


def _completeness(fr):
    pairs, unmatched, faces = _adjacency(fr)
    chi, euler_ok = euler_check(fr)
    fcell = _segment_ids(fr.count)
    info = []
    for u in np.asarray(unmatched).tolist():  # (region, hyperplane id, inner sign, corners, their vertex ids)
        f = faces[u]
        vids = fr.pv.a[fr.fstart.a[f]: fr.fstart.a[f] + fr.fcount.a[f]]
        info.append((int(fcell[u]), int(fr.fplane.a[f]), int(fr.fsign.a[f]), fr.VE.a[vids, :3],
                     tuple(vids.tolist())))
    return pairs, info, _balance_ok(fr, unmatched, faces), euler_ok, chi


def _witnesses_only(fr, p):
    wit, rad, fr._centres = _witnesses(fr, p)
    return wit, rad


SPACE = Geometry(lambda *a: refine(*a), _witnesses_only, lambda fr, i: polytope_of(fr, i),
                 lambda fr: _volumes(fr, fr._centres), _completeness)


def count_space(cond, win, p, root, vol_w, **kw):
    """:func:`cpa_theory.frontier.count_flat` with the space engine."""
    return count_flat(cond, win, p, root, vol_w, SPACE, **kw)
