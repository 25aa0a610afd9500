"""C10a–c: train-mode BatchNorm after a 1-D convolution, symbolic batch size B, positions P, kernel K (THEORY §7).

One output channel with kernel w_1 … w_K and raw bias b on single-channel inputs ("valid" positions, no
padding): z_{j,p} = Σ_q w_q X[j, p+q−1] + b. BatchNorm2d (here its 1-D analogue) shares the statistics over
the batch AND the positions: μ = (1/(BP)) Σ_j Σ_p z_{j,p}, σ² = (1/(BP)) Σ_j Σ_p (z_{j,p} − μ)² (biased), and the
output at a query x and position p0 is the core formula ``cpa_theory.bn.bn_transform`` with these numbers.
The mean patch is m̄_q = (1/(BP)) Σ_j Σ_p X[j, p+q−1]. Every cancellation is derived by the finite-sum rules of
``proofs/obligation.py``; nothing is built in.
"""

from __future__ import annotations

import sympy as sp

from cpa_theory.bn import bn_transform

from ._symbols import beta, eps, gamma, t, tau
from .obligation import Derivation, Obligation, Step

__all__ = ["OBLIGATIONS"]

B = sp.Symbol("B", integer=True, positive=True)  # batch size
P = sp.Symbol("P", integer=True, positive=True)  # number of output positions
K = sp.Symbol("K", integer=True, positive=True)  # kernel width
p0 = sp.Symbol("p0", integer=True, positive=True)  # the neuron's position
jj, pp, qq = sp.symbols("j p q", integer=True, positive=True)
X = sp.IndexedBase("X")  # batch images X[j, i]
x = sp.IndexedBase("x")  # query image
w = sp.IndexedBase("w")  # kernel
b = sp.Symbol("b", real=True)
v_run = sp.Symbol("v_run", positive=True)
m_run = sp.Symbol("m_run", real=True)

SIZES = {B: (2, 3), P: (1, 2, 3), K: (1, 2), p0: (1, 2)}


def conv_at(image, pos):
    """Σ_q w_q image(pos + q − 1): the patch P_pos of ``image`` against the kernel."""
    return sp.Sum(w[qq] * image(pos + qq - 1), (qq, 1, K))


def z_batch(j_, p_):
    return conv_at(lambda i: X[j_, i], p_) + b


def mean_bp(expr_of_jp):
    """(1/(BP)) Σ_j Σ_p f(j, p): the statistics over batch × positions."""
    return sp.Sum(expr_of_jp(jj, pp), (jj, 1, B), (pp, 1, P)) / (B * P)


def mu():
    return mean_bp(z_batch)


def var(per_position=False):
    if per_position:  # mutated: BatchNorm1d-style statistics of position p0 over the batch only
        m = sp.Sum(z_batch(jj, p0), (jj, 1, B)) / B
        return sp.Sum((z_batch(jj, p0) - m) ** 2, (jj, 1, B)) / B
    m = mu()
    return mean_bp(lambda j_, p_: (z_batch(j_, p_) - m) ** 2)


def s(per_position=False):
    return sp.sqrt(var(per_position) + eps)


def zhat(image):
    """Train-mode BN2d output of the neuron at position p0 for a query image (core ``bn_transform``)."""
    return bn_transform(conv_at(image, p0) + b, mu(), var(), gamma, beta, eps, sqrt=sp.sqrt)


def mean_patch_dot():
    """wᵀ m̄ = Σ_q w_q (1/(BP)) Σ_j Σ_p X[j, p+q−1]."""
    return sp.Sum(w[qq] * sp.Sum(X[jj, pp + qq - 1], (jj, 1, B), (pp, 1, P)) / (B * P), (qq, 1, K))


def centroid(i):
    return sp.Sum(X[jj, i], (jj, 1, B)) / B


query = lambda i: x[i]  # noqa: E731


def _c10a():
    def derive():
        z = zhat(query)
        grad = sp.Derivative(z, b)
        steps = [Step("BN2d output at position p0, statistics over batch × positions (unevaluated sums)",
                      sp.Eq(sp.Symbol(r"\hat z_{p_0}"), z)),
                 Step("∂/∂b: every z_{j,p} carries b once, ∂μ/∂b = (1/(BP)) Σ_j Σ_p 1 = 1", sp.diff(mu(), b)),
                 Step("hence ∂(z − μ)/∂b = 0 and ∂σ²/∂b = 0", grad)]
        return Derivation(steps, {"dzhat_p/db": grad}, SIZES)
    return derive


def _c10a_neg():
    def derive():
        z = bn_transform(conv_at(query, p0) + b, m_run, v_run, gamma, beta, eps, sqrt=sp.sqrt)
        return Derivation([Step("eval-mode BN2d with running statistics: ∂ẑ/∂b = γ/√(v + ε)", sp.diff(z, b))],
                          {"dzhat_p/db": sp.diff(z, b)}, SIZES)
    return derive


