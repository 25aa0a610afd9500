"""Training a small MLP with and without training-time BN in JAX (optax), with checkpoints as core networks.

The forward pass uses the core's BN formula (``cpa_theory.bn.bn_transform`` with ``sqrt=jnp.sqrt``) and
the core's activations (``CPAActivation.__call__`` with ``xp=jnp``), so the function that is trained is the
function whose partition the counter measures. PyTorch semantics: batch statistics with the biased
variance in the forward pass; running statistics updated with momentum 0.1 and the unbiased variance.

A checkpoint converts to three core networks (:func:`checkpoint_networks`): the BN model in train mode
conditioned on a real batch, the BN model in eval mode (running statistics), and the model trained
without BN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cpa_theory.activations import activation_from_spec, identity
from cpa_theory.bn import DEFAULT_EPS, BatchNorm, bn_transform
from cpa_theory.network import Layer, Network

__all__ = ["TrainConfig", "Checkpoint", "init_mlp", "train", "checkpoint_networks"]

MOMENTUM = 0.1  # PyTorch BatchNorm1d default


@dataclass(frozen=True)
class TrainConfig:
    widths: tuple = (2, 16, 16, 2)  # input, hidden…, classes
    activation: object = "relu"
    batchnorm: bool = True
    batch_size: int = 32
    steps: int = 300
    learning_rate: float = 1e-2
    checkpoints: tuple = (0, 30, 100, 300)
    eps: float = DEFAULT_EPS


@dataclass(frozen=True)
class Checkpoint:
    step: int
    params: list  # per layer: dict W, b, gamma, beta (numpy float64)
    running: list  # per hidden layer: dict mean, var (numpy float64); empty without BN
    loss: float
    accuracy: float


def init_mlp(key, cfg: TrainConfig):
    """PyTorch-like init: W, b ~ U(±1/√fan_in); γ = 1, β = 0; running mean 0, var 1."""
    import jax
    import jax.numpy as jnp

    params, running = [], []
    dims = cfg.widths
    for i, (m, n) in enumerate(zip(dims[:-1], dims[1:])):
        kw, kb = jax.random.split(jax.random.fold_in(key, i))
        bound = 1.0 / np.sqrt(m)
        params.append({"W": jax.random.uniform(kw, (n, m), jnp.float64, -bound, bound),
                       "b": jax.random.uniform(kb, (n,), jnp.float64, -bound, bound),
                       "gamma": jnp.ones(n, jnp.float64), "beta": jnp.zeros(n, jnp.float64)})
        if i < len(dims) - 2 and cfg.batchnorm:
            running.append({"mean": jnp.zeros(n, jnp.float64), "var": jnp.ones(n, jnp.float64)})
    return params, running


def _forward_train(params, running, X, cfg: TrainConfig):
    """Logits with batch statistics, and the updated running statistics."""
    import jax.numpy as jnp

    act = activation_from_spec(cfg.activation)
    h, new_running = X, []
    for i, p in enumerate(params):
        z = h @ p["W"].T + p["b"]
        if i == len(params) - 1:
            return z, new_running
        if cfg.batchnorm:
            mu, var = z.mean(axis=0), z.var(axis=0)
            z = bn_transform(z, mu, var, p["gamma"], p["beta"], cfg.eps, sqrt=jnp.sqrt)
            B = X.shape[0]
            r = running[i]
            new_running.append({"mean": (1 - MOMENTUM) * r["mean"] + MOMENTUM * mu,
                                 "var": (1 - MOMENTUM) * r["var"] + MOMENTUM * var * B / (B - 1)})
        h = act(z, xp=jnp)
    raise AssertionError("unreachable")


def _loss(params, running, X, y, cfg):
    import jax
    import jax.numpy as jnp

    logits, new_running = _forward_train(params, running, X, cfg)
    logp = jax.nn.log_softmax(logits)
    loss = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
    return loss, (new_running, jnp.mean(jnp.argmax(logits, axis=1) == y))


def train(key, X, y, cfg: TrainConfig) -> list[Checkpoint]:
    """Adam on minibatches drawn (with an explicit key) from (X, y); returns the requested checkpoints."""
    import jax
    import jax.numpy as jnp
    import optax

    X = jnp.asarray(X, jnp.float64)
    y = jnp.asarray(y, jnp.int32)
    k_init, k_data = jax.random.split(key)
    params, running = init_mlp(k_init, cfg)
    opt = optax.adam(cfg.learning_rate)
    state = opt.init(params)

    @jax.jit
    def step(params, running, state, k):
        idx = jax.random.choice(k, X.shape[0], (cfg.batch_size,), replace=False)
        (loss, (new_running, acc)), grads = jax.value_and_grad(_loss, has_aux=True)(params, running, X[idx],
                                                                                    y[idx], cfg)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), new_running, state, loss, acc

    wanted = sorted(set(int(c) for c in cfg.checkpoints))
    out = []
    loss = acc = float("nan")
    for t in range(cfg.steps + 1):
        if t in wanted:
            full_loss, (_, full_acc) = _loss(params, running, X, y, cfg)  # whole-data batch statistics
            out.append(Checkpoint(t, jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params),
                                  jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), running),
                                  float(full_loss), float(full_acc)))
        if t == cfg.steps:
            break
        params, running, state, loss, acc = step(params, running, state, jax.random.fold_in(k_data, t))
    return out


def checkpoint_networks(ckpt: Checkpoint, cfg: TrainConfig, batch) -> dict[str, Network]:
    """Core networks of a checkpoint: ``train`` (conditioned on ``batch``) and ``eval`` for a BN model,
    ``plain`` for a model trained without BN."""
    act = activation_from_spec(cfg.activation)
    last = len(ckpt.params) - 1

    def build(mode):
        layers = []
        for i, p in enumerate(ckpt.params):
            bn = None
            if i < last and mode is not None:
                kw = {"running_mean": ckpt.running[i]["mean"], "running_var": ckpt.running[i]["var"]} \
                    if mode == "eval" else {}
                bn = BatchNorm(p["W"].shape[0], mode, p["gamma"], p["beta"], cfg.eps, **kw)
            layers.append(Layer(p["W"], p["b"], identity() if i == last else act, bn))
        return Network(cfg.widths[0], tuple(layers), np.asarray(batch, np.float64) if mode == "train" else None)

    if not cfg.batchnorm:
        return {"plain": build(None)}
    return {"train": build("train"), "eval": build("eval")}
