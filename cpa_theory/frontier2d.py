"""The plane engine (d = 2): cells are polygons in flat arrays, all cut cells split at once (issue #12).

A :class:`cpa_theory.frontier.FlatFrontier` whose cells are counter-clockwise polygons in a **pool** of edges:
cell c is ``pool[start[c] : start[c] + count[c]]``; entry i holds the vertex id at its start (``pv``), the line
of the edge from it to the next entry (``pl``) and the inside's sign on it (``ps``). Splitting all cut cells by
their lines is Sutherland–Hodgman written as one masked interleave of (vertex, crossing) slots over the gathered
pool; the crossing points come from one vectorised Cramer solve with its error bound (:func:`_solve_pairs`, the
bound of :func:`cpa_theory.polytope._solve_2x2`), exact rational points where float64 cannot bound them.

Completeness in the plane adds the Euler check: V − E + F = 1 for the subdivision, every vertex closing up
(angle sums 2π, or π at a T-junction, from the edges' normals so that slivers are measured right).
"""

from __future__ import annotations

import numpy as np

from .frontier import (FlatFrontier, Geometry, _cyclic_next, _distinct, _Grow, _match_codes, _mixed, _ranges,
                       _segment_ids, _vertex_clusters, _with_kernels, count_flat, run_layers, supports)
from .polytope import Polygon, facet_clearance
from .tolerances import DOT_EXTRA_TERMS, FACET_BALANCE_RTOL, FILTER_SAFETY, UNIT_ROUNDOFF, VERTEX_ERR_MAX_RTOL

__all__ = ["Frontier2D", "count_plane", "euler_check", "supports"]

U = UNIT_ROUNDOFF

