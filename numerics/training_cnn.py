"""Training a small CNN on 8×8 images with and without BatchNorm in JAX (optax); checkpoints as ConvNetworks.

The model (issue #14, item 5): Conv2d(1 → C, 3×3, padding 1) → [BatchNorm2d] → ReLU → AvgPool2d(2) →
Flatten → Linear(C·16 → H) → [BatchNorm1d] → ReLU → Linear(H → classes).

The forward pass is written here in JAX (``jax.lax.conv_general_dilated``) and normalises with the core's one
BN formula (``cpa_theory.bn.bn_transform`` with ``sqrt=jnp.sqrt``) and the core's activation
(``CPAActivation.__call__`` with ``xp=jnp``). PyTorch semantics as in :mod:`numerics.training`: BatchNorm2d's
statistics are over batch × positions, the forward pass uses the biased variance, running statistics are
updated with momentum 0.1 and the unbiased variance (n = batch × positions); PyTorch's default init.

:func:`checkpoint_convnets` converts a checkpoint into the project's own
:class:`cpa_theory.convnet.ConvNetwork` (train mode conditioned on a real batch, eval mode with running
statistics, or the model trained without BN) and *verifies* the conversion: the JAX forward and the
ConvNetwork's forward must agree in float64 to ``TORCH_AGREEMENT_ATOL`` (1e-10) on the batch (train mode: batch
statistics of that batch; eval mode: running statistics), otherwise :class:`cpa_theory.errors.CPAInternalError`
— so the counter measures exactly the trained function, and a wrong parameter layout fails loudly.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from cpa_theory.activations import activation_from_spec
from cpa_theory.bn import DEFAULT_EPS, BatchNorm, bn_transform
from cpa_theory.errors import CPAInternalError
from cpa_theory.tolerances import TORCH_AGREEMENT_ATOL

__all__ = ["CNNConfig", "CNNCheckpoint", "init_cnn", "forward", "train_cnn", "checkpoint_convnets",
           "checked_convnets", "conversion_error"]

MOMENTUM = 0.1  # PyTorch BatchNorm default


@dataclass(frozen=True)
class CNNConfig:
    channels: int = 4
    hidden: int = 16
    classes: int = 10
    image: int = 8  # square input side (one input channel); must be even (AvgPool2d(2))
    batchnorm: bool = True
    activation: str = "relu"
    batch_size: int = 64
    steps: int = 200
    learning_rate: float = 1e-2
    checkpoints: tuple = (0, 200)
    eps: float = DEFAULT_EPS

    @property
    def flat(self) -> int:
        return self.channels * (self.image // 2) ** 2


@dataclass(frozen=True)
class CNNCheckpoint:
    step: int
    params: dict  # conv_W (C,1,3,3), conv_b, bn1_gamma, bn1_beta, fc1_W (H, C·16), fc1_b, bn2_gamma, bn2_beta,
    #               fc2_W (classes, H), fc2_b — numpy float64
    running: dict  # bn1_mean, bn1_var (C,), bn2_mean, bn2_var (H,) — empty without BN
    loss: float  # training loss on the whole training set (batch statistics of the whole set)
    accuracy: float  # training accuracy, same forward
    test_accuracy: float  # held-out accuracy: eval mode (running statistics) for BN; the plain forward without


def init_cnn(key, cfg: CNNConfig):
    """PyTorch's default init: W, b ~ U(±1/√fan_in) (fan_in = 9 for the conv); γ = 1, β = 0; running mean 0,
    var 1. Returns ``(params, running)`` of float64 JAX arrays."""
    import jax
    import jax.numpy as jnp

    def uni(k, shape, fan_in):
        b = 1.0 / np.sqrt(fan_in)
        return jax.random.uniform(k, shape, jnp.float64, -b, b)

    ks = jax.random.split(key, 6)
    C, H = cfg.channels, cfg.hidden
    params = {"conv_W": uni(ks[0], (C, 1, 3, 3), 9), "conv_b": uni(ks[1], (C,), 9),
              "fc1_W": uni(ks[2], (H, cfg.flat), cfg.flat), "fc1_b": uni(ks[3], (H,), cfg.flat),
              "fc2_W": uni(ks[4], (cfg.classes, H), H), "fc2_b": uni(ks[5], (cfg.classes,), H)}
    running = {}
    if cfg.batchnorm:
        params.update(bn1_gamma=jnp.ones(C), bn1_beta=jnp.zeros(C), bn2_gamma=jnp.ones(H), bn2_beta=jnp.zeros(H))
        running = {"bn1_mean": jnp.zeros(C), "bn1_var": jnp.ones(C), "bn2_mean": jnp.zeros(H), "bn2_var": jnp.ones(H)}
    return params, running


def forward(params, running, X, cfg: CNNConfig, mode: str = "train"):
    """Logits ``(M, classes)`` of images ``X`` ``(M, 1, S, S)`` and the updated running statistics.

    ``mode``: "train" (batch statistics of X, over batch × positions for the conv BN) or "eval" (running
    statistics; returned unchanged). Without BN the mode is irrelevant."""
    import jax
    import jax.numpy as jnp

    act = activation_from_spec(cfg.activation)
    z = jax.lax.conv_general_dilated(X, params["conv_W"], (1, 1), [(1, 1), (1, 1)],
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                     precision=jax.lax.Precision.HIGHEST)
    z = z + params["conv_b"][None, :, None, None]
    new = {}

    def bn(z, name, axes):
        shape = [1] * z.ndim
        shape[1] = -1
        g, b = params[f"{name}_gamma"].reshape(shape), params[f"{name}_beta"].reshape(shape)
        if mode == "eval":
            mu, var = running[f"{name}_mean"], running[f"{name}_var"]
        else:
            mu, var = z.mean(axis=axes), z.var(axis=axes)
            n = z.size // z.shape[1]  # batch × positions
            new[f"{name}_mean"] = (1 - MOMENTUM) * running[f"{name}_mean"] + MOMENTUM * mu
            new[f"{name}_var"] = (1 - MOMENTUM) * running[f"{name}_var"] + MOMENTUM * var * n / (n - 1)
        return bn_transform(z, mu.reshape(shape), var.reshape(shape), g, b, cfg.eps, sqrt=jnp.sqrt)

    if cfg.batchnorm:
        z = bn(z, "bn1", (0, 2, 3))
    h = act(z, xp=jnp)
    M, C, S, _ = h.shape
    h = h.reshape(M, C, S // 2, 2, S // 2, 2).mean(axis=(3, 5))  # AvgPool2d(2)
    h = h.reshape(M, -1)  # Flatten (channel-major, as nn.Flatten)
    z = h @ params["fc1_W"].T + params["fc1_b"]
    if cfg.batchnorm:
        z = bn(z, "bn2", (0,))
    h = act(z, xp=jnp)
    logits = h @ params["fc2_W"].T + params["fc2_b"]
    return logits, (new if new else running)


def _loss(params, running, X, y, cfg, mode="train"):
    import jax
    import jax.numpy as jnp

    logits, new_running = forward(params, running, X, cfg, mode)
    logp = jax.nn.log_softmax(logits)
    loss = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
    return loss, (new_running, jnp.mean(jnp.argmax(logits, axis=1) == y))


@functools.lru_cache(maxsize=8)
def _jitted_init(cfg: CNNConfig):
    import jax

    return jax.jit(functools.partial(init_cnn, cfg=cfg))  # one compile instead of many eager dispatches


@functools.lru_cache(maxsize=16)
def _jitted_forward(cfg: CNNConfig, mode: str):
    import jax

    return jax.jit(lambda params, running, X: forward(params, running, X, cfg, mode)[0])


@functools.lru_cache(maxsize=8)
def _compiled(cfg: CNNConfig):
    """One jitted Adam step and one jitted evaluation per configuration (reused across seeds: one compile)."""
    import jax
    import optax

    opt = optax.adam(cfg.learning_rate)

    @jax.jit
    def step(params, running, state, X, y, k):
        idx = jax.random.choice(k, X.shape[0], (cfg.batch_size,), replace=False)
        (loss, (new_running, _)), grads = jax.value_and_grad(_loss, has_aux=True)(params, running, X[idx], y[idx],
                                                                                 cfg)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), new_running, state, loss

    @jax.jit
    def evaluate(params, running, X, y, Xt, yt):
        loss, (_, acc) = _loss(params, running, X, y, cfg, "train")
        _, (_, test_acc) = _loss(params, running, Xt, yt, cfg, "eval" if cfg.batchnorm else "train")
        return loss, acc, test_acc

    return opt, step, evaluate


def train_cnn(key, X, y, X_test, y_test, cfg: CNNConfig) -> list[CNNCheckpoint]:
    """Adam on minibatches drawn (explicit ``key``) from ``X`` ``(N, 1, S, S)``, labels ``y`` ``(N,)``; returns
    the checkpoints at ``cfg.checkpoints`` (step 0 = the initialisation)."""
    import jax
    import jax.numpy as jnp

    X, Xt = jnp.asarray(X, jnp.float64), jnp.asarray(X_test, jnp.float64)
    y, yt = jnp.asarray(y, jnp.int32), jnp.asarray(y_test, jnp.int32)
    k_init, k_data = jax.random.split(key)
    opt, step, evaluate = _compiled(cfg)
    params, running = _jitted_init(cfg)(k_init)
    state = opt.init(params)
    wanted = sorted(set(int(c) for c in cfg.checkpoints))
    out = []
    for t in range(max(wanted) + 1):
        if t in wanted:
            loss, acc, test_acc = evaluate(params, running, X, y, Xt, yt)
            as_np = functools.partial(jax.tree_util.tree_map, lambda a: np.asarray(a, np.float64))
            out.append(CNNCheckpoint(t, as_np(params), as_np(running), float(loss), float(acc), float(test_acc)))
        if t == max(wanted):
            break
        params, running, state, _ = step(params, running, state, X, y, jax.random.fold_in(k_data, t))
    return out


# -- conversion into the project's ConvNetwork --------------------------------------------------------------
def _conv_kernel(W) -> np.ndarray:
    """The conv kernel in the ConvNetwork layout (C_out, C_in, kh, kw): the JAX layout OIHW is the same."""
    return np.asarray(W, np.float64)


def _bn(ckpt, name, n, mode, eps):
    if mode == "train":
        return BatchNorm(n, "train", ckpt.params[f"{name}_gamma"], ckpt.params[f"{name}_beta"], eps)
    return BatchNorm(n, "eval", ckpt.params[f"{name}_gamma"], ckpt.params[f"{name}_beta"], eps,
                     running_mean=ckpt.running[f"{name}_mean"], running_var=ckpt.running[f"{name}_var"])


def _build(ckpt: CNNCheckpoint, cfg: CNNConfig, mode, batch):
    from cpa_theory.convnet import ConvNetwork
    from cpa_theory.layers import Activation, AvgPool, BatchNormND, Conv, Flatten, Linear

    p = ckpt.params
    act = Activation(activation_from_spec(cfg.activation))
    layers = [Conv(_conv_kernel(p["conv_W"]), p["conv_b"], padding=1)]
    if mode is not None:
        layers.append(BatchNormND(_bn(ckpt, "bn1", cfg.channels, mode, cfg.eps)))
    layers += [act, AvgPool(2), Flatten(), Linear(p["fc1_W"], p["fc1_b"])]
    if mode is not None:
        layers.append(BatchNormND(_bn(ckpt, "bn2", cfg.hidden, mode, cfg.eps)))
    layers += [act, Linear(p["fc2_W"], p["fc2_b"])]
    return ConvNetwork((1, cfg.image, cfg.image), tuple(layers), batch if mode == "train" else None)


def conversion_error(ckpt: CNNCheckpoint, cfg: CNNConfig, mode: str, net, X) -> float:
    """max |JAX forward − ConvNetwork forward| on images ``X`` (train mode: both with the batch statistics of X,
    the ConvNetwork conditioned on X; eval / plain: running statistics / none)."""
    import jax.numpy as jnp

    X = np.asarray(X, np.float64)
    logits = _jitted_forward(cfg, "eval" if mode == "eval" else "train")(ckpt.params, ckpt.running, jnp.asarray(X))
    cnet = net.condition(X) if mode == "train" else net.condition()
    return float(np.max(np.abs(cnet.forward(X).reshape(len(X), -1) - np.asarray(logits))))


def checkpoint_convnets(ckpt: CNNCheckpoint, cfg: CNNConfig, batch, verify: bool = True) -> dict:
    """The checkpoint as :class:`cpa_theory.convnet.ConvNetwork` s: ``{"train", "eval"}`` for a BN model (train
    mode conditioned on ``batch`` ``(B, 1, S, S)``, a real training batch), ``{"plain"}`` without BN.

    ``verify``: the JAX forward and the ConvNetwork forward must agree to 1e-10 on ``batch`` in every mode, else
    :class:`CPAInternalError` (the conversion does not give the trained function)."""
    return checked_convnets(ckpt, cfg, batch, verify)[0]


def checked_convnets(ckpt: CNNCheckpoint, cfg: CNNConfig, batch, verify: bool = True) -> tuple[dict, dict]:
    """:func:`checkpoint_convnets` and the measured conversion errors ``{mode: max |Δ logits|}`` (empty without
    ``verify``)."""
    batch = np.asarray(batch, np.float64)
    modes = ("train", "eval") if cfg.batchnorm else ("plain",)
    nets = {m: _build(ckpt, cfg, None if m == "plain" else m, batch) for m in modes}
    errors = {}
    if verify:
        for m, net in nets.items():
            err = errors[m] = conversion_error(ckpt, cfg, m, net, batch)
            if not err <= TORCH_AGREEMENT_ATOL:
                raise CPAInternalError(f"CNN conversion ({m} mode, step {ckpt.step}): the ConvNetwork differs from "
                                       f"the trained JAX forward by {err:.3g} > {TORCH_AGREEMENT_ATOL:g}; the "
                                       "parameter layout is wrong.")
    return nets, errors
