"""The flat counting engines' common part: cells of a layer split all at once over flat tables (issue #12).

Same mathematics as the cell-by-cell engine of :mod:`cpa_theory.regions` (THEORY §3, §6): the same charts
(:func:`layer_lines`, on :meth:`ConditionedLayer.chart`), the same float64 filters with the same error bounds,
the same exact rational fallbacks and the same certificates — without a Python loop over cells.

* :class:`FlatFrontier` — the hyperplane table (float64 a, β with error bounds, and what the exact hyperplane
  is: a side of the domain, or the switching set (layer, neuron, breakpoint) on a parent cell whose code fixes
  its chart), the vertex table ``VE (Nv, d + 1)`` (coordinates and error bound, the d hyperplanes defining each
  vertex, the exact rational vertices computed so far), exact signs, and the layer loop: a parent test (box
  filter :func:`_box_sides`, then exact vertex signs) fixes the side of every switching set that misses a
  parent for all its descendants; then in *waves* every live cell tests the next switching set of its parent's
  cut list and the cut cells are split together. The geometry of cells (polygons in
  :mod:`cpa_theory.frontier2d`, polyhedra in :mod:`cpa_theory.frontier3d`) lives in the subclasses.
* :func:`run_layers` — all layers; the next layer's switching sets are composed chunk by chunk.
* :func:`count_flat` — certification on the final frontier: witnesses re-checked by an independent forward pass
  (exact rational witnesses where float64 cannot), completeness by volume sum, facet matching (codes packed into
  words, :func:`_match_codes`) and the Euler characteristic; maximal linear regions from the matched facets.
"""

from __future__ import annotations

import math
import threading
import time
from fractions import Fraction
from typing import Callable, NamedTuple

import numpy as np

from .blas_threads import one_blas_thread
from .errors import CPAInternalError
from .exact import ExactCharts, dot, maps_identical, solve
from .frontier_kernels import NUMPY, chart_tables, charts_after, next_lines
from .polytope import Hyper
from .tolerances import DOT_EXTRA_TERMS, FILTER_SAFETY, UNIT_ROUNDOFF, WITNESS_MIN_RELATIVE_RADIUS

__all__ = ["FlatFrontier", "Geometry", "layer_lines", "run_layers", "count_flat", "supports"]


U = UNIT_ROUNDOFF

_BOX_CHUNK = 1 << 16  # (parent, line) pairs per box-filter call of the parent test (a few MB of temporaries)
_SIGN_CHUNK = 1 << 19  # (pair, vertex) entries per parent-test call (bounded memory: ≤ ~100 bytes each)



def supports(cond) -> bool:
    """Whether the plane engine handles ``cond``: input dimension 2 and elementwise CPA activations only
    (max-pooling layers take the cell engine)."""
    from .maxgroups import is_max_groups

    return cond.input_dim == 2 and not any(is_max_groups(l.activation) for l in cond.layers)



def layer_lines(cl, A, c, mA, mc, rel, li):
    """Switching sets of layer ``cl`` on C parent charts h = A y + c, with error bounds (the chart primitive).

    ``A (C, m, d)``, ``c (C, m)``, magnitude bounds ``mA``, ``mc`` (same shapes) and the charts' relative error
    ``rel``. Returns a dict: ``fa (C, nK, d)``, ``fb (C, nK)`` with line (j, k) at index j·K + k being
    {ẑ_j = t_k} = {fa·y = fb}; ``EA``, ``EB`` their error bounds; ``N``, ``z0`` (ẑ = N y + z0), ``mlin``,
    ``mgap`` (magnitudes for the next chart) and ``rel2`` (this layer's relative error); the arithmetic is
    :func:`cpa_theory.frontier_kernels.next_lines`.
    """
    bn, act = cl.bn, cl.activation
    t = act.breakpoints_array
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is detected below and reported
        out = next_lines(cl.weight, bn.anchor, bn.gain, bn.shift, t, A, c, mA, mc, rel, bn.z_error)
    lo_in = _min_nonzero(mA, mc, np.abs(bn.anchor))
    return _lines_dict(out, cl, rel + (cl.weight.shape[1] + DOT_EXTRA_TERMS + 2) * U, lo_in, li)


#: products of a weight, gain or slope with a chart magnitude must be 0 or at least this (2^-960): an operand or
#: product lost to underflow then costs at most 2^-1022 ≤ u·2^-22·(that product), which the charts' relative
#: bounds cover (they carry no absolute term)
CHART_MIN_PRODUCT = 2.0 ** -960


def _min_nonzero(*arrays) -> float:
    """Smallest nonzero |entry| of the arrays (inf when all are 0 or empty)."""
    lo = math.inf
    for a in arrays:
        a = np.abs(np.asarray(a, dtype=np.float64))
        if a.size:  # a masked minimum (no compaction of the nonzero entries); NaN entries are skipped as before
            lo = min(lo, float(np.min(a, where=a > 0, initial=math.inf)))
    return lo


def _lines_dict(out, cl, rel2, lo_in, li):
    """:func:`layer_lines`'s dict from :func:`cpa_theory.frontier_kernels.next_lines`'s arrays ``out`` for layer
    ``cl``, after the checks that make its error bounds valid (an internal error otherwise): everything finite,
    and every product of the chart arithmetic outside float64's underflow range (:data:`CHART_MIN_PRODUCT`;
    ``lo_in``: the smallest nonzero magnitude of the layer's inputs, |anchor| included). ``lo`` in the dict is
    that bound for the next layer's inputs (from this layer's slopes, gains and magnitudes)."""
    from .regions import _finite

    fa, fb, EA, EB, N, z0, mlin, mgap, EN, Ez = out
    _finite(N, z0, EA, EB, mlin, mgap, EN, Ez, what=f"the charts of layer {li}")
    slope, _, mag = chart_tables(cl.activation)
    lo_w, lo_g, lo_s = _min_nonzero(cl.weight), _min_nonzero(cl.bn.gain), _min_nonzero(slope)
    lo_m = _min_nonzero(mlin, mgap)
    lo_next = min(lo_s * lo_g * lo_m, _min_nonzero(mag))
    if min(lo_w * lo_in, lo_g * lo_m, lo_next) < CHART_MIN_PRODUCT:
        raise CPAInternalError(f"the charts of layer {li} reach float64's underflow range (a product of a weight, "
                               "gain or slope with a chart entry below 2^-960), where their error bounds do not "
                               "hold; the exact count needs the network's values clear of it. Please report this "
                               "network and window.")
    return {"fa": fa, "fb": fb, "EA": EA, "EB": EB, "N": N, "z0": z0, "mlin": mlin, "mgap": mgap, "rel2": rel2,
            "K": len(cl.activation.breakpoints), "lo": lo_next}



class _Grow:
    """A capacity-doubling float/int buffer (the flat tables grow by appends)."""

    __slots__ = ("a", "n")

    def __init__(self, shape_tail, dtype, cap=1024):
        self.a = np.empty((cap,) + tuple(shape_tail), dtype=dtype)
        self.n = 0

    def extend(self, x) -> int:
        """Append the rows ``x``; returns the index of the first (the new ones are ``first … first + len(x) − 1``)."""
        n = self.extend_by(len(x))
        self.a[n: self.n] = x
        return n

    def extend_by(self, m: int) -> int:
        """Append ``m`` rows left for the caller to write; returns the index of the first."""
        n = self.n
        if n + m > len(self.a):
            cap = max(2 * len(self.a), n + m)
            b = np.empty((cap,) + self.a.shape[1:], dtype=self.a.dtype)
            b[:n] = self.a[:n]
            self.a = b
        self.n = n + m
        return n

    @classmethod
    def of(cls, x):
        """A buffer holding the array ``x`` itself (not copied) and room to grow: its first extension copies it
        into twice the space."""
        g = cls.__new__(cls)
        g.a, g.n = x, len(x)
        return g

    @property
    def v(self):
        return self.a[: self.n]



