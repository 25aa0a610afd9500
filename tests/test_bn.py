"""C1–C3 (THEORY §2) against direct batch computations, with negative controls."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cpa_theory import (BatchNorm, DegenerateBatchNormError, HyperplaneStatus, Layer, Network, hardtanh, identity,
                        relu, standardized_offset, switching_hyperplanes)
from cpa_theory.tolerances import BATCH_FORMULA_RTOL, TORCH_AGREEMENT_ATOL

from helpers import random_bn_net


def direct_bn_preactivation(W, b, gamma, beta, eps, batch, x):
    """PyTorch's train-mode recipe, written out: z = Wx + b on the batch, mean, biased var."""
    zb = batch @ W.T + b
    mu, var = zb.mean(0), zb.var(0)  # numpy var is biased (ddof=0)
    return gamma * (x @ W.T + b - mu) / np.sqrt(var + eps) + beta


def one_layer(W, b, bn, batch, act=relu):
    return Network(W.shape[1], (Layer(W, b, act(), bn),), batch)


def bias_sensitivity(mode, rng, d=3, n=5, B=8):
    """max |ẑ(x; b1) − ẑ(x; b2)| over query points for two raw biases (the C1 check)."""
    W = rng.normal(size=(n, d))
    batch = rng.normal(size=(B, d)) * 2 + 3
    x = rng.normal(size=(20, d)) * 3
    bn_kw = {}
    if mode == "eval":  # running statistics that are NOT the batch's
        bn_kw = dict(running_mean=rng.normal(size=n), running_var=rng.uniform(0.5, 2, n))
    gamma, beta = rng.uniform(0.5, 2, n), rng.normal(size=n)
    outs = []
    for b in (rng.normal(size=n) * 5, rng.normal(size=n) * 5):
        net = one_layer(W, b, BatchNorm(n, mode, gamma, beta, **bn_kw), batch)
        outs.append(net.condition().preactivations(x)[0])
    return np.max(np.abs(outs[0] - outs[1]))


# -- C1 ----------------------------------------------------------------------
def test_C1_train_mode_matches_direct_batch_computation(rng):
    d, n, B = 4, 7, 10
    W, b = rng.normal(size=(n, d)), rng.normal(size=n) * 3
    gamma, beta = rng.uniform(-2, 2, n), rng.normal(size=n)
    batch = rng.normal(size=(B, d)) + 5
    x = rng.normal(size=(30, d)) * 2 + 5
    ours = one_layer(W, b, BatchNorm(n, "train", gamma, beta), batch).condition().preactivations(x)[0]
    ref = direct_bn_preactivation(W, b, gamma, beta, 1e-5, batch, x)
    np.testing.assert_allclose(ours, ref, rtol=BATCH_FORMULA_RTOL, atol=BATCH_FORMULA_RTOL)


def test_C1_raw_bias_cancels_in_train_mode(rng):
    assert bias_sensitivity("train", rng) == 0.0  # the centred form never sees b


def test_C1_direct_formula_is_bias_free_up_to_rounding(rng):
    d, n, B = 3, 4, 6
    W, batch = rng.normal(size=(n, d)), rng.normal(size=(B, d))
    x = rng.normal(size=(10, d))
    a = direct_bn_preactivation(W, rng.normal(size=n), 1.0, 0.0, 1e-5, batch, x)
    c = direct_bn_preactivation(W, rng.normal(size=n) * 100, 1.0, 0.0, 1e-5, batch, x)
    np.testing.assert_allclose(a, c, atol=1e-9)


def test_C1_neg_eval_mode_with_foreign_running_stats_depends_on_bias(rng):
    # Negative control: the same check must reject eval-mode BN whose running mean is not the batch mean.
    assert bias_sensitivity("eval", rng) > 1e-3


