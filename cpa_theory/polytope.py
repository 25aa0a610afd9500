"""Convex polytopes with vertices, facets and vertex–facet incidence, split by hyperplanes exactly.

A :class:`Polytope` is full-dimensional: {y : G y ≤ h} together with its vertex
list and a boolean incidence matrix (vertex v lies on facet f). Splitting by a
hyperplane aᵀy = β classifies every vertex as +, 0 or −, creates the new
vertices on the edges that cross, and returns the two full-dimensional halves
(or reports that the hyperplane does not cut the interior: touching a vertex, an
edge or a facet is not a cut).

Exactness: the side of a vertex is decided in float64 unless the value lies in a
rounding band (``tolerances.VERTEX_SIGN_RTOL``); then the vertex is recomputed
as the exact rational solution of d of its facets (whose float coefficients,
and the box bounds given as exact rationals, define the polytope) and the side
is decided in exact rational arithmetic. So concurrent hyperplanes, hyperplanes
through corners and duplicates are handled exactly, without merge tolerances.
"""

from __future__ import annotations

from fractions import Fraction
from itertools import product

import numpy as np

from .tolerances import VERTEX_SIGN_RTOL

__all__ = ["Polytope", "Polygon", "box_polytope", "box_polygon", "vertex_signs", "split"]


class Polytope:
    """Full-dimensional convex polytope.

    Attributes:
        G: ``(F, d)`` facet normals; h: ``(F,)`` offsets (float64); h_exact: list of F Fractions.
        V: ``(Nv, d)`` vertices; inc: ``(Nv, F)`` bool incidence.
    """

    __slots__ = ("G", "h", "h_exact", "V", "inc", "_exact", "scale")

    def __init__(self, G, h, h_exact, V, inc, scale):
        self.G, self.h, self.h_exact, self.V, self.inc = G, h, h_exact, V, inc
        self._exact = {}
        self.scale = scale  # coordinate magnitude of the problem (rounding errors are relative to it)

    @property
    def dim(self) -> int:
        return self.G.shape[1]

    def interior_point(self) -> np.ndarray:
        """Mean of the vertices: strictly interior for a full-dimensional polytope."""
        return self.V.mean(axis=0)

    def inradius_at(self, point) -> float:
        """Euclidean distance from ``point`` to the nearest constraint hyperplane (a ball that fits)."""
        norms = np.linalg.norm(self.G, axis=1)
        return float(np.min((self.h - self.G @ point) / norms))

    def exact_vertex(self, i: int) -> tuple[Fraction, ...]:
        """Vertex i as the exact rational solution of d independent incident facets."""
        if i not in self._exact:
            rows = np.flatnonzero(self.inc[i])
            chosen = _independent_rows(self.G, rows, self.dim)
            A = [[Fraction(float(v)) for v in self.G[r]] for r in chosen]
            b = [self.h_exact[r] for r in chosen]
            self._exact[i] = _solve_exact(A, b)
        return self._exact[i]


def _independent_rows(G, rows, d):
    chosen = []
    for r in rows:
        trial = chosen + [r]
        if np.linalg.matrix_rank(G[trial]) == len(trial):
            chosen = trial
            if len(chosen) == d:
                return chosen
    raise ArithmeticError("vertex has fewer than d independent incident facets")


def _solve_exact(A, b):
    """Gauss–Jordan elimination in rationals (A square, non-singular)."""
    n = len(A)
    M = [row[:] + [bi] for row, bi in zip(A, b)]
    for col in range(n):
        piv = next(r for r in range(col, n) if M[r][col] != 0)
        M[col], M[piv] = M[piv], M[col]
        inv = 1 / M[col][col]
        M[col] = [v * inv for v in M[col]]
        for r in range(n):
            if r != col and M[r][col] != 0:
                f = M[r][col]
                M[r] = [vr - f * vc for vr, vc in zip(M[r], M[col])]
    return tuple(M[r][n] for r in range(n))


