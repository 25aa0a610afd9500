"""The space engine (d = 3): cells are polyhedra in flat face tables, all cut cells split at once (issue #12).

A :class:`cpa_theory.frontier.FlatFrontier` (same charts, float64 filters and error bounds, exact rational
fallbacks and certificates as every engine) whose cells are convex polyhedra held as their faces: a face is a
convex polygon — a cycle of vertex ids, counter-clockwise seen from outside — on a hyperplane of the table with
the inside's sign; cell c is the face list ``fpool[start[c] : start[c] + count[c]]``.

Splitting all cut cells at once: every face clipped by Sutherland–Hodgman (the masked interleave of
:mod:`cpa_theory.frontier2d`); a crossing point is made once per cell edge (its two faces agree on it: the edge
is keyed by its two vertex ids) as the intersection of the edge's two face planes and the cut (the compiled solve
with the error bound of :func:`cpa_theory.polytope._solve_vertices`, exact fallback); the new cap face is
chained from the clipped faces' segments on the cut (each cap vertex has one successor — no angular sort, so
slivers below float64 resolution are ordered correctly). Completeness adds the Euler characteristic
V − E + F − C = 1 of the regions' complex.
"""

from __future__ import annotations


import copy

import numpy as np

from .errors import CPAInternalError
from .frontier import (FlatFrontier, Geometry, _beside, _Grow, _ranges, _segment_ids,
                       _with_kernels, count_flat)
from .frontier_loops import (ERRORS, cell_vertices, compact_faces, distinct_per_cell, euler_counts, face_areas,
                             shift_into, split_finish, split_prepare, wave_cells, wave_fold, wave_run, wave_signs,
                             WAVE_EXACT_POINTS, WAVE_EXACT_SIGNS, WAVE_FAILED, WAVES_DONE,
                             witness_balls)
from .polytope import Polytope
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
        k = int(np.argmin(np.abs(n)))  # u = n × e_k, w = n × u (written out: np.cross costs ~20 µs a call)
        u = np.array([n[1] * (k == 2) - n[2] * (k == 1), n[2] * (k == 0) - n[0] * (k == 2),
                      n[0] * (k == 1) - n[1] * (k == 0)])
        u /= np.linalg.norm(u)
        w = np.array([n[1] * u[2] - n[2] * u[1], n[2] * u[0] - n[0] * u[2], n[0] * u[1] - n[1] * u[0]])
        rel = P.V[idx] - P.V[idx].mean(axis=0)
        out.append((f, idx[np.argsort(np.arctan2(rel @ w, rel @ u))]))
    return out