@pytest.mark.parametrize("act", [relu, hardtanh])
def test_C1_C3_against_torch_batchnorm1d_train_mode(rng, act):
    torch = pytest.importorskip("torch")
    torch.set_default_dtype(torch.float64)
    net = random_bn_net(rng, widths=(3, 6, 5, 2), gamma="random", beta="random", batch_size=9, offset=4.0, act=act)
    tact = {relu: torch.nn.ReLU, hardtanh: torch.nn.Hardtanh}[act]
    mods = []
    for layer in net.layers:
        lin = torch.nn.Linear(layer.in_dim, layer.out_dim)
        lin.weight.data = torch.tensor(layer.weight)
        lin.bias.data = torch.tensor(layer.bias)
        mods.append(lin)
        if layer.batchnorm is not None:
            bn = torch.nn.BatchNorm1d(layer.out_dim, eps=layer.batchnorm.eps)
            bn.weight.data = torch.tensor(layer.batchnorm.gamma)
            bn.bias.data = torch.tensor(layer.batchnorm.beta)
            mods += [bn, tact()]
    model = torch.nn.Sequential(*mods).train()
    with torch.no_grad():
        ref = model(torch.tensor(net.batch)).numpy()
    # On the batch itself, train mode IS the conditioned function (statistics are the batch's).
    np.testing.assert_allclose(net.forward(net.batch), ref, atol=TORCH_AGREEMENT_ATOL)


# -- C2 ----------------------------------------------------------------------
def test_C2_reference_hyperplane_passes_through_the_centroid(rng):
    net = random_bn_net(rng, widths=(3, 8, 1), offset=50.0, gamma="random", beta="random")
    cond = net.condition()
    xbar = net.batch.mean(0)
    hp = switching_hyperplanes(cond).reference()
    np.testing.assert_allclose(hp.anchor, xbar, rtol=1e-15)
    assert np.all(hp.offsets == 0)
    # at the centroid every BN neuron sits at its β (the pre-activation of the reference point)
    np.testing.assert_allclose(cond.preactivations(xbar)[0][0], net.layers[0].batchnorm.beta, atol=1e-12)


def test_C2_neg_reference_is_not_through_origin_or_running_mean(rng):
    net = random_bn_net(rng, widths=(3, 8, 1), offset=50.0)
    hp = switching_hyperplanes(net.condition()).reference()
    for wrong in (np.zeros(3), net.batch.mean(0) + rng.normal(size=3)):
        resid = hp.normals @ (wrong - hp.anchor)
        assert np.max(np.abs(resid)) > 1e-3, "the check must reject a reference point other than the centroid"


# -- C3 ----------------------------------------------------------------------
def points_on_switching_sets(hp):
    """x = x̄ + c_ik w_i/‖w_i‖² lies on a_iᵀ(x − p) = c_ik."""
    norms2 = np.sum(hp.normals**2, axis=1)
    return hp.anchor[None, None, :] + (hp.offsets / norms2[:, None])[:, :, None] * hp.normals[:, None, :]


@given(seed=st.integers(0, 2**31), d=st.integers(1, 5), B=st.integers(2, 12),
       gamma=arrays(float, 4, elements=st.floats(0.2, 3.0)), sign=arrays(bool, 4),
       beta=arrays(float, 4, elements=st.floats(-2, 2)), shift=st.floats(-100, 100))
def test_C3_switching_sets_are_translates_at_s_tau(seed, d, B, gamma, sign, beta, shift):
    rng = np.random.default_rng(seed)
    gamma = np.where(sign, -gamma, gamma)
    W, b = rng.normal(size=(4, d)), rng.normal(size=4) * 10
    batch = rng.normal(size=(B, d)) * rng.uniform(0.1, 3) + shift
    net = one_layer(W, b, BatchNorm(4, "train", gamma, beta), batch, act=hardtanh)
    cond = net.condition()
    hp = switching_hyperplanes(cond)
    assert np.all(hp.status == HyperplaneStatus.REGULAR)
    # τ depends on (t, β, γ) only
    np.testing.assert_array_equal(hp.tau, standardized_offset(hp.breakpoints[None, :], beta[:, None], gamma[:, None]))
    # offsets are s·τ, normals are w (parallel to the reference hyperplane)
    np.testing.assert_allclose(hp.offsets, hp.scale[:, None] * hp.tau, rtol=1e-15)
    np.testing.assert_array_equal(hp.normals, W)
    # points built on H_k have ẑ = t_k
    pts = points_on_switching_sets(hp)
    for i in range(4):
        for k, t in enumerate(hp.breakpoints):
            z = cond.preactivations(pts[i, k])[0][0, i]
            assert z == pytest.approx(t, abs=1e-9 * (1 + abs(shift))), (i, k, z, t)


def test_C3_tau_is_free_of_bias_weights_and_batch(rng):
    d, n = 3, 5
    gamma, beta = rng.uniform(0.5, 2, n), rng.normal(size=n)
    taus = []
    for _ in range(3):
        net = one_layer(rng.normal(size=(n, d)), rng.normal(size=n), BatchNorm(n, "train", gamma, beta),
                        rng.normal(size=(7, d)) * 3, act=hardtanh)
        taus.append(switching_hyperplanes(net).tau)
    assert np.array_equal(taus[0], taus[1]) and np.array_equal(taus[1], taus[2])


