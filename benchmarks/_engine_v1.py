"""FROZEN COPY of the region-counting engine v1 (cpa_theory/regions.py + polytope.py at commit a1b3762),
kept only for benchmarks/bench_counting.py and the equality tests against the previous engine.
Not part of the package; do not import it from cpa_theory. Use: ``count_regions_v1(net, center, radius)``."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from enum import IntEnum
from fractions import Fraction
from itertools import product

import numpy as np

from cpa_theory.hyperplanes import switching_hyperplanes
from cpa_theory.network import ConditionedNetwork, Network, as_points
from cpa_theory.tolerances import (AFFINE_MAP_RTOL, FACET_MATCH_TOL, PULLBACK_RTOL, SCREEN_MARGIN_RTOL,
                                   VERTEX_SIGN_RTOL, WITNESS_MIN_RELATIVE_RADIUS)
from cpa_theory.windows import Window, WindowRelation, dual_norm, window_relations, window_slack

class HyperplaneStatus(IntEnum):
    """What a (neuron, breakpoint) switching set is."""

    REGULAR = 0  #: a genuine hyperplane
    CONSTANT = 1  #: neuron constant (γ = 0, w = 0 or A_Pᵀw = 0) and off the breakpoint: no switching set
    ON_BREAKPOINT = 2  #: neuron constant and exactly on the breakpoint: the whole space, never a cut
    BN_UNDEFINED = 3  #: s = 0 (ε = 0 and zero batch variance): BN undefined


def pullback_anchors(A: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched pull-back: least-squares y with A y ≈ target for ``A (C, m, d)``, ``target (C, m)``.

    Returns ``(y (C, d), ok (C,))``; ``ok`` iff A is injective (rank d) and target ∈ range(A) within
    ``PULLBACK_RTOL`` — then y is the unique pull-back x*_P of C9.
    """
    U, S, Vt = np.linalg.svd(A, full_matrices=False)
    cutoff = S.max(axis=1, keepdims=True, initial=0.0) * max(A.shape[1:]) * np.finfo(np.float64).eps
    keep = S > cutoff
    inv = np.where(keep, 1.0 / np.where(keep, S, 1.0), 0.0)
    y = np.einsum("ckd,ck,cmk,cm->cd", Vt, inv, U, target)
    resid = np.linalg.norm(np.einsum("cmd,cd->cm", A, y) - target, axis=1)
    scale = np.linalg.norm(target, axis=1) + np.linalg.norm(A, axis=(1, 2)) * np.linalg.norm(y, axis=1) + 1.0
    return y, (keep.sum(axis=1) == A.shape[2]) & (resid <= PULLBACK_RTOL * scale)


def layer_switching_sets(cl, A, c, anchor):
    """Switching sets of a conditioned layer whose input is h = A y + c, in anchored form aᵀ(y − anchor) = off.

    The one place where a layer's switching sets are pulled back through an affine map (C3, C8, C9);
    ``switching_hyperplanes`` and the region counter both call it. ``A (..., m, d)`` and ``c (..., m)`` may
    carry leading batch axes (one map per parent region).

    Returns ``normals (..., n, d)``, ``offsets (..., n, K)``, ``status (..., n, K)`` int8, ``tau (n, K)`` or None.
    """
    W, bn = cl.weight, cl.bn
    normals = np.matmul(W, A)  # rows are Aᵀ w_i
    # w_iᵀ(A p + c − p_layer): zero when p is an exact pull-back; kept so the offsets stay exact.
    anchor_gap = (np.matmul(A, anchor) + c - bn.anchor) @ W.T
    t = cl.activation.breakpoints_array
    base, tau = bn.switching_offsets(t)
    offsets = base - anchor_gap[..., None]
    constant = (bn.gain == 0) | ~np.any(normals != 0, axis=-1)
    status = np.full(offsets.shape, HyperplaneStatus.REGULAR, dtype=np.int8)
    if np.any(constant):
        const_value = bn.gain * ((c - bn.anchor) @ W.T) + bn.shift
        status[constant] = HyperplaneStatus.CONSTANT
        status[constant[..., None] & (const_value[..., None] == t)] = HyperplaneStatus.ON_BREAKPOINT
    status[..., bn.undefined, :] = HyperplaneStatus.BN_UNDEFINED
    regular = status == HyperplaneStatus.REGULAR
    if not regular.all():
        offsets = np.where(regular, offsets, 0.0)
        if tau is not None and regular.ndim == 2:
            tau = np.where(regular, tau, 0.0)
    return normals, offsets, status, tau


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




