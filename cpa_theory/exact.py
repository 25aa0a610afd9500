"""Exact rational arithmetic on the network's float64 data (THEORY §6, "Sign decisions").

Every float64 number is a dyadic rational, so the conditioned network ẑ = g·W(h − p) + e, φ (all float64
parameters) defines one exact CPA function. This module evaluates it in :class:`fractions.Fraction`:

* :func:`exact_preactivations` — ẑ of every layer at a rational point (continuity makes the value
  independent of which piece a point on a breakpoint is assigned to);
* :func:`exact_code` — the activation code at a rational point (the independent exact forward pass that
  re-checks witnesses);
* :class:`ExactCharts` — the exact affine map ẑ_ℓ(y) = N y + z0 of layer ℓ on a cell with a given code
  prefix (layers < ℓ), in coordinates y = x − origin; this is what exact facets and vertices are made of
  (``difference``: the tie set ẑ_a = ẑ_b of a max-group layer, :mod:`cpa_theory.maxgroups`);
* :func:`solve` — Gauss–Jordan in rationals.

These are the slow, always-right fallbacks of the float64 filters in ``polytope`` and ``regions``.
"""

from __future__ import annotations

import threading
from fractions import Fraction

import numpy as np

from .maxgroups import is_max_groups

__all__ = ["F", "exact_piece_maps", "exact_preactivations", "exact_code", "ExactCharts", "maps_identical", "solve",
           "dot"]

F = Fraction


def _fr(v) -> Fraction:
    return Fraction(float(v))


def dot(a, b) -> Fraction:
    s = Fraction(0)
    for x, y in zip(a, b):
        if x and y:
            s += x * y
    return s


def exact_piece_maps(activation):
    """Per piece k: (slope a_k, offset o_k) with φ(z) = a_k z + o_k exactly, from the activation's float data.

    Same function as the forward pass φ(z) = φ(t_1) + a_0 (z − t_1) + Σ (a_k − a_{k−1}) max(z − t_k, 0) taken
    exactly: the continuous spline of :meth:`CPAActivation.exact_intercepts` (rounding the breakpoint values
    first would leave a jump of ~1e-17 at a breakpoint, e.g. hardsigmoid's 6·fl(1/6) ≠ 1).
    """
    a = [_fr(v) for v in activation.slopes]
    return list(zip(a, activation.exact_intercepts()))


class _ExactLayer:
    __slots__ = ("W", "nz", "_p", "anchor_fn", "g", "e", "t", "maps", "mg", "act")

    def __init__(self, layer):
        self.W = [[_fr(v) for v in row] for row in layer.weight]
        self.nz = [np.flatnonzero(row).tolist() for row in layer.weight]  # sparse rows (zero weights skipped)
        self._p = [_fr(v) for v in layer.bn.anchor]
        self.anchor_fn = None  # train mode: computes the exact anchor on first use (exact_layers)
        self.g = [_fr(v) for v in layer.bn.gain]
        self.e = [_fr(v) for v in layer.bn.shift]
        self.act = layer.activation
        self.mg = layer.activation if is_max_groups(layer.activation) else None
        if self.mg is None:
            self.t = [_fr(v) for v in layer.activation.breakpoints]
            self.maps = exact_piece_maps(layer.activation)
        else:  # max over groups: no breakpoints; pieces are argmax positions
            self.t, self.maps = [], []

    @property
    def p(self) -> list:
        if self.anchor_fn is not None:
            self.anchor_fn()
        return self._p

    def pieces(self, z) -> list:
        """Piece of every output (exact): breakpoints <= z per neuron, or the first argmax per group."""
        if self.mg is None:
            return [sum(1 for tk in self.t if tk <= zi) for zi in z]
        out = []
        for g in self.mg.groups:
            vals = [z[j] for j in g]
            m = max(vals)
            out.append(vals.index(m))
        return out

    def outputs(self, z) -> list:
        if self.mg is not None:
            return [max(z[j] for j in g) for g in self.mg.groups]
        h = []
        for zi in z:
            a, o = self.maps[sum(1 for tk in self.t if tk <= zi)]
            h.append(a * zi + o)
        return h

    def on_switching_set(self, z) -> list:
        """Per output: z on a breakpoint, or the group's maximum attained twice (exact)."""
        if self.mg is None:
            return [any(zi == tk for tk in self.t) for zi in z]
        out = []
        for g in self.mg.groups:
            vals = [z[j] for j in g]
            m = max(vals)
            out.append(sum(1 for v in vals if v == m) > 1)
        return out


