"""Exact rational arithmetic on the network's float64 data (THEORY §6, "Sign decisions").

Every float64 number is a dyadic rational, so the conditioned network ẑ = g·W(h − p) + e, φ (all float64
parameters) defines one exact CPA function. This module evaluates it in :class:`fractions.Fraction`:

* :func:`exact_preactivations` — ẑ of every layer at a rational point (continuity makes the value
  independent of which piece a point on a breakpoint is assigned to);
* :func:`exact_code` — the activation code at a rational point (the independent exact forward pass that
  re-checks witnesses);
* :class:`ExactCharts` — the exact affine map ẑ_ℓ(y) = N y + z0 of layer ℓ on a cell with a given code
  prefix (layers < ℓ), in coordinates y = x − origin; this is what exact facets and vertices are made of;
* :func:`solve` — Gauss–Jordan in rationals.

These are the slow, always-right fallbacks of the float64 filters in ``polytope`` and ``regions``.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

__all__ = ["F", "exact_piece_maps", "exact_preactivations", "exact_code", "ExactCharts", "solve", "dot"]

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

    Same definition as the forward pass: φ(z) = v_ref + a_k (z − t_ref) with the breakpoint values.
    """
    t = [_fr(v) for v in activation.breakpoints]
    a = [_fr(v) for v in activation.slopes]
    if not t:
        return [(a[0], _fr(activation.value_at_first))]
    vals = [_fr(v) for v in activation.values_at_breakpoints()]
    out = []
    for k in range(len(t) + 1):
        ref, vref = (t[0], vals[0]) if k == 0 else (t[k - 1], vals[k - 1])
        out.append((a[k], vref - a[k] * ref))
    return out


class _ExactLayer:
    __slots__ = ("W", "p", "g", "e", "t", "maps")

    def __init__(self, layer):
        self.W = [[_fr(v) for v in row] for row in layer.weight]
        self.p = [_fr(v) for v in layer.bn.anchor]
        self.g = [_fr(v) for v in layer.bn.gain]
        self.e = [_fr(v) for v in layer.bn.shift]
        self.t = [_fr(v) for v in layer.activation.breakpoints]
        self.maps = exact_piece_maps(layer.activation)


_CACHE: dict = {}


def exact_layers(cond):
    """Rational copies of the conditioned layers (cached per network object)."""
    key = id(cond)
    hit = _CACHE.get(key)
    if hit is None or hit[0] is not cond:
        hit = (cond, [_ExactLayer(l) for l in cond.layers])
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[key] = hit
    return hit[1]


def exact_preactivations(cond, x, upto: int | None = None) -> list:
    """ẑ (lists of Fractions) of layers 0..upto at the rational point ``x`` (input coordinates)."""
    h = [v if isinstance(v, Fraction) else _fr(v) for v in x]
    out = []
    layers = exact_layers(cond)
    for li, L in enumerate(layers if upto is None else layers[:upto + 1]):
        diff = [hi - pi for hi, pi in zip(h, L.p)]
        z = [gi * dot(row, diff) + ei for row, gi, ei in zip(L.W, L.g, L.e)]
        out.append(z)
        h = []
        for zi in z:
            k = sum(1 for tk in L.t if tk <= zi)
            a, o = L.maps[k]
            h.append(a * zi + o)
    return out


def exact_code(cond, x) -> tuple:
    """Activation code (piece index per neuron, per layer) at x in exact rational arithmetic."""
    layers = exact_layers(cond)
    return tuple(np.array([sum(1 for tk in L.t if tk <= zi) for zi in z], dtype=np.int64)
                 for L, z in zip(layers, exact_preactivations(cond, x)))


def on_breakpoint(cond, x) -> list:
    """Per layer, bool array: the exact pre-activation at x sits exactly on a breakpoint."""
    layers = exact_layers(cond)
    return [np.array([any(zi == tk for tk in L.t) for zi in z], dtype=bool)
            for L, z in zip(layers, exact_preactivations(cond, x))]


class ExactCharts:
    """Exact maps ẑ_ℓ(y) = N y + z0 on cells, y = x − origin, keyed by (ℓ, code prefix); cached."""

    def __init__(self, cond, origin):
        self.layers = exact_layers(cond)
        self.origin = [_fr(v) for v in origin]
        self.d = len(self.origin)
        self._input = {}  # (ℓ, prefix key) -> (A rows, c) of the input of layer ℓ
        self._pre = {}

    def _layer_input(self, codes):
        """Exact chart (A columns, c) of the input of layer len(codes) on the cell of ``codes``."""
        key = tuple(c.tobytes() for c in codes)
        hit = self._input.get(key)
        if hit is not None:
            return hit
        d = self.d
        if not codes:
            cols = [[Fraction(int(i == j)) for i in range(d)] for j in range(d)]
            hit = (cols, list(self.origin))
        else:
            parent = codes[:-1]
            maps = self.layers[len(codes) - 1].maps
            n = len(codes[-1])
            A = [[Fraction(0)] * d for _ in range(n)]
            c = [Fraction(0)] * n
            for j, k in enumerate(codes[-1]):
                a, o = maps[int(k)]
                if a == 0:  # a flat piece: the input row is the constant o
                    c[j] = o
                    continue
                row, z = self.row(parent, j)
                A[j] = [a * v for v in row]
                c[j] = a * z + o
            hit = (list(zip(*A)), c)
        self._input[key] = hit
        return hit

    def row(self, codes, j):
        """Exact (N_j, z0_j) with ẑ_j(y) = N_j·y + z0_j for neuron j of layer len(codes) on the cell of ``codes``."""
        key = (tuple(c.tobytes() for c in codes), j)
        hit = self._pre.get(key)
        if hit is not None:
            return hit
        cols, c = self._layer_input(codes)
        L = self.layers[len(codes)]
        W, g = L.W[j], L.g[j]
        diff = [ci - pi for ci, pi in zip(c, L.p)]
        hit = (tuple(g * dot(W, col) for col in cols), g * dot(W, diff) + L.e[j])
        self._pre[key] = hit
        return hit

    def hyperplane(self, codes, j, k):
        """Exact (a, β) with {ẑ_j = t_k} = {a·y = β} on the cell of ``codes`` (layer ``len(codes)``)."""
        N, z0 = self.row(codes, j)
        return N, self.layers[len(codes)].t[k] - z0


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