#: vertex enumeration keeps 2^d box corners: beyond this input dimension counting is refused.
MAX_VERTEX_DIM = 10

#: cells are refined in batches of this many per layer (vectorised pull-backs; bounded memory).
_BATCH = 512

#: witnesses are re-checked in batches of this many (one vectorised forward pass; bounded memory).
_CERTIFY_CHUNK = 4096


@dataclass(frozen=True)
class Region:
    """One certified activation region.

    code: tuple of int arrays (piece index per neuron, per layer); witness: ``(d,)`` x-coordinates;
    radius: a Euclidean ball of this radius around the witness lies in the region;
    vertices: ``(Nv, d)`` x-coordinates; out_A ``(n_out, d)``, out_c ``(n_out,)``: f(x) = out_A x + out_c;
    facets: ``(G, h)`` with the region = {x : G x ≤ h} (window sides and switching hyperplanes).
    """

    code: tuple
    witness: np.ndarray
    radius: float
    vertices: np.ndarray
    out_A: np.ndarray
    out_c: np.ndarray
    facets: tuple = field(default=(), repr=False)


@dataclass
class RegionCount:
    """Result of counting in one window (the CLI's JSON object; timing stays out of it so that the JSON
    is byte-identical across runs)."""

    center: np.ndarray
    radius: float
    regions: int
    linear_regions: int
    hits: int
    certified: bool
    uncertified: int
    seconds: float
    exact_fallbacks: int = 0
    region_list: list | None = None

    @property
    def dim(self) -> int:
        return int(self.center.shape[0])

    @property
    def per_volume(self) -> float:
        """N / (2r)^d."""
        return self.regions / (2.0 * self.radius) ** self.dim

    @property
    def log_regions(self) -> float:
        return math.log(self.regions)

    def as_json(self) -> dict:
        return {"center": self.center.tolist(), "radius": self.radius, "regions": self.regions,
                "linear_regions": self.linear_regions, "hits": self.hits, "certified": self.certified,
                "uncertified": self.uncertified, "per_volume": self.per_volume, "log_regions": self.log_regions}


def _conditioned(net) -> ConditionedNetwork:
    if isinstance(net, Network):
        return net.condition()
    if isinstance(net, ConditionedNetwork):
        return net
    raise TypeError("count_regions needs a Network or a ConditionedNetwork.")


def _layer_pieces(signs_side, gain_sign, K):
    """Piece index per neuron from the cell's side of each (neuron, breakpoint) hyperplane."""
    if not K:
        return np.zeros(len(gain_sign), dtype=np.int64)
    above = (signs_side.reshape(-1, K) * gain_sign[:, None]) > 0  # ẑ − t_k > 0
    return above.sum(axis=1)