_CACHE: dict = {}
_WHOLE = object()  # ExactCharts: a dependency cone keyed by the whole code before its layer
_NONE = np.zeros(0, dtype=np.intp)


def exact_layers(cond):
    """Rational copies of the conditioned layers (cached per network object).

    A train-mode layer's anchor is the exact centroid of the batch's exact representations (the batch pushed
    through the exact earlier layers), not the float64 mean: the float mean of a deeper layer's inputs is off
    by rounding, and off the range of the parent's chart, which splits exactly concurrent switching sets (C9's
    transfer) into slivers ~1e-16 wide. Gains and shifts are the float64 data. The float anchor's distance to
    this one is bounded in the float filters (:attr:`cpa_theory.bn.ConditionedBN.z_error`)."""
    key = id(cond)
    hit = _CACHE.get(key)
    if hit is None or hit[0] is not cond:
        hit = (cond, _with_exact_anchors(cond, [_ExactLayer(l) for l in cond.layers]))
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[key] = hit
    return hit[1]


def _with_exact_anchors(cond, layers):
    train = [getattr(l.bn, "mode", None) == "train" for l in cond.layers]
    batch = getattr(cond, "batch", None)
    if not any(train) or batch is None:
        return layers
    last = max(i for i, t in enumerate(train) if t)
    state = {"hs": None, "at": 0}  # the batch's exact representations at the input of layer "at"
    lock = threading.RLock()  # two threads of one count may ask for anchors at once (the layers are shared)

    def upto(i):  # the exact anchors of layers ≤ i, pushing the batch forward only as far as needed
        with lock:
            if state["hs"] is None:
                state["hs"] = [[_fr(v) for v in row] for row in batch]
            while state["at"] <= i:
                j, L, hs = state["at"], layers[state["at"]], state["hs"]
                if train[j]:
                    L._p = [sum((h[k] for h in hs), Fraction(0)) / len(hs) for k in range(len(L._p))]
                    L.anchor_fn = None  # (after _p: a reader that sees None reads the exact anchor)
                if j < last:
                    state["hs"] = [L.outputs(_pre(L, h)) for h in hs]
                state["at"] += 1

    for i, L in enumerate(layers):
        if train[i]:
            L.anchor_fn = lambda i=i: upto(i)
    return layers


def _pre(L, h):
    """ẑ of the exact layer ``L`` at the exact input ``h``."""
    diff = [hi - pi for hi, pi in zip(h, L.p)]
    return [gi * sum((row[k] * diff[k] for k in nz), Fraction(0)) + ei  # sparse rows: zero weights skipped
            for row, nz, gi, ei in zip(L.W, L.nz, L.g, L.e)]


def maps_identical(cond, codes_u, codes_v) -> np.ndarray:
    """Pairs of cells whose output maps are provably the same exact function, with no arithmetic: ``(P,)`` bool.

    ``codes_u``, ``codes_v``: per layer, ``(P, n_ℓ)`` int arrays of pieces (as :func:`exact_code`). The output
    maps are built by the same chain of exact operations on both codes (:class:`ExactCharts`); an entry of h_ℓ is
    the same expression on both when its piece's exact map (a, o) is the same and either a = 0 (the constant o)
    or its ẑ is (every input with a non-zero weight is) — for a max group, when the winner is the same member
    and its ẑ is. Where this proves every output the same, the maps are equal; where it does not, they may still
    be (exact cancellation, relu(x) − relu(x)): the caller decides those in rationals."""
    layers = exact_layers(cond)
    P = len(codes_u[0]) if len(codes_u) else 0
    diff = np.zeros((P, cond.input_dim), dtype=bool)
    for L, FL, cu, cv in zip(layers, cond.layers, codes_u, codes_v):
        cu, cv = np.asarray(cu, dtype=np.int64), np.asarray(cv, dtype=np.int64)
        dz = _reaches(FL.weight, diff)
        if L.mg is None:
            first = {}
            cls = np.array([first.setdefault(m, k) for k, m in enumerate(L.maps)], dtype=np.int64)
            flat = np.array([a == 0 for a, _ in L.maps], dtype=bool)
            diff = (cls[cu] != cls[cv]) | (dz & ~flat[cu])
        else:
            win = L.mg.idx[np.arange(L.mg.idx.shape[0])[None, :], cu]  # (P, G) the winning members
            diff = (cu != cv) | np.take_along_axis(dz, win, axis=1)
    return ~diff.any(axis=1)


def _reaches(weight, diff):
    """``(P, n_out)`` bool: output j has an input k with weight[j, k] ≠ 0 and ``diff[:, k]`` (sparse product)."""
    import scipy.sparse as sp

    nzW = sp.csr_matrix(np.asarray(weight) != 0, dtype=np.int32)
    return np.asarray((nzW @ sp.csr_matrix(diff.T, dtype=np.int32)).todense()).T > 0


