"""The region across a facet, decided in rationals: adjacency where the neighbour's code cannot be predicted.

Facet matching (:func:`cpa_theory.frontier._match_codes`, :class:`cpa_theory.regions._RegionTable`) predicts
the code across a facet of the switching set {ẑ_j = t_k}: the same code with neuron j moved across breakpoint k.
When a second switching set contains the facet too (duplicated neurons; a later neuron whose pre-activation is
exactly at a breakpoint on the facet) crossing it changes two or more code entries, the prediction misses and
the two regions were never paired — so maximal linear regions (N_lin) on both sides were never merged.

This module decides the neighbour exactly. At a rational point c on the facet's exact hyperplane H = {a·y = β}
(the facet's float centroid projected exactly onto H), every ẑ at c is known: a float64 forward pass with a
proven error bound decides the neurons far from their breakpoints, and the exact chart of the half-ball
(:class:`cpa_theory.exact.ExactCharts`) gives the exact ẑ(c) of the few others. A neuron strictly inside a piece
at c keeps it in a whole ball around c. A neuron exactly at breakpoint t_m keeps one
piece on each open half-ball {±(a·y − β) > 0} if its chart there (fixed by the earlier layers' pieces on that
half-ball) is parallel to a (ẑ − t_m = λ (a·y − β): piece m + 1 where
λ·side > 0, m where < 0) or is constant (ẑ ≡ t_m: the piece :func:`cpa_theory.exact.exact_code` gives); a max
group whose maximum is attained by several members at c keeps one winner on each half-ball if their charts differ
by multiples of a (all zero in a pool of dead ReLUs, say: crossing a member's ReLU facet there moves the argmax
too). Any other chart through c crosses H at c: c is not a good probe and the next point is tried. So
:func:`half_ball_code` proves that each half-ball has one code; when the inner half-ball's code is the region's own and c lies inside
the domain, the region across the facet is the one with the outer half-ball's code, and the two share a
(d−1)-dimensional piece of H around c.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from .exact import ExactCharts, dot, exact_layers
from .frontier_kernels import TINY
from .tolerances import UNIT_ROUNDOFF as U

__all__ = ["half_ball_code", "neighbour_code", "FacetProber"]


def _parallel(N, a):
    """λ with N = λ a exactly, or None."""
    i = next((i for i, v in enumerate(a) if v != 0), None)
    if i is None:
        return None
    lam = N[i] / a[i]
    return lam if all(n == lam * v for n, v in zip(N, a)) else None


def _half_ball_winner(N, a, side: int):
    """Which of the group members tied at c (charts ``N``, in group order) wins on the open half-ball
    {side·(a·y − β) > 0}: there ẑ_m − ẑ_0 = (N_m − N_0)·(y − c), so the order is fixed when every N_m − N_0 is
    λ_m·a (λ_m·side largest wins; members equal on the half-ball go to the first, as :func:`exact_code` does).
    None when some difference is not parallel to a (the tie set crosses H at c)."""
    lam = []
    for Nm in N:
        if Nm == N[0]:  # equal charts (all zero in a pool of dead ReLUs): no subtraction needed
            lam.append(0)
            continue
        lm = _parallel([u - v for u, v in zip(Nm, N[0])], a)
        if lm is None:
            return None
        lam.append(lm * side)
    return lam.index(max(lam))


def _float_layer(layer, h, dh):
    """ẑ of ``layer`` at one float input ``h`` with |h − h*| ≤ ``dh``: ``(z, dz)``
    (:meth:`cpa_theory.network.ConditionedLayer.preactivation_bound`)."""
    z, dz = layer.preactivation_bound(h[None], dh[None])
    return z[0], dz[0]


def half_ball_code(cond, charts: ExactCharts, c, a, side: int):
    """The code (one int64 array per layer) of the open half-ball {side·(a·y − β) > 0} at the rational point
    ``c`` (y-coordinates of ``charts``) of H = {a·y = β}, or None when a switching set other than H passes
    through c (see the module docstring).

    A float64 forward pass with a proven error bound (:func:`_float_layer`) decides every neuron whose ẑ is
    farther from its breakpoints than the bound (its piece is the same on a whole ball); the others get their
    exact ẑ(c) from the half-ball's exact chart (:meth:`ExactCharts.row`, continuous across c) — so an exact
    value is computed only for the few neurons at or near a breakpoint."""
    x = [ci + oi for ci, oi in zip(c, charts.origin)]
    h = np.array([float(v) for v in x])
    dh = 2 * U * np.abs(h) + TINY
    prefix: tuple = ()
    for L, FL in zip(exact_layers(cond), cond.layers):
        if L.mg is not None:  # a max-group layer: a group whose float winner beats the others by more than the
            # bounds keeps it on a ball; the others' members get their exact ẑ(c); members tied at c are ordered on
            # the half-ball by their charts (:func:`_half_ball_winner`)
            zf, dz = _float_layer(FL, h, dh)
            mg = L.mg
            zg, dg = zf[mg.idx], dz[mg.idx]
            pieces = np.argmax(np.where(mg.valid, zg, -np.inf), axis=1).astype(np.int64)
            rows = np.arange(len(pieces))
            with np.errstate(invalid="ignore"):  # a proven lower bound of the maximum; members proven below it
                # are out (a non-finite float value never rules a member out)
                floor = np.where(mg.valid & np.isfinite(zg - dg), zg - dg, -np.inf).max(axis=1)
                contend = mg.valid & ~(zg + dg < floor[:, None])
            clear = contend.sum(axis=1) == 1  # the float winner is then the only contender: it wins on a ball
            h, dh = zg[rows, pieces], dg[rows, pieces]
            for gi in np.flatnonzero(~clear).tolist():
                members = np.flatnonzero(contend[gi]).tolist()
                rows_g = charts.rows(prefix, [mg.groups[gi][m] for m in members])
                z = [dot(N, c) + z0 for N, z0 in rows_g]
                top = max(z)
                tied = [k for k, v in enumerate(z) if v == top]
                win = _half_ball_winner([rows_g[k][0] for k in tied], a, side)
                if win is None:
                    return None
                pieces[gi] = members[tied[win]]
                h[gi] = float(top)
                dh[gi] = U * abs(h[gi]) + TINY
            prefix = prefix + (pieces,)
            continue
        act = FL.activation
        t = act.breakpoints_array
        zf, dz = _float_layer(FL, h, dh)
        pieces = np.searchsorted(t, zf, side="right").astype(np.int64)  # breakpoints ≤ ẑ
        near = np.flatnonzero(~np.all(np.abs(zf[:, None] - t[None, :]) > dz[:, None], axis=1)) if len(t) else []
        slope, icpt = np.asarray(act.slopes, dtype=np.float64), np.asarray(act.intercepts(), dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            h = slope[pieces] * zf + icpt[pieces]
            dh = np.abs(slope[pieces]) * dz + 2 * U * (np.abs(slope[pieces] * zf) + np.abs(icpt[pieces])) + TINY
        for j in np.asarray(near).tolist():
            N, z0 = charts.row(prefix, j)
            zj = dot(N, c) + z0
            k = sum(1 for tk in L.t if tk <= zj)
            sa, so = L.maps[k]
            hj = float(sa * zj + so)
            h[j], dh[j] = hj, U * abs(hj) + TINY
            m = next((m for m, tk in enumerate(L.t) if tk == zj), None)
            if m is None:
                pieces[j] = k
            elif not any(N):  # ẑ ≡ t_m on the half-ball
                pieces[j] = m + 1
            else:
                lam = _parallel(N, a)
                if lam is None:
                    return None
                pieces[j] = m + 1 if lam * side > 0 else m
        prefix = prefix + (pieces,)
    return prefix


def neighbour_code(cond, charts: ExactCharts, hyper, inside: int, code, points, domain):
    """The code of the region across a facet, proved as in the module docstring, or None if no probe point
    works. ``hyper``: the facet's exact (a, β) in the charts' y = x − origin; ``inside``: the region lies where
    inside·(a·y − β) < 0; ``code``: the region's code; ``points``: candidate points (y-coordinates; floats or
    Fractions) near the facet's relative interior, tried in order; ``domain``: exact (a, β, s) of the domain's
    sides, interior where s·(a·y − β) < 0."""
    a, beta = hyper
    aa = sum(v * v for v in a)
    if aa == 0:
        return None
    for c0 in points:
        c = [v if isinstance(v, Fraction) else Fraction(float(v)) for v in c0]
        t = (beta - sum(u * v for u, v in zip(a, c))) / aa
        c = [ci + t * ai for ci, ai in zip(c, a)]  # exactly on H
        if not all(s * (sum(u * v for u, v in zip(g, c)) - b) < 0 for g, b, s in domain):
            continue
        mine = half_ball_code(cond, charts, c, a, -inside)
        if mine is None or any(not np.array_equal(u, v) for u, v in zip(mine, code)):
            continue
        other = half_ball_code(cond, charts, c, a, inside)
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

    def probe(self, i: int, code, hyper, inside: int, verts, exact_verts=None):
        """The neighbour of region ``i`` (code ``code``) across the facet with exact hyperplane ``hyper`` whose
        float vertices are ``verts (m, d)``: its index, or None. ``exact_verts()``: the facet's exact rational
        vertices; when no float point works (a sliver facet whose float corners coincide and miss it), their
        mean — a point of the facet's relative interior — is tried."""
        self.tried += 1
        verts = np.asarray(verts, dtype=np.float64)
        cen = verts.mean(axis=0)
        points = [cen] + [0.5 * cen + 0.5 * v for v in verts] + [0.9 * cen + 0.1 * v for v in verts]
        other = neighbour_code(self.cond, self.charts, hyper, inside, code, points, self.domain)
        if other is None and exact_verts is not None:
            ex = exact_verts()
            other = neighbour_code(self.cond, self.charts, hyper, inside, code,
                                   [[sum(c) / len(ex) for c in zip(*ex)]], self.domain)
        j = None if other is None else self.index(other)
        if j is not None and j != i:
            self.found += 1
            return j
        return None
