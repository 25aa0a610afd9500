"""Batch-normalisation algebra (THEORY §1–2), written once for every layer.

Training-time BN (PyTorch ``BatchNorm1d`` in train mode) for one neuron with
batch values z_j: μ = mean z_j, σ² = mean (z_j − μ)² (biased), and

    ẑ = γ (z − μ) / s + β,   s = √(σ² + ε).

Conditioned on the batch, μ and s are frozen numbers. For a layer with input h
and weight row w the batch mean of z = wᵀh + b is wᵀh̄ + b, so

    ẑ(h) = (γ / s) · wᵀ(h − h̄) + β                       (C1: b cancels)

and the switching set {ẑ = t_k} is wᵀ(h − h̄) = s·τ_k with the standardised
offset τ_k = (t_k − β)/γ (C3). Every layer is reduced to the *conditioned form*

    ẑ_i(h) = g_i · w_iᵀ(h − p) + e_i

with an anchor p (h̄ in train mode, 0 otherwise), a gain g and a shift e; the
switching offsets are c_ik = (t_k − e_i)/g_i, which in train mode is computed as
s_i·τ_ik so that β = t gives the offset 0 *exactly* (concurrency stays exact).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import BatchError, BatchNormError, DegenerateBatchNormError, NonFiniteError, ShapeError
from .inputs import as_float_array, check_number, short

__all__ = [
    "BatchNorm",
    "DEFAULT_EPS",
    "batch_statistics",
    "bn_scale",
    "standardized_offset",
    "bn_transform",
    "offset_formula",
    "standardized_coordinate",
    "ConditionedBN",
    "condition_bn",
]

DEFAULT_EPS = 1e-5
BN_MODES = ("train", "eval")


def _vector(x, n: int, what: str) -> np.ndarray:
    arr = as_float_array(x, f"{what} (a list of {n} numbers)", BatchNormError)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ShapeError(f"{what} has shape {arr.shape}; it needs one entry per neuron, shape ({n},).")
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(f"{what} contains NaN or inf; give finite numbers.")
    return arr


@dataclass(frozen=True)
class BatchNorm:
    """BN parameters of one layer of ``n`` neurons.

    ``mode="train"``: statistics come from the batch (conditioned on it).
    ``mode="eval"``: statistics are ``running_mean`` / ``running_var``.
    """

    num_features: int
    mode: str = "train"
    gamma: np.ndarray | None = None
    beta: np.ndarray | None = None
    eps: float = DEFAULT_EPS
    running_mean: np.ndarray | None = None
    running_var: np.ndarray | None = None

    def __post_init__(self):
        n = check_number(self.num_features, "BatchNorm num_features (the layer's neuron count)", BatchNormError,
                         integer=True, minimum=1)
        object.__setattr__(self, "num_features", n)
        if not isinstance(self.mode, str) or self.mode not in BN_MODES:
            raise BatchNormError(f"unknown BN mode {short(self.mode, 30)}; use 'train' or 'eval'.")
        gamma = np.ones(n) if self.gamma is None else _vector(self.gamma, n, "batchnorm.gamma")
        beta = np.zeros(n) if self.beta is None else _vector(self.beta, n, "batchnorm.beta")
        eps = check_number(self.eps, "batchnorm.eps", BatchNormError) if not isinstance(self.eps, float) else self.eps
        if not np.isfinite(eps) or eps < 0:
            raise BatchNormError(f"batchnorm.eps = {self.eps!r}; it must be finite and >= 0 (PyTorch default 1e-5).")
        object.__setattr__(self, "gamma", gamma)
        object.__setattr__(self, "beta", beta)
        object.__setattr__(self, "eps", eps)
        if self.mode == "eval":
            if self.running_mean is None or self.running_var is None:
                raise BatchNormError(
                    "eval-mode BN needs 'running_mean' and 'running_var'; add them, or use mode 'train' "
                    "with a batch."
                )
            rm = _vector(self.running_mean, n, "batchnorm.running_mean")
            rv = _vector(self.running_var, n, "batchnorm.running_var")
            if np.any(rv < 0):
                raise BatchNormError("batchnorm.running_var has negative entries; variances must be >= 0.")
            if np.any(rv + eps <= 0):
                raise DegenerateBatchNormError(
                    "eval-mode BN with running_var = 0 and eps = 0 divides by zero; set eps > 0."
                )
            object.__setattr__(self, "running_mean", rm)
            object.__setattr__(self, "running_var", rv)
        else:
            for name in ("running_mean", "running_var"):
                val = getattr(self, name)
                if val is not None:
                    object.__setattr__(self, name, _vector(val, n, f"batchnorm.{name}"))


def bn_transform(z, mean, var, gamma, beta, eps, sqrt=np.sqrt):
    """ẑ = γ (z − μ)/√(σ² + ε) + β: THE train/eval BN formula (numpy arrays or sympy expressions).

    ``proofs/`` derives C1–C3 from this very function by passing sympy objects and ``sqrt=sympy.sqrt``.
    """
    return gamma * (z - mean) / sqrt(var + eps) + beta


def offset_formula(t, beta, gamma):
    """τ = (t − β)/γ with no validation: numpy arrays or sympy expressions (see ``standardized_offset``)."""
    return (t - beta) / gamma


def batch_statistics(Z) -> tuple[np.ndarray, np.ndarray]:
    """Batch mean and *biased* variance of ``Z`` with shape ``(B, n)``, B >= 2."""
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2:
        raise ShapeError(f"batch values must have shape (B, n); got {Z.shape}.")
    if Z.shape[0] < 2:
        raise BatchError(
            f"train-mode BN needs a batch of at least 2 points (got {Z.shape[0]}); with one point the "
            "variance is 0 and BN is undefined. Give a larger batch or use eval mode."
        )
    mean = Z.mean(axis=0)
    var = np.mean((Z - mean) ** 2, axis=0)
    return mean, var


def bn_scale(var, eps, xp=np):
    """s = √(σ² + ε) (0 where σ² + ε = 0, which callers must report as undefined); ``xp`` numpy or jax.numpy."""
    if xp is np:
        var = as_float_array(var, "var", BatchNormError)
        eps = check_number(eps, "eps", BatchNormError) if not isinstance(eps, (float, np.floating)) else eps
    return xp.sqrt(var + eps)


def standardized_offset(t, beta, gamma):
    """τ = (t − β)/γ: the switching offset in batch-standardised units (C3).

    Depends on (t, β, γ) only. γ = 0 raises: the neuron is constant and has no
    switching set (``switching_hyperplanes`` reports it with status ``constant``).
    """
    t, beta = as_float_array(t, "t", BatchNormError), as_float_array(beta, "beta", BatchNormError)
    gamma = as_float_array(gamma, "gamma", BatchNormError)
    if np.any(gamma == 0):
        raise DegenerateBatchNormError(
            "γ = 0: the BN neuron is constant and has no switching hyperplane, so τ is undefined. "
            "Use switching_hyperplanes(), which reports such neurons with status 'constant', or set γ != 0."
        )
    return offset_formula(t, beta, gamma)


def standardized_coordinate(w, x, centroid, s):
    """u(x) = wᵀ(x − x̄)/s for ``w`` (d,), ``x`` (..., d)."""
    return (np.asarray(x, dtype=np.float64) - centroid) @ np.asarray(w, dtype=np.float64) / s


@dataclass(frozen=True)
class ConditionedBN:
    """A layer's pre-activation map in conditioned form ẑ = g · W(h − p) + e.

    Attributes (n neurons, m inputs):
        anchor: ``(m,)`` the point p (the batch centroid of the layer input in train mode).
        gain: ``(n,)`` g.  shift: ``(n,)`` e.
        scale: ``(n,)`` s = √(σ² + ε) in train mode, else None.
        undefined: ``(n,)`` bool, s = 0 (train mode, ε = 0, zero batch variance).
        mode: "train", "eval" or "none".
    """

    anchor: np.ndarray
    gain: np.ndarray
    shift: np.ndarray
    mode: str
    scale: np.ndarray | None = None
    undefined: np.ndarray = field(default=None)
    gamma: np.ndarray | None = None
    beta: np.ndarray | None = None
    zerr: np.ndarray | None = None  # (n,) bound on |g|·|W|·|p − p*|: the float anchor against the exact batch mean

    @property
    def z_error(self) -> np.ndarray:
        """``(n,)`` absolute error of ẑ caused by the float anchor: |g|·(|W| @ |p − p*|) with p* the exact batch
        centroid of the exact representations (0 outside train mode; set by ``Network.condition``)."""
        return np.zeros(len(self.gain)) if self.zerr is None else self.zerr

    def switching_offsets(self, breakpoints) -> tuple[np.ndarray, np.ndarray | None]:
        """Offsets c_ik with w_iᵀ(h − p) = c_ik on {ẑ_i = t_k}, and τ_ik in train mode.

        Neurons with g = 0 get offset 0 (their status says they are constant).
        Returns ``(offsets (n, K), tau (n, K) or None)``.
        """
        t = np.asarray(breakpoints, dtype=np.float64)[None, :]
        live = self.gain != 0
        safe = np.where(live, 1.0, 0.0)
        if self.mode == "train":
            gamma = np.where(self.gamma != 0, self.gamma, 1.0)[:, None]
            tau = offset_formula(t, self.beta[:, None], gamma)
            tau = np.where(live[:, None], tau, 0.0)
            scale = np.where(self.undefined, 0.0, self.scale)[:, None]
            return scale * tau, tau
        gain = np.where(live, self.gain, 1.0)[:, None]
        offsets = (t - self.shift[:, None]) / gain * safe[:, None]
        return offsets, None


def condition_bn(weight, bias, bn: BatchNorm | None, batch_inputs=None) -> ConditionedBN:
    """Freeze one layer's BN into the conditioned form.

    Args:
        weight: ``(n, m)``; bias: ``(n,)`` raw bias.
        bn: the layer's BN or None.
        batch_inputs: ``(B, m)`` the batch's representations at this layer's
            input (required in train mode).
    """
    n, m = weight.shape
    if bn is None:
        return ConditionedBN(np.zeros(m), np.ones(n), np.asarray(bias, float), "none", undefined=np.zeros(n, bool))
    if bn.mode == "eval":
        denom = np.sqrt(bn.running_var + bn.eps)
        gain = bn.gamma / denom
        shift = bn.beta + gain * (bias - bn.running_mean)
        return ConditionedBN(np.zeros(m), gain, shift, "eval", undefined=np.zeros(n, bool), gamma=bn.gamma, beta=bn.beta)
    if batch_inputs is None:
        raise BatchError("train-mode BN needs a batch; give 'batch' (B x input_dim, B >= 2) or use eval mode.")
    with np.errstate(over="ignore", invalid="ignore"):
        centroid, _ = batch_statistics(batch_inputs)
        centred = np.asarray(batch_inputs, dtype=np.float64) - centroid
        # Variance of z = W h + b over the batch, from centred inputs: b cancels here too.
        var = np.mean((centred @ weight.T) ** 2, axis=0)
    if not (np.all(np.isfinite(centroid)) and np.all(np.isfinite(var))):
        bad = np.flatnonzero(~np.isfinite(var)).tolist() or "all"
        raise NonFiniteError(f"train-mode BN statistics overflow float64 (batch variance of neurons {bad} is inf: "
                             "weights or batch values too large, e.g. |w| ~ 1e160); rescale the weights or inputs.")
    scale = bn_scale(var, bn.eps)
    undefined = scale == 0
    gain = np.where(undefined, 0.0, bn.gamma / np.where(undefined, 1.0, scale))
    return ConditionedBN(centroid, gain, bn.beta.copy(), "train", scale=scale, undefined=undefined, gamma=bn.gamma, beta=bn.beta)
