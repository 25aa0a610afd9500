"""Exact counts on affine slices (issue #14 item 3): slice = explicitly composed low-dimensional network."""

import jax
import numpy as np
import pytest

from cpa_theory.activations import identity, relu
from cpa_theory.bn import BatchNorm, batch_statistics
from cpa_theory.convnet import ConvNetwork
from cpa_theory.errors import ShapeError
from cpa_theory.layers import Activation, AvgPool, BatchNormND, Conv, Flatten, Linear, MaxPool, Residual
from cpa_theory.network import Layer, Network
from cpa_theory.regions import count_regions
from cpa_theory.slices import (count_on_slice, random_slice, slice_from_basis, slice_network,
                               slice_through_points)


def _mlp(rng, d=5, widths=(6, 5), B=12):
    layers, m = [], d
    for n in widths:
        bn = BatchNorm(n, "train", rng.normal(1, 0.3, n), rng.normal(0, 0.3, n))
        layers.append(Layer(rng.normal(size=(n, m)), rng.normal(size=n), relu(), bn))
        m = n
    layers.append(Layer(rng.normal(size=(2, m)), rng.normal(size=2), identity(), None))
    return Network(d, tuple(layers), rng.normal(size=(B, d)) + 1.0)


def _composed_by_hand(net, x0, V):
    """The slice network built independently: first layer W V, W x0 + b; train-mode BN replaced by eval-mode BN
    whose running statistics are the batch statistics of the ORIGINAL network (bn.py's eval formula)."""
    cond = net.condition()
    out = []
    for i, l in enumerate(net.layers):
        z = cond.batch_inputs(i) @ l.weight.T + l.bias  # the original batch at this layer
        bn = None
        if l.batchnorm is not None:
            mean, var = batch_statistics(z)
            bn = BatchNorm(l.out_dim, "eval", l.batchnorm.gamma, l.batchnorm.beta, l.batchnorm.eps, mean, var)
        W, b = (l.weight @ V, l.weight @ x0 + l.bias) if i == 0 else (l.weight, l.bias)
        out.append(Layer(W, b, l.activation, bn))
    return Network(V.shape[1], tuple(out))


def test_slice_count_equals_explicitly_composed_network(rng):
    net = _mlp(rng)
    sl = slice_through_points(net.batch[0], net.batch[3], net.batch[7], margin=0.2)
    res = count_on_slice(net, sl, keep_regions=True)
    ref = count_regions(_composed_by_hand(net, sl.x0, sl.V), np.zeros(2), sl.radius)
    assert res.certified and ref.certified
    assert res.regions == ref.regions > 10
    # every region's witness, mapped back into input space, has the region's activation code in the ORIGINAL
    # (train-mode conditioned) network
    cond = net.condition()
    for reg in res.region_list:
        code = cond.activation_code(sl.embed(reg.witness))
        assert tuple(tuple(c[0]) for c in code) == tuple(tuple(c) for c in reg.code)



@pytest.mark.parametrize("k", [1, 3, 4])
def test_random_k_dim_slice_equals_explicitly_composed_network(rng, k):
    """k = 1, 3, 4 (k = 2 above): the slice is an input layer of dimension k (cell engine for k = 4)."""
    net = _mlp(rng)
    sl = random_slice(net.batch.mean(axis=0), k, key=jax.random.key(k), radius=1.2)
    res = count_on_slice(net, sl)
    ref = count_regions(_composed_by_hand(net, sl.x0, sl.V), np.zeros(k), sl.radius)
    assert res.certified and ref.certified and res.complete
    assert res.regions == ref.regions > 3

def test_slice_points_and_forward(rng):
    net = _mlp(rng)
    p = net.batch[[1, 2, 5]]
    sl = slice_through_points(*p, margin=0.1)
    assert np.allclose(sl.embed(sl.points), p)  # the three points lie on the slice
    assert np.max(np.abs(sl.points)) * 1.1 == pytest.approx(sl.radius)
    t = rng.uniform(-sl.radius, sl.radius, size=(20, 2))
    np.testing.assert_allclose(slice_network(net, sl).forward(t), net.forward(sl.embed(t)), atol=1e-10)
    with pytest.raises(ShapeError, match="collinear"):
        slice_through_points(p[0], p[1], 2 * p[1] - p[0])