class Frontier2D(FlatFrontier):
    """The plane engine's state for one window: cell c is the polygon ``pool[start[c] : start[c] + count[c]]``,
    counter-clockwise; pool entry i holds the vertex id at its start (``pv``), the hyperplane (line) of the edge
    from it to the next entry (``pl``) and the inside's sign on it (``ps``). After :func:`run_layers` the final
    cells' codes, flats and output charts are in ``codes``, ``flats``, ``A``, ``c``."""

    d = 2
    _WAVE_LINES = 8

    def __init__(self, cond, root: Polygon, p, y0, radius, stats):
        self._init_tables(cond, p, y0, radius, stats, [H for H, _ in root.ef], root.scale)
        n0 = len(root.V)
        # vertex i of the root polygon is defined by the lines of its edges i − 1 and i
        self.VE.extend(np.column_stack([root.V, root.err]))
        self.vdef.extend(np.stack([(np.arange(n0) - 1) % n0, np.arange(n0)], axis=1))
        self.vex = {i: v for i, v in enumerate(root.ex) if v is not None}
        self.pv, self.pl = _Grow((), np.int64), _Grow((), np.int64)
        self.ps = _Grow((), np.int8)
        self.pv.extend(np.arange(n0))
        self.pl.extend(np.arange(n0))
        self.ps.extend(np.array([s for _, s in root.ef], dtype=np.int8))
        self.start = np.zeros(1, dtype=np.intp)
        self.count = np.array([n0], dtype=np.intp)

    def _boxes(self, start, count):
        """``(C, 4)`` boxes (lo₀, lo₁, hi₀, hi₁) holding each cell's *exact* vertices: float vertices ± their
        error bounds, widened by the rounding of that ± (2u relative)."""
        VE = self.VE.a[self.pv.a[_ranges(start, count)]]
        bounds = np.concatenate([[0], np.cumsum(count)[:-1]])
        lo = np.minimum.reduceat(VE[:, :2] - VE[:, 2:3], bounds, axis=0)
        hi = np.maximum.reduceat(VE[:, :2] + VE[:, 2:3], bounds, axis=0)
        return np.concatenate([lo - 2 * U * np.abs(lo), hi + 2 * U * np.abs(hi)], axis=1)

    def cell_vertices(self, start, count):
        """A polygon lists each of its vertices once: its pool entries."""
        return self.pv.a[_ranges(start, count)], np.asarray(count)

    def _cell_signs(self, starts, counts, boxes, T, rows, exact_row):
        """Side of each cell for one line each (``rows`` into ``T``): ``(smax, smin, (tested, ent, cnt, s))``.

        A cell whose box lies strictly on one side (:func:`_box_sides`) gets that side; the others get exact
        vertex signs (``s`` per pool entry ``ent`` of the ``tested`` cells, ``cnt`` entries each)."""
        side = self.kernels.box_sides(boxes, T[rows])
        smax, smin = side.copy(), side.copy()
        tested = np.flatnonzero(side == 0)
        cnt = counts[tested]
        ent = _ranges(starts[tested], cnt)
        s = np.zeros(0, dtype=np.int8)
        if len(tested):
            s, smax[tested], smin[tested] = self._cell_extremes(self.pv.a[ent], cnt, T, rows[tested], exact_row)
        return smax, smin, (tested, ent, cnt, s)

    def _split(self, cells, cut, info, live, hyp, jc):
        """Split the cut cells (``cells[cut]``) by their hyperplanes ``hyp[cut]`` (index ``jc[cut]`` of their
        parent's list); Sutherland–Hodgman for all of them at once."""
        tested, ent, cnt, s = info
        cut_t = cut[tested]
        keep_ent = np.repeat(cut_t, cnt)
        ent, s = ent[keep_ent], s[keep_ent]
        cc = cnt[cut_t]
        ccells = cells[tested][cut_t]
        j = jc[tested][cut_t]
        nxt = _cyclic_next(cc)
        sn = s[nxt]
        vid, eline, esg = self.pv.a[ent], self.pl.a[ent], self.ps.a[ent]
        cross = (s.astype(np.int16) * sn) < 0
        cut_line = np.repeat(hyp[tested][cut_t], cc)
        # crossing points: the edge's line ∩ the cut line (vectorised Cramer with error bound; exact fallback)
        xi = np.flatnonzero(cross)
        l1, l2 = eline[xi], cut_line[xi]
        X, Xerr = _solve_pairs(self.ha.a[l1], self.hb.a[l1], self.hea.a[l1], self.heb.a[l1],
                               self.ha.a[l2], self.hb.a[l2], self.hea.a[l2], self.heb.a[l2], self.scale)
        new_ids = np.arange(self.VE.extend(np.column_stack([X, Xerr])), self.VE.n)
        self.vdef.extend(np.stack([l1, l2], axis=1))
        for k in np.flatnonzero(~np.isfinite(Xerr)).tolist():
            self.stats["exact_vertices"] = self.stats.get("exact_vertices", 0) + 1
            v = np.array([float(c) for c in self.exact_vertex(int(new_ids[k]))])
            self.VE.a[new_ids[k]] = [v[0], v[1], U * float(np.abs(v).max())]
        xid = np.full(len(s), -1, dtype=np.int64)
        xid[xi] = new_ids
        seg_bounds = np.concatenate([[0], np.cumsum(cc)[:-1]])
        halves = []
        for keep, csign in ((-1, 1), (1, -1)):  # below: inside a·y − β ≤ 0 (sign +1), above: sign −1
            emit_v = (s == 0) | (s == keep)
            on_cut_v = (s == 0) & (sn != keep)
            fv_line = np.where(on_cut_v, cut_line, eline)
            fv_sign = np.where(on_cut_v, csign, esg).astype(np.int8)
            fx_line = np.where(sn == keep, eline, cut_line)
            fx_sign = np.where(sn == keep, esg, csign).astype(np.int8)
            slots = np.stack([emit_v, cross], axis=1)
            mask = slots.ravel()
            base = self.pv.n
            self.pv.extend(np.stack([vid, xid], axis=1).ravel()[mask])
            self.pl.extend(np.stack([fv_line, fx_line], axis=1).ravel()[mask])
            self.ps.extend(np.stack([fv_sign, fx_sign], axis=1).ravel()[mask])
            per = np.add.reduceat(slots.sum(axis=1), seg_bounds)
            halves.append((base + np.concatenate([[0], np.cumsum(per)[:-1]]), per))
        self._after_split(live, ccells, j, halves[0], halves[1])

    def _compact(self, start, count):
        """Rewrite the pool with only the live cells' entries (after a layer)."""
        ent = _ranges(start, count)
        pv, pl, ps = self.pv.v[ent], self.pl.v[ent], self.ps.v[ent]
        self.pv, self.pl, self.ps = _Grow((), np.int64, len(ent) + 1), _Grow((), np.int64, len(ent) + 1), \
            _Grow((), np.int8, len(ent) + 1)
        self.pv.extend(pv)
        self.pl.extend(pl)
        self.ps.extend(ps)
        self.start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.intp)
        self.count = np.asarray(count, dtype=np.intp)