def enumerate_regions(net, center, radius, *, stats=None, domain=None):
    """Yield the activation regions in W(center, radius) one by one (depth first, bounded memory).

    Each item is ``(polytope_in_y, code, A, c, anchor, flat)``: the region as a polytope in y = x − anchor,
    its activation code, the output map f = A y + c on it, and per layer the neurons constant on it.
    :func:`count_regions` turns them into certified :class:`Region` objects. ``stats`` collects counters.
    """
    cond = _conditioned(net)
    win = Window(center, radius)
    d = cond.input_dim
    if win.dim != d:
        from cpa_theory.errors import ShapeError

        raise ShapeError(f"centre has {win.dim} coordinates; the network's input dimension is {d}.")
    if d > MAX_VERTEX_DIM:
        from cpa_theory.errors import WindowError

        raise WindowError(f"exact counting enumerates polytope vertices and supports input dimension <= "
                          f"{MAX_VERTEX_DIM}; got d = {d}. For higher d use numerics.lp_regions.count_regions_lp "
                          "(exact certified counts by LP splitting, for windows with few regions), or hitting "
                          "numbers (cpa-theory hits).")
    cond._check_defined()
    first = cond.layers[0].bn
    p = first.anchor.copy() if first.mode == "train" else win.center.copy()
    F = Fraction
    lo_ex = [F(float(x0)) - F(win.radius) - F(float(pl)) for x0, pl in zip(win.center, p)]
    hi_ex = [F(float(x0)) + F(win.radius) - F(float(pl)) for x0, pl in zip(win.center, p)]
    if domain is None:
        make_box = box_polygon if d == 2 else box_polytope  # ordered polygons in the plane: the fast path
        root = make_box(np.array([float(v) for v in lo_ex]), np.array([float(v) for v in hi_ex]), lo_ex, hi_ex)
    else:  # a bounded polytope {x : G x ≤ h} inside the window W(center, radius), in y = x − p
        G, h = domain
        root = polytope_from_halfspaces(G, h - G @ p)
    y0 = win.center - p
    layers = cond.layers
    stats = {} if stats is None else stats

    # DFS over batches of cells at one layer: (layer index, [(polytope, A, c, code, flat)]).
    stack = [(0, [(root, np.eye(d), p.copy(), (), ())])]
    while stack:
        li, batch = stack.pop()
        if li == len(layers):
            for P, A, c, code, flat in batch:
                yield P, code, A, c, p, flat
            continue
        leaves = list(_refine_batch(layers[li], batch, y0, win.radius, d))
        for i in range(0, len(leaves), _BATCH):
            stack.append((li + 1, leaves[i:i + _BATCH]))


class _AnchoredOffsets:
    """Exact offsets base_j + a_j·y* (rationals of the float data), computed only where a decision needs them."""

    def __init__(self, base, normals, ystar, index=None):
        self.base, self.normals, self.ystar = base, normals, [Fraction(float(v)) for v in ystar]
        self.index = np.arange(len(base)) if index is None else index

    def subset(self, cand) -> "_AnchoredOffsets":
        out = _AnchoredOffsets.__new__(_AnchoredOffsets)
        out.base, out.normals, out.ystar, out.index = self.base, self.normals, self.ystar, self.index[cand]
        return out

    def __getitem__(self, j) -> Fraction:
        k = int(self.index[j])
        return Fraction(float(self.base[k])) + sum(Fraction(float(a)) * y for a, y in zip(self.normals[k],
                                                                                         self.ystar))


