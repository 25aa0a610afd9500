"""C1, C2, C3: train-mode BN of one first-layer neuron, symbolic d and B (THEORY §2).

Everything is built from the core formula ``cpa_theory.bn.bn_transform`` with the
batch mean and biased variance as *unevaluated* sums over a batch of symbolic
size B in symbolic dimension d, so every cancellation is derived, not built in.
"""

from __future__ import annotations

import sympy as sp

from cpa_theory.bn import bn_transform

from ._symbols import (SIZES, X, b, batch_mean, batch_value, beta, centroid, d, dot, eps, gamma,
                       j, l, scale, standardized, t, tau, train_bn_output, w, x)
from .obligation import Derivation, Obligation, Step

__all__ = ["OBLIGATIONS"]

query = lambda q: x[q]  # noqa: E731


def _c1(unbiased=False):
    def derive():
        zhat = train_bn_output(query, unbiased=unbiased)
        grad = sp.Derivative(zhat, b)
        steps = [Step("train-mode BN output with batch statistics (unevaluated sums over the batch)", sp.Eq(
                     sp.Symbol(r"\hat z"), zhat)),
                 Step("differentiate with respect to the raw bias b", grad),
                 Step("the mean and every batch value carry b once: ∂μ/∂b = (1/B)Σ_k 1 = 1, so ∂(z − μ)/∂b = 0 "
                      "and ∂σ²/∂b = 0", sp.diff(batch_mean(), b))]
        return Derivation(steps, {"dzhat/db": grad}, SIZES)
    return derive


def _c1_neg():
    def derive():
        rm, rv = sp.Symbol("m_run", real=True), sp.Symbol("v_run", positive=True)
        zhat = bn_transform(dot(w, query) + b, rm, rv, gamma, beta, eps, sqrt=sp.sqrt)
        steps = [Step("eval-mode BN with running statistics m, v (not the batch's)", zhat),
                 Step("∂ẑ/∂b = γ/√(v + ε): no cancellation", sp.diff(zhat, b))]
        return Derivation(steps, {"dzhat/db": sp.diff(zhat, b)}, SIZES)
    return derive


def _c2(unbiased=False):
    def derive():
        zhat = train_bn_output(query, unbiased=unbiased)
        closed = gamma * standardized(query, unbiased) + beta
        at_centroid = train_bn_output(lambda q: centroid(q), unbiased=unbiased) - beta
        steps = [Step("claim: ẑ(x) = γ u(x) + β with u(x) = wᵀ(x − x̄)/s", sp.Eq(sp.Symbol(r"\hat z"), closed)),
                 Step("difference, after Σ_k b = B b, distributivity and exchanging finite sums",
                      zhat - closed),
                 Step("hence ẑ − β vanishes exactly on wᵀ(x − x̄) = 0: at x = x̄", at_centroid)]
        return Derivation(steps, {"zhat - (gamma*u + beta)": zhat - closed, "zhat(xbar) - beta": at_centroid}, SIZES)
    return derive


def _c2_neg(point_name):
    def derive():
        if point_name == "origin":
            pt = lambda q: sp.Integer(0)  # noqa: E731
        else:
            m = sp.IndexedBase("m_run")
            pt = lambda q: m[q]  # noqa: E731
        goal = train_bn_output(pt) - beta
        return Derivation([Step(f"mutated claim: the reference hyperplane passes through the {point_name}", goal)],
                          {f"zhat({point_name}) - beta": goal}, SIZES)
    return derive


