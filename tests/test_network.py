"""Networks: forward passes (numpy / JAX), train-mode statistics through depth, file format, C9 maps."""

from pathlib import Path

import numpy as np
import pytest

from cpa_theory import (HyperplaneStatus, Layer, Network, hardtanh, leaky_relu, load_network,
                        network_from_dict, network_to_dict, save_network, spline, switching_hyperplanes,
                        window_hits)
from cpa_theory.tolerances import FORWARD_AGREEMENT_ATOL

from helpers import random_bn_net

BENCH = Path(__file__).resolve().parents[2] / "shared" / "bench" / "nets"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("mode", ["train", "eval", None])
def test_numpy_and_jax_forward_agree_in_float64(rng, mode):
    import jax.numpy as jnp

    net = random_bn_net(rng, widths=(3, 16, 16, 8, 2), mode=mode, gamma="random", beta="random",
                        act=lambda: spline([-1.0, 0.0, 2.0], [0.0, -0.5, 1.0], 0.2, 1.5))
    cond = net.condition()
    x = rng.normal(size=(50, 3)) * 3
    ref = cond.forward(x)
    out = cond.forward(jnp.asarray(x), xp=jnp)
    assert out.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(out), ref, atol=FORWARD_AGREEMENT_ATOL, rtol=0)


def test_train_statistics_propagate_through_earlier_layers(rng):
    net = random_bn_net(rng, widths=(2, 5, 4, 1), gamma="random", beta="random")
    cond = net.condition()
    l0, l1 = net.layers[0], net.layers[1]
    # direct: batch through layer 0 (train BN on the batch), then layer-1 statistics on those values
    z0 = net.batch @ l0.weight.T + l0.bias
    h1 = np.maximum(l0.batchnorm.gamma * (z0 - z0.mean(0)) / np.sqrt(z0.var(0) + 1e-5) + l0.batchnorm.beta, 0)
    z1 = h1 @ l1.weight.T + l1.bias
    x = rng.normal(size=(6, 2))
    hx = np.maximum(l0.batchnorm.gamma * (x @ l0.weight.T + l0.bias - z0.mean(0)) / np.sqrt(z0.var(0) + 1e-5)
                    + l0.batchnorm.beta, 0)
    zx = l1.batchnorm.gamma * (hx @ l1.weight.T + l1.bias - z1.mean(0)) / np.sqrt(z1.var(0) + 1e-5) + l1.batchnorm.beta
    np.testing.assert_allclose(cond.preactivations(x)[1], zx, atol=1e-10)
    np.testing.assert_allclose(cond.batch_inputs(1), h1, atol=1e-12)


def test_conditioning_on_another_batch_changes_the_function(rng):
    net = random_bn_net(rng, widths=(2, 5, 1))
    x = rng.normal(size=(4, 2))
    other = net.condition(rng.normal(size=(12, 2)) + 3).forward(x)
    assert np.max(np.abs(net.forward(x) - other)) > 1e-3


def test_activation_code_reads_pieces_from_preactivations(rng):
    net = random_bn_net(rng, widths=(2, 6, 1), act=hardtanh)
    cond = net.condition()
    x = rng.normal(size=(40, 2))
    z = cond.preactivations(x)[0]
    code = cond.activation_code(x)[0]
    np.testing.assert_array_equal(code, (z >= -1).astype(int) + (z >= 1).astype(int))


def test_affine_map_reproduces_layer_inputs_on_the_region(rng):
    net = random_bn_net(rng, widths=(3, 8, 8, 6, 1), gamma="random", beta="random",
                        act=lambda: leaky_relu(0.2))
    cond = net.condition()
    x = rng.normal(size=3)
    for layer in range(4):
        A, c = cond.affine_map(x, layer)
        h = x[None]
        for l in cond.layers[:layer]:
            h = l.forward(h)
        np.testing.assert_allclose(A @ x + c, h[0], atol=1e-10)
        # still right at a nearby point with the same code
        y = x + 1e-7 * rng.normal(size=3)
        if all(np.array_equal(a, b) for a, b in zip(cond.activation_code(x), cond.activation_code(y))):
            hy = y[None]
            for l in cond.layers[:layer]:
                hy = l.forward(hy)
            np.testing.assert_allclose(A @ y + c, hy[0], atol=1e-10)


