"""C9: transfer through depth inside a parent region (THEORY §5), symbolic widths m, d.

On a parent region P the layer input is h = A x + c (A: m × d). A layer-ℓ neuron
ẑ = γ wᵀ(h − h̄)/s + β then has normal A_Pᵀw in input space; its raw bias cancels
(C1 applied to the batch's representations h_j); if A is injective (AᵀA
invertible) and h̄ − c = A y lies in its range, x* = (AᵀA)⁻¹Aᵀ(h̄ − c) is the
unique pull-back of the centroid, the reference hyperplane passes through it,
and the C4 residual in input space equals the one in layer coordinates.
"""

from __future__ import annotations

import sympy as sp

from ._symbols import B, b, train_bn_output
from .obligation import Derivation, Obligation, Step

__all__ = ["OBLIGATIONS"]

m = sp.Symbol("m", integer=True, positive=True)
dd = sp.Symbol("d", integer=True, positive=True)
A = sp.MatrixSymbol("A", m, dd)
c = sp.MatrixSymbol("c", m, 1)
wv = sp.MatrixSymbol("w", m, 1)
xv = sp.MatrixSymbol("x", dd, 1)
x0 = sp.MatrixSymbol("x0", dd, 1)
y = sp.MatrixSymbol("y", dd, 1)
x1 = sp.MatrixSymbol("x1", dd, 1)
x2 = sp.MatrixSymbol("x2", dd, 1)
H = sp.IndexedBase("H")  # batch representations at layer ℓ's input: H[j, i], i = 1..m
hq = sp.IndexedBase("h")


hbar = sp.MatrixSymbol("hbar", m, 1)  # layer centroid (a free vector until the range assumption is used)
left_inverse = (A.T * A).I * A.T  # exists because A is injective (assumption)
pullback = left_inverse * (hbar - c)
in_range = {hbar: A * y + c}  # the assumption h̄ − c ∈ range(A), written h̄ = A y + c


def _c9():
    pre = wv.T * (A * xv + c - hbar)
    goals = {
        "normal: grad_x w.(A x + c - hbar) - A^T w": pre.diff(xv) - A.T * wv,
        "layer bias cancels: dzhat/db on representations": sp.Derivative(
            train_bn_output(lambda q: hq[q], batch=H, size=B, dim=m), b),
        "pull-back solves A x* + c = hbar": (A * pullback + c - hbar).subs(in_range),
        "reference hyperplane through x*": (wv.T * (A * pullback + c - hbar)).subs(in_range),
        "uniqueness: A x1 = A x2 => x1 = x2": left_inverse * A * (x1 - x2) - (x1 - x2),
        "C4 residual: (A^T w).(x0 - x*) = w.(A x0 + c - hbar)": ((A.T * wv).T * (x0 - pullback)
                                                                 - wv.T * (A * x0 + c - hbar)).subs(in_range),
    }
    steps = [Step("on P the layer input is h = A x + c; pre-activation wᵀ(h − h̄), gradient in x", pre.diff(xv)),
             Step("the layer's batch statistics come from the representations h_j: C1 applies verbatim"),
             Step("A injective ⇒ AᵀA invertible; least-squares pull-back of the centroid", pullback),
             Step("without the range assumption A x* + c − h̄ is (A(AᵀA)⁻¹Aᵀ − I)(h̄ − c), not 0 (see C9-neg-range); "
                  "with h̄ = A y + c it vanishes", A * pullback + c - hbar),
             Step("left inverse: A(x1 − x2) = 0 ⇒ x1 = x2 (x* unique)", left_inverse * A),
             Step("C4 in input space with normal Aᵀw: residual (Aᵀw)ᵀ(x0 − x*) − sτ = wᵀ(A x0 + c − h̄) − sτ"),
             Step("if Aᵀw = 0 the neuron is constant on P (no switching set): reported as status 'constant'")]
    return Derivation(steps, goals, {B: (2, 3), m: (1, 2), dd: (1, 2)})


def _c9_neg_range():
    goal = A * pullback + c - hbar
    steps = [Step("drop the assumption h̄ − c ∈ range(A): the least-squares pull-back", pullback),
             Step("mutated claim: it still maps onto the centroid", goal)]
    return Derivation(steps, {"A x* + c - hbar": goal}, {m: (2, 3), dd: (1,)})