class Frontier3D(FlatFrontier):
    """The 3-D engine's state for one window (see the module docstring): cell c is the face list
    ``fpool[start[c] : start[c] + count[c]]``; face f is the vertex cycle ``pv[fstart[f] : fstart[f] + fcount[f]]``
    on hyperplane ``fplane[f]`` with the inside's sign ``fsign[f]``."""

    d = 3
    _COMPACT_NOGIL = True
    _TWO_THREADS_PARENT_WORK, _TWO_THREADS_WORK = 30000, 300
    _unadopted = None  # a twin's face rows not yet appended (:meth:`_adopt`)
    _PROGRESS_WAVES = 4  # with a progress callback, the compiled waves come back to report every 4 waves

    def __init__(self, cond, root: Polytope, p, y0, radius, stats):
        self._init_tables(cond, p, y0, radius, stats, [H for H, _ in root.facets], root.scale)
        self.VE.extend(np.column_stack([root.V, root.err]))
        G = np.array([H.a for H, _ in root.facets])
        for i in range(len(root.V)):  # three independent facets through each root vertex (exact fallback)
            rows = np.flatnonzero(root.inc[i])
            if len(rows) >= 3 and np.linalg.matrix_rank(G[rows[:3]]) == 3:  # (a box's corner: its three facets)
                self.vdef.extend([rows[:3]])
                continue
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

    def cell_vertices(self, start, count):
        """Each polyhedron's distinct vertex ids (its faces list them about three times each)."""
        return cell_vertices(start, count, self.fpool.a, self.fstart.a, self.fcount.a, self.pv.a)

    def _cell_signs(self, cstart, ccount, boxes, T, rows, exact_row):
        """Exact sides of cells (pool ``cstart``, ``ccount``, ``boxes``) for one hyperplane each (``rows`` of
        ``T``): ``(max, min)`` of the vertex signs per cell and the tested cells' entries with their signs for
        :meth:`_split`. The box filter first; the vertex filter on the cells it leaves undecided, once per
        (cell, distinct vertex); exact rationals where float64 cannot decide. (The kernels' path: on the CPU the
        waves run :meth:`_waves`' compiled loops instead.)"""
        side = self.kernels.box_sides(boxes, T[rows])
        smax, smin = side.copy(), side.copy()
        tested = np.flatnonzero(side == 0)
        info = None
        if len(tested):
            faces, fcells, ent, ecells, fcnt = self.entries(cstart[tested], ccount[tested])
            vid = self.pv.a[ent]
            du, dcell, emap = distinct_per_cell(np.append(_group_starts(ecells, len(tested)), len(ent)), vid)
            sd = self._signs(du, T, rows[tested][dcell], exact_row)  # once per (cell, vertex)
            bounds = _group_starts(dcell, len(tested))
            smax[tested], smin[tested] = np.maximum.reduceat(sd, bounds), np.minimum.reduceat(sd, bounds)
            info = (tested, faces, fcells, vid, ecells, fcnt, sd[emap])
        return smax, smin, info

    def _waves(self, li, live, end, act_j, T, nK, first_hyp, exact_row, progress):
        """On the CPU (numpy kernels) one line per wave, the waves compiled (:meth:`_wave_loop`): the wave's
        cells and lines (:func:`cpa_theory.frontier_loops.wave_cells`), their tests (``wave_signs``: the same
        filters and bounds as :meth:`_cell_signs`; what they leave undecided is decided exactly here), the
        outcome (``wave_fold``: sides of the cells not cut, next line) and the split of the cut ones
        (``split_prepare``, ``split_finish``). The same splits as the kernels' path (:meth:`FlatFrontier._waves`
        with one line per wave).

        A cell's splits read only its own faces and vertices, so when the layer has at least
        ``_TWO_THREADS_WORK`` pending tests the parents are cut in two runs of about equal work (pending lines ×
        faces) and the second run's waves go on a second thread, on a twin of this frontier (:meth:`_twin`) whose
        new rows are appended here afterwards (:meth:`_adopt`). The cells are the same; only their order
        differs (the first run's, then the second's)."""
        if not self.kernels.compiled or self._WAVE_LINES != 1:
            return super()._waves(li, live, end, act_j, T, nK, first_hyp, exact_row, progress)
        longest = int(np.diff(np.concatenate([[0], end])).max(initial=0))
        pending = end[live.par.v] - live.pos.v
        if not self._TWO_THREADS_WORK or pending.sum() < self._TWO_THREADS_WORK or len(pending) < 2:
            return self._wave_loop(live, end, act_j, T, nK, first_hyp, exact_row, progress, li, longest)
        work = np.cumsum(pending * live.count.v)
        h = min(max(int(np.searchsorted(work, work[-1] / 2)) + 1, 1), len(pending) - 1)
        first, second = live.take(slice(0, h)), live.take(slice(h, None))
        twin, marks = self._twin(), self._marks()
        if progress is not None:
            report = progress
            progress = lambda li, frac, n: report(li, frac, n + second.par.n)  # noqa: E731  (read only)
        quiet = None if progress is None else (lambda *a: None)  # (the twin's run comes back to update its count)
        _beside(lambda: twin._wave_loop(second, end, act_j, T, nK, first_hyp, exact_row, quiet, li, longest),
                lambda: self._wave_loop(first, end, act_j, T, nK, first_hyp, exact_row, progress, li, longest))
        self._adopt(twin, marks, second)
        live.set_to((first, second))

    def _marks(self):
        """The pools' lengths (vertices, vertex entries, faces, face pool)."""
        return self.VE.n, self.pv.n, self.fplane.n, self.fpool.n

    def _twin(self):
        """A frontier for the second thread's waves: the same hyperplanes, charts and exact caches (read only
        while the waves run; exact decisions take ``exact_lock``), and the pools as views of their current rows
        whose first append copies them (this frontier's appends go past those rows and the twin's into its own
        arrays)."""
        twin = copy.copy(self)
        for name in ("VE", "vdef", "pv", "fstart", "fcount", "fplane", "fsign", "fpool"):
            setattr(twin, name, _Grow.of(getattr(self, name).v))
        twin.vex, twin.stats = dict(self.vex), {}
        return twin

    def _adopt(self, twin, marks, cells):
        """Take the twin's new vertices (past ``marks``, :meth:`_marks`; their ids shifted past this frontier's
        new ones) and shift its ``cells``' pool starts past this frontier's new pool rows. Its new face rows are
        appended by the next compaction (:meth:`_compact`, on the thread beside the chart composition), which is
        the pools' next reader: until then only the vertex table is whole."""
        V0, P0, F0, Q0 = marks
        dV = self.VE.n - V0
        self.VE.extend(twin.VE.a[V0:twin.VE.n])
        self.vdef.extend(twin.vdef.a[V0:twin.vdef.n])
        self.vex.update({v + dV: x for v, x in twin.vex.items() if v >= V0})
        for k, v in twin.stats.items():
            self.stats[k] = self.stats.get(k, 0) + v
        if twin._clean is None:
            self._clean = None
        st = cells.start.v
        st[st >= Q0] += self.fpool.n - Q0
        self._unadopted = (twin, marks, dV)

    def _adopt_faces(self):
        """Append the face rows a twin left (:meth:`_adopt`), ids shifted (one compiled pass per table)."""
        twin, (V0, P0, F0, Q0), dV = self._unadopted
        self._unadopted = None
        dP, dF = self.pv.n - P0, self.fplane.n - F0
        _extend_shifted(self.pv, twin.pv.a[P0:twin.pv.n], V0, dV)  # new vertex ids
        _extend_shifted(self.fstart, twin.fstart.a[F0:twin.fstart.n], 0, dP)  # (every new face's entries are new)
        _extend_shifted(self.fpool, twin.fpool.a[Q0:twin.fpool.n], F0, dF)  # new face ids
        for name in ("fcount", "fplane", "fsign"):
            g = getattr(twin, name)
            getattr(self, name).extend(g.a[F0:g.n])

    def _wave_loop(self, live, end, act_j, T, nK, first_hyp, exact_row, progress, li, longest):
        """The waves of :meth:`_waves` on the cells ``live``: compiled, without the GIL, until done
        (:func:`cpa_theory.frontier_loops.wave_run`); a wave that needs exact signs runs here (:meth:`_wave`),
        crossing points float64 cannot bound are computed here (:meth:`_finish_split`). With a progress callback
        the compiled run comes back every ``_PROGRESS_WAVES`` waves to report."""
        budget = -1 if progress is None else self._PROGRESS_WAVES
        hyper = (self.ha.a, self.hb.a, self.hea.a, self.heb.a)
        while True:
            ns = self._lengths(live)
            outcome, code, rest, splits, lv, pl, prep, new_ids = wave_run(
                live.arrays(), self._pool_arrays(), ns, end, act_j, nK, T, hyper, float(self.scale),
                first_hyp, budget)
            self._take_back(live, lv, pl, ns)
            if splits:
                self._clean = None
            if outcome == WAVE_FAILED:
                _raise(code)
            if outcome == WAVES_DONE:
                if progress is not None and rest:  # the call's last waves (the layer's end: fraction 1)
                    progress(li, 1.0 - float(rest - 1) / max(1, longest), live.par.n)
                break
            if outcome == WAVE_EXACT_POINTS:
                self._finish_split(prep, new_ids, live)
            elif outcome == WAVE_EXACT_SIGNS:
                rest = self._wave(live, end, act_j, T, nK, first_hyp, exact_row)
                if rest is None:
                    break
            if progress is not None:
                progress(li, 1.0 - float(rest - 1) / max(1, longest), live.par.n)

    def _wave(self, live, end, act_j, T, nK, first_hyp, exact_row):
        """One wave with the undecided signs decided exactly: the most lines any cell had left before it, or
        None when no cell has any."""
        n = live.par.n
        cells, rows, jc, rest = wave_cells(live.pos.a[:n], live.par.a[:n], end, act_j, nK)
        if not len(cells):
            return None
        side, tested, faces, fcells, fcnt, vid, ecells, du, dcell, emap, sd, und, bad = wave_signs(
            cells, live.start.a, live.count.a, live.box.a, rows, T, self.fpool.a, self.fstart.a, self.fcount.a,
            self.pv.a, self.VE.a)
        if bad or und.any():
            sd = self._decide(sd, und, bad, du, rows[tested][dcell], exact_row)
        cut, s = wave_fold(cells, jc, side, tested, dcell, sd, emap, live.sides.a, live.pos.a)
        if cut.any():
            self._split_tested(cells[tested], cut, (faces, fcells, vid, ecells, fcnt, s), live,
                               first_hyp + rows[tested], jc[tested])
        return rest

    # the pools the compiled waves read and append to, their and the cells' lengths, and taking them back
    def _pool_arrays(self):
        return (self.fpool.a, self.fstart.a, self.fcount.a, self.fplane.a, self.fsign.a, self.pv.a, self.VE.a,
                self.vdef.a)

    def _lengths(self, live):
        return np.array([live.par.n, self.fpool.n, self.fplane.n, self.pv.n, self.VE.n], dtype=np.int64)

    def _take_back(self, live, lv, pl, ns):
        live.hold(lv, int(ns[0]))
        for g, a, k in zip((self.fpool, self.fstart, self.fcount, self.fplane, self.fsign, self.pv, self.VE,
                            self.vdef), pl, (1, 2, 2, 2, 2, 3, 4, 4)):
            g.a, g.n = a, int(ns[k])

    def _split(self, cells, cut, info, live, hyp, jc):
        """Split the cut cells (``cells[cut]``) by their hyperplanes ``hyp[cut]`` (index ``jc[cut]`` of their
        parent's list); ``info``: :meth:`_cell_signs`' tested cells and entries."""
        tested, *entries = info
        self._split_tested(cells[tested], cut[tested], tuple(entries), live, hyp[tested], jc[tested])

    def _split_tested(self, cells, cut, entries, live, hyp, jc):
        """Split the cut cells (``cells[cut]``, of the tested ones ``cells`` whose ``entries`` — faces, their
        cell index, vertex ids, entry cell index, entries per face, entry signs — the tests listed) by their
        hyperplanes ``hyp[cut]``: every face clipped, crossings made once per edge, caps chained."""
        faces, fcells, vid, ecells, fcnt, s = entries
        # one crossing point per cell edge (its two faces give its planes), made where float64 can bound it
        cf, fe, faces, vid, s, cut_plane, xid, VEx, Q, code = split_prepare(
            cut, faces, fcells, fcnt, vid, s, hyp, self.fplane.a, self.ha.a, self.hb.a, self.hea.a,
            self.heb.a, float(self.scale))
        _raise(code)
        new_ids = np.arange(self.VE.extend(VEx), self.VE.n)
        self.vdef.extend(Q)
        self._finish_split((cf, fe, faces, vid, s, cut_plane, xid, cells[cut], jc[cut]), new_ids, live)

    def _finish_split(self, prep, new_ids, live):
        """A split after :func:`cpa_theory.frontier_loops.split_prepare` (``prep``; its crossing points rows
        ``new_ids`` of the vertex table): the points float64 could not bound computed exactly, then both sides
        of every cut cell made and the live cells updated (:func:`cpa_theory.frontier_loops.split_finish`)."""
        Xerr = self.VE.a[new_ids, 3]
        for k in np.flatnonzero(~np.isfinite(Xerr)).tolist():
            self.stats["exact_vertices"] = self.stats.get("exact_vertices", 0) + 1
            with self.exact_lock:
                ex = self.exact_vertex(int(new_ids[k]))
            v = np.array([float(c) for c in ex])
            self.VE.a[new_ids[k]] = [v[0], v[1], v[2], U * float(np.abs(v).max())]
        # both sides of every cut cell: each new cell's faces contiguous (its clipped faces, then its cap)
        self._clean = None
        ns = self._lengths(live)
        code, lv, pl = split_finish(prep, new_ids, live.arrays(), self._pool_arrays(), ns)
        _raise(code)
        self._take_back(live, lv, pl, ns)

    def _compact(self, start, count):
        """Rewrite the face and vertex pools with only the live cells (one compiled pass,
        :func:`cpa_theory.frontier_loops.compact_faces`), a twin's face rows first appended (:meth:`_adopt`)."""
        if self._unadopted is not None:
            self._adopt_faces()
        if self.vdef.n != self.VE.n:
            raise CPAInternalError("the space engine's vertex table and the vertices' defining hyperplanes differ in "
                                   "length; please report this network and window.")
        tables = compact_faces(start, count, self.fpool.a, self.fstart.a, self.fcount.a, self.pv.a, self.fplane.a,
                               self.fsign.a)
        self.pv, self.fstart, self.fcount, self.fplane, self.fsign = (_Grow.of(x) for x in tables)
        self.fpool = _Grow.of(np.arange(len(tables[1]), dtype=np.int64))
        self.start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.intp)
        self.count = np.asarray(count, dtype=np.intp)