def _solve_pairs(a1, b1, e1, eb1, a2, b2, e2, eb2, scale):
    """Intersections of line pairs a1·y = b1, a2·y = b2 (row-wise) with the error bound of
    :func:`cpa_theory.polytope._solve_2x2` (Cramer's rule; inf where float64 cannot bound the point)."""
    p, q, r, t = a1[:, 0], a1[:, 1], a2[:, 0], a2[:, 1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        det = p * t - q * r
        den = np.abs(det) - 2 * U * (np.abs(p * t) + np.abs(q * r))
        x = (b1 * t - b2 * q) / det
        y = (p * b2 - r * b1) / det
        ninv = np.maximum(np.abs(t) + np.abs(q), np.abs(r) + np.abs(p)) / den
        ax, ay = np.abs(x), np.abs(y)
        k = (2 + DOT_EXTRA_TERMS) * U
        pert = np.maximum(
            e1[:, 0] * ax + e1[:, 1] * ay + eb1 + np.abs(p * x + q * y - b1) + k * (np.abs(p) * ax + np.abs(q) * ay
                                                                                   + np.abs(b1)),
            e2[:, 0] * ax + e2[:, 1] * ay + eb2 + np.abs(r * x + t * y - b2) + k * (np.abs(r) * ax + np.abs(t) * ay
                                                                                   + np.abs(b2)))
        shrink = 1.0 - ninv * np.maximum(e1[:, 0] + e1[:, 1], e2[:, 0] + e2[:, 1])
        err = FILTER_SAFETY * ninv * pert / shrink + U * np.maximum(ax, ay)
    good = (den > 0) & (shrink > 0.5) & (err <= VERTEX_ERR_MAX_RTOL * scale)
    err = np.where(good, err, np.inf)
    X = np.stack([np.where(good, x, 0.0), np.where(good, y, 0.0)], axis=1)
    return X, err


def refine(cond, root, p, y0, radius, stats, progress=None, kernels=None):
    """All layers in the plane: the :class:`Frontier2D` holding the final cells (see :func:`run_layers`)."""
    fr = _with_kernels(Frontier2D(cond, root, p, y0, radius, stats), kernels)
    return run_layers(fr, cond, p, y0, radius, progress)


def _witnesses(fr, p):
    """Per region: witness (vertex mean, x-coordinates), its float ball radius (the bound of
    :func:`cpa_theory.regions._inradii`, all edges of all regions in one pass)."""
    cnt = fr.count
    C = len(cnt)
    cell = _segment_ids(cnt)
    V = fr.VE.a[fr.pv.v, :2]
    cys = np.stack([np.bincount(cell, weights=V[:, k], minlength=C) for k in range(2)], axis=1) / cnt[:, None]
    bounds = fr.start
    errs = np.maximum.reduceat(fr.VE.a[fr.pv.v, 2], bounds) + U * np.abs(cys).max(axis=1) * 4
    lid = fr.pl.v
    A, B, EA, EB = fr.ha.a[lid], fr.hb.a[lid], fr.hea.a[lid], fr.heb.a[lid]
    sg = fr.ps.v.astype(np.float64)
    r = facet_clearance(A, B, EA, EB, sg, cys[cell], errs[cell])
    wit = cys + p
    rad = np.minimum.reduceat(r, bounds) - 2 * U * np.abs(wit).max(axis=1)
    return wit, rad


def polygon_of(fr, i) -> Polygon:
    """Region i as a :class:`cpa_theory.polytope.Polygon` (for the rare exact paths and ``keep_regions``)."""
    ent = np.arange(fr.start[i], fr.start[i] + fr.count[i])
    vids = fr.pv.a[ent]
    efs = [(fr.hyper(h), s) for h, s in zip(fr.pl.a[ent].tolist(), fr.ps.a[ent].tolist())]
    return Polygon(fr.VE.a[vids, :2].copy(), fr.VE.a[vids, 2].copy(), [fr.vex.get(int(v)) for v in vids], efs, fr.scale)


def _adjacency(fr):
    """Every edge inside W matched with the region across it (THEORY §6; the rule of
    :func:`cpa_theory.regions._adjacency`: the neighbour's code differs in exactly that neuron, moved across
    that breakpoint). Returns ``(pairs (P, 2), unmatched pool positions)``."""
    return _match_codes(fr, _segment_ids(fr.count), fr.hmeta.a[:fr.hmeta.n], planes=fr.pl.v)


def _balance_ok(fr, unmatched) -> bool:
    """Fallback for unmatched edges (coincident switching sets): on each such line, the edge length seen from its
    two sides must agree (FACET_BALANCE_RTOL), as :func:`cpa_theory.regions._balance_ok`."""
    if not len(unmatched):
        return True
    lines = np.unique(fr.pl.v[unmatched])
    on = np.isin(fr.pl.v, lines)
    ent = np.flatnonzero(on)
    nxt = _cyclic_next(fr.count)
    V = fr.VE.a[fr.pv.v, :2]
    length = np.linalg.norm(V[nxt[ent]] - V[ent], axis=1)
    key = np.searchsorted(lines, fr.pl.v[ent]) * 2 + (fr.ps.v[ent] > 0)
    sums = np.bincount(key, weights=length, minlength=2 * len(lines)).reshape(-1, 2)
    a, b = sums[:, 0], sums[:, 1]
    return bool(np.all((np.abs(a - b) <= FACET_BALANCE_RTOL * np.maximum(np.maximum(a, b), 1e-300)) & (a > 0)))


def _volumes(fr):
    V = fr.VE.a[fr.pv.v, :2]
    nxt = _cyclic_next(fr.count)
    cross = V[:, 0] * V[nxt, 1] - V[nxt, 0] * V[:, 1]
    return 0.5 * np.add.reduceat(cross, fr.start) if len(fr.count) else np.zeros(0)


def _turn(n1, n2):
    """Turning angle from outward normal n1 to n2 (rows), in [0, π]: a convex cell's normals turn
    counter-clockwise (cross ≥ 0 exactly); at a sliver's tip (normals nearly opposite) float64 may give a cross
    of −0 or −1e-30, which atan2 would read as a turn of −π (an interior angle of 2π)."""
    return np.arctan2(np.abs(n1[:, 0] * n2[:, 1] - n1[:, 1] * n2[:, 0]), np.einsum("ij,ij->i", n1, n2))


def _line_directions(fr, lid):
    """Normals of the lines ``lid`` whose direction float64 fixes: the float coefficients where their error
    bound is below 1e-6 of their size, else the exact line's normal scaled to max |a_k| = 1 (a line whose float
    coefficients cancelled to 0 or to noise: a chart of weights 1e-40 beside 1e-17, say)."""
    ulid, inv = _distinct(lid, return_inverse=True, bound=len(fr.ha.a))  # hyperplane ids
    A, E = fr.ha.a[ulid], fr.hea.a[ulid]
    for k in np.flatnonzero(np.abs(A).max(axis=1, initial=0) <= 1e6 * E.max(axis=1, initial=0)).tolist():
        a = fr.exact_hyper(int(ulid[k]))[0]
        m = max(abs(v) for v in a)
        A[k] = [float(v / m) for v in a] if m else 0.0
    return A[inv]


def _corner_angles(fr):
    """Interior angle at every corner (pool entry), from the outward normals s·a of its two edges' lines
    (well defined for slivers whose float vertices are not), and whether the corner is on W's boundary."""
    cnt = fr.count
    nxt = _cyclic_next(cnt)
    prv = np.empty_like(nxt)
    prv[nxt] = np.arange(len(nxt))
    lid, sg = fr.pl.v, fr.ps.v.astype(np.float64)
    n_out = _line_directions(fr, lid) * sg[:, None]
    n1, n2 = n_out[prv], n_out
    turn = _turn(n1, n2)
    meta = fr.hmeta.a[lid]
    on_w = (meta[:, 0] < 0) | (meta[prv, 0] < 0)
    return np.pi - turn, on_w


def _euler_pass(fr, labels, nv, theta, on_w, tol):
    F = len(fr.count)
    k = np.bincount(labels, minlength=nv)
    tsum = np.bincount(labels, weights=theta, minlength=nv)
    bnd = np.bincount(labels, weights=on_w.astype(np.float64), minlength=nv) > 0
    m = np.rint(tsum / np.pi)
    interior_ok = ~bnd & (np.abs(tsum - m * np.pi) <= tol) & ((m == 1) | (m == 2))
    boundary_ok = bnd & (tsum <= np.pi + tol)
    ok = bool(np.all(interior_ok | boundary_ok))
    # degree: interior vertex with full angle = its corners; a T-junction (angle π) one more; boundary k + 1
    deg = k + np.where(bnd, 1, np.where(m == 1, 1, 0))
    twoE = int(deg.sum())
    chi = nv - twoE / 2 + F
    return ok and twoE % 2 == 0, chi


def euler_check(fr, tol):
    """Euler characteristic V − E + F of the subdivision (1 for a tiling of the window) and whether every
    vertex closes up (interior angle sums 2π, or π at a T-junction; at most π on W's boundary)."""
    theta, on_w = _corner_angles(fr)
    labels, nv = _vertex_clusters(fr)
    ok, chi = _euler_pass(fr, labels, nv, theta, on_w, tol)
    if ok and chi == 1:
        return 1, True
    # second pass: groups joined by more than one vertex id are re-decided by exact equality
    labels, nv = _vertex_clusters(fr, exact_ids=_mixed(labels, nv, fr.pv.v))
    ok, chi = _euler_pass(fr, labels, nv, theta, on_w, tol)
    return (int(chi) if chi == int(chi) else chi), ok and chi == 1


def _completeness_2d(fr):
    from .tolerances import EULER_ANGLE_TOL

    pairs, unmatched = _adjacency(fr)
    chi, euler_ok = euler_check(fr, EULER_ANGLE_TOL)
    return pairs, _unmatched_edges(fr, unmatched), _balance_ok(fr, unmatched), euler_ok, chi


def _unmatched_edges(fr, unmatched):
    """(region, hyperplane id, inner sign, end points (2, 2), their vertex ids) of the edges at pool positions
    ``unmatched``."""
    nxt = _cyclic_next(fr.count)
    cell = _segment_ids(fr.count)[unmatched]
    V = fr.VE.a[:, :2]
    return [(int(c), int(fr.pl.v[e]), int(fr.ps.v[e]), V[[fr.pv.v[e], fr.pv.v[nxt[e]]]],
             (int(fr.pv.v[e]), int(fr.pv.v[nxt[e]])))
            for c, e in zip(cell.tolist(), np.asarray(unmatched).tolist())]



PLANE = Geometry(lambda *a: refine(*a), lambda fr, p: _witnesses(fr, p), lambda fr, i: polygon_of(fr, i),
                 lambda fr: _volumes(fr), lambda fr: _completeness_2d(fr))


def count_plane(cond, win, p, root, vol_w, **kw):
    """:func:`count_flat` with the plane engine."""
    return count_flat(cond, win, p, root, vol_w, PLANE, **kw)