class _Cells:
    """The live cells of a layer: pool start, count, parent index and sides (one row of int8 per cell)."""

    def __init__(self, start, count, par, sides, box):
        C = len(start)
        self.box = _Grow(box.shape[1:], np.float64, 2 * C + 16)
        self.box.extend(box)
        self.start, self.count = _Grow((), np.intp, 2 * C + 16), _Grow((), np.intp, 2 * C + 16)
        self.par, self.sides = _Grow((), np.intp, 2 * C + 16), _Grow(sides.shape[1:], np.int8, 2 * C + 16)
        self.pos = _Grow((), np.intp, 2 * C + 16)  # per cell: its next line in the parent's cut list
        self.start.extend(start)
        self.count.extend(count)
        self.par.extend(par)
        self.sides.extend(sides)

    def take(self, idx):
        """The cells ``idx`` (an index array or slice) as a new set, line pointers included."""
        part = _Cells(self.start.v[idx], self.count.v[idx], self.par.v[idx], self.sides.v[idx], self.box.v[idx])
        part.pos.extend(self.pos.v[idx])
        return part

    def arrays(self):
        """The cells' arrays, as the compiled loops take them: ``(pos, par, start, count, sides, box)``."""
        return self.pos.a, self.par.a, self.start.a, self.count.a, self.sides.a, self.box.a

    def hold(self, arrays, n):
        """Hold ``n`` cells in ``arrays`` (as :meth:`arrays` lists them, grown by a compiled loop)."""
        for g, a in zip((self.pos, self.par, self.start, self.count, self.sides, self.box), arrays):
            g.a, g.n = a, n

    def set_to(self, parts):
        """Hold the cells of ``parts`` (sets of cells), one after another."""
        for name in ("start", "count", "par", "sides", "box", "pos"):
            setattr(self, name, _Grow.of(np.concatenate([getattr(q, name).v for q in parts])))