def exact_preactivations(cond, x, upto: int | None = None) -> list:
    """ẑ (lists of Fractions) of layers 0..upto at the rational point ``x`` (input coordinates)."""
    h = [v if isinstance(v, Fraction) else _fr(v) for v in x]
    out = []
    layers = exact_layers(cond)
    for li, L in enumerate(layers if upto is None else layers[:upto + 1]):
        z = _pre(L, h)
        out.append(z)
        h = L.outputs(z)
    return out


def exact_code(cond, x) -> tuple:
    """Activation code (piece index per neuron, per layer) at x in exact rational arithmetic."""
    layers = exact_layers(cond)
    return tuple(np.array(L.pieces(z), dtype=np.int64) for L, z in zip(layers, exact_preactivations(cond, x)))


def exact_code_and_switching(cond, x) -> tuple[tuple, list]:
    """(:func:`exact_code`, :func:`on_breakpoint`) at x from ONE exact forward pass."""
    layers = exact_layers(cond)
    zs = exact_preactivations(cond, x)
    return (tuple(np.array(L.pieces(z), dtype=np.int64) for L, z in zip(layers, zs)),
            [np.array(L.on_switching_set(z), dtype=bool) for L, z in zip(layers, zs)])


def on_breakpoint(cond, x) -> list:
    """Per layer, bool array (one per output): the exact pre-activation at x sits exactly on a breakpoint, or (a
    max-group layer) the group's maximum is attained by two members."""
    layers = exact_layers(cond)
    return [np.array(L.on_switching_set(z), dtype=bool) for L, z in zip(layers, exact_preactivations(cond, x))]