def _c3(mutated=False):
    def derive():
        tau_k = (t - beta) if mutated else tau()
        zhat = train_bn_output(query)
        u = standardized(query)
        s = scale()
        wn2 = sp.Sum(w[l] ** 2, (l, 1, d))
        # the point x̄ + (s τ / ‖w‖²) w, written per coordinate
        on_plane = dot(w, lambda q: s * tau_k * w[q] / wn2) - s * tau_k
        goals = {"zhat - t - gamma*(u - tau)": zhat - t - gamma * (u - tau_k)}
        steps = [Step("standardised offset τ_k = (t_k − β)/γ" if not mutated else "mutated offset τ = t − β (no /γ)",
                      tau_k),
                 Step("{ẑ = t_k} = {u = τ_k}: ẑ − t_k − γ(u − τ_k) vanishes identically", zhat - t - gamma * (u - tau_k))]
        if not mutated:
            steps += [Step("τ contains none of b, w, X: its derivatives vanish",
                           sp.Matrix([sp.diff(tau_k, b), sp.diff(tau_k, w[l]), sp.diff(tau_k, X[j, l])])),
                      Step("x̄ + (sτ/‖w‖₂²) w lies on wᵀ(x − x̄) = sτ: signed distance sτ/‖w‖₂ from x̄", on_plane),
                      Step("s² is the batch covariance quadratic form: z_j − μ = wᵀ(X_j − x̄)",
                           batch_value(j) - batch_mean() - dot(w, lambda q: X[j, q] - centroid(q)))]
            goals.update({"dtau/db": sp.diff(tau_k, b), "dtau/dw": sp.diff(tau_k, w[l]),
                          "dtau/dX": sp.diff(tau_k, X[j, l]), "point on H_k": on_plane,
                          "z_j - mu - w(X_j - xbar)": batch_value(j) - batch_mean() - dot(
                              w, lambda q: X[j, q] - centroid(q))})
        return Derivation(steps, goals, {**SIZES, j: (1, 2)})
    return derive


def _c3_unbiased_neg():
    def derive():
        goal = scale(unbiased=True) - scale(unbiased=False)
        return Derivation([Step("mutated claim: s is the same with the unbiased variance (÷(B−1))", goal)],
                          {"s_unbiased - s_biased": goal}, SIZES)
    return derive


_A = ("B >= 2 (batch size), d >= 1", "s = sqrt(sigma^2 + eps) > 0 (eps > 0)", "gamma != 0")

OBLIGATIONS = [
    Obligation("C1", "train-mode BN cancels the raw bias: dzhat/db = 0 for every x and every batch", _A, _c1(),
               family="bn_algebra"),
    Obligation("C1-neg", "eval-mode BN with running mean m != batch mean is bias independent (mutated)",
               ("running statistics m, v fixed",), _c1_neg(), negative=True, family="bn_algebra"),
    Obligation("C1-unbiased", "with the unbiased variance (divide by B-1) the raw bias still cancels", _A,
               _c1(unbiased=True), family="bn_algebra"),
    Obligation("C2", "zhat = gamma*u + beta with u = w.(x - xbar)/s: the reference hyperplane passes through xbar",
               _A, _c2(), family="bn_algebra"),
    Obligation("C2-unbiased", "C2 holds unchanged with the unbiased variance", _A, _c2(unbiased=True),
               family="bn_algebra"),
    Obligation("C2-neg", "the reference hyperplane passes through the origin (mutated)", _A, _c2_neg("origin"),
               negative=True, family="bn_algebra"),
    Obligation("C2-neg-running-mean", "the reference hyperplane passes through a running mean (mutated)", _A,
               _c2_neg("running mean"), negative=True, family="bn_algebra"),
    Obligation("C3", "switching sets {zhat = t_k} are {u = tau_k}, tau_k = (t_k - beta)/gamma free of b, w, batch; "
               "parallel to H_ref at signed distance s*tau_k/||w||_2", _A, _c3(), family="bn_algebra"),
    Obligation("C3-neg", "offset tau = t - beta without the division by gamma (mutated)", _A, _c3(mutated=True),
               negative=True, family="bn_algebra"),
    Obligation("C3-unbiased-neg", "s is unchanged by the unbiased variance estimator (mutated: s changes)", _A,
               _c3_unbiased_neg(), negative=True, family="bn_algebra"),
]
