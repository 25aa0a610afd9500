"""Convex cells split by hyperplanes with exact predicates (THEORY §6, "Sign decisions").

A cell is a full-dimensional convex polytope held by its vertices (float64 coordinates ``V``, a per-vertex
bound ``err`` on ‖V − V*‖∞ against the exact vertex V*, and the exact rational V* once it has been needed) and
its facets, each a :class:`Hyper` (a hyperplane a·y = β in float64 with an error bound against its exact
version a*·y = β*, which it can produce in rationals) with an orientation: facet (H, s) means s·(a·y − β) ≤ 0.

* :func:`vertex_signs` decides the side of every vertex for every hyperplane. float64 decides when
  |a·v − β| exceeds the propagated error bound E (vertex error, hyperplane error, dot-product rounding;
  constants in ``tolerances``); otherwise the vertex is recomputed exactly (rational solution of its facets'
  exact equations) and the side is the exact sign of a*·v* − β*.
* :func:`split` cuts a cell. A new vertex on a crossing edge is interpolated in float64 only when both
  endpoint signs were decided by the filter (so |f_u − f_w| > E_u + E_w > 0: no division by an undecided
  difference) and it inherits an error bound; otherwise (or when that bound grows too large) it is the exact
  rational intersection of the edge's facets with the cut, rounded to float64 for the filter.

In the plane a cell is an ordered polygon (:class:`Polygon`: edge i runs V[i] → V[i+1] on facet ``ef[i]``);
in d ≥ 3 a :class:`Polytope` with a vertex–facet incidence matrix.
"""

from __future__ import annotations

import math
from fractions import Fraction
from itertools import combinations, product

import numpy as np

from .errors import CPAInternalError
from .exact import dot, solve
from .tolerances import DOT_EXTRA_TERMS, FILTER_SAFETY, UNIT_ROUNDOFF, VERTEX_ERR_MAX_RTOL, VOLUME_FORMULA_RTOL

__all__ = ["Hyper", "Polytope", "Polygon", "box_polytope", "box_polygon", "vertex_signs", "split",
           "polytope_from_halfspaces", "cell_volume", "cell_volumes", "facet_measures"]

U = UNIT_ROUNDOFF


class Hyper:
    """Hyperplane a·y = β (float64) with |a − a*| ≤ err_a (per coordinate), |β − β*| ≤ err_b, and a lazy exact
    (a*, β*) (tuple of Fractions, Fraction). ``key`` names it: ("box", axis, side), ("domain", i) or
    (layer, neuron, breakpoint, codes of the earlier layers)."""

    __slots__ = ("a", "beta", "err_a", "err_b", "key", "_exact", "_fn")

    def __init__(self, a, beta, err_a, err_b, key, exact=None, fn=None):
        self.a, self.beta, self.err_a, self.err_b, self.key = a, float(beta), err_a, float(err_b), key
        self._exact, self._fn = exact, fn

    def exact(self):
        if self._exact is None:
            self._exact = self._fn()
            self._fn = None
        return self._exact


def exact_hyper(a, beta, key) -> Hyper:
    """A hyperplane whose float64 data are its exact definition."""
    a = np.asarray(a, dtype=np.float64)
    return Hyper(a, beta, np.zeros_like(a), 0.0, key,
                 exact=(tuple(Fraction(float(v)) for v in a), Fraction(float(beta))))


