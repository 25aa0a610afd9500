"""C4: the exact ℓ∞ window criterion, for symbolic dimension d (THEORY §2).

Derivation: (1) the box is a product, so its maximum is the iterated maximum over
one coordinate at a time; sympy maximises S + aδ over [−r, r] (S the rest of the
sum) and finds S + r|a| (cases a > 0, a < 0): by induction the maximum is r‖a‖₁ —
checked against the fully iterated maximum for every sign pattern in d ≤ 3, so
the formula is derived, not defined; (2) attained at δ = r·sign(a); (3) the box is connected, so aᵀx takes
every value of [aᵀx0 − r‖a‖₁, aᵀx0 + r‖a‖₁] on it and every value of the open
interval on int W (a ≠ 0): H meets W iff |aᵀx0 − c| ≤ r‖a‖₁, cuts int W iff
strict; (4) with a = w, c = wᵀx̄ + sτ and s > 0 this is |u(x0) − τ| ≤ r‖w‖₁/s.
(5) ℓp balls (C4-holder): Hölder's bound, attained at the dual vector (derived).
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


def _iterated_box_max(signs):
    """max over the box of Σ_l a_l δ_l, computed by maximising over one coordinate at a time (sympy)."""
    alphas = [sp.Symbol(f"alpha{i + 1}", positive=True) for i in range(len(signs))]
    deltas = [sp.Symbol(f"delta{i + 1}", real=True) for i in range(len(signs))]
    f = sum(s_ * al * dl for s_, al, dl in zip(signs, alphas, deltas))
    for dl in deltas:  # sup over a product set = iterated sup
        f = sp.maximum(f, dl, sp.Interval(-r, r))
    return f, [s_ * al for s_, al in zip(signs, alphas)]


def _criterion(claimed_norm):
    def derive():
        import itertools

        box = sp.Interval(-r, r)
        S = sp.Symbol("S", real=True)  # the part of the sum already maximised (a constant for this step)
        goals = {
            # induction step, DERIVED by sympy's maximisation: one more coordinate adds exactly r|a|
            "step: max_delta (S + a delta) - (S + r|a|), a > 0": sp.maximum(S + a_pos * delta, delta, box)
            - (S + r * sp.Abs(a_pos)),
            "step: max_delta (S + a delta) - (S + r|a|), a < 0": sp.maximum(S + a_neg * delta, delta, box)
            - (S + r * sp.Abs(a_neg)),
            "step: min_delta (S + a delta) - (S - r|a|), a > 0": sp.minimum(S + a_pos * delta, delta, box)
            - (S - r * sp.Abs(a_pos)),
            "step: min_delta (S + a delta) - (S - r|a|), a < 0": sp.minimum(S + a_neg * delta, delta, box)
            - (S - r * sp.Abs(a_neg)),
            "attained at delta = r sign(a)": a_real * r * sp.sign(a_real) - r * sp.Abs(a_real),
        }
        # the claimed half-width against the iterated maximum, every sign pattern in d = 1, 2, 3
        for n in (1, 2, 3):
            for signs in itertools.product((1, -1), repeat=n):
                f, avals = _iterated_box_max(signs)
                claimed = claimed_norm.subs(d, n).doit().subs({a[i + 1]: v for i, v in enumerate(avals)})
                goals[f"d = {n}, signs {signs}: iterated box max - claimed"] = f - claimed
        Q, tau_, s = sp.Symbol("Q", real=True), sp.Symbol("tau", real=True), sp.Symbol("s", positive=True)
        # BN form: |wᵀ(x0 − x̄) − sτ| ≤ r‖w‖₁  ⟺  |u − τ| ≤ r‖w‖₁/s  with u = Q/s (divide by s > 0)
        goals["|Q - s tau|/s - |Q/s - tau|"] = sp.Abs(Q - s * tau_) / s - sp.Abs(Q / s - tau_)
        steps = [Step("the box is a product of intervals [x0_l − r, x0_l + r]; the sup over a product set is the "
                      "iterated sup, so maximise aᵀδ one coordinate at a time"),
                 Step("one coordinate, symbolic maximisation over [−r, r] of S + aδ (S: the rest, a constant here)",
                      sp.Eq(sp.Symbol(r"\max_{|\delta|\le r}(S + a\delta)"), S + r * sp.Abs(a_real))),
                 Step("by induction over the coordinates: max over the box = Σ_l r|a_l| (checked against the fully "
                      "iterated maximum in d = 1, 2, 3 for every sign pattern)", sp.Sum(r * sp.Abs(a[l]), (l, 1, d))),
                 Step("extremes attained at the vertices x0 ± r·sign(a)", a_real * r * sp.sign(a_real)),
                 Step("claimed half-width of the range of aᵀx over W", claimed_norm),
                 Step("connected box ⇒ aᵀx covers the whole interval; open box ⇒ open interval (a ≠ 0): "
                      "H meets W iff |aᵀx0 − c| ≤ r‖a‖₁, cuts int W iff strict"),
                 Step("BN form (a = w, c = wᵀx̄ + sτ, s > 0): divide by s", sp.Eq(
                     sp.Abs(Q - s * tau_) / s, sp.Abs(Q / s - tau_)))]
        return Derivation(steps, goals, {d: (1, 2, 3)})
    return derive


def _holder():
    """ℓp ball, 1 < p < ∞: max_{‖δ‖_p ≤ r} aᵀδ = r‖a‖_q. Upper bound: Hölder's inequality aᵀδ ≤ ‖a‖_q‖δ‖_p.
    Attained at the dual vector δ*_i = r·sign(a_i)|a_i|^{q−1}/‖a‖_q^{q−1}: derived here with q − 1 = m > 0,
    p = (m + 1)/m, |a_i| = α_i > 0, N = ‖a‖_q (so N^{m+1} = Σ α_i^{m+1}), in d = 2 and 3."""
    m = sp.Symbol("m", positive=True)
    N = sp.Symbol("N", positive=True)
    p_ = (m + 1) / m
    goals = {}
    for n in (2, 3):
        al = [sp.Symbol(f"alpha{i + 1}", positive=True) for i in range(n)]
        T = sum(x ** (m + 1) for x in al)
        dstar = [r * x ** m / N ** m for x in al]
        norm_p = sp.powdenest(sum(x ** p_ for x in dstar), force=True)  # Σ |δ*_i|^p
        goals[f"d = {n}: N^(m+1) * sum |delta*|^p / r^p - sum alpha^(m+1)"] = norm_p * N ** (m + 1) / r ** p_ - T
        goals[f"d = {n}: N^m * a.delta* / r - sum alpha^(m+1)"] = sum(x * y for x, y in zip(al, dstar)) * N ** m / r - T
        goals[f"d = {n}: conjugate exponents 1/p + 1/q - 1"] = 1 / p_ + 1 / (m + 1) - 1
    steps = [Step("Hölder's inequality (cited): aᵀδ ≤ ‖a‖_q ‖δ‖_p ≤ r‖a‖_q on the ℓp ball, 1/p + 1/q = 1"),
             Step("dual vector δ*_i = r·sign(a_i)|a_i|^{q−1}/‖a‖_q^{q−1}; write q − 1 = m, p = (m + 1)/m"),
             Step("Σ|δ*_i|^p = r^p Σ α_i^{m+1}/N^{m+1} = r^p (definition of N = ‖a‖_q): δ* is on the sphere"),
             Step("aᵀδ* = r Σ α_i^{m+1}/N^m = r N^{m+1}/N^m = r‖a‖_q: the bound is attained"),
             Step("so the hyperplane aᵀx = c meets the ℓp ball iff |aᵀx0 − c| ≤ r‖a‖_q, cuts its interior iff strict")]
    return Derivation(steps, goals, {})


OBLIGATIONS = [
    Obligation("C4", "H = {a.x = c} meets the box W(x0, r) iff |a.x0 - c| <= r*||a||_1 (cuts int W iff strict); "
               "with BN: |u(x0) - tau| <= r*||w||_1/s",
               ("a != 0", "r > 0", "s > 0"), _criterion(r * sp.Sum(sp.Abs(a[l]), (l, 1, d))), family="window"),
    Obligation("C4-neg", "mutated: the half-width is r*||a||_2 (l2 norm in place of l1)",
               ("a != 0", "r > 0"), _criterion(r * sp.sqrt(sp.Sum(a[l] ** 2, (l, 1, d)))), negative=True,
               family="window"),
    Obligation("C4-holder", "l_p ball, 1 < p < inf: max over ||delta||_p <= r of a.delta = r*||a||_q (Hoelder bound, "
               "attained at the dual vector), so the criterion holds with the dual norm",
               ("a != 0", "r > 0", "1 < p < inf"), _holder, family="window"),
]