def _ranges(starts, counts):
    """Concatenated ``arange(s, s + c)`` for every (s, c): the pool positions of a set of cells."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.intp)
    off = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return np.arange(total) + off



def _distinct(x, return_inverse: bool = False, bound: int | None = None):
    """Sorted distinct values of the 1-D array ``x`` (and each entry's index among them): ``np.unique`` by a
    sort — numpy 2's hash-based ``np.unique`` takes ~30× as long on 10^5 int64 keys, the engines' typical size.
    ``bound``: the values are ids in 0 … bound − 1 (vertex ids), found with a mask of that length instead (no
    sort: ~5× faster on the 2·10^5 corners of a 10^4-region 3-D window)."""
    x = np.asarray(x).ravel()
    if bound is not None:
        seen = np.zeros(bound, dtype=bool)
        seen[x] = True
        u = np.flatnonzero(seen)
        if not return_inverse:
            return u
        rank = np.cumsum(seen, dtype=np.intp) - 1
        return u, rank[x]
    order = np.argsort(x) if return_inverse else None  # (any order of equal keys gives the same result)
    s = x[order] if return_inverse else np.sort(x)
    new = np.ones(len(s), dtype=bool)
    new[1:] = s[1:] != s[:-1]
    if not return_inverse:
        return s[new]
    inv = np.empty(len(s), dtype=np.intp)
    inv[order] = np.cumsum(new) - 1
    return s[new], inv


def _cyclic_next(counts):
    """For cells laid out one after another with these vertex counts: the index of each entry's successor."""
    total = int(counts.sum())
    nxt = np.arange(1, total + 1)
    counts = counts[counts > 0]  # an empty cell has no entries (and must not overwrite its neighbour's wrap)
    ends = np.cumsum(counts) - 1
    nxt[ends] = ends - counts + 1
    return nxt



def _segment_ids(count):
    return np.repeat(np.arange(len(count)), count)



class FlatFrontier:
    """What the plane and space engines share: the hyperplane table (float64 a, β with error bounds and what the
    exact hyperplane is), the vertex table ``VE (Nv, d + 1)`` = (coordinates, error bound) with the d hyperplanes
    defining each vertex (``vdef``) and the exact rational vertices computed so far (``vex``), exact signs, and
    the layer loop (parent test, then waves). Subclasses hold the cells' geometry (:meth:`_boxes`,
    :meth:`_cell_signs`, :meth:`_split`, :meth:`_compact`, and :meth:`cell_vertices` — each cell's distinct
    vertex ids, cell after cell, as ``(vids, per-cell counts)``)."""

    d = 0
    #: hyperplanes a live cell tests per wave of :meth:`run_layer` (2-D: 8 — polygon tests are cheap, and a
    #: window cut by 100 lines then takes ~25 waves instead of 100; 3-D: 1, where a test past a cell's first cut
    #: costs more than the wave it saves: 3-16-16-16-1 ran ~10 % slower at 8)
    _WAVE_LINES = 1
    _clean = None  # (start, count) of the last compaction while no split has happened since (the pools then hold
    #                exactly those cells, in order)
    #: whether :meth:`compact` runs without the GIL (one compiled pass): then it runs on a second thread beside the
    #: next layer's chart composition (with the compiled kernels)
    _COMPACT_NOGIL = False
    #: work from which a layer's parent test (screened lines × faces of the parents) and its waves (pending (cell,
    #: line) tests) run on two threads, with the compiled kernels; 0: never (the plane engine, whose waves hold the
    #: GIL)
    _TWO_THREADS_PARENT_WORK = 0
    _TWO_THREADS_WORK = 0

    def _init_tables(self, cond, p, y0, radius, stats, hypers, scale):
        self.cond, self.p, self.y0, self.radius, self.stats = cond, p, y0, float(radius), stats
        self.kernels = NUMPY  # the float kernels (cpa_theory.frontier_kernels); refine() may set JAX's
        self._charts = None  # exact charts, built on the first exact decision (rational weights cost ~10 µs each)
        self.exact_lock = threading.Lock()  # held by the exact decisions while a layer's waves run on two threads
        self.scale = scale
        d = self.d
        self.ha, self.hb = _Grow((d,), np.float64), _Grow((), np.float64)
        self.hea, self.heb = _Grow((d,), np.float64), _Grow((), np.float64)
        self.hmeta = _Grow((3,), np.int64)  # (layer or −1 for the domain's sides, parent index, j·K + k)
        self._root_hypers = list(hypers)
        for i, H in enumerate(hypers):
            self.ha.extend(H.a[None])
            self.hb.extend([H.beta])
            self.hea.extend(np.asarray(H.err_a, dtype=np.float64)[None])
            self.heb.extend([H.err_b])
            self.hmeta.extend([[-1, i, 0]])
        self._exact_hypers: dict = {}
        self.VE = _Grow((d + 1,), np.float64)
        self.vdef = _Grow((d,), np.int64)
        self.vex: dict = {}
        self.prefix_codes: list = []  # per layer ℓ: the parents' codes, a tuple of (C_ℓ, n_i) arrays, i < ℓ
        self.codes: tuple = ()
        self.flats: tuple = ()
        self.boxes = None  # the current cells' boxes (``_boxes``), kept from the layer whose splits made them

    # -- exact data ---------------------------------------------------------------------------------------------
    def exact_hyper(self, hid: int):
        """Exact (a*, β*) of hyperplane ``hid``: a side of the domain, or {ẑ_j = t_k} on its parent cell's chart."""
        hit = self._exact_hypers.get(hid)
        if hit is None:
            layer, par, jk = (int(v) for v in self.hmeta.a[hid])
            if layer < 0:
                hit = self._root_hypers[par].exact()
            else:
                K = len(self.cond.layers[layer].activation.breakpoints)
                prefix = tuple(c[par] for c in self.prefix_codes[layer])
                if self._charts is None:
                    self._charts = ExactCharts(self.cond, self.p)
                hit = self._charts.hyperplane(prefix, jk // K, jk % K)
            self._exact_hypers[hid] = hit
        return hit

    def hyper(self, hid: int) -> Hyper:
        """Hyperplane ``hid`` as a :class:`cpa_theory.polytope.Hyper` (float data, bounds, the cell engine's key
        and its exact form on demand) for the rare paths that hand a region to the polytope code."""
        layer, par, jk = (int(v) for v in self.hmeta.a[hid])
        if layer < 0:
            key = self._root_hypers[par].key
        else:
            K = len(self.cond.layers[layer].activation.breakpoints)
            key = (layer, jk // K, jk % K, tuple(c[par] for c in self.prefix_codes[layer]))
        return Hyper(self.ha.a[hid].copy(), float(self.hb.a[hid]), self.hea.a[hid].copy(), float(self.heb.a[hid]),
                     key, fn=lambda: self.exact_hyper(hid))

    def exact_vertex(self, vid: int):
        """Exact rational vertex ``vid``: the solution of its d defining hyperplanes' exact equations."""
        v = self.vex.get(vid)
        if v is None:
            eqs = [self.exact_hyper(int(q)) for q in self.vdef.a[vid]]
            v = solve([e[0] for e in eqs], [e[1] for e in eqs])
            if v is None:
                raise CPAInternalError("the hyperplanes defining a vertex are dependent in exact arithmetic; please "
                                       "report this network and window.")
            self.vex[vid] = v
        return v

    def _signs(self, vids, T, rows, exact_row):
        """Exact sides of vertices ``vids (M,)`` for hyperplanes ``rows (M,)`` of the coefficient table ``T``
        (:func:`_sign_table`): ``(M,)`` int8. float64 decides where |a·v − β| > E (the filter bound of
        :func:`cpa_theory.polytope.vertex_signs`); elsewhere ``exact_row(row)`` gives the exact hyperplane."""
        s, und, bad = self.kernels.vertex_sides(self.VE.a[vids], T[rows])
        return self._decide(s, und, bool(bad.any()), vids, rows, exact_row)

    def _decide(self, s, und, bad, vids, rows, exact_row):
        """The float filter's signs ``s`` with the entries it left undecided (``und``) decided exactly; ``bad``:
        an overflow or NaN in the filter (an internal error)."""
        if bad:
            raise CPAInternalError("float64 overflow or NaN while deciding vertex sides; please report this "
                                   "network and window (the exact count needs values within float64 range).")
        s = np.array(s, dtype=np.int8)
        und = np.flatnonzero(und)
        if not len(und):
            return s
        with self.exact_lock:  # (two threads may share the exact caches and the statistics)
            for i in und.tolist():
                a, b = exact_row(int(rows[i]))
                val = dot(a, self.exact_vertex(int(vids[i]))) - b
                s[i] = (val > 0) - (val < 0)
            self.stats["exact_fallbacks"] = self.stats.get("exact_fallbacks", 0) + len(und)
        return s

    def _cell_extremes(self, vids, cnt, T, rows, exact_row):
        """Exact sides of cells' vertices for one hyperplane per cell: ``vids`` the vertices cell after cell,
        ``cnt`` per cell (≥ 1), ``rows`` one row of ``T`` per cell. Returns ``(signs per vertex, max, min per
        cell)``."""
        s = self._signs(vids, T, np.repeat(rows, cnt), exact_row)
        bounds = np.concatenate([[0], np.cumsum(cnt)[:-1]])
        return s, np.maximum.reduceat(s, bounds), np.minimum.reduceat(s, bounds)

    # -- one layer -------------------------------------------------------------------------------------------------
    def run_layer(self, li, lines, screened, sides0, progress=None):
        """Split the current cells (the parents, one per chart row of ``lines``) by layer ``li``'s switching sets.

        Returns the live cells' ``(start, count, parent, sides (C, nK) int8)``."""
        d = self.d
        fa, fb, EA, EB = lines["fa"], lines["fb"], lines["EA"], lines["EB"]
        C, nK = fb.shape
        first_hyp = self.hb.n
        # every (parent, switching set) pair gets a hyperplane id up front (parent-major order)
        self.ha.extend(fa.reshape(-1, d))
        self.hb.extend(fb.reshape(-1))
        self.hea.extend(EA.reshape(-1, d))
        self.heb.extend(EB.reshape(-1))
        at = self.hmeta.extend_by(C * nK)
        meta = self.hmeta.a[at: at + C * nK].reshape(C, nK, 3)  # (layer, parent, j): written in place
        meta[..., 0] = li
        meta[..., 1] = np.arange(C)[:, None]
        meta[..., 2] = np.arange(nK)
        # the vertex filter's table, its rows written by the parent test (each run of parents its own rows)
        T = np.empty((C * nK, 2 * d + 3))
        rows_of = (np.ascontiguousarray(fa.reshape(-1, d), dtype=np.float64),
                   np.ascontiguousarray(fb.reshape(-1), dtype=np.float64),
                   np.ascontiguousarray(EA.reshape(-1, d), dtype=np.float64),
                   np.ascontiguousarray(EB.reshape(-1), dtype=np.float64))

        def exact_row(r):
            return self.exact_hyper(first_hyp + int(r))

        # parent test: every screened hyperplane against every parent cell (:meth:`_parent_test`), on two threads
        # (two runs of parents, about equal work) where the waves would use two and the kernels are compiled
        sides = sides0.copy()  # (C, nK) int8
        active = np.zeros((C, nK), dtype=bool)
        boxes = self._boxes(self.start, self.count) if self.boxes is None else self.boxes

        def test(lo, hi):  # the table's rows and the parent test of parents lo … hi − 1
            _sign_rows(T, *rows_of, lo * nK, hi * nK)
            self._parent_test(lo, hi, boxes, T, screened, sides, active, exact_row)

        work = None
        if self._TWO_THREADS_PARENT_WORK and self.kernels.compiled and C >= 2:
            work = np.cumsum(screened.sum(axis=1) * self.count)
        if work is not None and work[-1] >= self._TWO_THREADS_PARENT_WORK:
            h = min(max(int(np.searchsorted(work, work[-1] / 2)) + 1, 1), C - 1)
            _beside(lambda: test(h, C), lambda: test(0, h))
        else:
            test(0, C)
        # live cells (append-only: a cut cell's lower half replaces it, its upper half is appended)
        live = _Cells(self.start, self.count, np.arange(C), sides, boxes)
        # waves: every live cell tests the next ``_WAVE_LINES`` hyperplanes of its parent's cut list at once and is
        # split by the first of them that cuts it (those before it are decided for the cell and all its parts;
        # those after it are tested again on the two halves). A cell sees its list in order either way — the same
        # splits as one hyperplane per wave — but a lineage of n lines with c cuts takes about n / _WAVE_LINES + c
        # waves instead of n (a 2-D window cut by 100 lines: ~25 waves instead of 100).
        act_ptr = np.concatenate([[0], np.cumsum(active.sum(axis=1))])
        act_j = np.nonzero(active)[1]
        live.pos.extend(act_ptr[:-1])
        self._waves(li, live, act_ptr[1:], act_j, T, nK, first_hyp, exact_row, progress)
        self.boxes = live.box.v  # the next layer's parents are these cells, in this order (compact keeps it)
        return live.start.v, live.count.v, live.par.v, live.sides.v

    def _parent_test(self, lo, hi, boxes, T, screened, sides, active, exact_row):
        """The parent test of parents ``lo … hi − 1``: each screened hyperplane (row ``c·nK + j`` of ``T``) against
        its parent cell — the box filter on all of a parent's lines at once (no gathers), then exact vertex signs
        for the pairs it leaves undecided (on the CPU both compiled: :func:`cpa_theory.frontier_loops.box_sides_dense`,
        ``pair_extremes`` — the same bounds). Writes those rows of ``sides`` (the side of each line that does not
        cut its parent) and ``active`` (whether it does)."""
        nK = screened.shape[1]
        compiled = self.kernels.compiled
        scr = screened[lo:hi]
        if compiled:
            from .frontier_loops import box_sides_dense, pair_extremes  # numba: loaded on a flat engine's first use

            side = box_sides_dense(boxes[lo:hi], T[lo * nK: hi * nK], scr)
        else:
            Tc = T.reshape(len(screened), nK, T.shape[1])
            side = np.zeros(scr.shape, dtype=np.int8)
            pstep = max(1, _BOX_CHUNK // max(1, nK))
            for c0 in range(lo, hi, pstep):
                c1 = min(c0 + pstep, hi)
                side[c0 - lo:c1 - lo] = self.kernels.box_sides(boxes[c0:c1, None, :], Tc[c0:c1])
        decided = scr & (side != 0)
        sides[lo:hi][decided] = side[decided]  # the box on one side: so is the cell (only the sign is read)
        cand = np.argwhere(scr & (side == 0))  # (pairs, 2): (parent − lo, j)
        step = 1
        if len(cand):  # each parent's distinct vertices, listed once for all its undecided lines
            dv, dcount = self.cell_vertices(self.start[lo:hi], self.count[lo:hi])
            dstart = np.concatenate([[0], np.cumsum(dcount)[:-1]])
            step = max(1, _SIGN_CHUNK // max(1, int(dcount.mean())))
        for s0 in range(0, len(cand), step):
            pr = cand[s0:s0 + step]
            rows = (pr[:, 0] + lo) * nK + pr[:, 1]
            if compiled:
                smax, smin, up, uv, bad = pair_extremes(pr[:, 0], rows, dv, dstart, dcount, self.VE.a, T)
                if bad or len(up):  # the entries float64 leaves undecided, decided exactly
                    s = self._decide(np.zeros(len(up), np.int8), np.ones(len(up), bool), bad, uv, rows[up], exact_row)
                    np.maximum.at(smax, up, s)
                    np.minimum.at(smin, up, s)
            else:
                cnt = dcount[pr[:, 0]]
                _, smax, smin = self._cell_extremes(dv[_ranges(dstart[pr[:, 0]], cnt)], cnt, T, rows, exact_row)
            cut = (smax > 0) & (smin < 0)
            active[pr[:, 0] + lo, pr[:, 1]] = cut
            # off the cutting ones at most one side holds: max + min is > 0, < 0 or 0 (on the hyperplane everywhere)
            nc = ~cut
            sides[pr[nc, 0] + lo, pr[nc, 1]] = smax[nc] + smin[nc]

    def _waves(self, li, live, end, act_j, T, nK, first_hyp, exact_row, progress):
        """Split the live cells by their parents' cut lists (cell c's next line is ``act_j[pos[c]]`` while
        ``pos[c] < end[par[c]]``), wave after wave (see :meth:`run_layer`)."""
        longest = int(np.diff(np.concatenate([[0], end])).max(initial=0))
        while True:
            cells = np.flatnonzero(live.pos.v < end[live.par.v])
            if not len(cells):
                break
            pos = live.pos.a[cells]
            nb = np.minimum(end[live.par.a[cells]] - pos, self._WAVE_LINES)
            pc = np.repeat(cells, nb)  # (cell, line) pairs, grouped by cell, lines in list order
            k = _ranges(pos, nb)
            jc = act_j[k]
            smax, smin, info = self._cell_signs(live.start.a[pc], live.count.a[pc], live.box.a[pc], T,
                                                live.par.a[pc] * nK + jc, exact_row)
            cut = (smax > 0) & (smin < 0)
            g0 = np.concatenate([[0], np.cumsum(nb)[:-1]])
            at = np.arange(len(pc))
            first = np.minimum.reduceat(np.where(cut, at, len(pc)), g0)  # each cell's first cutting pair
            has = first < len(pc)
            before = at < np.repeat(first, nb)  # decided for the cell (none of them cuts it)
            live.sides.a[pc[before], jc[before]] = smax[before] + smin[before]
            live.pos.a[cells] = np.where(has, k[np.minimum(first, len(pc) - 1)] + 1, pos + nb)
            if has.any():
                split = np.zeros(len(pc), dtype=bool)
                split[first[has]] = True
                self._split(pc, split, info, live, first_hyp + live.par.a[pc] * nK + jc, jc)
            if progress is not None:
                rest = end[live.par.v] - live.pos.v
                progress(li, 1.0 - float(rest.max(initial=0)) / max(1, longest), live.par.n)

    def compact(self, start, count):
        """Rewrite the pools with only the live cells ``(start, count)`` (:meth:`_compact`); nothing to do when no
        split happened since the last compaction (a layer that cuts no cell, such as the output layer)."""
        done = self._clean
        if done is not None and np.array_equal(start, done[0]) and np.array_equal(count, done[1]):
            return
        self._compact(start, count)
        self._clean = (self.start.copy(), self.count.copy())

    def _after_split(self, live, ccells, j, lower, upper):
        """Bookkeeping of a split (:func:`cpa_theory.frontier_loops.split_cells`): the cut cells become their
        lower halves ``lower`` = (pool starts, counts) in place, the upper halves ``upper`` are appended (sides,
        line pointer and parent inherited; the halves' boxes from their vertices)."""
        from .frontier_loops import split_cells

        self._clean = None
        i64 = lambda x: np.ascontiguousarray(x, dtype=np.int64)  # noqa: E731  (one compiled layout)
        n = live.par.n
        arrays = split_cells(live.arrays(), n, i64(ccells), i64(j), i64(lower[0]), i64(lower[1]),
                             np.ascontiguousarray(self._boxes(*lower), dtype=np.float64), i64(upper[0]),
                             i64(upper[1]), np.ascontiguousarray(self._boxes(*upper), dtype=np.float64))
        live.hold(arrays, n + len(ccells))



def _sign_table(a, b, ea, eb):
    """Per hyperplane, the coefficients of the vertex-sign filter: ``(L, 2d + 3)`` rows (a, β, ea + k|a|,
    eβ + k|β|, Σ|a| + Σea) with k = (d + DOT_EXTRA_TERMS)·u, so that for a vertex v with error e the bound is
    E = S·(|v|·T[d+1 : 2d+1] + T[2d+1] + T[2d+2]·e) (:func:`cpa_theory.polytope.vertex_signs`). Row-major (the
    compiled loops are built for that layout once); one compiled pass
    (:func:`cpa_theory.frontier_loops.sign_table`)."""
    from .frontier_loops import sign_table

    return sign_table(np.ascontiguousarray(a), np.ascontiguousarray(b), np.ascontiguousarray(ea),
                      np.ascontiguousarray(eb), (a.shape[1] + DOT_EXTRA_TERMS) * U)



def _sign_rows(T, a, b, ea, eb, r0, r1):
    """Rows ``r0 … r1 − 1`` of :func:`_sign_table` written into ``T`` (contiguous float64 inputs)."""
    from .frontier_loops import sign_rows

    sign_rows(T, a, b, ea, eb, (a.shape[1] + DOT_EXTRA_TERMS) * U, r0, r1)



def _box_sides(box, Tg):
    """Side of boxes ``(n, 2d)`` for hyperplanes (rows of :func:`_sign_table`): +1 / −1 / 0 undecided, by
    :func:`cpa_theory.frontier_kernels.box_sides` on numpy."""
    return NUMPY.box_sides(box, Tg)


# -- the driver: layers, then certificates -------------------------------------------------------------------

def _screen(lines, y0, radius):
    """The C4 window screen with a safe margin (the cell engine's and the flat engines' one screen): a switching
    set whose window slack is below −E misses W entirely and keeps the side of the window centre. Returns
    ``(screened (C, nK) bool, sides at the centre (C, nK) int8)``; overflow is an internal error."""
    fa, fb, EA, EB = lines["fa"], lines["fb"], lines["EA"], lines["EB"]
    C, nK, d = fa.shape
    ay0 = np.abs(y0) + radius
    with np.errstate(over="ignore", invalid="ignore"):  # row-major products over (C·nK, d) rows, |fa| read once
        rows = fa.reshape(-1, d)
        m = np.abs(rows) @ np.stack([np.full(d, float(radius)), ay0], axis=1)  # (C·nK, 2): ‖fa‖₁ r, |fa|·(|y0|+r)
        resid = (rows @ y0).reshape(C, nK) - fb
        dual = m[:, 0].reshape(C, nK)
        Es = FILTER_SAFETY * ((EA.reshape(-1, d) @ ay0).reshape(C, nK) + EB + (d + DOT_EXTRA_TERMS + 2) * U
                              * (m[:, 1].reshape(C, nK) + np.abs(fb)))
    screen_finite(resid, dual, Es)
    return np.abs(resid) - dual <= Es, np.sign(resid).astype(np.int8)


def screen_finite(*arrays) -> None:
    """A NaN in the screen would read as 'misses W' (every comparison with NaN is False): refuse instead."""
    for a in arrays:
        if not np.all(np.isfinite(a)):
            raise CPAInternalError("float64 overflow in the window screen (a switching set's slack over W); the "
                                   "exact count needs the charts within float64 range. Please report this network "
                                   "and window.")



def _pieces(lines, csides, L):
    """Piece of every neuron on every cell a layer left, from the cells' sides of its breakpoints; and whether
    the neuron sits on a breakpoint on the whole cell (``flat``)."""
    K, n = lines["K"], lines["z0"].shape[1]
    if not K:
        return np.zeros((L, n), dtype=np.int64), np.zeros((L, n), dtype=bool)
    sk = csides.reshape(L, n, K)
    return (sk >= 0).sum(axis=2).astype(np.int64), (sk == 0).any(axis=2)



def _charts_after(cl, lines, par, pieces):
    """The layer's output chart h = A y + c on cells (parents ``par`` into ``lines``, their ``pieces``) with the
    magnitude bounds of :func:`cpa_theory.regions._refine_batch`: ``(A, c, mA, mc)``, row by row
    (:func:`cpa_theory.frontier_kernels.charts_after`)."""
    return charts_after(lines["N"][par], lines["z0"][par], lines["mlin"][par], lines["mgap"][par], pieces,
                        chart_tables(cl.activation), cl.bn.gain, cl.bn.shift)



_CHART_CHUNK = 1024  # cells per chunk when composing the next layer (bounded temporaries that stay in cache:
#                     the output-layer compose of 2-100-100-1-s0 takes 33 ms at 1024 against 45 ms at 2048)



def _compose(cl, nxt, lines, par_of, pieces, li, kernels=NUMPY):
    """The next layer's switching sets on every cell: the output charts of
    :func:`cpa_theory.frontier_kernels.charts_after`, then :func:`cpa_theory.frontier_kernels.next_lines` —
    chunk by chunk with ``kernels.compose``, or on the CPU in one fused compiled pass
    (:func:`cpa_theory.frontier_loops.compose_lines`, tested equal to the numpy kernels). Either way the cells'
    input charts (C, n, d) are never held all at once — only the next layer's lines, which the splitting needs."""
    rel = lines["rel2"] + 2 * U
    tables = chart_tables(cl.activation)
    bn2, t2 = nxt.bn, nxt.activation.breakpoints_array
    lo_in = min(lines["lo"], _min_nonzero(bn2.anchor))
    rel_next = rel + (nxt.weight.shape[1] + DOT_EXTRA_TERMS + 2) * U
    if kernels.compiled:  # on the CPU: one fused compiled pass over all cells (the same formulas, no temporaries)
        from .frontier_loops import compose_lines

        c64 = lambda x: np.ascontiguousarray(x, dtype=np.float64)  # noqa: E731  (one compiled layout)
        i64 = lambda x: np.ascontiguousarray(x, dtype=np.int64)  # noqa: E731
        arrays = compose_lines(*map(c64, (lines["N"], lines["z0"], lines["mlin"], lines["mgap"])), i64(par_of),
                               i64(pieces), *map(c64, (*tables, cl.bn.gain, cl.bn.shift, nxt.weight, bn2.anchor,
                                                       bn2.gain, bn2.shift, t2)), float(rel), c64(bn2.z_error))
        return _lines_dict(arrays, nxt, rel_next, lo_in, li)
    parts = []
    for s0 in range(0, max(1, len(par_of)), _CHART_CHUNK):  # one empty chunk when there is no cell
        par, pc = par_of[s0:s0 + _CHART_CHUNK], pieces[s0:s0 + _CHART_CHUNK]
        parts.append(kernels.compose((lines["N"][par], lines["z0"][par], lines["mlin"][par], lines["mgap"][par],
                                      pc, tables, cl.bn.gain, cl.bn.shift, nxt.weight, bn2.anchor, bn2.gain,
                                      bn2.shift, t2, rel, bn2.z_error)))
    arrays = parts[0] if len(parts) == 1 else tuple(np.concatenate([p[k] for p in parts]) for k in range(10))
    return _lines_dict(arrays, nxt, rel_next, lo_in, li)



def _with_kernels(fr, kernels):
    """``fr`` with its float kernels set (numpy when ``kernels`` is None)."""
    fr.kernels = NUMPY if kernels is None else kernels
    return fr



def run_layers(fr, cond, p, y0, radius, progress=None):
    """All layers on the frontier ``fr`` (plane or space engine); leaves the final cells' codes, flats and output
    charts f = A y + c in ``fr`` (``fr.A (C, n_out, d)``, ``fr.c (C, n_out)``, their magnitude bounds ``fr.mA``,
    ``fr.mc`` and relative error ``fr.rel``)."""
    d = len(p)
    eye = np.eye(d)
    lines = layer_lines(cond.layers[0], eye[None], p[None].copy(), eye[None], np.abs(p)[None], 0.0, 0)
    codes, flats = (), ()
    layers = cond.layers
    for li, cl in enumerate(layers):
        screened, sides0 = _screen(lines, y0, radius)
        fr.prefix_codes.append(codes)
        start, count, par_of, csides = fr.run_layer(li, lines, screened, sides0, progress)
        pieces, flat_here = _pieces(lines, csides, len(par_of))
        # the earlier layers' codes and flats carried to this layer's cells (the same arrays where no cell was
        # split: the output layer)
        same = len(par_of) == (len(codes[0]) if codes else 1) and np.array_equal(par_of, np.arange(len(par_of)))

        def carried(codes=codes, flats=flats, pieces=pieces, flat_here=flat_here, par_of=par_of, same=same):
            return (tuple(k if same else k[par_of] for k in codes) + (pieces,),
                    tuple(k if same else k[par_of] for k in flats) + (flat_here,))

        if li + 1 < len(layers):  # the pools' compaction (then the carried codes) and the next layer's charts do
            #                       not read each other
            (_, (codes, flats)), lines = _beside(
                lambda: (fr.compact(start, count), carried()),
                lambda: _compose(cl, layers[li + 1], lines, par_of, pieces, li + 1, fr.kernels),
                fr._COMPACT_NOGIL and fr.kernels.compiled)
        else:
            codes, flats = carried()
            fr.compact(start, count)
            with np.errstate(over="ignore", invalid="ignore"):  # an overflowed bound: N_lin decides in rationals
                fr.A, fr.c, fr.mA, fr.mc = _charts_after(cl, lines, par_of, pieces)
            fr.rel = lines["rel2"] + 2 * U
    fr.codes, fr.flats = codes, flats
    return fr



def _recheck(cond, wit, rad, codes, flats, radius_w, exact, chunk=4096):
    """Independent forward pass at every witness: ``(C,)`` bool (the test of
    :func:`cpa_theory.regions._certify_batch`, on stacked code arrays)."""
    from .exact import exact_code

    ok = rad > WITNESS_MIN_RELATIVE_RADIUS * radius_w
    for s0 in range(0, len(wit), chunk):
        sl = slice(s0, s0 + chunk)
        zs = cond.preactivations(wit[sl])
        for li, (layer, z) in enumerate(zip(cond.layers, zs)):
            bad = layer.activation.piece_index(z) != codes[li][sl]  # another piece than the region's code
            bps = layer.activation.breakpoints
            if bps:  # on a breakpoint where the region is not flat there
                if len(bps) > 8:
                    on_bp = np.isin(z, layer.activation.breakpoints_array)
                else:
                    on_bp = z == bps[0]
                    for t in bps[1:]:
                        on_bp |= z == t
                bad |= on_bp & ~flats[li][sl]
            if bad.any():  # (rows only where some entry fails: the usual chunk has none)
                ok[sl] &= ~bad.any(axis=1)
    if exact:
        for i in np.flatnonzero(ok).tolist():
            ok[i] = all(np.array_equal(g, k[i]) for g, k in zip(exact_code(cond, wit[i]), codes))
    return ok



def _code_words(codes, C, max_pieces):
    """Codes packed into uint64 words: ``(W (C, nw), woff, per_word, bits)``.

    Layer ℓ's piece indices take ``bits[ℓ]`` = the bit length of its largest piece ``max_pieces[ℓ]`` (one bit for
    two pieces), ``per_word[ℓ]`` fields to a word, each layer starting on a fresh word at ``woff[ℓ]``: neuron j's
    field is word ``woff[ℓ] + j // per_word[ℓ]``, shift ``(j % per_word[ℓ]) · bits[ℓ]``. No field crosses a word
    and every piece (and every neighbour's piece) fits its field, so distinct codes give distinct words."""
    bits = np.array([max(1, int(K).bit_length()) for K in max_pieces], dtype=np.int64)
    per_word = 64 // bits
    nwords = np.array([-(-k.shape[1] // pw) for k, pw in zip(codes, per_word)], dtype=np.int64)
    woff = np.concatenate([[0], np.cumsum(nwords)]).astype(np.int64)
    from .frontier_loops import pack_fields

    W = np.zeros((C, max(1, int(woff[-1]))), dtype=np.uint64)
    for li, k in enumerate(codes):
        if not pack_fields(np.ascontiguousarray(k), W, int(woff[li]), int(per_word[li]), int(bits[li]),
                           int(max_pieces[li])):
            raise CPAInternalError(f"layer {li}: a piece index outside 0 … {max_pieces[li]}; please report this.")
    return W, woff, per_word, bits



def _match_codes(fr, cell, meta, hash_mask=np.uint64(2**64 - 1), planes=None):
    """For facets (edges in 2-D, faces in 3-D) of regions ``cell`` with hyperplane metadata ``meta`` (layer or
    −1 for the domain's sides, parent, j·K + k; one row per facet, or with ``planes`` the metadata table whose
    rows ``planes`` names per facet): the region across each inner facet — codes packed into words
    (:func:`_code_words`), the neighbour's code predicted by moving one piece field, found by its hash and
    verified on all its words (compiled: :func:`cpa_theory.frontier_loops.match_codes`; ``hash_mask`` = 0 makes
    every hash equal, the worst case, for tests).
    Returns ``(pairs (P, 2) with i < j, unmatched facet positions)``."""
    from .frontier_loops import match_codes

    C = len(fr.count)
    maxp = [len(l.activation.breakpoints) for l in fr.cond.layers]
    W, woff, per_word, bits = _code_words(fr.codes, C, maxp)
    rng = np.random.default_rng(12345)  # a fixed salt: only speed depends on it, matches are verified
    salt = rng.integers(0, 2**63, size=W.shape[1], dtype=np.uint64)
    Ks = np.array([max(1, len(l.activation.breakpoints)) for l in fr.cond.layers], dtype=np.int64)
    planes = np.arange(len(cell)) if planes is None else planes
    i64 = lambda x: np.ascontiguousarray(x, dtype=np.int64)  # noqa: E731  (one compiled layout)
    return match_codes(W, salt, i64(cell), i64(planes), i64(meta), Ks, woff, per_word.astype(np.int64), bits,
                       np.uint64(hash_mask))



def output_maps(A, c, mA, mc, rel, p):
    """Regions' output maps in x-coordinates with proven error bounds: from charts f = A y + c (y = x − p) with
    magnitude bounds ``mA``, ``mc`` and relative error ``rel`` (|error| ≤ rel·(mA, mc), as every chart in the
    engines), returns ``(A, c_x, eA, ec)``: f(x) = A x + c_x, and per region one bound on the error of every
    entry of A (``eA``) and of c_x (``ec``)."""
    n = len(A)
    A2 = A.reshape(n, -1, A.shape[-1])
    sp = float(np.abs(p).sum())
    with np.errstate(over="ignore", invalid="ignore"):  # a bound that overflows is not finite: see same_maps
        cx = c - np.einsum("cod,d->co", A2, p).reshape(c.shape)
        eA = rel * mA.reshape(n, -1).max(axis=1, initial=0)
        ec = (rel * mc.reshape(n, -1).max(axis=1, initial=0) + eA * sp
              + (A.shape[-1] + 2) * U * (np.abs(c).reshape(n, -1).max(axis=1, initial=0)
                                         + np.abs(A).reshape(n, -1).max(axis=1, initial=0) * sp))
    return A, cx, eA, ec


def same_maps(u, v, A, c, eA, ec):
    """For adjacent pairs (u, v): do the output maps agree within their proven float error (entry by entry,
    FILTER_SAFETY × the two regions' bounds)? Maps that differ by more are different; maps within the bound may
    still differ below float64's resolution of the computation: :func:`confirm_same_maps` decides those, and
    so every pair whose difference or bound is not finite (float64 cannot tell them apart either)."""
    n = len(A)
    same = np.ones(len(u), dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        for X, E in ((A.reshape(n, -1), eA), (c.reshape(n, -1), ec)):
            tol = FILTER_SAFETY * (E[u] + E[v])
            diff = np.abs(X[u] - X[v])
            same &= np.all((diff <= tol[:, None]) | ~np.isfinite(diff) | ~np.isfinite(tol)[:, None], axis=1)
    return same


def confirm_same_maps(cond, p, u, v, same, code_of, n_out, charts=None):
    """The pairs that :func:`same_maps` could not tell apart in float64, decided in rationals: their exact output
    maps (:meth:`cpa_theory.exact.ExactCharts.output` on their codes, ``code_of(i)``) are compared. Float64
    cannot see a kink below its resolution of the map (1e-16 of a slope of 1e8 beside it, say); the exact
    function of the float64 data has it. Pairs whose maps are the same expression on both codes
    (:func:`cpa_theory.exact.maps_identical`: the differing pieces never reach the output) are equal with no
    arithmetic; the others are compared in rationals. ``charts``: an :class:`ExactCharts` on (cond, p) to reuse
    (its cache) across calls. Returns the confirmed mask and the number of pairs decided in rationals."""
    idx = np.flatnonzero(same)
    if not len(idx):
        return same, 0
    cu = [code_of(int(i)) for i in u[idx]]
    cv = [code_of(int(i)) for i in v[idx]]
    ident = maps_identical(cond, [np.stack(k) for k in zip(*cu)], [np.stack(k) for k in zip(*cv)])
    idx = idx[~ident]  # the same expression on both codes: equal with no arithmetic
    if not len(idx):
        return same, 0
    charts = ExactCharts(cond, p) if charts is None else charts
    out = same.copy()
    for t in idx.tolist():
        cu, cv = code_of(int(u[t])), code_of(int(v[t]))
        out[t] = all(charts.output(cu, o) == charts.output(cv, o) for o in range(n_out))
    return out, len(idx)


def _linear_components(n, pairs, A, c, eA, ec, confirm=None) -> int:
    """Maximal linear regions: connected components of adjacent regions whose output maps agree
    (:func:`same_maps`, then ``confirm(u, v, same)`` — :func:`confirm_same_maps` — on the pairs float64 takes
    as equal)."""
    if not len(pairs):
        return n
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    u, v = pairs[:, 0], pairs[:, 1]
    same = same_maps(u, v, A, c, eA, ec)
    if confirm is not None:
        same = confirm(u, v, same)
    g = coo_matrix((np.ones(int(same.sum())), (u[same], v[same])), shape=(n, n))
    return int(connected_components(g, directed=False)[0])



#: the sweep's projection in :func:`_vertex_clusters`: (1, 1/φ, 1/φ²) with φ ≈ 1.2207 the root of x⁴ = x + 1
#: (the constants of Roberts' 3-D R-sequence) — no rational direction, so the vertices on one side of the box
#: spread out along it
_SWEEP_PROJECTION = np.array([1.0, 0.8191725133961645, 0.6710436067037893])


def _vertex_clusters(fr, vid=None, exact_ids=None):
    """Group corners (vertex ids ``vid`` of pool entries; default: the plane engine's pool) into the vertices of
    the subdivision: ``(labels, n)``.

    Copies of one exact point lie within their proven error bounds of it, so within the sum of the two bounds of
    each other in every coordinate: corners are joined when they share a vertex id or their coordinates agree to
    twice that sum (the factor 2 covers the rounding of the comparison). The pairs are found by a sweep along a
    fixed projection (:func:`_close_pairs`). Joining more than copies is possible only for distinct points that are
    close together, which the checks then reject and the exact pass undoes. ``exact_ids``: corners whose groups
    are instead decided by exact rational equality of their vertices (the second pass when the first does not
    close up)."""
    d = fr.d
    vid = fr.pv.v if vid is None else vid
    if not len(vid):
        return np.zeros(0, dtype=np.int64), 0
    uv, inv = _distinct(vid, return_inverse=True, bound=fr.VE.n)  # corners sharing a vertex id are one point
    m = len(uv)
    ex_u = np.zeros(0, dtype=np.int64)
    if exact_ids is None:
        r, c = _close_pairs(fr.VE.a, uv, d)
        r, c = [r], [c]
    else:
        ex_u = _distinct(inv[np.asarray(exact_ids, dtype=np.int64)])
        float_ok = np.ones(m, dtype=bool)
        float_ok[ex_u] = False
        fi = np.flatnonzero(float_ok)
        r, c = _close_pairs(fr.VE.a, uv[fi], d)
        r, c = [fi[r]], [fi[c]]
    if len(ex_u):
        first: dict = {}
        rep = np.array([first.setdefault(fr.exact_vertex(int(uv[e])), e) for e in ex_u.tolist()], dtype=np.int64)
        r.append(ex_u)
        c.append(rep)
    from .frontier_loops import components

    lab, _ = components(m, np.concatenate(r).astype(np.int64), np.concatenate(c).astype(np.int64))
    labels = lab[inv]
    return labels, int(labels.max()) + 1


def _close_pairs(VE, rows, d):
    """Pairs (i, j) of the points ``VE[rows, :d]`` with error bounds ``VE[rows, d]`` whose coordinates all agree
    to 2 (err_i + err_j), as positions in ``rows``: a sweep along :data:`_SWEEP_PROJECTION` — sorted by their value
    w there, each point is compared with the next ones while they are within the slab that bounds |w_i − w_j| for a
    close pair (Σ r · 4 max err, plus the rounding of w, with room to spare; compiled:
    :func:`cpa_theory.frontier_loops.project_rows`, :func:`cpa_theory.frontier_loops.sweep_pairs`). Two copies of
    one exact point, each within its bound of it, always form a pair (directly: no chain of grid cells)."""
    from .frontier_loops import project_rows, sweep_pairs

    rr = _SWEEP_PROJECTION[:d]
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    w, emax, vmax = project_rows(VE, rows, rr)
    order = np.argsort(w)  # (equal w in any order: the sweep finds the same pairs; ~4x faster than "stable")
    rs = float(rr.sum())
    slab = (4.0 * rs * emax + 2 * (d + 2) * U * rs * vmax) * (1 + 1e-6) + 1e-300
    return sweep_pairs(w, order, VE, rows, slab)



def _mixed(labels, nv, vid):
    """Corners whose group joins more than one vertex id (to be re-decided exactly)."""
    first = np.full(nv, -1, dtype=np.int64)
    first[labels[::-1]] = vid[::-1]
    mixed = np.zeros(nv, dtype=bool)
    mixed[labels[vid != first[labels]]] = True
    return np.flatnonzero(mixed[labels])



class Geometry(NamedTuple):
    """What differs between the plane and space engines after refinement: hooks on the final frontier."""

    refine: Callable  # (cond, root, p, y0, radius, stats, progress, kernels) -> frontier
    witnesses: Callable  # (fr, p) -> (witnesses (C, d) in x, float ball radii (C,))
    cell: Callable  # (fr, i) -> region i as a polytope object (exact paths, keep_regions)
    volumes: Callable  # (fr) -> (C,) float volumes
    completeness: Callable  # (fr) -> (adjacent pairs, unmatched inner facets as (region, hyperplane id, inner
    #                        sign, corners), measure balance ok, Euler ok, Euler χ or None)
    threaded_witnesses: bool = False  # witnesses (and recheck) on a second thread beside the completeness checks
    #: the completeness checks in two parts, ``(adjacency (fr) -> a, rest (fr) -> b, join (fr, a, b) -> what
    #: ``completeness`` returns)``, ``a`` starting with the adjacent pairs and the unmatched facets: with a second
    #: thread, the adjacency runs first, and the witness thread, once done, takes N_lin from it (when no facet is
    #: unmatched) while the rest of the checks run
    checks: tuple | None = None



def count_flat(cond, win, p, root, vol_w, geo: Geometry, *, keep_regions=False, exact_recheck=False, linear=True,
               progress=None, kernels=NUMPY):
    """Refine, certify and check completeness with the flat engine ``geo``: the
    :class:`cpa_theory.regions.RegionCount` fields except ``hits`` and ``seconds`` (the caller's). BLAS runs on
    one thread meanwhile (:func:`cpa_theory.blas_threads.one_blas_thread`)."""
    with one_blas_thread():
        return _count_flat(cond, win, p, root, vol_w, geo, keep_regions=keep_regions, exact_recheck=exact_recheck,
                           linear=linear, progress=progress, kernels=kernels)


def _count_flat(cond, win, p, root, vol_w, geo, *, keep_regions, exact_recheck, linear, progress, kernels):
    from .regions import Region, RegionCount, _exact_witness, _Leaf
    from .tolerances import VOLUME_SUM_RTOL

    stats: dict = {}
    bar = _LayerProgress(progress, len(cond.layers))
    try:
        fr = geo.refine(cond, root, p, win.center - p, win.radius, stats, None if progress is False else bar.update,
                        kernels)  # (no callback: the space engine's compiled waves run a layer in one call)
    finally:
        bar.close()
    fr.compact(fr.start, fr.count)  # certificates read the pools in cell order
    n = len(fr.count)
    maps = []  # (output maps, N_lin from the adjacency's pairs) when the witness thread took them

    def n_lin_of(pairs):
        out_A, out_c, eA, ec = output_maps(fr.A, fr.c, fr.mA, fr.mc, fr.rel, p)  # f(x) = A (x − p) + c
        confirm = lambda u, v, same: confirm_same_maps(cond, p, u, v, same,  # noqa: E731
                                                       lambda i: tuple(k[i] for k in fr.codes), out_A.shape[1])[0]
        return (out_A, out_c), _linear_components(n, pairs, out_A, out_c, eA, ec, confirm) if linear else n

    def witnessed():
        wit, rad = geo.witnesses(fr, p)
        return wit, rad, _recheck(cond, wit, rad, fr.codes, fr.flats, win.radius, exact_recheck)

    # witnesses and their forward-pass recheck beside the completeness checks where the witness pass runs without
    # the GIL (the space engine's compiled pass); results do not depend on it
    if geo.checks is None or not geo.threaded_witnesses:
        (wit, rad, ok), (pairs, unmatched, balance_ok, euler_ok, chi) = _beside(
            witnessed, lambda: geo.completeness(fr), geo.threaded_witnesses)
    else:
        adjacency, rest, join = geo.checks
        adj, adj_done = [], threading.Event()

        def witnessed_then_n_lin():
            got = witnessed()
            adj_done.wait()
            if adj and not len(adj[0][1]):  # no facet left for the exact probe: N_lin is final
                maps.append(n_lin_of(adj[0][0]))
            return got

        def checks():
            try:
                adj.append(adjacency(fr))
            finally:
                adj_done.set()
            return join(fr, adj[0], rest(fr))

        (wit, rad, ok), (pairs, unmatched, balance_ok, euler_ok, chi) = _beside(witnessed_then_n_lin, checks)
    n_exact_wit = 0
    p_exact = [Fraction(float(v)) for v in p]
    for i in np.flatnonzero(~ok).tolist():  # float64 cannot certify: an exact rational witness
        leaf = _Leaf(geo.cell(fr, i), tuple(k[i] for k in fr.codes), tuple(k[i] for k in fr.flats), None, None)
        got = _exact_witness(cond, leaf, p_exact)
        if got is not None:
            x, rho = got
            wit[i] = [float(v) for v in x]
            rad[i] = float(rho)
            ok[i] = True
            n_exact_wit += 1
    n_bad = int(np.count_nonzero(~ok))
    vol_ok = abs(float(geo.volumes(fr).sum()) - vol_w) <= VOLUME_SUM_RTOL * vol_w
    n_unmatched = len(unmatched)
    if unmatched and (linear or not balance_ok):  # facets whose neighbour's code was not predicted: find it
        found, proven = _probe_pairs(fr, cond, p, root, unmatched)  # exactly (N_lin); when each one's neighbour
        pairs = np.concatenate([pairs, found]).astype(np.int64)  # is proven, no measure balance is needed
        balance_ok = balance_ok or bool(proven.all())  # (coincident sets name one facet by two hyperplanes)
    complete = bool(vol_ok and balance_ok and euler_ok)
    (out_A, out_c), n_lin = maps[0] if maps else n_lin_of(pairs)
    regions = None
    if keep_regions:
        regions = []
        for i in range(n):
            P = geo.cell(fr, i)
            G, h = P.facet_arrays()
            regions.append(Region(tuple(k[i] for k in fr.codes), wit[i], float(rad[i]), P.V + p, out_A[i],
                                  out_c[i], (G, h + G @ p)))
    min_rad = float(rad[ok].min()) if ok.any() else math.inf
    return RegionCount(win.center, win.radius, n, n_lin, 0, n_bad == 0 and complete, n_bad, 0.0,
                       int(stats.get("exact_fallbacks", 0)), regions, complete, min_rad, n_exact_wit, n_unmatched, chi)



def _beside(background, foreground, threaded=True):
    """``(background(), foreground())``, the first on a second thread while the second runs on this one when
    ``threaded`` (a new thread per call: nothing to inherit across a fork). An exception of either is raised
    here (the foreground's first)."""
    if not threaded:
        return background(), foreground()
    out: list = [None, None]

    def run():
        try:
            out[0] = background()
        except BaseException as e:  # noqa: BLE001  (raised again in the caller's thread)
            out[1] = e

    t = threading.Thread(target=run, name="cpa-theory-beside", daemon=True)
    t.start()
    try:
        fg = foreground()
    finally:
        t.join()
    if out[1] is not None:
        raise out[1]
    return out[0], fg


def _probe_pairs(fr, cond, p, root, unmatched):
    """Adjacent pairs across the unmatched facets (:mod:`cpa_theory.facet_probe`), for N_lin and completeness:
    ``(pairs (k, 2), proven (len(unmatched),) bool)`` — whether each facet's neighbour was found."""
    from .facet_probe import FacetProber

    index = {tuple(k[i].tobytes() for k in fr.codes): i for i in range(len(fr.count))}
    prober = FacetProber(cond, p, root, lambda code: index.get(tuple(k.tobytes() for k in code)))
    out, proven = [], np.zeros(len(unmatched), dtype=bool)
    for t, (cell, hid, sign, corners, vids) in enumerate(unmatched):
        j = prober.probe(cell, tuple(k[cell] for k in fr.codes), fr.exact_hyper(hid), sign, corners,
                         lambda vids=vids: [fr.exact_vertex(v) for v in vids])
        if j is not None:
            out.append((min(cell, j), max(cell, j)))
            proven[t] = True
    return np.array(out, dtype=np.int64).reshape(-1, 2), proven


class _LayerProgress:
    """Rich progress on stderr for one window of a flat engine: layers done, the fraction of the current layer's
    waves, the cells so far. ``mode``: True at once, None once the window has taken
    ``regions._PROGRESS_AFTER_S`` seconds and only when stderr is a terminal (the cell engine's rule), False
    never."""

    def __init__(self, mode, n_layers):
        self.mode, self.n, self.bar, self.t0 = mode, n_layers, None, time.perf_counter()

    def update(self, layer, frac, cells):
        import sys

        from . import regions as R

        if self.mode is False or (self.mode is None and (time.perf_counter() - self.t0 < R._PROGRESS_AFTER_S
                                                         or not R._is_terminal(sys.stderr))):
            return
        if self.bar is None:
            from rich.console import Console
            from rich.errors import LiveError
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            console = Console(file=sys.stderr, force_terminal=True if self.mode is None else None)
            self.bar = Progress(TextColumn("counting regions"), BarColumn(),
                                TextColumn("layer {task.fields[layer]}/{task.fields[n]}, {task.fields[cells]} cells"),
                                TimeElapsedColumn(), console=console, transient=True)
            try:
                self.bar.start()
            except LiveError:  # another rich display owns the terminal: stay quiet
                self.bar, self.mode = None, False
                return
            self.task = self.bar.add_task("count", total=self.n, layer=0, n=self.n, cells=0)
        self.bar.update(self.task, completed=layer + frac, layer=layer + 1, cells=cells, refresh=True)

    def close(self):
        if self.bar is not None:
            self.bar.stop()
