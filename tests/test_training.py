"""numerics.training and numerics.lp_regions against the core."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cpa_theory import hardtanh, relu
from cpa_theory.regions import count_regions
from cpa_theory.tolerances import FORWARD_AGREEMENT_ATOL
from numerics.lp_regions import count_regions_lp
from numerics.training import TrainConfig, _forward_train, checkpoint_networks, train

from helpers import random_bn_net


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    cfg = TrainConfig(widths=(3, 8, 6, 2), activation="hardtanh", steps=40, checkpoints=(0, 40), batch_size=16)
    return X, y, cfg, train(jax.random.key(1), X, y, cfg)


def test_training_reduces_loss_and_checkpoints_are_kept(trained):
    X, y, cfg, cks = trained
    assert [c.step for c in cks] == [0, 40]
    assert cks[1].loss < cks[0].loss


def test_trained_bn_model_in_train_mode_is_the_core_network_conditioned_on_the_batch(trained):
    # the function the optimiser saw on a batch = the core's realised function f_X at the batch points
    X, y, cfg, cks = trained
    batch = X[:32]
    ck = cks[1]
    params = jax.tree_util.tree_map(jnp.asarray, ck.params)
    running = jax.tree_util.tree_map(jnp.asarray, ck.running)
    logits, _ = _forward_train(params, running, jnp.asarray(batch), cfg)
    nets = checkpoint_networks(ck, cfg, batch)
    np.testing.assert_allclose(nets["train"].forward(batch), np.asarray(logits), atol=FORWARD_AGREEMENT_ATOL)
    # eval mode uses the running statistics: another function
    assert np.max(np.abs(nets["eval"].forward(batch) - np.asarray(logits))) > 1e-6


def test_running_statistics_follow_pytorch_semantics():
    cfg = TrainConfig(widths=(2, 4, 2), steps=0, checkpoints=(0,))
    X = jnp.asarray(np.random.default_rng(1).normal(size=(8, 2)))
    from numerics.training import init_mlp

    params, running = init_mlp(jax.random.key(0), cfg)
    _, new = _forward_train(params, running, X, cfg)
    z = X @ params[0]["W"].T + params[0]["b"]
    np.testing.assert_allclose(new[0]["mean"], 0.1 * z.mean(0), atol=1e-14)
    np.testing.assert_allclose(new[0]["var"], 0.9 + 0.1 * z.var(0, ddof=1), atol=1e-14)


@pytest.mark.parametrize("act", [relu, hardtanh])
def test_lp_counter_equals_the_vertex_counter(rng, act):
    for widths in ((2, 6, 5, 1), (3, 5, 4, 1)):
        net = random_bn_net(rng, widths=widths, gamma="random", beta="random", act=act)
        for x in net.batch[:2]:
            lp = count_regions_lp(net, x, 0.6)
            assert lp.certified and lp.regions == count_regions(net, x, 0.6).regions


def test_lp_counter_in_64_dimensions_is_certified_and_bounded(rng):
    net = random_bn_net(rng, widths=(64, 16, 8, 1), gamma="random", beta="random")
    res = count_regions_lp(net, net.batch[0], 0.01)
    assert res.certified and res.regions >= 1
    codes = net.condition().activation_code(res.witnesses)  # distinct regions
    assert len({tuple(np.concatenate([c[j] for c in codes])) for j in range(res.regions)}) == res.regions
    with pytest.raises(RuntimeError, match="max_regions"):
        count_regions_lp(net, net.batch[0], 5.0, max_regions=4)