def facet_clearance(A, B, EA, EB, sg, pt, perr):
    """Certified lower bound on how far each point ``pt[f]`` (coordinates within ``perr[f]``) lies on the inner
    side ``sg[f]·(a·y − β) ≤ 0`` of facet f's hyperplane (a = ``A[f]``, β = ``B[f]`` with error bounds ``EA``,
    ``EB``): the inner slack minus its filter bound, over ‖a‖ + ‖ea‖. Rows with a = 0 give +inf. A witness's
    radius is the minimum over its cell's facets."""
    ap = np.abs(pt)
    absA = np.abs(A)
    slack = -sg * (np.einsum("fd,fd->f", A, pt) - B)
    E = FILTER_SAFETY * (np.einsum("fd,fd->f", EA, ap) + EB + (np.einsum("fd->f", absA) + np.einsum("fd->f", EA)) * perr
                         + (A.shape[1] + DOT_EXTRA_TERMS) * U * (np.einsum("fd,fd->f", absA, ap) + np.abs(B)))
    nrm = np.linalg.norm(A, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(nrm > 0, (slack - E) / (nrm + np.linalg.norm(EA, axis=1)), np.inf)


class _Cell:
    __slots__ = ()

    def interior_point(self) -> np.ndarray:
        return self.V.mean(axis=0)

    def facet_arrays(self):
        """``(G (F, d), h (F,))`` with the cell = {y : G y ≤ h} (float64)."""
        fs = self.facet_list()
        G = np.array([s * H.a for H, s in fs])
        h = np.array([s * H.beta for H, s in fs])
        return G, h

    @property
    def G(self):
        return self.facet_arrays()[0]

    @property
    def h(self):
        return self.facet_arrays()[1]

    def inradius_at(self, point, point_err: float = 0.0) -> float:
        """A radius ρ such that the Euclidean ball B(point, ρ) lies in the cell (float64 with the error bounds
        subtracted; ≤ 0 when float64 cannot certify a ball)."""
        fs = self.facet_list()
        A = np.array([H.a for H, _ in fs])
        B = np.array([H.beta for H, _ in fs])
        EA = np.array([H.err_a for H, _ in fs])
        EB = np.array([H.err_b for H, _ in fs])
        sg = np.array([s for _, s in fs], dtype=np.float64)
        n = len(fs)
        r = facet_clearance(A, B, EA, EB, sg, np.broadcast_to(point, (n, len(point))), np.full(n, point_err))
        return float(r.min(initial=np.inf))

    def exact_vertices(self):
        return [self.exact_vertex(i) for i in range(len(self.V))]


class Polytope(_Cell):
    """Full-dimensional convex polytope: vertices ``V (Nv, d)``, ``err (Nv,)``, exact list ``ex``, facets
    ``facets`` (list of (Hyper, sign)), incidence ``inc (Nv, F)`` bool."""

    __slots__ = ("V", "err", "ex", "facets", "inc", "scale")

    def __init__(self, V, err, ex, facets, inc, scale):
        self.V, self.err, self.ex, self.facets, self.inc, self.scale = V, err, ex, facets, inc, scale

    @property
    def dim(self) -> int:
        return self.V.shape[1]

    def facet_list(self):
        return self.facets

    def exact_vertex(self, i: int):
        v = self.ex[i]
        if v is None:
            rows = np.flatnonzero(self.inc[i])
            d = self.dim
            G = np.array([self.facets[r][0].a for r in rows])
            # try a float-independent choice first, then any other d-subset (exact singularity test)
            cands = [_independent_rows(G, np.arange(len(rows)), d)]
            v = None
            for pick in cands + [list(c) for c in combinations(range(len(rows)), d)]:
                if pick is None:
                    continue
                eqs = [self.facets[rows[p]][0].exact() for p in pick]
                v = solve([e[0] for e in eqs], [e[1] for e in eqs])
                if v is not None:
                    break
            if v is None:
                raise CPAInternalError("a polytope vertex has no d independent incident facets (exact); "
                                       "please report this network and window.")
            self.ex[i] = v
        return v


def _independent_rows(G, rows, d):
    chosen = []
    for r in rows:
        trial = chosen + [r]
        if np.linalg.matrix_rank(G[trial]) == len(trial):
            chosen = trial
            if len(chosen) == d:
                return chosen
    return None


def _box_data(lo_exact, hi_exact):
    d = len(lo_exact)
    hyp = []
    for l in range(d):
        e = np.zeros(d)
        e[l] = 1.0
        hyp.append((Hyper(-e, -float(lo_exact[l]), np.zeros(d), 0.0, ("box", l, 0),
                          exact=(tuple(Fraction(-int(i == l)) for i in range(d)), -lo_exact[l])), 1))
        hyp.append((Hyper(e, float(hi_exact[l]), np.zeros(d), 0.0, ("box", l, 1),
                          exact=(tuple(Fraction(int(i == l)) for i in range(d)), hi_exact[l])), 1))
    return hyp


def box_polytope(lo_exact, hi_exact) -> Polytope:
    """The box ∏[lo_l, hi_l] from exact rational bounds."""
    d = len(lo_exact)
    facets = _box_data(lo_exact, hi_exact)
    corners = np.array(list(product((0, 1), repeat=d)), dtype=np.int64)
    lo = np.array([float(v) for v in lo_exact])
    hi = np.array([float(v) for v in hi_exact])
    V = np.where(corners == 0, lo[None, :], hi[None, :]).astype(np.float64)
    inc = np.zeros((len(corners), 2 * d), dtype=bool)
    for l in range(d):
        inc[np.arange(len(corners)), 2 * l + corners[:, l]] = True
    ex = [tuple(lo_exact[l] if bits[l] == 0 else hi_exact[l] for l in range(d)) for bits in corners]
    err = np.full(len(V), U * float(np.abs(V).max()))
    # the box facets are exact only as rationals: float(hi) may differ from hi by one rounding
    for H, _ in facets:
        H.err_b = U * abs(H.beta)
    return Polytope(V, err, ex, facets, inc, float(max(np.abs(lo).max(), np.abs(hi).max(), 1e-300)))


def vertex_signs(P, A, B, EA, EB, exact_line, stats=None):
    """Exact side of every vertex of P for every hyperplane a_j·y = β_j.

    Args: ``A (m, d)``, ``B (m,)`` float64 hyperplanes; ``EA (m, d)``, ``EB (m,)`` their error bounds;
        ``exact_line(j)`` → exact (a*, β*) of hyperplane j.
    Returns ``(signs (Nv, m) int8 in {-1, 0, 1}, vals (Nv, m), E (Nv, m), decided (Nv, m) bool)``: ``decided``
    marks the entries float64 decided (|vals| > E, the bound), the others were decided exactly.
    """
    V = P.V
    vals = V @ A.T - B[None, :]
    aV = np.abs(V)
    absA = np.abs(A)
    d = V.shape[1]
    # E = S·(|V| EAᵀ + EB + (Σ|a| + ΣEA)·err_v + k(|V| |A|ᵀ + |B|)) with k = (d + extra)·u, the two products
    # merged into one, |V| (EA + k|A|)ᵀ: the same nonnegative sum regrouped, whose float evaluation differs by a
    # few units of roundoff (relative), far inside FILTER_SAFETY's factor 2
    k = (d + DOT_EXTRA_TERMS) * U
    E = FILTER_SAFETY * (aV @ (EA + k * absA).T + (EB + k * np.abs(B))[None, :]
                         + (absA.sum(axis=1) + EA.sum(axis=1))[None, :] * P.err[:, None])
    if not np.all(np.isfinite(vals)) or not np.all(np.isfinite(E)):
        raise CPAInternalError("float64 overflow or NaN while deciding vertex sides; please report this network "
                               "and window (the exact count needs values within float64 range).")
    decided = np.abs(vals) > E
    signs = np.sign(vals).astype(np.int8)
    if not decided.all():
        rows, cols = np.nonzero(~decided)
        lines = {}
        for i, j in zip(rows.tolist(), cols.tolist()):
            v = P.exact_vertex(i)
            if j not in lines:
                lines[j] = exact_line(j)
            a, b = lines[j]
            val = dot(a, v) - b
            signs[i, j] = (val > 0) - (val < 0)
        if stats is not None:
            stats["exact_fallbacks"] = stats.get("exact_fallbacks", 0) + len(rows)
    return signs, vals, E, decided


def _solve_2x2(H1, H2, scale):
    """The plane case of :func:`_solve_vertices` in scalar arithmetic (Cramer's rule, same bound; the
    determinant's own rounding 2u(|a1x a2y| + |a1y a2x|) is subtracted before it is inverted)."""
    (p, q), (r, t) = H1.a.tolist(), H2.a.tolist()
    b1, b2 = H1.beta, H2.beta
    det = p * t - q * r
    det_err = 2 * U * (abs(p * t) + abs(q * r))
    den = abs(det) - det_err
    if not den > 0:
        return (np.nan, np.nan), np.inf
    x = (b1 * t - b2 * q) / det
    y = (p * b2 - r * b1) / det
    ninv = max(abs(t) + abs(q), abs(r) + abs(p)) / den
    e1x, e1y = H1.err_a.tolist()
    e2x, e2y = H2.err_a.tolist()
    ax, ay = abs(x), abs(y)
    k = (2 + DOT_EXTRA_TERMS) * U
    pert = max(e1x * ax + e1y * ay + H1.err_b + abs(p * x + q * y - b1) + k * (abs(p) * ax + abs(q) * ay + abs(b1)),
               e2x * ax + e2y * ay + H2.err_b + abs(r * x + t * y - b2) + k * (abs(r) * ax + abs(t) * ay + abs(b2)))
    shrink = 1.0 - ninv * max(e1x + e1y, e2x + e2y)
    if not shrink > 0.5:
        return (x, y), np.inf
    err = FILTER_SAFETY * ninv * pert / shrink + U * max(ax, ay)
    if not err <= VERTEX_ERR_MAX_RTOL * scale:  # also catches NaN
        return (x, y), np.inf
    return (x, y), err


def _solve_vertices(rows, P_scale):
    """New vertices as float64 solutions of their d defining facets, with an error bound each.

    ``rows``: per new vertex a list of d Hypers (with orientation dropped). With M v = β the float system and
    |δM| ≤ EM, |δβ| ≤ Eβ the bounds against the exact system M* v* = β*:
    ‖v − v*‖∞ ≤ ‖M⁻¹‖∞ (‖EM |v| + Eβ + |M v − β|‖∞ + rounding) / (1 − ‖M⁻¹‖∞ ‖EM‖∞)
    (standard perturbation bound; ‖M⁻¹‖ from the float inverse, covered by FILTER_SAFETY). The bound does not
    compound over generations of splits (it depends only on the facets). Returns ``(V (E, d), err (E,))`` with
    err = inf where float64 cannot bound the vertex (then the caller computes it exactly).
    """
    if not rows:
        return np.zeros((0, 0)), np.zeros(0)
    if len(rows[0]) == 2:
        out = [_solve_2x2(r[0], r[1], P_scale) for r in rows]
        return np.array([o[0] for o in out]), np.array([o[1] for o in out])
    d = len(rows[0])
    hs = [H for r in rows for H in r]
    M = np.array([H.a for H in hs]).reshape(len(rows), d, d)
    b = np.array([H.beta for H in hs]).reshape(len(rows), d)
    EM = np.array([H.err_a for H in hs]).reshape(len(rows), d, d)
    Eb = np.array([H.err_b for H in hs]).reshape(len(rows), d)
    return _solve_systems(M, b, EM, Eb, P_scale)


def _solve_systems(M, b, EM, Eb, P_scale, compiled=True):
    """:func:`_solve_vertices` on the stacked systems: ``M (E, d, d)``, ``b (E, d)`` and their bounds.

    ‖M⁻¹‖∞ is bounded rigorously from the float inverse X: with R = I − X M, ‖M⁻¹‖∞ ≤ ‖X‖∞ / (1 − ‖R‖∞) when
    ‖R‖∞ < ½ (else the row goes to the exact path), ‖R‖∞ taken from fl(X M) plus γ ‖X‖∞ ‖M‖∞ for its rounding.
    X is the adjugate over the determinant for d ≤ 3 (every engine gets the same float vertices), LAPACK's
    inverse above. d = 3 runs compiled, one system at a time (:func:`cpa_theory.frontier_loops.solve_rows3`, the
    same arithmetic; ``compiled=False``: numpy, the reference it is tested against); otherwise on entry-major
    arrays ``(d, d, E)`` (contiguous over the systems: several times faster than numpy's loops over small
    blocks)."""
    d = M.shape[1]
    if d == 3 and compiled:
        from .frontier_loops import solve_rows3

        E = len(M)
        f64 = np.ascontiguousarray
        return solve_rows3(np.arange(3 * E).reshape(E, 3), f64(M, dtype=np.float64).reshape(3 * E, 3),
                           f64(b, dtype=np.float64).reshape(3 * E), f64(EM, dtype=np.float64).reshape(3 * E, 3),
                           f64(Eb, dtype=np.float64).reshape(3 * E), float(P_scale))
    V = np.full(b.shape, np.nan)
    err = np.full(len(M), np.inf)
    Mt = np.ascontiguousarray(M.transpose(1, 2, 0))
    with np.errstate(all="ignore"):
        X, good = _inverses(Mt)
    if not good.any():
        return V, err
    bt, EMt, Ebt = b.T, np.ascontiguousarray(EM.transpose(1, 2, 0)), Eb.T
    if not good.all():
        Mt, X, bt, EMt, Ebt = Mt[..., good], X[..., good], bt[:, good], EMt[..., good], Ebt[:, good]
    k = (d + DOT_EXTRA_TERMS) * U
    with np.errstate(all="ignore"):
        v = np.einsum("ije,je->ie", X, bt)
        av = np.abs(v)
        absM = np.abs(Mt)
        resid = np.abs(np.einsum("ije,je->ie", Mt, v) - bt) + k * (np.einsum("ije,je->ie", absM, av) + np.abs(bt))
        nX = np.abs(X).sum(axis=1).max(axis=0) * (1 + k)
        nM = absM.sum(axis=1).max(axis=0) * (1 + k)
        R = np.einsum("ije,jke->ike", X, Mt)
        R[np.arange(d), np.arange(d)] -= 1.0
        rho = (np.abs(R).sum(axis=1).max(axis=0) + 2 * k * nX * nM) * (1 + k)
        ninv = nX / np.where(rho < 0.5, 1.0 - rho, 1.0)
        pert = np.einsum("ije,je->ie", EMt, av) + Ebt + resid
        shrink = 1.0 - ninv * EMt.sum(axis=1).max(axis=0) * (1 + k)
        ok = (rho < 0.5) & (shrink > 0.5)
        e = np.where(ok, FILTER_SAFETY * ninv * pert.max(axis=0) / np.where(ok, shrink, 1.0), np.inf) + U * av.max(
            axis=0)
    e = np.where(np.all(np.isfinite(v), axis=0) & (e <= VERTEX_ERR_MAX_RTOL * P_scale), e, np.inf)
    V[good], err[good] = v.T, e
    return V, err


def _inverses(Mt):
    """Float inverses of stacked square matrices held entry-major ``Mt (d, d, E)``, and whether each could be
    formed (a nonzero finite determinant for the adjugate; LAPACK without a zero pivot): ``(X (d, d, E), ok (E,))``."""
    d = Mt.shape[0]
    if d > 3:
        M = Mt.transpose(2, 0, 1)
        try:
            return np.ascontiguousarray(np.linalg.inv(M).transpose(1, 2, 0)), np.ones(M.shape[0], dtype=bool)
        except np.linalg.LinAlgError:
            det = np.linalg.det(M)
            ok = np.isfinite(det) & (det != 0)
            X = np.zeros_like(M)
            if ok.any():
                try:
                    X[ok] = np.linalg.inv(M[ok])
                except np.linalg.LinAlgError:
                    ok[:] = False
            return np.ascontiguousarray(X.transpose(1, 2, 0)), ok
    if d == 1:
        det = Mt[0, 0]
        adj = np.ones_like(Mt)
    elif d == 2:
        (a, b), (c, e) = Mt
        det = a * e - b * c
        adj = np.array([[e, -b], [-c, a]])
    else:
        r0, r1, r2 = Mt
        cols = [_cross3(r1, r2), _cross3(r2, r0), _cross3(r0, r1)]  # adj[:, k] = column k
        det = (r0 * cols[0]).sum(axis=0)
        adj = np.stack(cols, axis=1)
    X = adj / np.where(det != 0, det, 1.0)
    ok = np.isfinite(det) & (det != 0) & np.all(np.isfinite(X), axis=(0, 1))
    return X, ok


def _cross3(u, w):
    """Cross products of entry-major vectors ``(3, E)``."""
    return np.array([u[1] * w[2] - u[2] * w[1], u[2] * w[0] - u[0] * w[2], u[0] * w[1] - u[1] * w[0]])


def split(P, H: Hyper, signs, stats=None):
    """Split P by H given the exact signs of P's vertices (from :func:`vertex_signs`). Returns ``(below, above)`` = P ∩ {a·y ≤ β}, P ∩ {a·y ≥ β}; a side with
    no interior is None."""
    if isinstance(P, Polygon):
        return _split_polygon(P, H, signs, stats)
    pos, neg, zero = np.flatnonzero(signs > 0), np.flatnonzero(signs < 0), np.flatnonzero(signs == 0)
    if len(pos) == 0 or len(neg) == 0:
        return (P, None) if len(pos) == 0 else (None, P)
    edges = _edges(P, pos, neg)
    F = len(P.facets)
    d = P.dim
    new_V = np.empty((len(edges), d))
    new_err = np.empty(len(edges))
    new_ex = []
    new_inc = np.zeros((len(edges), F + 1), dtype=bool)
    if edges:
        eu = np.array([u for u, _ in edges])
        ew = np.array([w for _, w in edges])
        shared = P.inc[eu] & P.inc[ew]
        new_inc[:, :F] = shared
    if edges and d >= 3 and np.all(shared.sum(axis=1) == d - 1):
        # the usual case (every new vertex on exactly d − 1 old facets and H): the same systems as below, built
        # as arrays from the facets' data at once instead of edge by edge
        cols = np.nonzero(shared)[1].reshape(len(edges), d - 1)
        fs = [f[0] for f in P.facets]
        Fa = np.array([f.a for f in fs] + [H.a])
        Fb = np.array([f.beta for f in fs] + [H.beta])
        FEa = np.array([f.err_a for f in fs] + [H.err_a])
        FEb = np.array([f.err_b for f in fs] + [H.err_b])
        idx = np.concatenate([cols, np.full((len(edges), 1), F)], axis=1)
        new_V, new_err = _solve_systems(Fa[idx], Fb[idx], FEa[idx], FEb[idx], P.scale)
    elif edges:
        rows = []
        for e in range(len(edges)):
            cols = np.flatnonzero(shared[e])
            if len(cols) > d - 1:
                pick = _independent_rows(np.array([P.facets[c][0].a for c in cols]), np.arange(len(cols)), d - 1)
                cols = cols[pick] if pick is not None else cols[: d - 1]
            rows.append([P.facets[c][0] for c in cols] + [H])
        new_V, new_err = _solve_vertices(rows, P.scale)
    for e, (u, w) in enumerate(edges):
        new_ex.append(None)
        if not np.isfinite(new_err[e]):  # float64 cannot bound it: the exact point on the exact edge u*w*
            if stats is not None:
                stats["exact_vertices"] = stats.get("exact_vertices", 0) + 1
            a, b = H.exact()
            Vu, Vw = P.exact_vertex(u), P.exact_vertex(w)
            fu, fw = dot(a, Vu) - b, dot(a, Vw) - b
            t = fu / (fu - fw)
            ex = tuple(p + t * (q - p) for p, q in zip(Vu, Vw))
            new_ex[e] = ex
            new_V[e] = [float(c) for c in ex]
            new_err[e] = U * float(np.abs(new_V[e]).max())
    new_inc[:, F] = True

    def half(keep, sign):  # keep = (one side's vertices, then the vertices on H)
        facets = P.facets + [(H, sign)]
        inc_old = np.zeros((len(keep), F + 1), dtype=bool)
        inc_old[:, :F] = P.inc[keep]
        inc_old[len(keep) - len(zero):, F] = True
        V = np.vstack([P.V[keep], new_V])
        err = np.concatenate([P.err[keep], new_err])
        ex = [P.ex[i] for i in keep] + list(new_ex)
        inc = np.vstack([inc_old, new_inc])
        live = _live_facets(inc_old[: len(keep) - len(zero), :F], inc, d, len(zero))
        return Polytope(V, err, ex, [f for f, k in zip(facets, live) if k], inc[:, live], P.scale)

    below = half(np.concatenate([neg, zero]), 1)
    above = half(np.concatenate([pos, zero]), -1)
    return below, above


def _live_facets(inc_strict, inc, d, on_cut):
    """The facets a side of a split keeps (the cut H, last, always): an old facet F stays (d−1)-dimensional iff
    one of its vertices lies strictly on the kept side — then F meets the open half-space in a relatively open
    set. If all its kept vertices lie on H, F ∩ half-space ⊂ F ∩ H has dimension ≤ d − 2 however many vertices
    it has (degenerate arrangements: a cut through a non-simple face), and listing it would make a 'facet' that
    only touches. ``inc_strict``: incidence of the strictly kept vertices with the old facets; ``inc``: the
    side's full incidence (old facets, then H); ``on_cut``: how many old vertices lie on H."""
    live = inc.sum(axis=0) >= d
    if on_cut:  # without old vertices on H, a facet with a crossing point on it has a strict vertex too
        live[:-1] &= inc_strict.any(axis=0)
    return live


def _edges(P: Polytope, pos, neg):
    """Pairs (u ∈ pos, v ∈ neg) that are edges of P (shared facets of rank d − 1, no third vertex on them)."""
    d = P.dim
    common = P.inc[pos][:, None, :] & P.inc[neg][None, :, :]
    counts = common.sum(axis=2)
    G = None
    ia, ib = np.nonzero(counts >= d - 1)
    if not len(ia):
        return []
    # vertices incident to every shared facet of each candidate pair: an edge has exactly its two endpoints
    on_all = (P.inc[None, :, :] | ~common[ia, ib][:, None, :]).all(axis=2).sum(axis=1)
    keep = on_all == 2
    for t in np.flatnonzero(keep & (counts[ia, ib] > d - 1)).tolist():  # more than d − 1 shared: check the rank
        cols = np.flatnonzero(common[ia[t], ib[t]])
        if G is None:
            G = np.array([f[0].a for f in P.facets])
        if np.linalg.matrix_rank(G[cols]) != d - 1:
            keep[t] = False
    return list(zip(pos[ia[keep]].tolist(), neg[ib[keep]].tolist()))


# -- the plane: ordered polygons --------------------------------------------------------------------------------
class Polygon(_Cell):
    """Convex polygon with counter-clockwise vertices; ``ef[i] = (Hyper, sign)`` is the facet of edge V[i] → V[i+1];
    vertex i is the intersection of the facets of edges i − 1 and i."""

    __slots__ = ("V", "err", "ex", "ef", "scale")

    def __init__(self, V, err, ex, ef, scale):
        self.V, self.err, self.ex, self.ef, self.scale = V, err, ex, ef, scale

    dim = 2

    def facet_list(self):
        return self.ef

    def exact_vertex(self, i: int):
        v = self.ex[i]
        if v is None:
            e1, e2 = self.ef[i - 1][0].exact(), self.ef[i][0].exact()
            v = solve([e1[0], e2[0]], [e1[1], e2[1]])
            if v is None:
                raise CPAInternalError("two consecutive polygon edges are parallel in exact arithmetic; please "
                                       "report this network and window.")
            self.ex[i] = v
        return v


def box_polygon(lo_exact, hi_exact) -> Polygon:
    """The rectangle [lo0, hi0] × [lo1, hi1] from exact bounds, counter-clockwise from (lo0, lo1)."""
    f = _box_data(lo_exact, hi_exact)  # order: x lo, x hi, y lo, y hi
    left, right, bottom, top = f[0], f[1], f[2], f[3]
    for H, _ in f:
        H.err_b = U * abs(H.beta)
    lo = [float(v) for v in lo_exact]
    hi = [float(v) for v in hi_exact]
    V = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]], dtype=np.float64)
    ex = [(lo_exact[0], lo_exact[1]), (hi_exact[0], lo_exact[1]), (hi_exact[0], hi_exact[1]),
          (lo_exact[0], hi_exact[1])]
    err = np.full(4, U * float(np.abs(V).max()))
    return Polygon(V, err, ex, [bottom, right, top, left], float(max(np.abs(V).max(), 1e-300)))