def test_random_slice_is_orthonormal_and_keyed(rng):
    x0 = rng.normal(size=7)
    a = random_slice(x0, 3, key=jax.random.key(1))
    b = random_slice(x0, 3, key=jax.random.key(1))
    c = random_slice(x0, 3, key=jax.random.key(2))
    np.testing.assert_allclose(a.V.T @ a.V, np.eye(3), atol=1e-12)
    assert np.array_equal(a.V, b.V) and not np.allclose(a.V, c.V)
    with pytest.raises(ShapeError):
        slice_from_basis(x0, rng.normal(size=(7, 5)))


def _full_kernel_pair(rng, L=6, C=5, H=4, B=10):
    """A conv net whose kernel covers the whole input, and the equivalent dense MLP (same batch)."""
    W1, b1 = rng.normal(size=(C, 1, L)), rng.normal(size=C)
    W2, b2 = rng.normal(size=(H, C)), rng.normal(size=H)
    W3, b3 = rng.normal(size=(1, H)), rng.normal(size=1)
    g1, be1, g2, be2 = rng.normal(1, .3, C), rng.normal(0, .3, C), rng.normal(1, .3, H), rng.normal(0, .3, H)
    batch = rng.normal(size=(B, L)) + 0.5
    conv = ConvNetwork((1, L), (Conv(W1, b1), BatchNormND(BatchNorm(C, "train", g1, be1)), Activation(relu()),
                                Flatten(), Linear(W2, b2), BatchNormND(BatchNorm(H, "train", g2, be2)),
                                Activation(relu()), Linear(W3, b3)), batch.reshape(B, 1, L))
    dense = Network(L, (Layer(W1[:, 0, :], b1, relu(), BatchNorm(C, "train", g1, be1)),
                        Layer(W2, b2, relu(), BatchNorm(H, "train", g2, be2)), Layer(W3, b3, identity())), batch)
    return conv, dense


def test_full_kernel_conv_equals_dense_mlp_count(rng):
    conv, dense = _full_kernel_pair(rng)
    x = rng.normal(size=(4, 6))
    np.testing.assert_allclose(conv.condition().forward(x).reshape(4, -1), dense.forward(x), atol=1e-12)
    for k, seed in ((2, 0), (3, 1)):
        sl = random_slice(dense.batch.mean(axis=0), k, key=jax.random.key(seed), radius=1.5)
        a, b = count_on_slice(conv, sl), count_on_slice(dense, sl)
        assert a.certified and b.certified and a.regions == b.regions > 1


def test_identity_slice_equals_direct_count(rng):
    conv, dense = _full_kernel_pair(rng, L=2)
    c = dense.batch[0]
    direct = count_regions(dense, c, 0.8)
    via = count_on_slice(conv, slice_from_basis(c, np.eye(2), 0.8))
    assert direct.regions == via.regions and direct.linear_regions == via.linear_regions


def test_small_cnn_slice_matches_conditioned_forward(rng):
    B = 8
    batch = rng.normal(size=(B, 1, 6, 6))
    net = ConvNetwork((1, 6, 6), (
        Conv(rng.normal(size=(2, 1, 3, 3)), rng.normal(size=2), padding=1),
        BatchNormND(BatchNorm(2, "train", [1.2, 0.7], [0.1, -0.2])), Activation(relu()), AvgPool(2),
        Conv(rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3)), BatchNormND(BatchNorm(3, "train")),
        Activation(relu()), Flatten(), Linear(rng.normal(size=(2, 3)))), batch)
    sl = slice_through_points(batch[0], batch[1], batch[2])
    sn = slice_network(net, sl)
    t = rng.uniform(-sl.radius, sl.radius, size=(30, 2))
    np.testing.assert_allclose(sn.forward(t), net.condition().forward(sl.embed(t)).reshape(30, -1), atol=1e-10)
    res = count_on_slice(net, sl)
    assert res.certified and res.regions > 1


