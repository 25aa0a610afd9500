"""C10 numerically: where BatchNorm2d's reference sets lie relative to the batch centroid (THEORY §7).

For a conv layer followed by train-mode BatchNorm2d, neuron (c, p) has ẑ_{c,p}(x) = γ_c w_cᵀ(P_p x − m̄)/s_c + β_c
(m̄ = the mean patch over batch × positions; it is the anchor :func:`cpa_theory.bn.condition_bn` returns when the
conditioning batch is the set of patches — see :mod:`cpa_theory.convnet`). Its reference set
{w_cᵀ(P_p x − m̄) = 0} passes at Euclidean distance |w_cᵀ(P_p x̄ − m̄)| / ‖P_pᵀ w_c‖₂ from the centroid image x̄:
0 for every position only when x̄ is spatially stationary at the kernel's scale (C10b).

``reference_distances`` computes these distances with operators only (‖P_pᵀw_c‖₂² is the convolution of the
all-ones image with w_c², zero padding included); ``torch_reference_check`` recomputes the same numbers from
``torch.nn.BatchNorm2d`` in train mode; ``digits_c10`` measures them on scikit-learn's 8×8 digits with a random
conv layer, with the constant-centroid negative control (batch ∪ its photometric negatives: x̄ constant).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bn import BatchNorm
from .convnet import ConvNetwork
from .layers import BatchNormND, Conv
from .tolerances import C10_ZERO_DISTANCE_RTOL

__all__ = ["ReferenceGeometry", "reference_distances", "torch_reference_check", "digits_c10"]


@dataclass(frozen=True)
class ReferenceGeometry:
    """Per neuron (c, p), arrays ``(C_out, *S_out)``: ``offset`` w_cᵀ(P_p x̄ − m̄) (signed), ``norm``
    ‖P_pᵀw_c‖₂, ``distance`` |offset| / norm (NaN where the norm is 0: the neuron sees only padding), plus
    ``mean_patch`` m̄ per group ``(groups, C_in/groups · prod k)`` and ``scale`` s_c ``(C_out,)``."""

    offset: np.ndarray
    norm: np.ndarray
    distance: np.ndarray
    mean_patch: np.ndarray
    scale: np.ndarray


def reference_distances(conv: Conv, bn: BatchNorm, batch) -> ReferenceGeometry:
    """C10b distances for ``conv`` followed by train-mode ``bn`` conditioned on ``batch`` ``(B, C_in, *S)``."""
    batch = np.asarray(batch, dtype=np.float64)
    net = ConvNetwork(batch.shape[1:], (conv, BatchNormND(bn)), batch)
    (_, caff), = net.condition().conditioned_bns()
    mbar = np.stack([c.anchor for c in caff.bns])  # (G, K): the mean patch, from bn.condition_bn
    scale = np.concatenate([c.scale for c in caff.bns])
    xbar = batch.mean(axis=0, keepdims=True)
    W = conv.flat_weight()  # (G, og, K)
    # w_cᵀ P_p x̄ − w_cᵀ m̄, per channel and position
    wp = conv.linear(xbar)[0]
    wm = np.einsum("gok,gk->go", W, mbar).reshape(-1)
    offset = wp - wm.reshape((-1,) + (1,) * conv.nd)
    sq = Conv(conv.weight ** 2, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    norm = np.sqrt(sq.linear(np.ones((1, *batch.shape[1:])))[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = np.where(norm > 0, np.abs(offset) / np.where(norm > 0, norm, 1.0), np.nan)
    return ReferenceGeometry(offset, norm, dist, mbar, scale)


def torch_reference_check(conv: Conv, bn: BatchNorm, batch) -> float:
    """Max |ours − torch| of the signed offsets w_cᵀ(P_p x̄ − m̄), torch's read off ``nn.BatchNorm2d`` in train mode:
    its output at x̄ with the batch statistics is ẑ = γ (w_cᵀP_p x̄ + b − μ_c)/s_c + β, so
    (ẑ − β)·s_c/γ_c = w_cᵀ(P_p x̄ − m̄). Needs torch, 2-D convolutions and γ ≠ 0."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.array(batch, dtype=np.float64))
    tc = torch.nn.Conv2d(conv.in_channels, conv.out_channels, tuple(conv.kernel), conv.stride, conv.padding,
                         conv.dilation, conv.groups).double()
    tb = torch.nn.BatchNorm2d(conv.out_channels, eps=bn.eps).double().train()
    with torch.no_grad():
        tc.weight.copy_(torch.from_numpy(conv.weight.copy()))
        tc.bias.copy_(torch.from_numpy(conv.bias.copy()))
        tb.weight.copy_(torch.from_numpy(bn.gamma.copy()))
        tb.bias.copy_(torch.from_numpy(bn.beta.copy()))
        z = tc(x)
        tb(z)  # train-mode forward on the batch (what training does)
        mean, var = z.mean(dim=(0, 2, 3)), z.var(dim=(0, 2, 3), unbiased=False)
        zbar = tc(x.mean(dim=0, keepdim=True))
        out = F.batch_norm(zbar, mean, var, tb.weight, tb.bias, False, 0.0, bn.eps)[0]
        s = torch.sqrt(var + bn.eps)
        theirs = ((out - tb.bias[:, None, None]) * (s / tb.weight)[:, None, None]).numpy()
    ours = reference_distances(conv, bn, batch).offset
    return float(np.max(np.abs(ours - theirs)))