def _split_polygon(P: Polygon, H, signs, stats):
    """Sutherland–Hodgman for one line, keeping each new edge's facet; exact new vertices where needed."""
    s = signs.tolist()
    n = len(s)
    if not any(v > 0 for v in s):
        return P, None
    if not any(v < 0 for v in s):
        return None, P
    cut_below, cut_above = (H, 1), (H, -1)
    cross = [i for i in range(n) if s[i] * s[(i + 1) % n] < 0]
    Vs, errs = _solve_vertices([[P.ef[i][0], H] for i in cross], P.scale)
    crossing = {}
    for i, v, er in zip(cross, Vs, errs):
        ex = None
        if not np.isfinite(er):  # the exact intersection of the edge's line with the cut
            if stats is not None:
                stats["exact_vertices"] = stats.get("exact_vertices", 0) + 1
            e1, e2 = P.ef[i][0].exact(), H.exact()
            ex = solve([e1[0], e2[0]], [e1[1], e2[1]])
            if ex is None:
                raise CPAInternalError("a cut is parallel to the edge it crosses (exact); please report.")
            v = np.array([float(c) for c in ex])
            er = U * float(np.abs(v).max())
        crossing[i] = (v, er, ex)

    def half(keep, cut):
        pts, errs, exs, efs = [], [], [], []
        for i in range(n):
            j = (i + 1) % n
            si, sj = s[i], s[j]
            if si == 0 or si == keep:
                pts.append(P.V[i])
                errs.append(P.err[i])
                exs.append(P.ex[i])
                efs.append(cut if si == 0 and sj != keep else P.ef[i])
            if i in crossing:
                v, er, ex = crossing[i]
                pts.append(v)
                errs.append(er)
                exs.append(ex)
                efs.append(P.ef[i] if sj == keep else cut)
        return Polygon(np.array(pts), np.array(errs), exs, efs, P.scale)

    return half(-1, cut_below), half(1, cut_above)