def _maxpool_resnet(rng):
    B = 6
    batch = rng.normal(size=(B, 1, 4, 4))
    bn = lambda c: BatchNormND(BatchNorm(c, "train", rng.normal(1, .2, c), rng.normal(0, .2, c)))  # noqa: E731
    return ConvNetwork((1, 4, 4), (
        Conv(rng.normal(size=(2, 1, 3, 3)), rng.normal(size=2), padding=1), bn(2), Activation(relu()),
        Residual((Conv(rng.normal(size=(2, 2, 3, 3)), None, padding=1), Activation(relu()), MaxPool(3, 1, 1),
                  Conv(rng.normal(size=(2, 2, 3, 3)) * 0.5, None, padding=1))),
        MaxPool(2), Flatten(), Linear(rng.normal(size=(2, 8)), rng.normal(size=2))), batch)


def test_maxpool_slice_is_exact_on_the_window(rng):
    """MaxPool2d on slices (also inside a residual body, where the block input passes the pool as singleton
    groups): the slice network equals the conv network on the window; a 1-D count equals the runs of distinct
    ORIGINAL codes (activation pieces and pool argmaxes) on a fine grid; 2-D witnesses carry pairwise distinct
    original codes and every code seen on a grid is one of them."""
    _assert_slice_exact(_maxpool_resnet(rng), rng, key=5)


def _assert_slice_exact(net, rng, key):
    """(1) the slice network equals the conv network on the window; (2) on a 1-D slice the exact count equals the
    runs of distinct ORIGINAL codes on a fine grid; (3) on a 2-D slice the witnesses carry pairwise distinct
    original codes and every code seen on a grid is one of them."""
    cond = net.condition()
    sl = slice_through_points(*net.batch[:3].reshape(3, -1), margin=0.1)
    sn = slice_network(net, sl)
    t = rng.uniform(-sl.radius, sl.radius, size=(50, 2))
    ref = cond.forward(sl.embed(t)).reshape(50, -1)
    np.testing.assert_allclose(sn.forward(t), ref, atol=1e-9 * max(1.0, np.abs(ref).max()))
    line = random_slice(net.batch.mean(axis=0).ravel(), 1, key=jax.random.key(key), radius=2.0)
    n1 = count_on_slice(net, line)
    g = np.linspace(-2.0, 2.0, 40001)[:, None]
    codes = np.concatenate([c.reshape(len(g), -1) for c in cond.activation_code(line.embed(g))], axis=1)
    runs = 1 + int(np.count_nonzero(np.any(codes[1:] != codes[:-1], axis=1)))
    assert n1.certified and n1.regions == runs > 3
    sl = slice_from_basis(sl.x0, sl.V, 0.3 * sl.radius)  # a smaller window keeps the test fast
    res = count_on_slice(net, sl, keep_regions=True)
    wit = np.stack([r.witness for r in res.region_list])
    wcodes = _code_bytes(net, sl.embed(wit))
    assert res.certified and len(set(wcodes)) == len(wcodes) == res.regions > 10
    gg = np.linspace(-sl.radius, sl.radius, 120)
    grid = np.stack(np.meshgrid(gg, gg), -1).reshape(-1, 2)
    assert set(_code_bytes(net, sl.embed(grid))) <= set(wcodes)


def _resnet(rng, act2):
    from cpa_theory.activations import leaky_relu

    B = 6
    batch = rng.normal(size=(B, 1, 4, 4))
    bn = lambda c: BatchNormND(BatchNorm(c, "train", rng.normal(1, .2, c), rng.normal(0, .2, c)))  # noqa: E731
    return ConvNetwork((1, 4, 4), (
        Conv(rng.normal(size=(2, 1, 3, 3)), rng.normal(size=2), padding=1), bn(2), Activation(relu()),
        Residual((Conv(rng.normal(size=(2, 2, 3, 3)), None, padding=1), bn(2), Activation(leaky_relu(0.1)),
                  Conv(rng.normal(size=(2, 2, 3, 3)) * 0.5, None, padding=1))),
        Activation(relu()),
        Residual((Conv(rng.normal(size=(3, 2, 3, 3)), None, padding=1), bn(3), Activation(act2)),
                 (Conv(rng.normal(size=(3, 2, 1, 1))),)),
        AvgPool(2), Flatten(), Linear(rng.normal(size=(2, 12)), rng.normal(size=2))), batch)


