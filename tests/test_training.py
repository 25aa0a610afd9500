"""numerics.training: the trained function is the core network the counter measures."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cpa_theory.tolerances import FORWARD_AGREEMENT_ATOL
from numerics.training import TrainConfig, _forward_train, checkpoint_networks, train


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
