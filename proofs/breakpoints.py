"""C8: K breakpoints give K parallel switching hyperplanes per BN neuron (THEORY §4).

With the C3 result H_k = {wᵀ(x − x̄) = s τ_k}, τ_k = (t_k − β)/γ: the defining
functions of H_k and H_k' differ by a constant (same normal w: parallel), the
signed distance of H_k from x̄ is sτ_k/‖w‖₂, consecutive hyperplanes are
s(t_{k+1} − t_k)/(|γ|‖w‖₂) apart, in the order of the breakpoints for γ > 0 and
reversed for γ < 0. Each H_k then obeys C4 on its own.
"""

from __future__ import annotations

import sympy as sp

from ._symbols import SIZES, beta, d, dot, gamma, l, tau, w, x
from .obligation import Derivation, Obligation, Step

__all__ = ["OBLIGATIONS"]

tk = sp.Symbol("t_k", real=True)
gap = sp.Symbol("Delta", positive=True)  # t_{k+1} − t_k > 0 (strictly increasing breakpoints)
s = sp.Symbol("s", positive=True)
xbar = sp.IndexedBase("xbar")


def _spacing(variant):
    def derive():
        norm_w = sp.sqrt(sp.Sum(w[l] ** 2, (l, 1, d)))
        lhs = dot(w, lambda q: x[q] - xbar[q])
        h_k, h_next = lhs - s * tau(tk), lhs - s * tau(tk + gap)
        dist_k, dist_next = s * tau(tk) / norm_w, s * tau(tk + gap) / norm_w
        spacing = dist_next - dist_k
        claimed = {"exact": s * gap / (sp.Abs(gamma) * norm_w),
                   "ignores-sign": s * gap / (gamma * norm_w),
                   "ignores-scale": gap / (sp.Abs(gamma) * norm_w)}[variant]
        goals = {"|D_{k+1} - D_k| - claimed spacing": sp.Abs(spacing) - claimed}
        steps = [Step("H_k: wᵀ(x − x̄) − sτ_k = 0; H_{k+1} with t_{k+1} = t_k + Δ, Δ > 0", h_next),
                 Step("signed distances from x̄ (C3): D_k = sτ_k/‖w‖₂", dist_k),
                 Step("claimed spacing", claimed)]
        if variant == "exact":
            goals.update({
                "defining functions differ by a constant (parallel)": (h_k - h_next) - s * (tau(tk + gap) - tau(tk)),
                "signed spacing - s*Delta/(gamma*||w||)": spacing - s * gap / (gamma * norm_w),
                "order: sign(D_{k+1} - D_k) - sign(gamma)": sp.sign(spacing) - sp.sign(gamma),
                "tau_k is free of beta's sign pattern: tau_k*gamma + beta - t_k": tau(tk) * gamma + beta - tk,
            })
            steps.insert(2, Step("H_k − H_{k+1} is the constant s(τ_{k+1} − τ_k): same normal w", h_k - h_next))
            steps.append(Step("order follows sign(γ): increasing for γ > 0, reversed for γ < 0",
                              sp.sign(sp.simplify(spacing))))
        return Derivation(steps, goals, SIZES)
    return derive


_A = ("t_1 < ... < t_K (Delta > 0)", "s > 0", "gamma != 0", "w != 0")

OBLIGATIONS = [
    Obligation("C8", "K breakpoints give K parallel hyperplanes u = tau_k, consecutive ones "
               "s*(t_{k+1} - t_k)/(|gamma|*||w||_2) apart, ordered by sign(gamma)", _A, _spacing("exact"),
               family="breakpoints"),
    Obligation("C8-neg", "mutated: spacing s*(t_{k+1} - t_k)/(gamma*||w||_2) (ignores the sign of gamma)", _A,
               _spacing("ignores-sign"), negative=True, family="breakpoints"),
    Obligation("C8-neg-scale", "mutated: spacing (t_{k+1} - t_k)/(|gamma|*||w||_2) (ignores s)", _A,
               _spacing("ignores-scale"), negative=True, family="breakpoints"),
]
