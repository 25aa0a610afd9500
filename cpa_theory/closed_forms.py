"""Closed forms of THEORY §3–§4, written once: the oracles O1–O4, the C6 bounds and the exact E[h_plain]
for Gaussian biases, and the C7 hit probabilities (ℓ2 ball, and the ℓ∞ box in d = 2).

Every function validates its domain and raises a typed error (:mod:`cpa_theory.errors`) outside it; none
returns NaN. The checks of ``cpa-theory reproduce``, the sweep (``numerics.sweep``) and the figures use
these functions, never their own copies.

* O1 ``o1_bounds(h, d)``: 1 + h ≤ N ≤ Σ_{k≤d} C(h, k), h = number of DISTINCT hyperplanes cutting int W
  (:func:`distinct_hyperplanes` merges coincident switching sets).
* O2 ``o2_all_vertices_inside(n, d)`` = Σ_{k≤d} C(n, k).  O3 ``o3(n, d)`` = 2 Σ_{k<d} C(n−1, k).
  O4 ``o4(m)`` = 1 + m.
* C6: ``c6_q`` (q_i = K·min(1, 2r‖w_i‖₁p_i)), ``c6_bound_h`` = Σ q_i, ``c6_bound_n`` = Σ_{k≤d} e_k(q),
  ``expected_plain_hits_gaussian`` (exact E[h_plain] for b_i ~ N(0, σ_b²)).
* C7: ``l2_ball_hit_probability`` (I_{(r/D)²}(1/2, (d−1)/2), 1 for D ≤ r), and for the ℓ∞ box in d = 2
  with Gaussian weights (ReLU, β = 0): ``box_bn_hit_probability_2d`` and ``box_plain_hit_probability_2d``
  for a window direction along an axis or uniformly random, and ``box_crossover_2d``, the root D*_h of
  E[h_BN] − E[h_plain] (an ℓ∞ box is not rotation invariant, so the two directions differ).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .errors import CPAInputError, ShapeError

__all__ = ["o1_bounds", "o2_all_vertices_inside", "o3", "o4", "distinct_hyperplanes", "gaussian_density_bound",
           "c6_q", "c6_bound_h", "c6_bound_n", "elementary_symmetric", "expected_plain_hits_gaussian",
           "l2_ball_hit_probability", "box_bn_hit_probability_2d", "box_plain_hit_probability_2d",
           "box_crossover_2d"]


def _count(v, what: str, minimum: int = 0) -> int:
    if isinstance(v, bool) or not float(v).is_integer() or int(v) < minimum:
        raise CPAInputError(f"{what} must be an integer >= {minimum}; got {v!r}.")
    return int(v)


def _positive(v, what: str, strict: bool = True) -> float:
    v = float(v)
    if not math.isfinite(v) or (v <= 0 if strict else v < 0):
        raise CPAInputError(f"{what} must be a finite number {'>' if strict else '>='} 0; got {v!r}.")
    return v


# -- O1–O4 ---------------------------------------------------------------------------------------------------
def o1_bounds(h: int, d: int) -> tuple[int, int]:
    """O1: (1 + h, Σ_{k≤d} C(h, k)) for h DISTINCT hyperplanes cutting int W of a d-dimensional window."""
    h, d = _count(h, "h (distinct hyperplanes)"), _count(d, "d", 1)
    return 1 + h, sum(math.comb(h, k) for k in range(d + 1))


def o2_all_vertices_inside(n: int, d: int) -> int:
    """O2 with every vertex of the arrangement inside W: Σ_{k≤d} C(n, k) (e.g. (10, 2) → 56)."""
    n, d = _count(n, "n"), _count(d, "d", 1)
    return sum(math.comb(n, k) for k in range(d + 1))


def o3(n: int, d: int) -> int:
    """O3: n generic hyperplanes through one point of int W: 2 Σ_{k<d} C(n−1, k) (n ≥ 1; n = 0 gives 1)."""
    n, d = _count(n, "n"), _count(d, "d", 1)
    if n == 0:
        return 1
    return 2 * sum(math.comb(n - 1, k) for k in range(d))


def o4(m: int) -> int:
    """O4 (d = 1): N = 1 + number of distinct breakpoints strictly inside the window."""
    return 1 + _count(m, "m (distinct breakpoints inside)")


def distinct_hyperplanes(normals, offsets, anchor=None, rtol: float = 1e-9) -> int:
    """Number of distinct hyperplanes among aᵢᵀ(x − p) = c_ik (normals (n, d), offsets (n, K)).

    Coincident switching sets count once (O1): w, 2w and −w with the same anchored equation up to scale
    are one hyperplane. Each equation is scaled to a unit normal with a canonical sign; rows a = 0 are skipped.
    """
    A = np.asarray(normals, np.float64)
    C = np.asarray(offsets, np.float64)
    if A.ndim != 2 or C.ndim != 2 or C.shape[0] != A.shape[0]:
        raise ShapeError(f"normals (n, d) and offsets (n, K) expected; got {A.shape} and {C.shape}.")
    keys = []
    for a, cs in zip(A, C):
        nrm = np.linalg.norm(a)
        if nrm == 0:
            continue
        u, cs = a / nrm, cs / nrm
        lead = u[np.flatnonzero(np.abs(u) > rtol)[0]]
        sign = 1.0 if lead > 0 else -1.0
        for c in cs:
            if np.isfinite(c):
                keys.append(np.r_[sign * u, sign * c])
    distinct: list = []
    for k in keys:
        if not any(np.all(np.abs(k - o) <= rtol * (1 + np.abs(o))) for o in distinct):
            distinct.append(k)
    return len(distinct)


# -- C6 ------------------------------------------------------------------------------------------------------
def gaussian_density_bound(sigma_b: float) -> float:
    """p = 1/(σ_b√(2π)): the maximum of the N(0, σ_b²) density (σ_b > 0)."""
    return 1.0 / (_positive(sigma_b, "σ_b (bias scale)") * math.sqrt(2.0 * math.pi))


def c6_q(w_l1, radius: float, density, breakpoints: int = 1, xp=np):
    """q_i = K·min(1, 2 r ‖w_i‖₁ p_i) (C6; K breakpoints per neuron). ``w_l1`` (n,), ``density`` scalar or (n,)."""
    if xp is np:
        _positive(radius, "radius r")
        w_l1 = np.asarray(w_l1, np.float64)
        if np.any(~np.isfinite(w_l1)) or np.any(w_l1 < 0):
            raise CPAInputError("‖w_i‖₁ must be finite and >= 0.")
    return breakpoints * xp.minimum(1.0, 2.0 * radius * w_l1 * density)


def elementary_symmetric(q, order: int, xp=np):
    """e_0 … e_order of the entries of ``q`` (n,), from Π(1 + q_i t) truncated at t^order.

    ``xp`` numpy (a loop) or jax.numpy (a ``lax.scan``, jittable)."""
    order = _count(order, "order")
    if xp is np:
        e = np.zeros(order + 1)
        e[0] = 1.0
        for qi in np.asarray(q, np.float64).ravel():
            e[1:] = e[1:] + qi * e[:-1]
        return e
    import jax

    def step(e, qi):
        return e.at[1:].add(qi * e[:-1]), None

    e0 = xp.zeros(order + 1, q.dtype).at[0].set(1.0)
    return jax.lax.scan(step, e0, q)[0]


def c6_bound_h(q, xp=np):
    """C6: E[h_plain] ≤ Σ_i q_i."""
    return xp.sum(q)


def c6_bound_n(q, d: int, xp=np):
    """C6: E[N_plain] ≤ Σ_{k≤d} e_k(q) (independent biases; one layer)."""
    return xp.sum(elementary_symmetric(q, d, xp=xp))


def expected_plain_hits_gaussian(W, bias, x0, radius: float, breakpoints, sigma_b: float) -> float:
    """Exact E[h_plain] of one layer without BN at the ℓ∞ window W(x0, r), raw biases b_i ~ N(bias_i, σ_b²):

        Σ_i Σ_k P(|w_iᵀx0 + b_i − t_k| < r‖w_i‖₁) = Σ_i Σ_k [Φ((t_k − m_i + ρ_i)/σ_b) − Φ((t_k − m_i − ρ_i)/σ_b)]

    with m_i = w_iᵀx0 + bias_i, ρ_i = r‖w_i‖₁ (THEORY C6). σ_b = 0: the indicator of a strict cut."""
    from scipy.special import ndtr

    W = np.asarray(W, np.float64)
    x0 = np.asarray(x0, np.float64)
    if W.ndim != 2 or x0.shape != (W.shape[1],):
        raise ShapeError(f"W (n, d) and x0 (d,) expected; got {W.shape} and {x0.shape}.")
    r = _positive(radius, "radius r")
    sb = _positive(sigma_b, "σ_b (bias scale)", strict=False)
    t = np.asarray(breakpoints, np.float64).ravel()
    m = (W @ x0 + np.broadcast_to(np.asarray(bias, np.float64), (W.shape[0],)))[:, None]
    rho = r * np.abs(W).sum(axis=1)[:, None]
    if sb == 0:
        return float(np.sum(np.abs(m - t[None, :]) < rho))
    hi, lo = (t[None, :] - m + rho) / sb, (t[None, :] - m - rho) / sb
    # Φ(hi) − Φ(lo) = Φ(−lo) − Φ(−hi): use the tail that does not cancel
    p = np.where(lo > 0, ndtr(-lo) - ndtr(-hi), ndtr(hi) - ndtr(lo))
    return float(p.sum())


# -- C7 ------------------------------------------------------------------------------------------------------
def l2_ball_hit_probability(r: float, D: float, d: int) -> float:
    """P(a hyperplane through x̄ with uniformly random normal cuts the interior of the ℓ2 ball of radius r
    centred at distance D from x̄) in R^d: 1 for D ≤ r (for D = r the tangent hyperplane has probability 0),
    I_{(r/D)²}(1/2, (d−1)/2) for D > r (d ≥ 2), 0 for D > r in d = 1 (the 'hyperplane' is the point x̄)."""
    from scipy.special import betainc

    r = _positive(r, "radius r")
    D = _positive(D, "distance D", strict=False)
    d = _count(d, "d", 1)
    if D <= r:
        return 1.0
    if d == 1:
        return 0.0
    return float(betainc(0.5, (d - 1) / 2.0, (r / D) ** 2))


_DIRECTIONS = ("axis", "random")


def _direction(direction: str) -> str:
    if direction not in _DIRECTIONS:
        raise CPAInputError(f"window direction {direction!r}: use 'axis' (along e_1) or 'random' (uniform).")
    return direction


def _frac_cos_below(c):
    """P(|cos ψ| < c) for ψ uniform on the circle: 1 − (2/π) arccos(min(c, 1))."""
    return 1.0 - (2.0 / math.pi) * math.acos(min(1.0, max(0.0, c)))


@functools.lru_cache(maxsize=None)
def _leggauss(points: int):
    return np.polynomial.legendre.leggauss(points)


@functools.lru_cache(maxsize=None)
def _quadrant_nodes(points: int = 96):
    """Gauss–Legendre nodes and weights on each quadrant of [0, 2π) (the integrands below are smooth inside
    each quadrant: the kinks of |cos θ| + |sin θ| sit at multiples of π/2)."""
    x, w = _leggauss(points)
    half = math.pi / 4
    nodes = np.concatenate([k * math.pi / 2 + half * (x + 1) for k in range(4)])
    return nodes, np.tile(w * half, 4)


def box_bn_hit_probability_2d(r: float, D: float, direction: str = "axis") -> float:
    """d = 2, ReLU, β = 0 (all switching lines through x̄), w with a rotation-invariant law: probability that
    one neuron's line cuts the ℓ∞ box of half-width r centred at x̄ + D·u, i.e. P(D|wᵀu| < r‖w‖₁).

    ``direction="axis"`` (u = e_1): 1 for D ≤ r, else 1 − (2/π) arctan((D − r)/r).
    ``direction="random"`` (u uniform): (1/2π) ∫ [1 − (2/π) arccos(min(1, r(|cos θ| + |sin θ|)/D))] dθ
    (for ψ uniform, P(|cos ψ| < c) = 1 − (2/π) arccos c); evaluated by adaptive quadrature."""
    from scipy.integrate import quad

    r = _positive(r, "radius r")
    D = _positive(D, "distance D", strict=False)
    if _direction(direction) == "axis":
        return 1.0 if D <= r else 1.0 - (2.0 / math.pi) * math.atan((D - r) / r)
    if D <= r:  # ‖Du‖∞ ≤ D ≤ r: x̄ inside the box (boundary only on a null set)
        return 1.0
    f = lambda th: _frac_cos_below(r * (abs(math.cos(th)) + abs(math.sin(th))) / D)  # noqa: E731
    return float(quad(f, 0.0, math.pi / 2, limit=200)[0] / (math.pi / 2))  # symmetric in each quadrant


def _g(k):
    """E[Φ(kρ)] − 1/2 for ρ ~ Rayleigh(1): k / (2√(1 + k²)) (vectorised)."""
    return k / (2.0 * np.sqrt(1.0 + k * k))


def box_plain_hit_probability_2d(r: float, D: float, sigma_b: float, weight_sd: float, direction: str = "axis",
                                 breakpoint: float = 0.0) -> float:
    """d = 2, no BN, single breakpoint t = 0 (ReLU), w ~ N(0, weight_sd² I₂), b ~ N(0, σ_b²), window centre
    x0 = D·u (the biases are centred at the origin): P(|wᵀx0 + b| < r‖w‖₁).

    With w = ρ(cos θ, sin θ), ρ ~ weight_sd·Rayleigh(1) and E[Φ(kρ)] = 1/2 + kσ_w/(2√(1 + k²σ_w²)), the
    probability is E_θ[g(σ_w a⁺/σ_b) − g(σ_w a⁻/σ_b)], a± = D cos(θ − φ) ± r(|cos θ| + |sin θ|),
    g(k) = k/(2√(1 + k²)): one integral over θ (axis direction, φ = 0) or two (random direction, φ uniform),
    by Gauss–Legendre on each quadrant (smooth integrands; ~1e-12 accurate)."""
    r = _positive(r, "radius r")
    D = _positive(D, "distance D", strict=False)
    sb = _positive(sigma_b, "σ_b (bias scale)")
    sw = _positive(weight_sd, "weight sd")
    if breakpoint != 0.0:
        raise CPAInputError("the d = 2 box formula is for a breakpoint at 0 (ReLU); use the Monte Carlo sweep.")
    th, wt = _quadrant_nodes()
    e = r * (np.abs(np.cos(th)) + np.abs(np.sin(th)))
    if _direction(direction) == "axis":
        phi, wp = np.zeros(1), np.ones(1)
    else:  # φ uniform on [0, 2π): by the symmetries of the box, [0, π/2) suffices
        x, w = _leggauss(64)
        phi, wp = math.pi / 4 * (x + 1), w / 2
    a = D * np.cos(th[None, :] - phi[:, None])
    val = _g(sw * (a + e) / sb) - _g(sw * (a - e) / sb)
    return float(np.sum(wp[:, None] * wt[None, :] * val) / (2 * math.pi))


def box_crossover_2d(r: float, sigma_b: float, weight_sd: float, direction: str = "axis",
                     d_max: float = 20.0) -> float | None:
    """D*_h: the distance where E[h_BN] = E[h_plain] (per neuron: the two hit probabilities above) for the
    setting of :func:`box_plain_hit_probability_2d` with the batch centroid at the origin. None when
    BN refines more (by h) at every D ≤ d_max; the first sign change is located by a grid and ``brentq``."""
    from scipy.optimize import brentq

    f = lambda D: (box_bn_hit_probability_2d(r, D, direction)  # noqa: E731
                   - box_plain_hit_probability_2d(r, D, sigma_b, weight_sd, direction))
    grid = np.linspace(0.0, d_max, int(8 * d_max) + 1)
    prev = f(grid[0])
    for a, b in zip(grid[:-1], grid[1:]):
        cur = f(b)
        if prev > 0 >= cur:
            return float(brentq(f, a, b, xtol=1e-10))
        prev = cur
    return None