def test_C3_neg_offset_without_division_by_gamma_misses_the_switching_set(rng):
    d, n = 2, 4
    gamma = np.full(n, 2.0)
    net = one_layer(rng.normal(size=(n, d)), rng.normal(size=n), BatchNorm(n, "train", gamma, np.full(n, 0.3)),
                    rng.normal(size=(6, d)))
    cond = net.condition()
    hp = switching_hyperplanes(cond)
    wrong = hp.scale[:, None] * (hp.breakpoints[None, :] - 0.3)  # τ without /γ
    norms2 = np.sum(hp.normals**2, axis=1)
    pts = hp.anchor + (wrong[:, 0] / norms2)[:, None] * hp.normals
    z = np.array([cond.preactivations(pts[i])[0][0, i] for i in range(n)])
    assert np.min(np.abs(z - 0.0)) > 0.1, "the mutated offset must put points off the breakpoint"


def test_C3_negative_gamma_flips_the_piece_not_the_hyperplane(rng):
    d, n = 2, 3
    W, batch = rng.normal(size=(n, d)), rng.normal(size=(8, d))
    plus = one_layer(W, np.zeros(n), BatchNorm(n, "train", np.ones(n), np.zeros(n)), batch).condition()
    minus = one_layer(W, np.zeros(n), BatchNorm(n, "train", -np.ones(n), np.zeros(n)), batch).condition()
    hp_p, hp_m = switching_hyperplanes(plus), switching_hyperplanes(minus)
    np.testing.assert_array_equal(hp_p.offsets, hp_m.offsets)
    x = batch.mean(0) + 0.5 * W[0]  # on the positive side of neuron 0's reference hyperplane
    assert plus.activation_code(x)[0][0, 0] == 1 and minus.activation_code(x)[0][0, 0] == 0


# -- degenerate neurons get named statuses, never NaN --------------------------
def test_degenerate_statuses_are_named(rng):
    d = 2
    W = rng.normal(size=(4, d))
    W[1] = 0.0  # w = 0
    gamma = np.array([1.0, 1.0, 0.0, 0.0])  # neurons 2, 3: γ = 0
    beta = np.array([0.0, 0.5, 0.5, 0.0])  # neuron 3 sits on the ReLU breakpoint
    net = one_layer(W, rng.normal(size=4), BatchNorm(4, "train", gamma, beta), rng.normal(size=(5, d)))
    hp = switching_hyperplanes(net)
    assert hp.status[:, 0].tolist() == [HyperplaneStatus.REGULAR, HyperplaneStatus.CONSTANT,
                                        HyperplaneStatus.CONSTANT, HyperplaneStatus.ON_BREAKPOINT]
    assert np.all(np.isfinite(hp.offsets)) and np.all(np.isfinite(hp.tau))


def test_zero_variance_with_eps_zero_is_bn_undefined(rng):
    batch = np.ones((4, 2))  # every batch point equal: σ² = 0
    net = one_layer(rng.normal(size=(3, 2)), np.zeros(3), BatchNorm(3, "train", eps=0.0), batch)
    cond = net.condition()
    hp = switching_hyperplanes(cond)
    assert np.all(hp.status == HyperplaneStatus.BN_UNDEFINED)
    assert np.all(np.isfinite(hp.offsets))
    with pytest.raises(DegenerateBatchNormError, match="eps > 0"):
        cond.forward(np.zeros(2))


def test_standardized_offset_gamma_zero_is_a_typed_error():
    with pytest.raises(DegenerateBatchNormError, match="constant"):
        standardized_offset(0.0, 0.0, 0.0)


def test_eval_mode_is_an_affine_map_with_running_statistics(rng):
    d, n = 3, 4
    W, b = rng.normal(size=(n, d)), rng.normal(size=n)
    gamma, beta, rm, rv = rng.uniform(0.5, 2, n), rng.normal(size=n), rng.normal(size=n), rng.uniform(0.5, 2, n)
    net = Network(d, (Layer(W, b, identity(), BatchNorm(n, "eval", gamma, beta, 1e-5, rm, rv)),))
    x = rng.normal(size=(5, d))
    np.testing.assert_allclose(net.forward(x), gamma * (x @ W.T + b - rm) / np.sqrt(rv + 1e-5) + beta, atol=1e-12)
