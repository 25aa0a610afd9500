"""The region across a facet, decided in rationals: adjacency where the neighbour's code cannot be predicted.

Facet matching (:func:`cpa_theory.frontier._match_codes`, :class:`cpa_theory.regions._RegionTable`) predicts
the code across a facet of the switching set {ẑ_j = t_k}: the same code with neuron j moved across breakpoint k.
When a second switching set contains the facet too (duplicated neurons; a later neuron whose pre-activation is
exactly at a breakpoint on the facet) crossing it changes two or more code entries, the prediction misses and
the two regions were never paired — so maximal linear regions (N_lin) on both sides were never merged.

This module decides the neighbour exactly. At a rational point c on the facet's exact hyperplane H = {a·y = β}
(the facet's float centroid projected exactly onto H), the exact forward pass gives every ẑ at c. A neuron
strictly inside a piece at c keeps it in a whole ball around c. A neuron exactly at breakpoint t_m keeps one
piece on each open half-ball {±(a·y − β) > 0} if its chart there (fixed by the earlier layers' pieces on that
half-ball, :class:`cpa_theory.exact.ExactCharts`) is parallel to a (ẑ − t_m = λ (a·y − β): piece m + 1 where
λ·side > 0, m where < 0) or is constant (ẑ ≡ t_m: the piece :func:`cpa_theory.exact.exact_code` gives). Any
other chart through c crosses H at c: c is not a good probe and the next point is tried. So :func:`half_ball_code`
proves that each half-ball has one code; when the inner half-ball's code is the region's own and c lies inside
the domain, the region across the facet is the one with the outer half-ball's code, and the two share a
(d−1)-dimensional piece of H around c.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from .exact import ExactCharts, exact_layers, exact_preactivations

__all__ = ["half_ball_code", "neighbour_code", "FacetProber"]


def _parallel(N, a):
    """λ with N = λ a exactly, or None."""
    i = next((i for i, v in enumerate(a) if v != 0), None)
    if i is None:
        return None
    lam = N[i] / a[i]
    return lam if all(n == lam * v for n, v in zip(N, a)) else None


def half_ball_code(cond, charts: ExactCharts, zs, a, side: int):
    """The code (one int64 array per layer) of the open half-ball {side·(a·y − β) > 0} at a point c of
    H = {a·y = β} where the exact pre-activations are ``zs`` (:func:`cpa_theory.exact.exact_preactivations` at
    c), or None when a switching set other than H passes through c (see the module docstring)."""
    prefix: tuple = ()
    for L, z in zip(exact_layers(cond), zs):
        if L.mg is not None:  # a max-group layer: a tie at c is not resolved here
            if any(L.on_switching_set(z)):
                return None
            pieces = L.pieces(z)
        else:
            pieces = []
            for j, zj in enumerate(z):
                m = next((m for m, t in enumerate(L.t) if t == zj), None)
                if m is None:
                    pieces.append(sum(1 for t in L.t if t <= zj))
                    continue
                N, _ = charts.row(prefix, j)
                if not any(N):  # ẑ ≡ t_m on the half-ball
                    pieces.append(m + 1)
                    continue
                lam = _parallel(N, a)
                if lam is None:
                    return None
                pieces.append(m + 1 if lam * side > 0 else m)
        prefix = prefix + (np.array(pieces, dtype=np.int64),)
    return prefix


def neighbour_code(cond, charts: ExactCharts, origin, hyper, inside: int, code, points, domain):
    """The code of the region across a facet, proved as in the module docstring, or None if no probe point
    works. ``hyper``: the facet's exact (a, β) in y = x − origin; ``inside``: the region lies where
    inside·(a·y − β) < 0; ``code``: the region's code; ``points``: float candidate points (y-coordinates) near the
    facet's relative interior, tried in order; ``domain``: exact (a, β, s) of the domain's sides, interior where
    s·(a·y − β) < 0."""
    a, beta = hyper
    aa = sum(v * v for v in a)
    if aa == 0:
        return None
    org = [Fraction(float(v)) for v in origin]
    for c0 in points:
        c = [Fraction(float(v)) for v in c0]
        t = (beta - sum(u * v for u, v in zip(a, c))) / aa
        c = [ci + t * ai for ci, ai in zip(c, a)]  # exactly on H
        if not all(s * (sum(u * v for u, v in zip(g, c)) - b) < 0 for g, b, s in domain):
            continue
        zs = exact_preactivations(cond, [ci + oi for ci, oi in zip(c, org)])
        mine = half_ball_code(cond, charts, zs, a, -inside)
        if mine is None or any(not np.array_equal(u, v) for u, v in zip(mine, code)):
            continue
        other = half_ball_code(cond, charts, zs, a, inside)
        if other is not None:
            return other
    return None


class FacetProber:
    """Pairs regions across facets whose code look-up failed, with :func:`neighbour_code`. ``index(code)``: the
    region with that code or None; ``root``: the domain polytope (its sides' exact hyperplanes)."""

    def __init__(self, cond, origin, root, index):
        self.cond, self.origin, self.index = cond, origin, index
        self.charts = ExactCharts(cond, origin)
        self.domain = [(*H.exact(), s) for H, s in root.facet_list()]
        self.tried = self.found = 0

    def probe(self, i: int, code, hyper, inside: int, verts):
        """The neighbour of region ``i`` (code ``code``) across the facet with exact hyperplane ``hyper`` whose
        float vertices are ``verts (m, d)``: its index, or None."""
        self.tried += 1
        verts = np.asarray(verts, dtype=np.float64)
        cen = verts.mean(axis=0)
        points = [cen] + [0.5 * cen + 0.5 * v for v in verts] + [0.9 * cen + 0.1 * v for v in verts]
        other = neighbour_code(self.cond, self.charts, self.origin, hyper, inside, code, points, self.domain)
        j = None if other is None else self.index(other)
        if j is not None and j != i:
            self.found += 1
            return j
        return None
