"""cvxpy certificates: LPs that re-derive geometric facts independently of the closed forms.

The solver's answer is not trusted: every returned point is checked to lie in
the window (within ``LP_FEASIBILITY_TOL``), and the objective is recomputed from
the point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cpa_theory.tolerances import CONIC_FEASIBILITY_TOL, LP_FEASIBILITY_TOL

__all__ = ["AffineRange", "affine_range_over_window"]


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
