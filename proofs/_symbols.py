"""Shared symbolic objects: sizes, the batch, one neuron, built from the core BN formula."""

from __future__ import annotations

import sympy as sp

from cpa_theory.bn import bn_transform, offset_formula

# sizes: symbolic dimension and batch size (the derivations never expand them)
B = sp.Symbol("B", integer=True, positive=True)
d = sp.Symbol("d", integer=True, positive=True)
j, k, l = sp.symbols("j k l", integer=True, positive=True)

X = sp.IndexedBase("X")  # batch: X[j, l], j = 1..B, l = 1..d
x = sp.IndexedBase("x")  # query point
w = sp.IndexedBase("w")  # weight row
b = sp.Symbol("b", real=True)  # raw bias
gamma = sp.Symbol("gamma", real=True, nonzero=True)
beta = sp.Symbol("beta", real=True)
eps = sp.Symbol("epsilon", positive=True)
t = sp.Symbol("t", real=True)  # a breakpoint

#: sizes drawn by the counterexample search (B >= 2 as THEORY requires)
SIZES = {B: (2, 3), d: (1, 2)}


def dot(wv, point, idx=l, dim=d):
    """wᵀ point as an unevaluated finite sum over the coordinates."""
    return sp.Sum(wv[idx] * point(idx), (idx, 1, dim))


def batch_value(row, wv=w, bias=b, batch=X, dim=d):
    """z_row = wᵀ X_row + b."""
    return dot(wv, lambda q: batch[row, q], dim=dim) + bias


def batch_mean(wv=w, bias=b, batch=X, size=B, dim=d):
    """μ = (1/B) Σ_k z_k, kept as an unevaluated sum."""
    return sp.Sum(batch_value(k, wv, bias, batch, dim), (k, 1, size)) / size


def batch_variance(wv=w, bias=b, batch=X, size=B, dim=d, unbiased=False):
    """σ² = (1/B) Σ_j (z_j − μ)² (biased, PyTorch train mode); unbiased divides by B − 1."""
    mu = batch_mean(wv, bias, batch, size, dim)
    total = sp.Sum((batch_value(j, wv, bias, batch, dim) - mu) ** 2, (j, 1, size))
    return total / (size - 1 if unbiased else size)


def centroid(q, batch=X, size=B):
    """x̄_q = (1/B) Σ_k X[k, q]."""
    return sp.Sum(batch[k, q], (k, 1, size)) / size


def train_bn_output(point, wv=w, bias=b, batch=X, size=B, dim=d, unbiased=False):
    """ẑ(point) from the core formula ``bn_transform`` with the batch's statistics."""
    z = dot(wv, point, dim=dim) + bias
    return bn_transform(z, batch_mean(wv, bias, batch, size, dim), batch_variance(wv, bias, batch, size, dim, unbiased),
                        gamma, beta, eps, sqrt=sp.sqrt)


def scale(unbiased=False):
    """s = √(σ² + ε)."""
    return sp.sqrt(batch_variance(unbiased=unbiased) + eps)


def standardized(point, unbiased=False):
    """u(point) = wᵀ(point − x̄)/s."""
    return dot(w, lambda q: point(q) - centroid(q)) / scale(unbiased)


def tau(t_=t):
    """τ = (t − β)/γ from the core ``offset_formula``."""
    return offset_formula(t_, beta, gamma)