def box_polytope(lo, hi, lo_exact, hi_exact) -> Polytope:
    """The box ∏[lo_l, hi_l]; ``lo_exact``/``hi_exact`` are the exact rational bounds."""
    d = len(lo)
    G = np.zeros((2 * d, d))
    h = np.zeros(2 * d)
    h_exact = []
    for l in range(d):
        G[2 * l, l], h[2 * l] = -1.0, -lo[l]
        G[2 * l + 1, l], h[2 * l + 1] = 1.0, hi[l]
        h_exact += [-lo_exact[l], hi_exact[l]]
    corners = np.array(list(product((0, 1), repeat=d)), dtype=np.int64)
    V = np.where(corners == 0, np.asarray(lo)[None, :], np.asarray(hi)[None, :]).astype(np.float64)
    inc = np.zeros((len(corners), 2 * d), dtype=bool)
    for l in range(d):
        inc[np.arange(len(corners)), 2 * l + corners[:, l]] = True
    P = Polytope(G, h, h_exact, V, inc, float(max(np.abs(lo).max(), np.abs(hi).max())))
    for i, bits in enumerate(corners):  # exact corners are known
        P._exact[i] = tuple(lo_exact[l] if bits[l] == 0 else hi_exact[l] for l in range(d))
    return P


def vertex_signs(P: Polytope, normals, offsets, offsets_exact=None) -> np.ndarray:
    """Side of every vertex for every hyperplane aᵀy = β: ``(Nv, m)`` int8 in {-1, 0, +1}, exact.

    Args: normals ``(m, d)``, offsets ``(m,)``; ``offsets_exact`` optional list of Fractions.
    """
    vals = P.V @ normals.T - offsets[None, :]
    scale = (np.abs(P.V) + P.scale) @ np.abs(normals).T + np.abs(offsets)[None, :]
    signs = np.sign(vals).astype(np.int8)
    band = np.abs(vals) <= VERTEX_SIGN_RTOL * scale
    if np.any(band):
        for i, j in zip(*np.nonzero(band)):
            v = P.exact_vertex(int(i))
            beta = offsets_exact[j] if offsets_exact is not None else Fraction(float(offsets[j]))
            val = sum(Fraction(float(a)) * vi for a, vi in zip(normals[j], v)) - beta
            signs[i, j] = (val > 0) - (val < 0)
    return signs


def _edges(P: Polytope, pos, neg):
    """Pairs (u ∈ pos, v ∈ neg) that are edges of P (shared facets of rank d − 1, no third vertex on them)."""
    d = P.dim
    common = P.inc[pos][:, None, :] & P.inc[neg][None, :, :]
    counts = common.sum(axis=2)
    out = []
    for a, b in zip(*np.nonzero(counts >= d - 1)):
        cols = np.flatnonzero(common[a, b])
        if len(cols) > d - 1 and np.linalg.matrix_rank(P.G[cols]) != d - 1:
            continue
        if np.count_nonzero(P.inc[:, cols].all(axis=1)) != 2:
            continue
        out.append((pos[a], neg[b]))
    return out


def _exact_edge_point(P: Polytope, u: int, v: int, a, beta_exact) -> np.ndarray:
    """Where the edge (u, v) crosses aᵀy = β, computed from the exact vertices (float64 of the rational)."""
    Vu, Vv = P.exact_vertex(int(u)), P.exact_vertex(int(v))
    fa = [Fraction(float(x)) for x in a]
    fu = sum(x * y for x, y in zip(fa, Vu)) - beta_exact
    fv = sum(x * y for x, y in zip(fa, Vv)) - beta_exact
    t = fu / (fu - fv)
    return np.array([float(p + t * (q - p)) for p, q in zip(Vu, Vv)])