def cell_volume(P) -> float:
    """Volume of a cell from its float64 vertices (shoelace in 2-D, Qhull in d ≥ 3, joggled when Qhull's
    precision check refuses the plain hull; 0 for a sliver Qhull cannot resolve)."""
    V = P.V
    if isinstance(P, Polygon):
        x, y = V[:, 0], V[:, 1]
        # shoelace, sum_i x_i y_{i+1} − x_{i+1} y_i (cyclic), without np.roll's per-call overhead
        return 0.5 * float(np.dot(x[:-1], y[1:]) + x[-1] * y[0] - np.dot(x[1:], y[:-1]) - x[0] * y[-1])
    if V.shape[1] == 1:  # an interval
        return float(V.max() - V.min())
    from scipy.spatial import ConvexHull, QhullError

    try:
        return float(ConvexHull(V).volume)
    except ValueError:
        return 0.0
    except QhullError:
        pass
    # Qhull's precision check can refuse a good cell whose vertices include near-duplicates (measured in
    # d = 5: a cell of volume 6e-4 refused, so the volumes fell short of vol(W) by 6e-5 relative and the count
    # was reported incomplete); joggled input ('QJ') moves the points by ~1e-11 relative, far inside
    # VOLUME_SUM_RTOL
    try:
        return float(ConvexHull(V, qhull_options="QJ").volume)
    except (QhullError, ValueError):
        return 0.0


