"""C10a–c proof obligations (proofs/conv_bn.py): proved, negatives refuted, counterexamples real."""

import numpy as np
import pytest
import sympy as sp

from cpa_theory.bn import BatchNorm
from cpa_theory.convnet import ConvNetwork
from cpa_theory.layers import BatchNormND, Conv
from proofs import conv_bn
from proofs.obligation import Obligation, Status

BY_CLAIM = {o.claim: o for o in conv_bn.OBLIGATIONS}


@pytest.mark.parametrize("claim", sorted(BY_CLAIM))
def test_c10_obligations(claim):
    o = BY_CLAIM[claim]
    r = o.check()
    assert r.ok, (claim, r.status, r.residuals)
    if o.negative:
        assert r.status is Status.REFUTED and r.counterexample is not None
    else:
        assert r.status is Status.PROVED


def test_every_positive_has_a_negative_control():
    pos = {o.claim for o in conv_bn.OBLIGATIONS if not o.negative}
    neg = {o.claim.split("-")[0] for o in conv_bn.OBLIGATIONS if o.negative}
    assert {p.split("-")[0] for p in pos} <= neg


def test_checker_refutes_a_wrong_normaliser():
    """Mutation: BN statistics divided by B instead of B·P (positions forgotten) — C10a must then fail."""
    def derive():
        mu_wrong = sp.Sum(conv_bn.z_batch(conv_bn.jj, conv_bn.pp), (conv_bn.jj, 1, conv_bn.B),
                          (conv_bn.pp, 1, conv_bn.P)) / conv_bn.B
        z = conv_bn.conv_at(conv_bn.query, conv_bn.p0) + conv_bn.b - mu_wrong
        from proofs.obligation import Derivation
        return Derivation([], {"d/db": sp.diff(z, conv_bn.b)}, conv_bn.SIZES)

    r = Obligation("C10a-mut", "wrong normaliser", (), derive).check()
    assert r.status is Status.REFUTED


def test_c10b_counterexample_is_real_in_the_numeric_layers():
    """The exact counterexample of C10b-neg, replayed through cpa_theory's conv + train-mode BN: ẑ_p(x̄) ≠ β."""
    cex = conv_bn.OBLIGATIONS[[o.claim for o in conv_bn.OBLIGATIONS].index("C10b-neg")].check().counterexample
    sizes, vals = cex["sizes"], {k: float(sp.Rational(v)) for k, v in cex["values"].items()}
    B, K, P, p0 = sizes["B"], sizes["K"], sizes["P"], sizes["p0"]
    L = max(P, p0) + K - 1  # the input length the counterexample's indices reach
    X = np.array([[vals.get(f"X[{j}, {i}]", 0.0) for i in range(1, L + 1)] for j in range(1, B + 1)])
    w = np.array([vals.get(f"w[{q}]", 0.0) for q in range(1, K + 1)])
    gamma, eps = vals.get("gamma", 1.0), vals.get("epsilon", 1e-5)
    beta = 0.0
    # positions 1..P of the valid conv over X; p0 may lie beyond P (the algebra does not care): use length L and
    # restrict the statistics to the first P positions by cropping the batch for conditioning
    Xs = X[:, :P + K - 1]
    net = ConvNetwork((1, Xs.shape[1]), (Conv(w[None, None, :]), BatchNormND(BatchNorm(1, "train", [gamma], [beta], eps))),
                      Xs[:, None, :])
    (_, caff), = net.condition().conditioned_bns()
    xbar = X.mean(axis=0)
    zp = gamma * (w @ xbar[p0 - 1:p0 - 1 + K] - w @ caff.bns[0].anchor) / caff.bns[0].scale[0] + beta
    assert abs(zp - beta) > 1e-6
    assert zp - beta == pytest.approx(float(sp.sympify(cex["value"])), rel=1e-9)
