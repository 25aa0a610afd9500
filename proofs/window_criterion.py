"""C4: the exact ℓ∞ window criterion, for symbolic dimension d (THEORY §2).

Derivation: (1) per coordinate, max_{|δ| ≤ r} aδ = r|a| and min = −r|a|, by
symbolic maximisation in the cases a > 0, a < 0, attained at δ = r·sign(a);
(2) the box is a product and aᵀδ = Σ_l a_l δ_l is separable, so the maximum of
the sum is the sum of the maxima, r‖a‖₁; (3) the box is connected, so aᵀx takes
every value of [aᵀx0 − r‖a‖₁, aᵀx0 + r‖a‖₁] on it and every value of the open
interval on int W (a ≠ 0): H meets W iff |aᵀx0 − c| ≤ r‖a‖₁, cuts int W iff
strict; (4) with a = w, c = wᵀx̄ + sτ and s > 0 this is |u(x0) − τ| ≤ r‖w‖₁/s.
"""

from __future__ import annotations

import sympy as sp

from .obligation import Derivation, Obligation, Step

__all__ = ["OBLIGATIONS"]

d = sp.Symbol("d", integer=True, positive=True)
l = sp.Symbol("l", integer=True, positive=True)
a = sp.IndexedBase("a", real=True)
r = sp.Symbol("r", positive=True)
delta = sp.Symbol("delta", real=True)
a_pos = sp.Symbol("a", positive=True)
a_neg = sp.Symbol("a", negative=True)
a_real = sp.Symbol("a", real=True)


def _criterion(claimed_norm):
    def derive():
        box = sp.Interval(-r, r)
        per_coord = {
            "max a*delta (a>0) - r|a|": sp.maximum(a_pos * delta, delta, box) - r * sp.Abs(a_pos),
            "max a*delta (a<0) - r|a|": sp.maximum(a_neg * delta, delta, box) - r * sp.Abs(a_neg),
            "min a*delta (a>0) + r|a|": sp.minimum(a_pos * delta, delta, box) + r * sp.Abs(a_pos),
            "min a*delta (a<0) + r|a|": sp.minimum(a_neg * delta, delta, box) + r * sp.Abs(a_neg),
            "a * r*sign(a) - r|a|": a_real * r * sp.sign(a_real) - r * sp.Abs(a_real),
        }
        box_max = sp.Sum(r * sp.Abs(a[l]), (l, 1, d))  # Σ_l max_{δ_l} a_l δ_l (separable objective, product box)
        attained = sp.Sum(a[l] * r * sp.sign(a[l]), (l, 1, d)) - box_max
        goals = dict(per_coord)
        goals["vertex x0 + r*sign(a) attains the sum"] = attained
        goals["max over box - claimed"] = box_max - claimed_norm
        Q, tau_, s = sp.Symbol("Q", real=True), sp.Symbol("tau", real=True), sp.Symbol("s", positive=True)
        # BN form: |wᵀ(x0 − x̄) − sτ| ≤ r‖w‖₁  ⟺  |u − τ| ≤ r‖w‖₁/s  with u = Q/s (divide by s > 0)
        goals["|Q - s tau|/s - |Q/s - tau|"] = sp.Abs(Q - s * tau_) / s - sp.Abs(Q / s - tau_)
        steps = [Step("per coordinate, symbolic maximisation over [-r, r] (cases a > 0, a < 0; a = 0 gives 0)",
                      sp.Eq(sp.Symbol(r"\max_{|\delta|\le r} a\delta"), r * sp.Abs(a_real))),
                 Step("extremes attained at δ = ±r·sign(a)", a_real * r * sp.sign(a_real)),
                 Step("product box, separable objective: max over the box = Σ of per-coordinate maxima", box_max),
                 Step("claimed half-width of the range of aᵀx over W", claimed_norm),
                 Step("connected box ⇒ aᵀx covers the whole interval; open box ⇒ open interval (a ≠ 0): "
                      "H meets W iff |aᵀx0 − c| ≤ r‖a‖₁, cuts int W iff strict"),
                 Step("BN form (a = w, c = wᵀx̄ + sτ, s > 0): divide by s", sp.Eq(
                     sp.Abs(Q - s * tau_) / s, sp.Abs(Q / s - tau_)))]
        return Derivation(steps, goals, {d: (1, 2, 3)})
    return derive


OBLIGATIONS = [
    Obligation("C4", "H = {a.x = c} meets the box W(x0, r) iff |a.x0 - c| <= r*||a||_1 (cuts int W iff strict); "
               "with BN: |u(x0) - tau| <= r*||w||_1/s",
               ("a != 0", "r > 0", "s > 0"), _criterion(r * sp.Sum(sp.Abs(a[l]), (l, 1, d))), family="window"),
    Obligation("C4-neg", "mutated: the half-width is r*||a||_2 (l2 norm in place of l1)",
               ("a != 0", "r > 0"), _criterion(r * sp.sqrt(sp.Sum(a[l] ** 2, (l, 1, d)))), negative=True,
               family="window"),
]