def _extend_shifted(grow, x, lo, delta):
    """Append the ids ``x`` to the buffer ``grow``, those ≥ ``lo`` shifted by ``delta`` (one compiled pass)."""
    at = grow.extend_by(len(x))
    shift_into(grow.a, at, x, lo, delta)


def _raise(code: int) -> None:
    if code:
        raise CPAInternalError(f"{ERRORS[code]}; please report this network and window.")


def _group_starts(groups, n):
    """Start of each of ``n`` non-empty, contiguous, ordered groups in ``groups`` (for ``ufunc.reduceat``)."""
    return np.concatenate([[0], np.cumsum(np.bincount(groups, minlength=n))[:-1]])


# -- driver and certificates -----------------------------------------------------------------------------------
def refine(cond, root, p, y0, radius, stats, progress=None, kernels=None):
    """All layers in 3-D (the layer loop of :func:`cpa_theory.frontier.run_layers`)."""
    from .frontier import run_layers

    fr = _with_kernels(Frontier3D(cond, root, p, y0, radius, stats), kernels)
    return run_layers(fr, cond, p, y0, radius, progress)


def _witnesses(fr, p):
    """Witness points (x), certified ball radii and centroids y = x − p of every cell, and their volumes
    (:func:`cpa_theory.frontier_loops.witness_balls`, one compiled pass)."""
    cys, rad, vol = witness_balls(fr.start, fr.count, fr.fpool.a, fr.fstart.a, fr.fcount.a, fr.pv.a, fr.VE.a,
                                  fr.fplane.a, fr.fsign.a, fr.ha.a, fr.hb.a, fr.hea.a, fr.heb.a,
                                  np.asarray(p, dtype=np.float64))
    return cys + p, rad, cys, vol