def _c9_neg():
    """Drop injectivity: A = [1 0] (1 × 2). The pull-back of h̄ − c = 1 is a line, not a point."""
    A_low = sp.Matrix([[1, 0]])
    v = sp.Matrix([1])
    p1, p2 = sp.symbols("p1 p2", real=True)
    (sol,) = sp.linsolve((A_low, v), *sp.symbols("x_1 x_2", real=True))
    free = sorted(set().union(*[sp.sympify(e).free_symbols for e in sol]), key=str)
    sol = sp.Matrix(sol)
    pts = [sol.subs({f: p for f in free}) for p in (p1, p2)]
    goal = pts[0] - pts[1]
    steps = [Step("A = [1 0] is not injective; solutions of A x = 1", sol),
             Step("mutated claim: any two pull-backs coincide", goal)]
    return Derivation(steps, {"x*_1 - x*_2": goal}, {})


xs = sp.MatrixSymbol("xstar", dd, 1)  # least-squares pull-back
yp = sp.MatrixSymbol("yperp", m, 1)  # residual of the pull-back
s_, tau_ = sp.Symbol("s", positive=True), sp.Symbol("tau", real=True)


def _c9_general():
    """General case: h̄ − c = A x* + y⊥ (least squares: Aᵀy⊥ = 0), no range assumption."""
    decomposition = {hbar: A * xs + yp + c}
    lhs = (wv.T * (A * xv + c - hbar) - sp.Matrix([[s_ * tau_]])).subs(decomposition)
    delta = (wv.T * yp) / s_
    rhs = (wv.T * A * (xv - xs)) - sp.Matrix([[s_]]) * (sp.Matrix([[tau_]]) + delta)
    y_lsq = hbar - c - A * pullback  # the residual of the least-squares pull-back x* = (AᵀA)⁻¹Aᵀ(h̄ − c)
    goals = {
        "switching set: w.(A x + c - hbar) - s tau = w.A(x - x*) - s(tau + delta_w)": lhs - rhs,
        "normal equations: A^T (hbar - c - A x*_lsq) = 0": A.T * y_lsq,
        "range case: y_perp = 0 when hbar = A y + c": y_lsq.subs(in_range),
    }
    steps = [Step("least squares: x* = (AᵀA)⁻¹Aᵀ(h̄ − c), y⊥ = h̄ − c − A x*; normal equations Aᵀy⊥ = 0", pullback),
             Step("substitute h̄ = A x* + y⊥ + c into the switching set wᵀ(A x + c − h̄) = sτ"),
             Step("⇒ wᵀA(x − x*) = s(τ + δ_w), δ_w = wᵀy⊥/s: a translate of the hyperplane through x* at the "
                  "effective standardised offset τ + δ_w", delta),
             Step("exact transfer iff δ_w = 0 for every neuron, e.g. y⊥ = 0 (h̄ − c ∈ range A)"),
             Step("C4 inside P with the effective offset: |(Aᵀw)ᵀ(x0 − x*) − s(τ + δ_w)| ≤ r‖Aᵀw‖₁, the same as "
                  "|wᵀ(A x0 + c − h̄) − sτ| ≤ r‖Aᵀw‖₁")]
    return Derivation(steps, goals, {m: (2, 3), dd: (1, 2)})


OBLIGATIONS = [
    Obligation("C9-general", "general case (no range assumption): on P the layer switching set is "
               "w.A_P(x - x*_P) = s(tau + delta_w) with the least-squares pull-back x*_P and the transfer defect "
               "delta_w = w.y_perp/s; exact transfer iff delta_w = 0",
               ("A_P injective (A^T A invertible)", "s > 0", "gamma != 0"), _c9_general, family="depth"),
    Obligation("C9", "inside a parent region P with h = A_P x + c_P: normal A_P^T w, the layer's raw bias cancels, "
               "and for injective A_P with hbar - c_P in range(A_P) the reference hyperplane passes through the "
               "unique pull-back x*_P; C4 holds with w -> A_P^T w",
               ("A_P injective (A^T A invertible)", "hbar - c_P in range(A_P)", "B >= 2", "s > 0", "gamma != 0"),
               _c9, family="depth"),
    Obligation("C9-neg-range", "mutated: the pull-back maps onto the centroid even when hbar - c_P is not in "
               "range(A_P)", ("A_P injective",), _c9_neg_range, negative=True, family="depth"),
    Obligation("C9-neg", "mutated: the pull-back of the centroid is unique without injectivity (A_P = [1 0])",
               ("A_P = [1 0], not injective",), _c9_neg, negative=True, family="depth"),
]