def cell_volumes(cells) -> np.ndarray:
    """``(n,)`` volumes of many cells, as :func:`cell_volume` each; 3-D polytopes, and simple polytopes in d ≥ 4
    (every vertex on d facets: the generic case), are done together from their facet structure
    (:func:`_volumes_3d`, :func:`_volumes_simple`) instead of one Qhull call per cell."""
    out = np.empty(len(cells))
    idx3, simple = [], {}
    for i, P in enumerate(cells):
        if isinstance(P, Polytope) and P.dim == 3:
            idx3.append(i)
        elif isinstance(P, Polytope) and P.dim >= 4 and _is_simple(P):
            simple.setdefault(P.dim, []).append(i)
        else:
            out[i] = cell_volume(P)
    if idx3:
        out[idx3] = _volumes_3d([cells[i] for i in idx3])
    for d, idx_all in simple.items():
        idx_all = np.asarray(idx_all)
        ok = np.zeros(len(idx_all), dtype=bool)
        # groups of cells with at most _LAWRENCE_ENTRIES entries in their (vertex, d, d) arrays
        ends = np.cumsum([len(cells[i].V) * d * d for i in idx_all])
        marks = np.arange(1, ends[-1] // _LAWRENCE_ENTRIES + 1) * _LAWRENCE_ENTRIES
        cut = np.searchsorted(ends, marks, side="right")
        for grp in np.split(np.arange(len(idx_all)), np.unique(cut[(cut > 0) & (cut < len(idx_all))])):
            vol, ok[grp] = _volumes_lawrence([cells[i] for i in idx_all[grp]])
            out[idx_all[grp[ok[grp]]]] = vol[ok[grp]]
        idx_all = idx_all[~ok]  # the formula's error estimate is too large: the face lattice for these
        if not len(idx_all):
            continue
        # groups of cells with at most _SIMPLE_ROWS (vertex, facet subset) rows: bounded transient memory
        rows = np.cumsum([len(cells[i].V) << d for i in idx_all])
        cut = np.searchsorted(rows, np.arange(1, rows[-1] // _SIMPLE_ROWS + 1) * _SIMPLE_ROWS, side="right")
        for idx in np.split(np.asarray(idx_all), np.unique(cut[(cut > 0) & (cut < len(idx_all))])):
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                try:
                    got = _volumes_simple([cells[i] for i in idx])
                except np.linalg.LinAlgError:  # two facets of a cell with parallel normals: Qhull for them all
                    got = np.full(len(idx), np.nan)
            for i, v in zip(idx.tolist(), got.tolist()):  # a cell whose facet normals are nearly dependent: Qhull
                out[i] = v if math.isfinite(v) and v >= 0 else cell_volume(cells[i])
    return out


#: rows (vertex × subset of its facets) per pass of :func:`_volumes_simple` (~ 100 bytes each at peak)
_SIMPLE_ROWS = 1 << 17


def _is_simple(P) -> bool:
    """Every vertex on exactly d facets (the generic case): then every non-empty intersection of j facets is a
    face of dimension d − j, which :func:`_volumes_simple` relies on."""
    return bool(np.all(P.inc.sum(axis=1) == P.dim))


def _volumes_lawrence(cells):
    """Volumes of simple convex polytopes of one dimension d ≥ 4 by Lawrence's formula (Lawrence 1991), all
    vertices of all cells in one pass: with outward unit normals N_v (the d facets at vertex v, as rows) and a
    generic direction c, γ_v = N_v⁻ᵀ c and vol = Σ_v (c·(v − x₀))^d / (d! |det N_v| ∏ γ_v) (x₀: the cell's
    vertex mean). Terms can be far larger than their sum, so each cell also gets a first-order error estimate
    (over a few directions, the smallest); returns ``(volumes, ok)`` with ok where that estimate is within
    ``VOLUME_FORMULA_RTOL`` of the volume (the others go to :func:`_volumes_simple`)."""
    d = cells[0].dim
    n = len(cells)
    nv = np.array([len(P.V) for P in cells])
    nf = np.array([len(P.facets) for P in cells])
    foff = np.concatenate([[0], np.cumsum(nf)])[:-1]
    vcell = np.repeat(np.arange(n), nv)
    V = np.concatenate([P.V for P in cells])
    VF = np.concatenate([np.nonzero(P.inc)[1].reshape(-1, d) for P in cells]) + foff[vcell][:, None]
    N = np.concatenate([[s * np.asarray(H.a, dtype=np.float64) for H, s in P.facets] for P in cells])
    N = N / np.linalg.norm(N, axis=1)[:, None]
    x0 = np.stack([np.bincount(vcell, weights=V[:, t], minlength=n) for t in range(d)], 1) / nv[:, None]
    W = V - x0[vcell]
    Nv = N[VF]  # (Nv, d, d)
    try:
        inv = np.linalg.inv(Nv)
    except np.linalg.LinAlgError:  # a vertex with dependent normals: not simple in float64
        return np.zeros(n), np.zeros(n, dtype=bool)
    det = np.abs(np.linalg.det(Nv))
    kappa = np.abs(Nv).sum(axis=1).max(axis=1) * np.abs(inv).sum(axis=1).max(axis=1)
    verr = np.concatenate([P.err for P in cells])  # the vertices' own error bounds (∞-norm)
    best_vol, best_rel = np.zeros(n), np.full(n, np.inf)
    # a few fixed generic directions (reproducible); per cell the one with the smallest error estimate
    for c in _lawrence_directions(d):
        with np.errstate(all="ignore"):  # a useless direction (γ = 0) gives inf/NaN terms: not ok, face lattice
            vol, rel = _lawrence_pass(c, inv, det, kappa, W, verr, vcell, n, d)
        better = rel < best_rel
        best_vol[better], best_rel[better] = vol[better], rel[better]
    return best_vol, best_rel <= VOLUME_FORMULA_RTOL


def _lawrence_pass(c, inv, det, kappa, W, verr, vcell, n, d):
    """One direction of :func:`_volumes_lawrence`: per cell the volume and its relative error estimate (+inf
    where it is not finite and positive)."""
    gamma = np.einsum("vij,i->vj", inv, c)
    h = W @ c
    denom = det * np.prod(gamma, axis=1)
    term = h ** d / denom
    # first-order error: h to 2d·u·Σ|c||w| plus the vertex's own error; γ and det to ~d²·u·κ relative
    # (κ = ‖N_v‖₁‖N_v⁻¹‖₁)
    eh = 2 * d * UNIT_ROUNDOFF * (np.abs(W) @ np.abs(c)) + np.abs(c).sum() * verr
    mag = (np.abs(h) + eh) ** d / np.abs(denom)
    err = mag - np.abs(term) + mag * (4 * d * d + 4) * (1 + kappa) * UNIT_ROUNDOFF
    fact = math.factorial(d)
    vol = np.bincount(vcell, weights=term, minlength=n) / fact
    rel = np.bincount(vcell, weights=err, minlength=n) / fact / vol
    return vol, np.where(np.isfinite(vol) & np.isfinite(rel) & (vol > 0), rel, np.inf)


#: entries of the (vertex, d, d) normal matrices per pass of :func:`_volumes_lawrence` (8 bytes each, a few
#: arrays of that size at peak)
_LAWRENCE_ENTRIES = 1 << 20


def _lawrence_directions(d: int) -> np.ndarray:
    """The generic unit directions :func:`_volumes_lawrence` tries (fixed, so volumes are reproducible)."""
    c = np.random.default_rng(0x1A77).normal(size=(3, d))
    return c / np.linalg.norm(c, axis=1)[:, None]


def _volumes_simple(cells) -> np.ndarray:
    """Volumes of simple convex polytopes of one dimension d ≥ 4, all at once, from their facet structure.

    Cone decomposition down the face lattice: a k-face F (the facets S meeting in it) has volume
    vol_k(F) = (1/k) Σ_g h(F, g) · vol_{k−1}(F ∩ facet g) over the facets g ∉ S that meet F, where h is the
    distance, inside aff(F), from F's vertex centroid to aff(F ∩ facet g):
    |â_g·c_F − β̂_g| / ‖â_g − P_S â_g‖ (unit normals; P_S the projection onto the span of S's normals); a
    vertex has vol_0 = 1. The faces of a simple polytope are the subsets of the d facets at each vertex. Each level
    is one vectorised pass over all faces of all cells (instead of one Qhull call per cell, ~1 ms in d = 5).
    """
    from math import comb

    d = cells[0].dim
    n = len(cells)
    nv = np.array([len(P.V) for P in cells])
    nf = np.array([len(P.facets) for P in cells])
    foff = np.concatenate([[0], np.cumsum(nf)])
    V = np.concatenate([P.V for P in cells])
    VF = np.concatenate([np.nonzero(P.inc)[1].reshape(-1, d) for P in cells])  # local facets at each vertex
    vcell = np.repeat(np.arange(n), nv)
    A = np.concatenate([[H.a for H, _ in P.facets] for P in cells]).astype(np.float64)
    B = np.array([H.beta for P in cells for H, _ in P.facets], dtype=np.float64)
    nrm = np.linalg.norm(A, axis=1)
    A, B = A / nrm[:, None], B / nrm
    base = int(nf.max()) + 1  # a face = (cell, sorted local facets): one integer key
    if n * float(base) ** d >= 2.0 ** 62 and n > 1:
        half = n // 2
        return np.concatenate([_volumes_simple(cells[:half]), _volumes_simple(cells[half:])])
    powers = base ** np.arange(d, dtype=np.int64)  # (n · base^d < 2^62 checked above)

    def keys(cols, cell):  # a face: (sorted local facet columns, cell) → one int64
        k = cell.astype(np.int64)
        for t in range(cols.shape[1]):
            k = k + cols[:, t].astype(np.int64) * (n * powers[t])
        return k

    # level j: the faces on j facets (dimension d − j; j = d: the vertices), as sorted keys, their facet
    # columns, cell and vertex centroid
    level_cols, level_cell, level_c, level_key = {}, {}, {}, {}
    for j in range(d, -1, -1):
        subs = np.array(list(combinations(range(d), j)), dtype=np.intp).reshape(comb(d, j), j)
        cols = VF[:, subs].reshape(len(VF) * len(subs), j)  # increasing along each row
        cellv = np.repeat(vcell, len(subs))
        uniq, first, inv = np.unique(keys(cols, cellv), return_index=True, return_inverse=True)
        cnt = np.bincount(inv, minlength=len(uniq))
        cen = np.stack([np.bincount(inv, weights=np.repeat(V[:, t], len(subs)), minlength=len(uniq))
                        for t in range(d)], 1)
        level_cols[j], level_cell[j], level_c[j], level_key[j] = cols[first], cellv[first], cen / cnt[:, None], uniq
    vol = np.ones(len(level_key[d]))
    for j in range(d - 1, -1, -1):  # faces on j facets from their faces on j + 1 facets
        T, Tcell = level_cols[j + 1], level_cell[j + 1]
        gT = T + foff[Tcell][:, None]
        AT = A[gT]  # (M, j + 1, d) unit normals
        # the distance of normal i from the span of the others is 1/√((M Mᵀ)⁻¹)_ii (M: the rows AT)
        gram_inv = np.linalg.inv(np.matmul(AT, AT.transpose(0, 2, 1)))
        dist_in = 1.0 / np.sqrt(np.diagonal(gram_inv, axis1=1, axis2=2))  # (M, j + 1)
        acc = np.zeros(len(level_key[j]))
        for i in range(j + 1):  # drop facet i of T: parent face S, crossing facet g
            par = np.searchsorted(level_key[j], keys(np.delete(T, i, axis=1), Tcell))
            g = gT[:, i]
            h = np.abs(np.einsum("md,md->m", A[g], level_c[j][par]) - B[g]) / dist_in[:, i]
            acc += np.bincount(par, weights=h * vol, minlength=len(acc))
        vol = acc / (d - j)
    out = np.empty(n)
    out[level_cell[0]] = vol
    return out


def _volumes_3d(cells) -> np.ndarray:
    """Volumes of convex 3-D polytopes from float64 vertices and the vertex–facet incidence, all at once.

    vol = (1/3) Σ_f h_f · area_f, with h_f the distance of facet f's plane from an interior point (the mean
    of the vertices) along the outward unit normal s·a/‖a‖, and area_f the area of the facet's vertices taken
    in angular order about their centroid (a fan of triangles). The vertices incident to a facet are the
    corners of that facet polygon (collinear extra ones add zero-area triangles)."""
    n = len(cells)
    inc_v, inc_f, normals, signs = [], [], [], []
    nv = np.empty(n, dtype=np.intp)
    nf = np.empty(n, dtype=np.intp)
    voff = foff = 0
    for k, P in enumerate(cells):
        r, f = np.nonzero(P.inc)
        inc_v.append(r + voff)
        inc_f.append(f + foff)
        nv[k], nf[k] = len(P.V), len(P.facets)
        voff += nv[k]
        foff += nf[k]
        for H, sgn in P.facets:
            normals.append(H.a)
            signs.append(sgn)
    V = np.concatenate([P.V for P in cells])
    iv, jf = np.concatenate(inc_v), np.concatenate(inc_f)
    cell_v, cell_f = np.repeat(np.arange(n), nv), np.repeat(np.arange(n), nf)
    centre = np.stack([np.bincount(cell_v, weights=V[:, k], minlength=n) for k in range(3)], axis=1) / nv[:, None]
    A = np.asarray(normals, dtype=np.float64) * np.asarray(signs, dtype=np.float64)[:, None]
    nrm = np.linalg.norm(A, axis=1)
    nout = A / np.where(nrm > 0, nrm, 1.0)[:, None]
    cnt = np.bincount(jf, minlength=foff)
    cf = np.stack([np.bincount(jf, weights=V[iv, k], minlength=foff) for k in range(3)], axis=1) / np.maximum(
        cnt, 1)[:, None]
    # an orthonormal basis (u, w) of each facet plane with u × w = nout
    e = np.eye(3)[np.argmin(np.abs(nout), axis=1)]
    u = np.cross(nout, e)
    u /= np.linalg.norm(u, axis=1)[:, None]
    w = np.cross(nout, u)
    rel = V[iv] - cf[jf]
    ang = np.arctan2(np.einsum("ij,ij->i", rel, w[jf]), np.einsum("ij,ij->i", rel, u[jf]))
    order = np.lexsort((ang, jf))
    rel, jf = rel[order], jf[order]
    nxt = np.arange(1, len(jf) + 1)
    first = np.flatnonzero(np.r_[True, jf[1:] != jf[:-1]])
    last = np.r_[first[1:], len(jf)] - 1
    nxt[last] = first
    tri = 0.5 * np.einsum("ij,ij->i", np.cross(rel, rel[nxt]), nout[jf])
    area = np.bincount(jf, weights=tri, minlength=foff)
    h = np.einsum("ij,ij->i", nout, cf - centre[cell_f])
    return np.bincount(cell_f, weights=h * area / 3.0, minlength=n)


def facet_corners(P, f: int) -> np.ndarray:
    """The float vertices of facet ``f`` of ``P`` (order of ``P.facet_list()``): ``(m, d)``."""
    return P.V[_facet_vertex_ids(P, f)]


def _facet_vertex_ids(P, f: int) -> np.ndarray:
    if isinstance(P, Polygon):
        return np.array([f, (f + 1) % len(P.V)])
    return np.flatnonzero(P.inc[:, f])


def exact_facet_vertices(P, f: int) -> list:
    """The exact rational vertices of facet ``f`` of ``P`` (as :func:`facet_corners`)."""
    return [P.exact_vertex(int(i)) for i in _facet_vertex_ids(P, f)]


def facet_measures(P):
    """(d−1)-measure of every facet of P, in the order of ``P.facet_list()`` (float64; 0 for lower-dimensional
    contacts)."""
    if isinstance(P, Polygon):
        return np.linalg.norm(np.roll(P.V, -1, axis=0) - P.V, axis=1)
    from scipy.spatial import ConvexHull, QhullError

    out = np.zeros(len(P.facets))
    d = P.dim
    if d == 1:  # facets are points: counting measure
        return out + 1.0
    for f in range(len(P.facets)):
        pts = P.V[P.inc[:, f]]
        if len(pts) < d:
            continue
        a = P.facets[f][0].a
        # orthonormal basis of the hyperplane, then the (d−1)-volume of the projected vertices
        q, _ = np.linalg.qr(np.c_[a, np.eye(d)[:, : d - 1]] if d > 1 else a[:, None])
        basis = q[:, 1:d]
        X = (pts - pts.mean(axis=0)) @ basis
        if d == 2:
            out[f] = float(X.max() - X.min())
            continue
        try:
            out[f] = float(ConvexHull(X).volume)
        except ValueError:
            out[f] = 0.0
        except QhullError:  # as in cell_volume: joggled when the precision check refuses the plain hull
            try:
                out[f] = float(ConvexHull(X, qhull_options="QJ").volume)
            except (QhullError, ValueError):
                out[f] = 0.0
    return out


def polytope_from_halfspaces(G, h, *, as_polygon: bool | None = None, exact_h=None):
    """A bounded, full-dimensional polytope {y : G y ≤ h} with its vertices (scipy's halfspace intersection
    from a Chebyshev centre). In d = 2 an ordered :class:`Polygon` is returned (unless ``as_polygon=False``).
    ``exact_h``: the exact rational right-hand sides (default: the float64 values).

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
    keep = np.flatnonzero(tight.any(axis=0))
    hyps = []
    for f in keep:
        hx = Fraction(float(h[f])) if exact_h is None else exact_h[f]
        H = Hyper(G[f].copy(), float(h[f]), np.zeros(d), U * abs(float(h[f])), ("domain", int(f)),
                  exact=(tuple(Fraction(float(v)) for v in G[f]), hx))
        hyps.append((H, 1))
    tight = tight[:, keep]
    # vertices from Qhull are approximate: recompute each exactly from its facets (few, once)
    if d == 2 and as_polygon is not False:
        order = np.argsort(np.arctan2(V[:, 1] - V[:, 1].mean(), V[:, 0] - V[:, 0].mean()))
        V, tight = V[order], tight[order]
        ef = []
        for i in range(len(V)):
            shared = np.flatnonzero(tight[i] & tight[(i + 1) % len(V)])
            if len(shared) != 1:
                raise ValueError("could not identify the polygon's edges")
            ef.append(hyps[shared[0]])
        P = Polygon(V, np.zeros(len(V)), [None] * len(V), ef, scale)
    else:
        P = Polytope(V, np.zeros(len(V)), [None] * len(V), hyps, tight, scale)
    for i in range(len(V)):
        P.V[i] = [float(c) for c in P.exact_vertex(i)]
    P.err = np.full(len(V), U * float(np.abs(P.V).max()))
    return P