def _face_areas(fr, faces):
    """Area vectors (½ Σ (v_i − c) × (v_{i+1} − c), outward for counter-clockwise faces) and centroids."""
    return face_areas(fr.fstart.a, fr.fcount.a, fr.pv.a, fr.VE.a, np.ascontiguousarray(faces, dtype=np.int64))


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


def _final_faces(fr):
    """Every cell's faces, cell after cell, and their entries' vertex ids, face after face: ``(faces, vid)``. The
    certificates run on compacted pools (:meth:`Frontier3D.compact`), which hold exactly that: the face pool is
    0 … F − 1 and the faces' entries follow one another from 0 — views, no gathers."""
    F = int(fr.count.sum())
    last = F - 1
    if fr._clean is None or fr.fpool.n != F or (F and fr.fstart.a[last] + fr.fcount.a[last] != fr.pv.n):
        raise CPAInternalError("the space engine's certificates need its pools compacted; please report this.")
    return fr.fpool.a[:F], fr.pv.a[:fr.pv.n]


def _adjacency(fr):
    """Faces inside W matched with the region across them (the rule of :func:`cpa_theory.frontier2d._adjacency`)."""
    from .frontier import _match_codes

    faces, _ = _final_faces(fr)
    fcell = _segment_ids(fr.count)
    pairs, unmatched = _match_codes(fr, fcell, fr.hmeta.a[:fr.hmeta.n], planes=fr.fplane.a[faces])
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
    rng = np.random.default_rng(2027)  # face identity by its vertex set: a sum of random words per vertex
    R = rng.integers(1, 2**63, size=nv, dtype=np.uint64)
    E, F = euler_counts(np.ascontiguousarray(labels, dtype=np.int64), np.ascontiguousarray(fcnt, dtype=np.int64),
                        nv, R)
    return nv - E + F - len(fr.count)