def split(P: Polytope, a, beta, signs, beta_exact=None):
    """Split P by aᵀy = β given the vertex ``signs`` (from :func:`vertex_signs`).

    Returns ``(below, above)``: {aᵀy ≤ β} ∩ P and {aᵀy ≥ β} ∩ P; a side without interior is None.
    """
    if isinstance(P, Polygon):
        return _split_polygon(P, a, beta, signs, Fraction(float(beta)) if beta_exact is None else beta_exact)
    pos, neg, zero = np.flatnonzero(signs > 0), np.flatnonzero(signs < 0), np.flatnonzero(signs == 0)
    if len(pos) == 0 or len(neg) == 0:
        return (P, None) if len(pos) == 0 else (None, P)
    vals = P.V @ a - beta
    edges = _edges(P, pos, neg)
    F = P.G.shape[0]
    new_V = np.empty((len(edges), P.dim))
    new_inc = np.zeros((len(edges), F + 1), dtype=bool)
    beta_exact = Fraction(float(beta)) if beta_exact is None else beta_exact
    for e, (u, v) in enumerate(edges):
        if vals[u] > 0 > vals[v]:
            t = vals[u] / (vals[u] - vals[v])
            new_V[e] = P.V[u] + t * (P.V[v] - P.V[u])
        else:  # the exact signs (tie band) disagree with float64: intersect the edge in rationals
            new_V[e] = _exact_edge_point(P, u, v, a, beta_exact)
        new_inc[e, :F] = P.inc[u] & P.inc[v]
    new_inc[:, F] = True

    def half(keep, sign):
        G = np.vstack([P.G, sign * a[None, :]])
        h = np.append(P.h, sign * beta)
        h_exact = P.h_exact + [beta_exact if sign > 0 else -beta_exact]
        inc_old = np.zeros((len(keep), F + 1), dtype=bool)
        inc_old[:, :F] = P.inc[keep]
        inc_old[np.isin(keep, zero), F] = True
        V = np.vstack([P.V[keep], new_V])
        inc = np.vstack([inc_old, new_inc])
        live = inc.any(axis=0)  # drop constraints that no longer touch the polytope
        child = Polytope(G[live], h[live], [x for x, k in zip(h_exact, live) if k], V, inc[:, live], P.scale)
        for new_i, old_i in enumerate(keep):
            if old_i in P._exact:
                child._exact[new_i] = P._exact[old_i]
        return child

    below = half(np.concatenate([neg, zero]), 1.0)
    above = half(np.concatenate([pos, zero]), -1.0)
    return below, above


# -- the plane: ordered polygons (the fast path of the counter in d = 2) ---------------------------
class FacetTable:
    """Facet lines shared by all polygons of one run (append-only): G[f]·y ≤ h[f], with exact offsets."""

    __slots__ = ("G", "h", "h_exact")

    def __init__(self):
        self.G, self.h, self.h_exact = [], [], []

    def add(self, a, beta, beta_exact) -> int:
        self.G.append(np.asarray(a, dtype=np.float64))
        self.h.append(float(beta))
        self.h_exact.append(beta_exact)
        return len(self.G) - 1


class Polygon:
    """Convex polygon with counter-clockwise vertices; ``ef[i]`` is the facet of the edge V[i] → V[i+1].

    Same interface as :class:`Polytope` (``V``, ``G``, ``h``, ``h_exact``, ``exact_vertex``, ...); vertex i
    is the intersection of the facets of its two edges, which is all the exact fallback needs.
    """

    __slots__ = ("V", "ef", "table", "scale", "_exact")

    def __init__(self, V, ef, table, scale, exact=None):
        self.V, self.ef, self.table, self.scale = V, ef, table, scale
        self._exact = exact if exact is not None else {}

    dim = 2

    @property
    def G(self) -> np.ndarray:
        return np.array([self.table.G[f] for f in self.ef])

    @property
    def h(self) -> np.ndarray:
        return np.array([self.table.h[f] for f in self.ef])

    @property
    def h_exact(self) -> list:
        return [self.table.h_exact[f] for f in self.ef]

    def interior_point(self) -> np.ndarray:
        return self.V.mean(axis=0)

    def inradius_at(self, point) -> float:
        G = self.G
        return float(np.min((self.h - G @ point) / np.linalg.norm(G, axis=1)))

    def exact_vertex(self, i: int):
        key = (self.ef[i - 1], self.ef[i])
        if key not in self._exact:
            t = self.table
            A = [[Fraction(float(v)) for v in t.G[f]] for f in key]
            self._exact[key] = _solve_exact(A, [t.h_exact[f] for f in key])
        return self._exact[key]


def box_polygon(lo, hi, lo_exact, hi_exact) -> Polygon:
    """The rectangle [lo0, hi0] × [lo1, hi1], counter-clockwise from (lo0, lo1)."""
    t = FacetTable()
    bottom = t.add((0.0, -1.0), -lo[1], -lo_exact[1])
    right = t.add((1.0, 0.0), hi[0], hi_exact[0])
    top = t.add((0.0, 1.0), hi[1], hi_exact[1])
    left = t.add((-1.0, 0.0), -lo[0], -lo_exact[0])
    V = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]], dtype=np.float64)
    exact = {(left, bottom): (lo_exact[0], lo_exact[1]), (bottom, right): (hi_exact[0], lo_exact[1]),
             (right, top): (hi_exact[0], hi_exact[1]), (top, left): (lo_exact[0], hi_exact[1])}
    return Polygon(V, [bottom, right, top, left], t, float(max(np.abs(lo).max(), np.abs(hi).max())), exact)