def digits_c10(*, key, n_images: int = 128, channels: int = 4, kernel: int = 3, padding: int = 0,
               constant_centroid: bool = False) -> dict:
    """Measure C10b distances on scikit-learn digits (pixels /16) with a random conv layer (He-normal weights
    drawn with the JAX PRNG ``key``, random γ, β) and train-mode BatchNorm2d.

    ``constant_centroid=True`` is the negative control: the batch plus its negatives 1 − x has the constant
    centroid 0.5·1, so with ``padding=0`` every reference set passes through x̄ (distance 0 up to rounding).

    Returns a dict: ``distances`` (C, H', W'), ``median``, ``max``, ``min``, ``frac_nonzero`` (above
    ``C10_ZERO_DISTANCE_RTOL`` relative to the centroid's norm), ``torch_max_abs_diff`` (None without torch),
    ``centroid_norm``, ``n_batch``.
    """
    import jax

    from sklearn.datasets import load_digits

    imgs = load_digits().images[:n_images].astype(np.float64) / 16.0
    batch = imgs[:, None]
    if constant_centroid:
        batch = np.concatenate([batch, 1.0 - batch])
    k1, k2, k3, k4 = jax.random.split(key, 4)
    w = np.asarray(jax.random.normal(k1, (channels, 1, kernel, kernel)), np.float64) * np.sqrt(2.0 / kernel ** 2)
    b = np.asarray(jax.random.normal(k2, (channels,)), np.float64)
    gamma = 1.0 + 0.2 * np.asarray(jax.random.normal(k3, (channels,)), np.float64)
    beta = 0.2 * np.asarray(jax.random.normal(k4, (channels,)), np.float64)
    conv = Conv(w, b, 1, padding)
    bn = BatchNorm(channels, "train", gamma, beta)
    geo = reference_distances(conv, bn, batch)
    xbar = batch.mean(axis=0)
    scale = float(np.linalg.norm(xbar))
    try:
        diff = torch_reference_check(conv, bn, batch)
    except ImportError:
        diff = None
    dist = geo.distance
    return {"distances": dist, "median": float(np.nanmedian(dist)), "max": float(np.nanmax(dist)),
            "min": float(np.nanmin(dist)),
            "frac_nonzero": float(np.mean(dist > C10_ZERO_DISTANCE_RTOL * max(scale, 1.0))),
            "torch_max_abs_diff": diff, "centroid_norm": scale, "n_batch": int(batch.shape[0])}