def _refine_batch(cl, batch, y0, radius, d):
    """Split every cell of ``batch`` by the switching sets of layer ``cl``; yield the next layer's cells."""
    A = np.stack([item[1] for item in batch])  # (C, m, d)
    c = np.stack([item[2] for item in batch])  # (C, m)
    normals, offsets, status, _ = layer_switching_sets(cl, A, c, np.zeros(d))
    C, n, K = offsets.shape
    flat_n = np.repeat(normals, K, axis=1) if K else np.zeros((C, 0, d))  # (C, nK, d)
    # Where the layer's BN anchor pulls back to a point y* of the cell's affine chart (A injective, anchor − c
    # in range A; C9), every switching set passes through y* exactly in real arithmetic: anchor them there,
    # with rational offsets base + a·y*, so that concurrent deep hyperplanes stay exactly concurrent.
    ystar, has_pb = pullback_anchors(A, cl.bn.anchor[None, :] - c)
    base = cl.bn.switching_offsets(cl.activation.breakpoints_array)[0].reshape(n * K)
    regular = (status == HyperplaneStatus.REGULAR).reshape(C, n * K)
    anchored = base[None, :] + np.einsum("cjd,cd->cj", flat_n, ystar)
    flat_o = np.where(has_pb[:, None] & regular, anchored, offsets.reshape(C, n * K))
    # C4 screen: a switching set that misses (or only touches) the whole window cannot cut a cell in it
    resid = np.einsum("cjd,d->cj", flat_n, y0) - flat_o
    slack = window_slack(dual_norm(flat_n), resid, radius)
    screened = regular & (slack > -SCREEN_MARGIN_RTOL * (1 + np.abs(flat_o)))
    # switching sets that are screened out keep one side on all of W: read it at the window centre
    sides0 = np.sign(resid).astype(np.int8)
    gain_sign = np.sign(cl.bn.gain)
    slope_tab = np.asarray(cl.activation.slopes)
    icpt_tab = np.asarray(cl.activation.intercepts())
    pre_A = cl.bn.gain[None, :, None] * np.matmul(cl.weight, A)  # (C, n, d)
    pre_c = cl.bn.gain * ((c - cl.bn.anchor) @ cl.weight.T) + cl.bn.shift  # (C, n)
    const = np.all(status != HyperplaneStatus.REGULAR, axis=2) if K else np.zeros((C, n), bool)
    const_pieces = cl.activation.piece_index(pre_c)
    for ci, (P, _, _, code, flat) in enumerate(batch):
        fn, fo = flat_n[ci], flat_o[ci]
        exact = _AnchoredOffsets(base, fn, ystar[ci]) if has_pb[ci] else None
        pending = [(P, np.flatnonzero(screened[ci]), sides0[ci])]
        while pending:
            Q, cand, s_here = pending.pop()
            cutting = np.zeros(0, bool)
            if len(cand):
                sg = vertex_signs(Q, fn[cand], fo[cand], None if exact is None else exact.subset(cand))
                pos, neg = (sg > 0).any(axis=0), (sg < 0).any(axis=0)
                cutting = pos & neg
                s_here = s_here.copy()
                s_here[cand[~cutting]] = np.where(pos[~cutting], 1, -1)
            if cutting.any():
                j = int(np.flatnonzero(cutting)[0])
                hj = cand[j]
                below, above = split(Q, fn[hj], fo[hj], sg[:, j], None if exact is None else exact[hj])
                remaining = cand[cutting][1:]
                s_below, s_above = s_here.copy(), s_here.copy()
                s_below[hj], s_above[hj] = -1, 1
                pending.append((below, remaining, s_below))
                pending.append((above, remaining, s_above))
                continue
            # a leaf for this layer: every switching set keeps one side on Q's interior
            pieces = _layer_pieces(s_here, gain_sign, K)
            if const[ci].any():
                pieces = np.where(const[ci], const_pieces[ci], pieces)
            slope, icpt = slope_tab[pieces], icpt_tab[pieces]
            flat_here = ~np.any(pre_A[ci] != 0, axis=1)  # neurons constant on this region
            yield (Q, slope[:, None] * pre_A[ci], slope * pre_c[ci] + icpt, code + (pieces,), flat + (flat_here,))


def _exact_code(cond: ConditionedNetwork, x) -> tuple:
    """Activation code at x in exact rational arithmetic on the network's float64 parameters."""
    F = Fraction
    h = [F(float(v)) for v in x]
    code = []
    for layer in cond.layers:
        W = [[F(float(v)) for v in row] for row in layer.weight]
        p = [F(float(v)) for v in layer.bn.anchor]
        g = [F(float(v)) for v in layer.bn.gain]
        e = [F(float(v)) for v in layer.bn.shift]
        diff = [hi - pi for hi, pi in zip(h, p)]
        z = [gi * sum(wij * dj for wij, dj in zip(row, diff)) + ei for row, gi, ei in zip(W, g, e)]
        t = [F(v) for v in layer.activation.breakpoints]
        a = [F(v) for v in layer.activation.slopes]
        pieces, out = [], []
        vals = layer.activation.values_at_breakpoints()
        for zi in z:
            k = sum(1 for tk in t if tk <= zi)
            pieces.append(k)
            if not t:
                out.append(a[0] * zi + F(layer.activation.value_at_first))
            else:
                ref = t[0] if k == 0 else t[k - 1]
                vref = F(vals[0]) if k == 0 else F(vals[k - 1])
                out.append(vref + a[k] * (zi - ref))
        code.append(np.array(pieces))
        h = out
    return tuple(code)


