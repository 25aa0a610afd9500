"""Exact certified region counts by linear programming, for input dimensions where vertices are out of reach.

The core counter (``cpa_theory.regions``) splits polytopes held by their vertices: exact and fast in low
dimension, but a 64-d window has 2^64 vertices. Here a cell is held by its inequalities {G x ≤ h} and a
Chebyshev ball, and split by LPs (HiGHS through ``scipy.optimize.linprog``):

* layer by layer, inside each cell, the layer's switching sets are the hyperplanes
  g_i W_i (A x + c − p) + e_i = t_k (the C9 pull-back with the cell's affine map h = A x + c);
* a switching set is dropped at once when the C4 test says it misses the window (core criterion);
* otherwise the cell is split: each side is kept iff its Chebyshev ball has radius above
  ``WITNESS_MIN_RELATIVE_RADIUS · r``.

Every counted region is certified as in the core: its witness ball lies in the window, and an
independent forward pass (``ConditionedNetwork.activation_code``) at the witness centre reproduces the
region's code; codes are distinct. The count is exact whenever the LPs are (HiGHS, float64); a count
above ``max_regions`` raises instead of returning a partial number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cpa_theory.errors import RegionLimitError, ShapeError
from cpa_theory.network import ConditionedNetwork, Network
from cpa_theory.tolerances import LP_FEASIBILITY_TOL, WITNESS_MIN_RELATIVE_RADIUS
from cpa_theory.windows import Window, dual_norm, window_slack

__all__ = ["LPRegionCount", "count_regions_lp"]


@dataclass(frozen=True)
class LPRegionCount:
    regions: int
    certified: bool
    witnesses: np.ndarray  # (N, d) witness centres
    radii: np.ndarray  # (N,) witness radii
    lps: int  # LPs solved


def _chebyshev(G, h, radius):
    """Largest ball in {G x ≤ h} (radius capped at the window radius); (centre, radius) re-checked, or None."""
    from scipy.optimize import linprog

    norms = np.linalg.norm(G, axis=1)
    d = G.shape[1]
    cost = np.zeros(d + 1)
    cost[-1] = -1.0
    res = linprog(cost, A_ub=np.hstack([G, norms[:, None]]), b_ub=h,
                  bounds=[(None, None)] * d + [(0.0, radius)], method="highs",
                  options={"primal_feasibility_tolerance": LP_FEASIBILITY_TOL})
    if res.status != 0:
        return None
    c = res.x[:d]
    rho = float(np.min((h - G @ c) / norms))  # recomputed from the point: a valid certificate as it stands
    return c, rho


def count_regions_lp(net, center, radius: float, *, max_regions: int = 4096) -> LPRegionCount:
    """N(f; W(center, r)) by LP splitting (see the module docstring)."""
    from cpa_theory.inputs import check_count_args

    check_count_args(net, center, radius, "count_regions_lp", max_regions=max_regions)
    cond = net.condition() if isinstance(net, Network) else net
    if not isinstance(cond, ConditionedNetwork):
        raise TypeError("count_regions_lp needs a Network or ConditionedNetwork")
    win = Window(center, radius)  # validates: finite centre, finite r > 0
    if win.dim != cond.input_dim:
        raise ShapeError(f"centre has {win.dim} coordinates; the network's input dimension is {cond.input_dim}.")
    cond._check_defined()
    from cpa_theory.maxgroups import refuse_max_groups

    refuse_max_groups(cond.layers, "the LP counter (numerics.lp_regions)")
    x0, d, r = win.center, cond.input_dim, float(win.radius)
    min_rho = WITNESS_MIN_RELATIVE_RADIUS * r
    eye = np.eye(d)
    G0 = np.vstack([eye, -eye])
    h0 = np.concatenate([x0 + r, r - x0])
    lps = 0
    # a cell: (G, h, witness centre, witness radius, A, c) with h_layer_input = A x + c on the cell
    cells = [(G0, h0, x0, r, eye, np.zeros(d))]
    for layer in cond.layers:
        bn, act = layer.bn, layer.activation
        t = act.breakpoints_array
        nxt = []
        for G, h, wc, wr, A, c in cells:
            lin, gap = layer.chart(A, c)  # the core's chart primitive
            normals, base = bn.gain[:, None] * lin, bn.gain * gap + bn.shift  # ẑ(x) = normals x + base
            pieces = [(G, h, wc, wr)]
            if t.size:
                norms = dual_norm(normals)
                resid = (normals @ x0 + base)[:, None] - t[None, :]
                cut = (window_slack(norms[:, None], resid, r) > 0) & (norms[:, None] > 0)  # C4 screen
                for i, k in zip(*np.nonzero(cut)):
                    a, off = normals[i], t[k] - base[i]
                    split = []
                    a_norm = float(np.linalg.norm(a))
                    for Gp, hp, cp, rp in pieces:
                        for sign in (1.0, -1.0):
                            G2 = np.vstack([Gp, sign * a])
                            h2 = np.append(hp, sign * off)
                            margin = sign * (off - a @ cp) / a_norm  # the old witness's distance into this side
                            if margin > min_rho:  # the old ball, shrunk to the new face, still certifies
                                split.append((G2, h2, cp, min(rp, margin)))
                                continue
                            lps += 1
                            ball = _chebyshev(G2, h2, r)
                            if ball is not None and ball[1] > min_rho:
                                split.append((G2, h2, ball[0], ball[1]))
                    pieces = split
                    if len(pieces) > max_regions:
                        raise RegionLimitError(f"more than max_regions={max_regions} cells; raise the limit or "
                                           "shrink the window.")
            for Gp, hp, cp, rp in pieces:
                z = normals @ cp + base
                piece = act.piece_index(z)
                slope = np.asarray(act.slopes)[piece]
                icpt = np.asarray(act.intercepts())[piece]
                nxt.append((Gp, hp, cp, rp, slope[:, None] * normals, slope * base + icpt))
        cells = nxt
        if len(cells) > max_regions:
            raise RegionLimitError(f"more than max_regions={max_regions} regions; raise the limit or shrink the window.")
    centres = np.array([cl[2] for cl in cells])
    radii = np.array([cl[3] for cl in cells])
    codes = cond.activation_code(centres)  # independent forward pass at every witness
    keys = {tuple(np.concatenate([cd[j] for cd in codes]).tolist()) for j in range(len(cells))}
    inside = np.all(np.abs(centres - x0) + radii[:, None] <= r + LP_FEASIBILITY_TOL * max(1.0, r), axis=1)
    certified = len(keys) == len(cells) and bool(np.all(inside)) and bool(np.all(radii > min_rho))
    return LPRegionCount(len(cells), certified, centres, radii, lps)