def _c10b():
    def derive():
        z = zhat(query)
        sc = s()
        closed = gamma * (conv_at(query, p0) - mean_patch_dot()) / sc + beta
        at_centroid = zhat(centroid) - beta - gamma * (conv_at(centroid, p0) - mean_patch_dot()) / sc
        steps = [Step("claim: ẑ_p(x) = γ wᵀ(P_p x − m̄)/s + β with the mean patch m̄", sp.Eq(
                     sp.Symbol(r"\hat z_{p_0}"), closed)),
                 Step("difference after Σ_j Σ_p b = BP·b and exchanging finite sums", z - closed),
                 Step("so the reference set {ẑ_p = β} is {wᵀ(P_p x − m̄) = 0}; at x = x̄ the value is "
                      "γ wᵀ(P_p x̄ − m̄)/s: x̄ is on it iff wᵀ(P_p x̄ − m̄) = 0", at_centroid)]
        return Derivation(steps, {"zhat - (gamma w.(P x - mbar)/s + beta)": z - closed,
                                  "zhat(xbar) - beta - gamma w.(P xbar - mbar)/s": at_centroid}, SIZES)
    return derive


def _c10b_stationary():
    """Positive case: every batch image constant (X[j, i] = c_j) ⇒ P_p x̄ = m̄ ⇒ the reference passes x̄."""
    def derive():
        c = sp.IndexedBase("c")
        ksum = sp.Sum(w[qq], (qq, 1, K))
        # a constant image c·1 has the same patch at every position: wᵀP_p(c·1) = c Σ_q w_q (goal 1 checks it)
        patch = conv_at(lambda i: c[1], p0) - c[1] * ksum
        cz = lambda j_, p_: c[j_] * ksum + b  # noqa: E731
        m = sp.Sum(cz(jj, pp), (jj, 1, B), (pp, 1, P)) / (B * P)
        v = sp.Sum((cz(jj, pp) - m) ** 2, (jj, 1, B), (pp, 1, P)) / (B * P)
        cbar = sp.Sum(c[jj], (jj, 1, B)) / B
        goal = bn_transform(cbar * ksum + b, m, v, gamma, beta, eps, sqrt=sp.sqrt) - beta
        steps = [Step("a constant image has the same patch everywhere: wᵀP_p(c·1) − c Σ_q w_q", patch),
                 Step("constant batch images X[j, i] = c_j, so x̄ = c̄·1 and m̄ = c̄·1: ẑ_p(x̄) − β", goal)]
        return Derivation(steps, {"w.P_p(c 1) - c sum w": patch, "zhat_p(xbar) - beta (constant images)": goal},
                          SIZES)
    return derive


def _c10b_neg():
    def derive():
        goal = zhat(centroid) - beta
        return Derivation([Step("mutated claim (C2 verbatim): every position's reference set passes through x̄",
                                goal)], {"zhat_p(xbar) - beta": goal}, SIZES)
    return derive


def _c10c(per_position=False):
    def derive():
        z = zhat(query)
        sc = s(per_position)
        # a = γ P_pᵀw / s: aᵀx = (γ/s) Σ_q w_q x[p0 + q − 1];  c = (γ/s) wᵀm̄ + γ τ
        a_dot_x = gamma / sc * conv_at(query, p0)
        c = gamma / sc * mean_patch_dot() + gamma * tau()
        goal = z - t - (a_dot_x - c)
        what = ("mutated: s from position p0's batch values only (BatchNorm1d per position)" if per_position
                else "{ẑ_p = t_k} = {aᵀx = c} with a = γ P_pᵀw/s, c = γ wᵀm̄/s + γ τ_k")
        steps = [Step(what, sp.Eq(sp.Symbol("a^T x - c"), a_dot_x - c)),
                 Step("ẑ_p − t_k − (aᵀx − c) vanishes identically: the switching set is the hyperplane aᵀx = c, "
                      "so C4 (proved for any a ≠ 0) decides it: cuts int W iff |aᵀx0 − c| < r‖a‖₁", goal)]
        return Derivation(steps, {"zhat_p - t - (a.x - c)": goal}, SIZES)
    return derive


_A = ("B >= 2, P >= 1, K >= 1 (symbolic)", "valid 1-D convolution, one channel (zero padding: set the "
      "padded entries of x to 0)", "s = sqrt(sigma^2 + eps) > 0 (eps > 0)", "gamma != 0")

OBLIGATIONS = [
    Obligation("C10a", "BN2d (statistics over batch x positions) cancels the conv's raw bias: dzhat_p/db = 0", _A,
               _c10a(), family="conv_bn"),
    Obligation("C10a-neg", "eval-mode BN2d (running statistics) cancels the raw bias (mutated)",
               ("running statistics m, v fixed",), _c10a_neg(), negative=True, family="conv_bn"),
    Obligation("C10b", "zhat_p = gamma*w.(P_p x - mbar)/s + beta: the reference set of position p is "
               "{w.(P_p x - mbar) = 0}, through xbar iff w.(P_p xbar - mbar) = 0", _A, _c10b(), family="conv_bn"),
    Obligation("C10b-stationary", "constant batch images: every position's reference set passes through xbar",
               _A, _c10b_stationary(), family="conv_bn"),
    Obligation("C10b-neg", "every position's reference set passes through xbar in general (mutated: C2 verbatim)",
               _A, _c10b_neg(), negative=True, family="conv_bn"),
    Obligation("C10c", "switching sets are {a.x = c} with a = gamma*P_p^T w/s, so C4 holds per neuron (c, p)", _A,
               _c10c(), family="conv_bn"),
    Obligation("C10c-neg", "C10c with s from position p's batch values only (BatchNorm1d per position; mutated)",
               _A, _c10c(per_position=True), negative=True, family="conv_bn"),
]