def _certify_batch(cond, witnesses, radii, codes, radius_w, exact: bool, flats=None) -> np.ndarray:
    """Re-check a batch of witnesses with one independent forward pass: ``(M,)`` bool.

    A witness passes when its ball radius is positive (relative to the window), the forward pass at it
    reproduces the region's code in every layer, and no pre-activation sits exactly on a breakpoint
    (except neurons constant on the region, ``flats``, which may sit on one everywhere).
    """
    ok = radii > WITNESS_MIN_RELATIVE_RADIUS * radius_w
    zs = cond.preactivations(witnesses)
    for li, (layer, z) in enumerate(zip(cond.layers, zs)):
        got = layer.activation.piece_index(z)
        ok &= np.all(got == np.stack([c[li] for c in codes]), axis=1)
        if layer.activation.breakpoints:
            on_bp = np.isin(z, layer.activation.breakpoints_array)
            if flats is not None:
                on_bp &= ~np.stack([f[li] for f in flats])
            ok &= ~np.any(on_bp, axis=1)
    if exact:
        for i in np.flatnonzero(ok):
            ok[i] = all(np.array_equal(g, k) for g, k in zip(_exact_code(cond, witnesses[i]), codes[i]))
    return ok


def _same_map(a, b) -> bool:
    scale = 1.0 + max(np.abs(a).max(initial=0), np.abs(b).max(initial=0))
    return bool(np.all(np.abs(a - b) <= AFFINE_MAP_RTOL * scale))


def _facets_adjacent(P: Polytope, Q: Polytope) -> bool:
    """Do P and Q share a (d−1)-dimensional piece of boundary? (opposite facets, overlapping with interior)."""
    from scipy.optimize import linprog

    d = P.dim
    nP = P.G / np.linalg.norm(P.G, axis=1)[:, None]
    hP = P.h / np.linalg.norm(P.G, axis=1)
    nQ = Q.G / np.linalg.norm(Q.G, axis=1)[:, None]
    hQ = Q.h / np.linalg.norm(Q.G, axis=1)
    for i in range(len(nP)):
        match = np.flatnonzero((np.abs(nQ + nP[i]).max(axis=1) <= FACET_MATCH_TOL)
                               & (np.abs(hQ + hP[i]) <= FACET_MATCH_TOL * (1 + abs(hP[i]))))
        if not len(match):
            continue
        # maximise ρ: a (d−1)-ball of radius ρ in the common hyperplane inside both (other constraints)
        Gs = np.vstack([np.delete(nP, i, axis=0), np.delete(nQ, match, axis=0)])
        hs = np.concatenate([np.delete(hP, i), np.delete(hQ, match)])
        a = nP[i]
        # ball within the hyperplane: distance uses the component of each normal orthogonal to a
        proj = Gs - (Gs @ a)[:, None] * a[None, :]
        A_ub = np.hstack([Gs, np.linalg.norm(proj, axis=1)[:, None]])
        res = linprog(np.r_[np.zeros(d), -1.0], A_ub=A_ub, b_ub=hs, A_eq=np.r_[a, 0.0][None, :], b_eq=[hP[i]],
                      bounds=[(None, None)] * d + [(0, None)], method="highs")
        if res.status == 0 and -res.fun > FACET_MATCH_TOL:
            return True
    return False


def _linear_regions(items) -> int:
    """Maximal linear regions: connected components of adjacent regions with the same output map."""
    groups: dict = {}
    for idx, (P, A, c) in enumerate(items):
        key = tuple(np.round(np.concatenate([A.ravel(), c.ravel()]), 6))
        groups.setdefault(key, []).append(idx)
    total = 0
    for members in groups.values():
        # refine the rounded key by the tolerance comparison, then union adjacent members
        parent = {m: m for m in members}

        def find(u):
            while parent[u] != u:
                parent[u] = parent[parent[u]]
                u = parent[u]
            return u

        for i, u in enumerate(members):
            for v in members[i + 1:]:
                if find(u) == find(v):
                    continue
                Pu, Au, cu = items[u]
                Pv, Av, cv = items[v]
                if _same_map(Au, Av) and _same_map(cu, cv) and _facets_adjacent(Pu, Pv):
                    parent[find(u)] = find(v)
        total += len({find(m) for m in members})
    return total