def test_C9_deep_switching_sets_pull_back_through_parent_region(rng):
    net = random_bn_net(rng, widths=(3, 8, 5, 1), gamma="random", beta="random")
    cond = net.condition()
    x0 = net.batch[0]
    A, c = cond.affine_map(x0, 1)
    hp = switching_hyperplanes(cond, 1, affine=(A, c))
    W1 = net.layers[1].weight
    np.testing.assert_allclose(hp.normals, W1 @ A, atol=1e-14)  # normal A_Pᵀ w
    # a point on neuron i's pulled-back switching set has ẑ_i = 0 (evaluated through the parent's affine map)
    for i in range(5):
        if hp.status[i, 0] != HyperplaneStatus.REGULAR:
            continue
        a = hp.normals[i]
        y = x0 + ((hp.offsets[i, 0] - a @ (x0 - hp.anchor)) / (a @ a)) * a
        hy = A @ y + c
        zi = cond.layers[1].preactivation(hy[None])[0, i]
        assert abs(zi) < 1e-9, (i, zi)


def test_C9_raw_bias_of_deep_layer_cancels(rng):
    net = random_bn_net(rng, widths=(2, 6, 6, 1), gamma="random", beta="random")
    layers = list(net.layers)
    layers[1] = Layer(layers[1].weight, layers[1].bias + 7.0, layers[1].activation, layers[1].batchnorm)
    moved = Network(2, tuple(layers), net.batch)
    x = rng.normal(size=(10, 2))
    assert np.array_equal(net.forward(x), moved.forward(x))


def test_C9_pullback_anchor_when_A_injective_and_rank_deficient_case(rng):
    net = random_bn_net(rng, widths=(2, 6, 4, 1))
    cond = net.condition()
    A, c = cond.affine_map(cond.batch.mean(0), 1)
    hp = switching_hyperplanes(cond, 1, affine=(A, c))
    assert hp.anchor_is_pullback == (np.linalg.matrix_rank(A) == 2 and
                                     np.allclose(A @ hp.anchor + c, cond.layers[1].bn.anchor, atol=1e-9))
    A_low = np.outer(np.ones(6), [1.0, 0.0])  # rank 1: not injective
    hp_low = switching_hyperplanes(cond, 1, affine=(A_low, c))
    assert not hp_low.anchor_is_pullback


def test_file_roundtrip_is_exact(rng, tmp_path):
    for mode in ("train", "eval", None):
        net = random_bn_net(rng, widths=(3, 5, 4, 2), mode=mode, gamma="random", beta="random",
                            act=lambda: spline([-1.0, 0.5], [0.0, 2.0], -0.3, 0.7))
        save_network(net, tmp_path / "net.json")
        again = load_network(tmp_path / "net.json")
        assert network_to_dict(again) == network_to_dict(net)
        x = rng.normal(size=(5, 3))
        np.testing.assert_array_equal(again.forward(x), net.forward(x))


def test_interface_example_loads():
    doc = {"format": "cpa-network/1", "input_dim": 2, "layers": [
        {"weight": [[1.0, -0.5], [0.3, 2.0], [0.0, 1.0]], "bias": [0.1, -0.2, 3.0],
         "batchnorm": {"mode": "train", "gamma": [1, 1, 1], "beta": [0, 0, 0], "eps": 1e-5}, "activation": "relu"},
        {"weight": [[1.0, 1.0, -1.0]], "bias": [0.0], "batchnorm": None, "activation": "identity"}],
        "batch": [[0.0, 0.1], [1.0, -0.2], [0.5, 0.5], [-0.3, 0.9]]}
    net = network_from_dict(doc)
    hp = switching_hyperplanes(net)
    np.testing.assert_allclose(hp.anchor, [0.3, 0.325])
    assert window_hits(hp, hp.anchor, 0.1)[0] == 3  # β = 0 ReLU: every hyperplane through x̄ (C5)


@pytest.mark.skipif(not BENCH.is_dir(), reason="shared bench networks not present beside the repository")
def test_bench_networks_load_and_run():
    for path in sorted(BENCH.glob("*.json")):
        net = load_network(path)
        out = net.forward(np.zeros((1, net.input_dim)))
        assert out.shape == (1, 1)


def test_examples_load():
    from cpa_theory.fileformat_v2 import load_any_network  # examples hold cpa-network/1 and /2 files

    for path in sorted(EXAMPLES.glob("*.json")):
        net = load_any_network(path)
        net.condition().forward(np.zeros((1, net.input_dim)))