class ExactCharts:
    """Exact maps ẑ_ℓ(y) = N y + z0 on cells, y = x − origin; cached. Rows are built lazily from the inputs they
    depend on (sparse weights), through elementwise pieces or a max-group layer's winners.

    A row depends only on the code entries in its dependency cone (the pieces of the neurons, and the winners of
    the groups, that it reads through the sparse weights), so the cache is keyed by those entries: cells that
    differ elsewhere — most cells of a convolutional network's slice — share the row instead of recomputing it in
    rationals. A cone larger than half of the code before its layer is keyed by that whole code (a superset of
    the dependencies: still a valid key)."""

    def __init__(self, cond, origin):
        self.layers = exact_layers(cond)
        self.origin = [_fr(v) for v in origin]
        self.d = len(self.origin)
        sizes = [len(L.mg.groups) if L.mg is not None else len(L.W) for L in self.layers]
        self._off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.intp)
        self._cones: dict = {}  # ("in" | "row", layer, index) -> code positions read, or _WHOLE
        self._flat: dict = {}  # code key -> the code as one int64 array
        self._input = {}  # (layer, k, code entries in the cone) -> exact (A_k, c_k) of input k of that layer
        self._pre = {}  # (layer, j, code entries in the cone) -> exact (N_j, z0_j)

    # -- dependency cones ---------------------------------------------------------------------------------------------
    def _cone(self, kind: str, l: int, i: int):
        """Code positions (into the concatenated code of layers < l) that input i (``kind`` "in") or pre-activation
        i ("row") of layer l depends on; ``_WHOLE`` when that is more than half of them."""
        key = (kind, l, i)
        hit = self._cones.get(key)
        if hit is not None:
            return hit
        if kind == "in":
            if l == 0:
                hit = _NONE
            else:
                L = self.layers[l - 1]
                src = L.mg.groups[i] if L.mg is not None else (i,)
                parts = [self._cone("row", l - 1, m) for m in src]
                hit = _WHOLE if any(p is _WHOLE for p in parts) else np.union1d(
                    np.concatenate(parts), [self._off[l - 1] + i]).astype(np.intp)
        else:
            nz = self.layers[l].nz[i]
            if l == 0 or not nz:  # the first layer reads the input coordinates only
                hit = _NONE
            elif len(nz) > self._off[l] // 2:  # a dense row
                hit = _WHOLE
            else:
                parts = [self._cone("in", l, k) for k in nz]
                hit = _WHOLE if any(p is _WHOLE for p in parts) else np.unique(np.concatenate(parts)).astype(np.intp)
        if hit is not _WHOLE and hit is not _NONE and 2 * len(hit) > self._off[l]:
            hit = _WHOLE
        self._cones[key] = hit
        return hit

    def _key(self, kind, l, i, flat):
        cone = self._cone(kind, l, i)
        return (l, i, (flat[:self._off[l]] if cone is _WHOLE else flat[cone]).tobytes())

    def _flat_code(self, codes):
        ck = tuple(np.asarray(c).tobytes() for c in codes)
        flat = self._flat.get(ck)
        if flat is None:
            flat = (np.concatenate([np.asarray(c, dtype=np.int64).ravel() for c in codes]) if codes
                    else np.zeros(0, dtype=np.int64))
            if len(self._flat) > 4096:
                self._flat.clear()
            self._flat[ck] = flat
        return flat

    # -- rows -----------------------------------------------------------------------------------------------------------
    def _input_row(self, codes, flat, k):
        """Exact (A_k, c_k) with h_k(y) = A_k·y + c_k: input k of layer len(codes) on the cell of ``codes``
        (``flat`` the code concatenated). Built lazily, only for the inputs a requested row depends on (sparse
        weights: a row of a materialised convolution or of a pool's identity layer touches few inputs)."""
        l = len(codes)
        key = self._key("in", l, k, flat)
        hit = self._input.get(key)
        if hit is not None:
            return hit
        d = self.d
        if not codes:
            hit = (tuple(Fraction(int(i == k)) for i in range(d)), self.origin[k])
        else:
            L = self.layers[l - 1]
            parent = codes[:-1]
            if L.mg is not None:  # max groups: output k is its group's winner's pre-activation
                hit = self._row(parent, flat, L.mg.groups[k][int(codes[-1][k])])
            else:
                a, o = L.maps[int(codes[-1][k])]
                if a == 0:  # a flat piece: the input row is the constant o
                    hit = (tuple(Fraction(0) for _ in range(d)), o)
                else:
                    row, z = self._row(parent, flat, k)
                    hit = (tuple(a * v for v in row), a * z + o)
        self._input[key] = hit
        return hit

    def output(self, codes, o):
        """Exact (A_o, c_o) with f_o(y) = A_o·y + c_o: output o of the network on the region of the full code
        ``codes`` (one array per layer)."""
        return self._input_row(codes, self._flat_code(codes), o)

    def row(self, codes, j):
        """Exact (N_j, z0_j) with ẑ_j(y) = N_j·y + z0_j for neuron j of layer len(codes) on the cell of ``codes``."""
        return self._row(codes, self._flat_code(codes), j)

    def rows(self, codes, js) -> list:
        """:meth:`row` of each neuron in ``js`` (one code look-up for all)."""
        flat = self._flat_code(codes)
        return [self._row(codes, flat, j) for j in js]

    def _row(self, codes, flat, j):
        l = len(codes)
        key = self._key("row", l, j, flat)
        hit = self._pre.get(key)
        if hit is not None:
            return hit
        L = self.layers[l]
        d = self.d
        acc = [Fraction(0)] * d
        z = Fraction(0)
        for k in L.nz[j]:
            w = L.W[j][k]
            a, c = self._input_row(codes, flat, k)
            for i in range(d):
                if a[i]:
                    acc[i] += w * a[i]
            z += w * (c - L.p[k])
        g = L.g[j]
        hit = (tuple(g * v for v in acc), g * z + L.e[j])
        self._pre[key] = hit
        return hit

    def hyperplane(self, codes, j, k):
        """Exact (a, β) with {ẑ_j = t_k} = {a·y = β} on the cell of ``codes`` (layer ``len(codes)``)."""
        N, z0 = self.row(codes, j)
        return N, self.layers[len(codes)].t[k] - z0

    def difference(self, codes, a, b):
        """Exact (N_a − N_b, z0_b − z0_a): {ẑ_a = ẑ_b} = {(N_a − N_b)·y = z0_b − z0_a} on the cell of ``codes``
        (a max-group layer's switching set between pre-activations a and b)."""
        Na, za = self.row(codes, a)
        Nb, zb = self.row(codes, b)
        return tuple(u - v for u, v in zip(Na, Nb)), zb - za


def solve(A, b):
    """Gauss–Jordan elimination in rationals (A square); None if A is singular."""
    n = len(A)
    M = [list(row) + [bi] for row, bi in zip(A, b)]
    for col in range(n):
        piv = next((r for r in range(col, n) if M[r][col] != 0), None)
        if piv is None:
            return None
        M[col], M[piv] = M[piv], M[col]
        inv = 1 / M[col][col]
        M[col] = [v * inv for v in M[col]]
        for r in range(n):
            if r != col and M[r][col] != 0:
                f = M[r][col]
                M[r] = [vr - f * vc for vr, vc in zip(M[r], M[col])]
    return tuple(M[r][n] for r in range(n))