def _code_bytes(net, X):
    codes = np.concatenate([c.reshape(len(X), -1) for c in net.condition().activation_code(X)], axis=1)
    return [row.tobytes() for row in codes.astype(np.int8)]


@pytest.mark.parametrize("act2", ["hardtanh", "relu"])
def test_residual_slice_is_exact_on_the_window(rng, act2):
    """Residual blocks on slices: block inputs are carried through the body's activations by neurons that never
    switch inside the window. (1) the slice network equals the conv network on the window; (2) on a 1-D slice
    the exact count equals the number of runs of distinct activation codes of the ORIGINAL network on a fine
    grid; (3) on a 2-D slice the regions' witnesses carry pairwise distinct original codes (no region is split
    by a carried neuron) and every code seen on a grid is one of them."""
    _assert_slice_exact(_resnet(rng, act2), rng, key=4)


def test_slice_density_mean_ci_and_parallel_equal_serial(rng):
    from concurrent.futures import ThreadPoolExecutor

    from cpa_theory.slices import slice_density

    net = _mlp(rng)
    centres = net.batch[:5]
    a = slice_density(net, centres, radius=0.5, key=jax.random.key(3))
    with ThreadPoolExecutor(2) as ex:
        b = slice_density(net, centres, radius=0.5, key=jax.random.key(3), executor=ex)
    assert np.array_equal(a["counts"], b["counts"]) and a["certified"]
    # each count is the count on that centre's slice
    keys = jax.random.split(jax.random.key(3), 5)
    assert a["counts"][2] == count_on_slice(net, random_slice(centres[2], 2, key=keys[2], radius=0.5)).regions
    lo, hi = a["ci"]
    assert a["mean"] == pytest.approx(a["counts"].mean()) and lo <= a["mean"] <= hi
    assert hi - lo > 0 or np.ptp(a["counts"]) == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bn2d_offsets_are_exact_at_a_constant_centroid_image_so_slices_through_it_have_no_slivers(seed):
    """Referee's case: a dyadic batch whose centroid image is exactly constant (0.5): by C10b every first-layer
    reference set passes exactly through x̄. The conditioned conv evaluated g·w·P x − g·w·m̄ and left ±1e-16
    at x̄, and a slice through x̄ then counted slivers of width ~1e-17 around it. Evaluated relative to the mean
    patch (g·w·(P x − m̄) + e) the offsets are exactly β and the slice's lines are exactly concurrent."""
    rng = np.random.default_rng(seed)
    E = rng.integers(-8, 9, size=(4, 1, 5, 5)) / 8.0
    X = np.concatenate([0.5 + E, 0.5 - E])  # 8 dyadic images, centroid image 0.5 everywhere, exactly
    xbar = X.mean(0)
    assert np.all(xbar == 0.5)
    net = ConvNetwork((1, 5, 5), (
        Conv(rng.normal(size=(3, 1, 2, 2)), rng.normal(size=3)), BatchNormND(BatchNorm(3, "train")),
        Activation(relu()), Flatten(), Linear(rng.normal(size=(4, 48)), rng.normal(size=4)), Activation(relu()),
        Linear(rng.normal(size=(1, 4)), np.zeros(1))), X)
    pre = net.condition().preactivations(xbar)[0]
    assert np.all(pre == 0.0)  # β = 0
    V, _ = np.linalg.qr(rng.normal(size=(25, 2)))
    sl = slice_from_basis(xbar.reshape(-1), V, 0.3)
    assert np.all(slice_network(net, sl).layers[0].bias == 0.0)
    res = count_on_slice(net, sl)
    assert res.certified and res.min_witness_radius > 1e-9