def _split_polygon(P: Polygon, a, beta, signs, beta_exact):
    """Sutherland–Hodgman for one line, keeping each new edge's facet."""
    s = signs.tolist()
    n = len(s)
    if not any(v > 0 for v in s):
        return P, None
    if not any(v < 0 for v in s):
        return None, P
    vals = P.V @ a - beta
    t = P.table
    f_below = t.add(a, beta, beta_exact)  # a·y ≤ β
    f_above = t.add(-a, -beta, -beta_exact)  # −a·y ≤ −β

    def half(keep_sign, cut_facet):
        pts, efs = [], []
        for i in range(n):
            j = (i + 1) % n
            si, sj = s[i], s[j]
            if si == 0 or si == keep_sign:
                pts.append(P.V[i])
                # edge leaving V[i]: along the cut if V[i] is on the line and the next kept point is too
                efs.append(cut_facet if si == 0 and sj != keep_sign else P.ef[i])
            if si * sj < 0:
                u = vals[i] / (vals[i] - vals[j])
                pts.append(P.V[i] + u * (P.V[j] - P.V[i]))
                # from the crossing we continue along edge i→j if V[j] is kept, else along the cut
                efs.append(P.ef[i] if sj == keep_sign else cut_facet)
        return Polygon(np.array(pts), efs, t, P.scale, P._exact)

    return half(-1, f_below), half(1, f_above)


def polytope_from_halfspaces(G, h, *, as_polygon: bool | None = None):
    """A bounded, full-dimensional polytope {y : G y ≤ h} with its vertices (scipy's halfspace intersection
    from a Chebyshev centre). In d = 2 an ordered :class:`Polygon` is returned (unless ``as_polygon=False``).

    Raises ValueError if the set is empty, unbounded or not full-dimensional.
    """
    from scipy.optimize import linprog
    from scipy.spatial import HalfspaceIntersection

    G = np.asarray(G, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    d = G.shape[1]
    norms = np.linalg.norm(G, axis=1)
    if np.any(norms == 0):
        raise ValueError("a constraint has a zero normal")
    res = linprog(np.r_[np.zeros(d), -1.0], A_ub=np.hstack([G, norms[:, None]]), b_ub=h,
                  bounds=[(None, None)] * d + [(0, None)], method="highs")
    if res.status == 3:
        raise ValueError("the polytope is unbounded")
    if res.status != 0 or -res.fun <= 0:
        raise ValueError("the polytope is empty or not full-dimensional")
    center = res.x[:d]
    hs = HalfspaceIntersection(np.hstack([G, -h[:, None]]), center)
    V = np.unique(np.round(hs.intersections, 13), axis=0)
    if np.any(~np.isfinite(V)):
        raise ValueError("the polytope is unbounded")
    scale = float(np.abs(V).max()) or 1.0
    tight = np.abs(V @ G.T - h[None, :]) <= 1e-9 * (scale * norms[None, :] + np.abs(h)[None, :] + 1.0)
    keep = tight.any(axis=0)
    G, h, tight = G[keep], h[keep], tight[:, keep]
    h_exact = [Fraction(float(v)) for v in h]
    if d == 2 and as_polygon is not False:
        order = np.argsort(np.arctan2(V[:, 1] - V[:, 1].mean(), V[:, 0] - V[:, 0].mean()))
        V, tight = V[order], tight[order]
        t = FacetTable()
        ids = [t.add(G[f], h[f], h_exact[f]) for f in range(len(h))]
        ef = []
        for i in range(len(V)):
            shared = np.flatnonzero(tight[i] & tight[(i + 1) % len(V)])
            if len(shared) != 1:
                raise ValueError("could not identify the polygon's edges")
            ef.append(ids[shared[0]])
        return Polygon(V, ef, t, scale)
    return Polytope(G, h, h_exact, V, tight, scale)
