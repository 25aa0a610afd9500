"""The exact window criterion (THEORY C4), written once for every layer.

A hyperplane aᵀ(x − p) = c (a ≠ 0) and the ℓp ball W(x0, r) = {‖x − x0‖_p ≤ r}:
by Hölder, aᵀx ranges over aᵀx0 ± r‖a‖_q on W (1/p + 1/q = 1; for the ℓ∞ box
the extremes are the vertices x0 ± r·sign(a)). Hence with the *residual*

    ρ = aᵀ(x0 − p) − c      (evaluated relative to the anchor, THEORY §2 numerics)

and the *slack* σ = r‖a‖_q − |ρ|, the hyperplane
    cuts int W into two parts of positive volume  iff σ > 0,
    touches W only on its boundary                iff σ = 0,
    misses W                                       iff σ < 0.

``window_slack`` and ``hyperplane_residual`` are pure array functions taking
``xp`` (numpy or jax.numpy); the JAX kernels and the region counter call them
rather than re-deriving the test. Near ties (|σ| tiny against the size of the
terms) are re-decided in exact rational arithmetic on the float64 data, so the
float64 decision returned here is the exact decision for the stored hyperplane.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from fractions import Fraction

import numpy as np

from .errors import NonFiniteError, ShapeError, WindowError
from .hyperplanes import SwitchingHyperplanes
from .tolerances import FLOAT64_DECISION_RTOL

__all__ = [
    "WindowRelation",
    "Window",
    "dual_exponent",
    "dual_norm",
    "hyperplane_residual",
    "window_slack",
    "classify_slack",
    "window_relations",
    "window_hits",
    "bn_window_slack",
    "plain_window_slack",
    "exact_relation",
]


class WindowRelation(IntEnum):
    MISSES = 0
    TOUCHES = 1  #: meets W on its boundary only (e.g. through a corner)
    CUTS = 2  #: splits int W into two parts of positive volume


def _check_p(p) -> float:
    try:
        p = float(p)
    except (TypeError, ValueError):
        raise WindowError(f"norm p must be a number in [1, inf]; got {p!r}.") from None
    if not (p >= 1):
        raise WindowError(f"norm p = {p} is not a norm; use p in [1, inf] (the paper's box is p = inf).")
    return p


def dual_exponent(p) -> float:
    """q with 1/p + 1/q = 1 (p = inf → 1, p = 1 → inf)."""
    p = _check_p(p)
    if p == np.inf:
        return 1.0
    if p == 1.0:
        return np.inf
    return p / (p - 1.0)


def dual_norm(a, p=np.inf, xp=np):
    """‖a‖_q along the last axis, q the dual exponent of p."""
    q = dual_exponent(p)
    absa = xp.abs(a)
    if q == 1.0:
        return xp.sum(absa, axis=-1)
    if q == np.inf:
        return xp.max(absa, axis=-1)
    if q == 2.0:
        return xp.sqrt(xp.sum(absa * absa, axis=-1))
    return xp.sum(absa**q, axis=-1) ** (1.0 / q)


def hyperplane_residual(normals, anchor, offsets, centers, xp=np):
    """ρ = a_iᵀ(x0_m − p) − c_ik for normals ``(n, d)``, anchor ``(d,)``, offsets ``(n, K)``,
    centers ``(M, d)`` → ``(M, n, K)``."""
    proj = (centers - anchor) @ xp.transpose(normals)  # (M, n)
    return proj[:, :, None] - offsets[None, :, :]


def window_slack(norms, residual, radius, xp=np):
    """σ = r‖a‖_q − |ρ| (broadcasting). ``norms`` are the dual norms ‖a‖_q."""
    return radius * norms - xp.abs(residual)


def classify_slack(slack) -> np.ndarray:
    """Relation from the sign of σ (numpy ``int8`` array of :class:`WindowRelation`)."""
    slack = np.asarray(slack)
    return np.where(slack > 0, WindowRelation.CUTS, np.where(slack == 0, WindowRelation.TOUCHES,
                                                             WindowRelation.MISSES)).astype(np.int8)


def exact_relation(normal, anchor, offset, center, radius, p=np.inf) -> WindowRelation:
    """The relation decided in exact rational arithmetic on the given float data.

    Exact for p ∈ {1, 2, inf} (p = 2 compares squares); other p raise WindowError.
    """
    F = Fraction
    a = [F(float(v)) for v in np.ravel(normal)]
    rho = sum(ai * (F(float(x)) - F(float(q))) for ai, x, q in zip(a, np.ravel(center), np.ravel(anchor))) - F(float(offset))
    return _relation_of_residual(a, rho, radius, p)


def exact_relation_plain(a, beta, center, radius, p=np.inf) -> WindowRelation:
    """The relation of the hyperplane {a·x = β}, ``a`` and ``β`` rationals (e.g. a network's exact switching set,
    :attr:`SwitchingHyperplanes.exact`), to the window W(center, radius) of float data taken exactly."""
    a = [Fraction(v) for v in a]
    rho = sum(ai * Fraction(float(x)) for ai, x in zip(a, np.ravel(center))) - Fraction(beta)
    return _relation_of_residual(a, rho, radius, p)


def _relation_of_residual(a, rho, radius, p) -> WindowRelation:
    p = _check_p(p)
    r = Fraction(float(radius))
    if p == np.inf:
        lhs, rhs = r * sum(abs(v) for v in a), abs(rho)
    elif p == 1.0:
        lhs, rhs = r * max(abs(v) for v in a), abs(rho)
    elif p == 2.0:
        lhs, rhs = r * r * sum(v * v for v in a), rho * rho
    else:
        raise WindowError(f"exact decisions exist for p in {{1, 2, inf}}; got p = {p}.")
    if lhs > rhs:
        return WindowRelation.CUTS
    return WindowRelation.TOUCHES if lhs == rhs else WindowRelation.MISSES


@dataclass(frozen=True)
class Window:
    """The ℓp ball W(center, radius) (default the ℓ∞ box of THEORY C4)."""

    center: np.ndarray
    radius: float
    p: float = np.inf

    def __post_init__(self):
        c = np.asarray(self.center, dtype=np.float64)
        if c.ndim != 1:
            raise ShapeError(f"a window has one centre, a vector (d,); got shape {c.shape}: for several centres "
                             "use density.count_many(net, centers, r) or density.density_functional.")
        if not np.all(np.isfinite(c)):
            raise NonFiniteError("window centre contains NaN or inf; give finite coordinates.")
        try:
            if isinstance(self.radius, (str, bytes, bool, np.bool_)):  # "0.5" and True are not radii
                raise TypeError
            r = float(self.radius)
        except (TypeError, ValueError):
            raise WindowError(f"radius must be a number; got {self.radius!r}.") from None
        if not np.isfinite(r) or r <= 0:
            raise WindowError(f"radius must be a finite number > 0; got {self.radius!r}.")
        object.__setattr__(self, "center", c)
        object.__setattr__(self, "radius", r)
        object.__setattr__(self, "p", _check_p(self.p))

    @property
    def dim(self) -> int:
        return self.center.shape[0]


def _centers(centers, dim) -> np.ndarray:
    c = np.asarray(centers, dtype=np.float64)
    if c.ndim == 1:
        c = c[None, :]
    if c.ndim != 2 or c.shape[1] != dim:
        raise ShapeError(f"centres have shape {np.shape(centers)}; the input dimension is {dim}.")
    if not np.all(np.isfinite(c)):
        raise NonFiniteError("a window centre contains NaN or inf; give finite coordinates.")
    return c


def window_relations(hyperplanes: SwitchingHyperplanes, centers, radius, p=np.inf) -> np.ndarray:
    """Relation of every switching set to every window: ``(M, n, K)`` int8 :class:`WindowRelation`.

    Degenerate switching sets (status not REGULAR) never cut: they are MISSES.
    Near ties are re-decided exactly (rational arithmetic).
    """
    if not isinstance(hyperplanes, SwitchingHyperplanes):
        from .errors import ArgumentTypeError

        raise ArgumentTypeError(f"window_relations / window_hits need switching hyperplanes; got "
                                f"{type(hyperplanes).__name__}. Compute them with switching_hyperplanes(net).")
    Window(np.zeros(hyperplanes.normals.shape[1]), radius, p)  # validates radius and p
    centers = _centers(centers, hyperplanes.normals.shape[1])
    norms = dual_norm(hyperplanes.normals, p)
    resid = hyperplane_residual(hyperplanes.normals, hyperplanes.anchor, hyperplanes.offsets, centers)
    slack = window_slack(norms[None, :, None], resid, radius)
    rel = classify_slack(slack)
    # Rounding in ρ is below ~d·eps·(|a|·|x0 − p| + |c|), plus the float anchor's distance to the exact one where
    # the hyperplanes carry their exact form; re-decide entries inside that band exactly.
    size = (np.abs(centers - hyperplanes.anchor) @ np.abs(hyperplanes.normals).T)[:, :, None] + np.abs(
        hyperplanes.offsets)[None] + radius * norms[None, :, None]
    band = FLOAT64_DECISION_RTOL * size
    if hyperplanes.residual_error is not None:
        band = band + hyperplanes.residual_error[None, :, None]
    close = np.abs(slack) <= band
    regular = hyperplanes.regular
    close &= regular[None]
    if np.any(close) and p in (1.0, 2.0, np.inf):
        exact = hyperplanes.exact
        for m, i, k in zip(*np.nonzero(close)):
            if exact is not None:  # the network's own switching set (exact batch centroid), as the counter has it
                a, beta = exact(int(i), int(k))
                rel[m, i, k] = exact_relation_plain(a, beta, centers[m], radius, p)
            else:
                rel[m, i, k] = exact_relation(hyperplanes.normals[i], hyperplanes.anchor, hyperplanes.offsets[i, k],
                                              centers[m], radius, p)
    rel[:, ~regular] = WindowRelation.MISSES
    return rel


def window_hits(hyperplanes: SwitchingHyperplanes, centers, radius, p=np.inf) -> np.ndarray:
    """Hitting numbers h: switching sets that cut int W, per centre → ``(M,)`` int."""
    return np.sum(window_relations(hyperplanes, centers, radius, p) == WindowRelation.CUTS, axis=(1, 2))


def bn_window_slack(w, centroid, s, tau, x0, radius, p=np.inf):
    """C4 with BN, in THEORY's form: σ = r‖w‖_q − |wᵀ(x0 − x̄) − s τ| (cuts iff σ > 0).

    Equivalent to |u(x0) − τ| < r‖w‖_q / s. Scalars or broadcastable arrays; w is ``(..., d)``.
    """
    w = np.asarray(w, dtype=np.float64)
    resid = np.sum(w * (np.asarray(x0, dtype=np.float64) - centroid), axis=-1) - s * np.asarray(tau)
    return window_slack(dual_norm(w, p), resid, radius)


def plain_window_slack(w, b, t, x0, radius, p=np.inf):
    """C4 without BN: σ = r‖w‖_q − |wᵀx0 + b − t|."""
    w = np.asarray(w, dtype=np.float64)
    resid = np.sum(w * np.asarray(x0, dtype=np.float64), axis=-1) + b - t
    return window_slack(dual_norm(w, p), resid, radius)