def euler_check(fr):
    """Euler characteristic V − E + F − C of the regions' complex (1 for a tiling of the window). Vertices are
    identified as in the plane (:func:`cpa_theory.frontier._vertex_clusters`: proven error boxes, then exact
    equality where the first pass does not give 1)."""
    from .frontier import _mixed, _vertex_clusters

    faces, vid = _final_faces(fr)
    fcnt = fr.fcount.a[faces]
    labels, nv = _vertex_clusters(fr, vid)
    chi = _euler_pass(fr, labels, nv, faces, fcnt)
    if chi != 1:
        labels, nv = _vertex_clusters(fr, vid, exact_ids=_mixed(labels, nv, vid))
        chi = _euler_pass(fr, labels, nv, faces, fcnt)
    return int(chi), chi == 1


def _completeness(fr):
    return _completeness_from(fr, _adjacency(fr), euler_check(fr))


def _completeness_from(fr, adjacency, euler):
    """What :func:`_completeness` returns, from :func:`_adjacency`'s and :func:`euler_check`'s results."""
    (pairs, unmatched, faces), (chi, euler_ok) = adjacency, euler
    fcell = _segment_ids(fr.count)
    info = []
    for u in np.asarray(unmatched).tolist():  # (region, hyperplane id, inner sign, corners, their vertex ids)
        f = faces[u]
        vids = fr.pv.a[fr.fstart.a[f]: fr.fstart.a[f] + fr.fcount.a[f]]
        info.append((int(fcell[u]), int(fr.fplane.a[f]), int(fr.fsign.a[f]), fr.VE.a[vids, :3],
                     tuple(vids.tolist())))
    return pairs, info, _balance_ok(fr, unmatched, faces), euler_ok, chi


def _witnesses_only(fr, p):
    wit, rad, _, fr._volumes = _witnesses(fr, p)
    return wit, rad


SPACE = Geometry(lambda *a: refine(*a), _witnesses_only, lambda fr, i: polytope_of(fr, i),
                 lambda fr: fr._volumes, _completeness, threaded_witnesses=True,
                 checks=(_adjacency, euler_check, _completeness_from))


def count_space(cond, win, p, root, vol_w, **kw):
    """:func:`cpa_theory.frontier.count_flat` with the space engine."""
    return count_flat(cond, win, p, root, vol_w, SPACE, **kw)