def _polytope_domain(polytope, d):
    from cpa_theory.errors import ShapeError, WindowError

    G, h = (np.asarray(v, dtype=np.float64) for v in polytope)
    if G.ndim != 2 or G.shape[1] != d or h.shape != (G.shape[0],):
        raise ShapeError(f"polytope must be (G (F, {d}), h (F,)); got {G.shape} and {h.shape}.")
    if not (np.all(np.isfinite(G)) and np.all(np.isfinite(h))):
        raise WindowError("polytope constraints contain NaN or inf; give finite numbers.")
    try:
        P = polytope_from_halfspaces(G, h, as_polygon=False)
    except ValueError as exc:
        raise WindowError(f"polytope {{x : G x <= h}}: {exc}; give a bounded set with interior.") from None
    lo, hi = P.V.min(axis=0), P.V.max(axis=0)
    return G, h, (lo + hi) / 2, float(np.max(hi - lo) / 2) * (1 + 1e-9) + 1e-12


def count_regions_v1(net, center=None, radius=None, *, keep_regions: bool = False, exact_recheck: bool = False,
                  linear: bool = True, polytope=None) -> RegionCount:
    """Exact, certified count of activation regions of ``net`` in the ℓ∞ window W(center, radius).

    Args:
        net: :class:`Network` (conditioned on its batch) or :class:`ConditionedNetwork`.
        center: ``(d,)``; radius: r > 0.
        keep_regions: also return the list of certified :class:`Region` objects.
        exact_recheck: re-check every witness with an exact rational forward pass too.
        linear: also count maximal linear regions (N_lin).
        polytope: ``(G, h)``: count in the bounded polytope {x : G x ≤ h} instead of a window (centre and
            radius are then taken from its bounding box, which the C4 screen uses).

    Returns: :class:`RegionCount` with ``regions`` (N), ``linear_regions`` (N_lin), ``hits`` (first-layer
    switching sets that cut int W, by C4), ``certified`` (every region's witness re-checked).
    """
    start = time.perf_counter()
    cond = _conditioned(net)
    domain = None
    if polytope is not None:
        domain = _polytope_domain(polytope, cond.input_dim)
        center, radius = domain[2], domain[3]
        domain = domain[:2]
    win = Window(as_points(center, cond.input_dim, "center")[0], radius)
    stats: dict = {}
    n_regions = n_bad = 0
    regions = [] if keep_regions else None
    items = []
    buf: list = []

    def flush():
        nonlocal n_bad
        if not buf:
            return
        wit = np.stack([b[1] for b in buf])
        rad = np.array([b[2] for b in buf])
        ok = _certify_batch(cond, wit, rad, [b[0] for b in buf], win.radius, exact_recheck, [b[7] for b in buf])
        n_bad += int(np.count_nonzero(~ok))
        if keep_regions:
            regions.extend(Region(code, w, r, V, A, c, f) for (code, w, r, V, A, c, f, _) in buf)
        buf.clear()

    for P, code, A, c, p, flat in enumerate_regions(cond, win.center, win.radius, stats=stats, domain=domain):
        c_y = P.interior_point()
        n_regions += 1
        out_c = c - A @ p  # f(x) = A (x − p) + c
        if linear:
            items.append((P, A, out_c))
        buf.append((code, c_y + p, P.inradius_at(c_y), P.V + p if keep_regions else None, A, out_c,
                    (P.G, P.h + P.G @ p) if keep_regions else (), flat))
        if len(buf) >= _CERTIFY_CHUNK:
            flush()
    flush()
    hp = switching_hyperplanes(cond, 0)
    if domain is None:
        hits = int(np.sum(window_relations(hp, win.center, win.radius) == WindowRelation.CUTS))
    else:  # first-layer switching sets that cut the polytope's interior: exact signs at its vertices
        P0 = polytope_from_halfspaces(domain[0], domain[1] - domain[0] @ hp.anchor)
        reg = hp.regular.reshape(-1)
        sg = vertex_signs(P0, np.repeat(hp.normals, hp.offsets.shape[1], axis=0)[reg], hp.offsets.reshape(-1)[reg])
        hits = int(np.sum((sg > 0).any(axis=0) & (sg < 0).any(axis=0)))
    n_lin = _linear_regions(items) if linear else n_regions
    return RegionCount(win.center, win.radius, n_regions, n_lin, hits, n_bad == 0, n_bad,
                       time.perf_counter() - start, stats.get("exact_fallbacks", 0), regions)
