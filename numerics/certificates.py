"""cvxpy certificates: LPs that re-derive geometric facts independently of the closed forms.

The solver's answer is not trusted: every returned point is checked to lie in
the window (within ``LP_FEASIBILITY_TOL``), and the objective is recomputed from
the point.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np

from cpa_theory.tolerances import CONIC_FEASIBILITY_TOL, LP_FEASIBILITY_TOL

__all__ = ["AffineRange", "affine_range_over_window", "ChebyshevBall", "chebyshev_ball", "centroid_in_window",
           "window_inside_parent_region", "injective"]


_BANNER_DONE = False


def _silence_highs_banner() -> None:
    """HiGHS prints a banner on stdout (at C level) when its first instance is built; build that instance with
    stdout pointed at /dev/null, so that ``--json`` output stays one JSON document."""
    global _BANNER_DONE
    if _BANNER_DONE:
        return
    _BANNER_DONE = True
    try:
        import highspy
    except ImportError:
        return
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


@dataclass(frozen=True)
class AffineRange:
    """min / max of aᵀx over a window, with the points that attain them."""

    minimum: float
    maximum: float
    argmin: np.ndarray
    argmax: np.ndarray


def affine_range_over_window(a, center, radius, p=np.inf) -> AffineRange:
    """Solve min and max of aᵀx over {‖x − center‖_p ≤ r} with cvxpy (HiGHS for p ∈ {1, inf}, Clarabel else).

    Args: a ``(d,)``, center ``(d,)``, radius > 0. Returns values recomputed from the re-checked points.
    """
    import cvxpy as cp

    _silence_highs_banner()
    a = np.asarray(a, dtype=np.float64)
    center = np.asarray(center, dtype=np.float64)
    x = cp.Variable(a.shape[0])
    cons = [cp.norm(x - center, p) <= radius]
    solver = cp.HIGHS if p in (1, np.inf) else cp.CLARABEL
    tol = LP_FEASIBILITY_TOL if solver == cp.HIGHS else CONIC_FEASIBILITY_TOL
    out = []
    for sense in (cp.Minimize, cp.Maximize):
        prob = cp.Problem(sense(a @ x), cons)
        prob.solve(solver=solver)
        if prob.status != cp.OPTIMAL:
            raise RuntimeError(f"LP over the window ended with status {prob.status}")
        pt = np.asarray(x.value, dtype=np.float64)
        excess = np.linalg.norm(pt - center, p) - radius
        if excess > tol * max(1.0, radius):
            raise RuntimeError(f"solver point lies outside the window by {excess:.3g}")
        out.append(pt)
    return AffineRange(float(a @ out[0]), float(a @ out[1]), out[0], out[1])


@dataclass(frozen=True)
class ChebyshevBall:
    """The largest Euclidean ball {‖x − center‖₂ ≤ radius} inside {G x ≤ h}, re-checked."""

    center: np.ndarray
    radius: float


def chebyshev_ball(G, h) -> ChebyshevBall:
    """Chebyshev centre of the polytope {x : G x ≤ h} by a cvxpy LP (HiGHS), re-checked independently.

    The returned radius is recomputed from the returned centre as min_f (h_f − G_f·c)/‖G_f‖₂, so it is a
    valid certificate whatever the solver's own tolerances.
    """
    import cvxpy as cp

    _silence_highs_banner()
    G = np.asarray(G, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    norms = np.linalg.norm(G, axis=1)
    x = cp.Variable(G.shape[1])
    rho = cp.Variable()
    prob = cp.Problem(cp.Maximize(rho), [G @ x + norms * rho <= h, rho >= 0])
    prob.solve(solver=cp.HIGHS)
    if prob.status != cp.OPTIMAL:
        raise RuntimeError(f"Chebyshev LP ended with status {prob.status}")
    center = np.asarray(x.value, dtype=np.float64)
    return ChebyshevBall(center, float(np.min((h - G @ center) / norms)))


def centroid_in_window(batch, center, radius) -> bool:
    """Certificate for C5's hypothesis x̄ ∈ int W(center, r): exact rational comparison per coordinate."""
    from fractions import Fraction

    batch = np.asarray(batch, dtype=np.float64)
    B = batch.shape[0]
    r = Fraction(float(radius))
    for l in range(batch.shape[1]):
        mean = sum(Fraction(float(v)) for v in batch[:, l]) / B
        if not abs(mean - Fraction(float(center[l]))) < r:
            return False
    return True


def window_inside_parent_region(cond, center, radius, layer: int) -> bool:
    """Certificate for C9's hypothesis W ⊆ P: no switching set of layers < ``layer`` cuts int W.

    The parent region P is the region of ``center``; the check runs the region counter on the network
    truncated to its first ``layer`` layers and asks for exactly one region.
    """
    from cpa_theory.network import ConditionedNetwork
    from cpa_theory.regions import count_regions

    if layer == 0:
        return True
    truncated = ConditionedNetwork(cond.input_dim, cond.layers[:layer], cond.batch)
    res = count_regions(truncated, center, radius, linear=False)
    return res.regions == 1 and res.certified


def injective(A) -> bool:
    """Certificate that A_P is injective: full column rank, decided exactly (sympy rank over the rationals)."""
    import sympy as sp

    A = np.asarray(A, dtype=np.float64)
    if A.shape[0] < A.shape[1]:
        return False
    M = sp.Matrix([[sp.Rational(float(v)) for v in row] for row in A])
    return M.rank() == A.shape[1]
