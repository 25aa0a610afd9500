"""Layers of convolutional networks as operators on batches (THEORY §7, issue #14).

Every layer acts on a batch of tensors ``(M, C, *spatial)`` (or ``(M, n)`` after ``Flatten``), in float64
numpy. A layer's linear part is an *operator*: ``linear(x)`` applies it without materialising a matrix, and
``as_matrix(input_shape)`` builds the dense matrix only when asked (small inputs, slices). Jacobians are
propagated through the operators by pushing tangent batches (the same ``linear``), so a deep network's local
affine map is computed without dense per-layer matrices.

Layers here carry *parameters only*; BatchNorm conditioning on a batch (statistics over batch × positions,
reusing ``cpa_theory.bn.condition_bn``) happens in :mod:`cpa_theory.convnet`.

Conventions follow PyTorch: conv weights ``(C_out, C_in / groups, *kernel)``, zero padding, cross-correlation;
pools use PyTorch's output-size rule (floor) and MaxPool pads with −inf.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import CPAActivation, activation_from_spec
from .bn import BatchNorm
from .errors import CPAInputError, NonFiniteError, ShapeError

__all__ = ["Conv", "Linear", "BatchNormND", "AvgPool", "AdaptiveAvgPool", "MaxPool", "Flatten", "Activation",
           "Residual", "UnsupportedLayerError", "window_view"]


class UnsupportedLayerError(CPAInputError):
    """A layer (or a layer option) that cpa_theory cannot represent as a CPA operator; the message names it."""


def _finite(arr, what: str) -> np.ndarray:
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(f"{what} contains NaN or inf; give finite values.")
    return arr


def _tuple(v, n: int, what: str) -> tuple[int, ...]:
    if isinstance(v, (int, np.integer)):
        v = (int(v),) * n
    v = tuple(int(a) for a in v)
    if len(v) != n:
        raise ShapeError(f"{what} has {len(v)} entries; the layer has {n} spatial dimensions.")
    least = 0 if what.endswith("padding") else 1  # kernels, strides, dilations and output sizes are ≥ 1
    if any(a < least for a in v):
        raise ShapeError(f"{what} is {list(v)}; every entry must be ≥ {least}.")
    return v


def _out_size(size: int, k: int, s: int, p: int, dil: int) -> int:
    out = (size + 2 * p - dil * (k - 1) - 1) // s + 1
    if out < 1:
        raise ShapeError(f"a window of {k} (dilation {dil}) does not fit an input of size {size} with padding {p}: "
                         "the output would be empty; use a smaller kernel or dilation, or more padding.")
    return out


def window_view(x, kernel, stride, padding, dilation, fill=0.0):
    """Sliding windows of ``x`` ``(M, C, *S)``: returns ``(M, C, *S_out, *kernel)`` (a copy-free view where
    possible). Padding is filled with ``fill`` (0 for convolutions, −inf for max-pooling)."""
    nd = len(kernel)
    pad = [(0, 0), (0, 0)] + [(p, p) for p in padding]
    xp = np.pad(x, pad, constant_values=fill) if any(padding) else x
    ext = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    for a, e in zip(xp.shape[2:], ext):
        if a < e:
            raise ShapeError(f"input spatial size {x.shape[2:]} (padded {xp.shape[2:]}) is smaller than the kernel "
                             f"extent {ext}; use a larger input or a smaller kernel.")
    v = np.lib.stride_tricks.sliding_window_view(xp, ext, axis=tuple(range(2, 2 + nd)))
    idx = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride) + tuple(
        slice(None, None, d) for d in dilation)
    return v[idx]


@dataclass(frozen=True)
class Conv:
    """Conv1d / Conv2d: z = W ⋆ h + b. ``weight`` ``(C_out, C_in/groups, *kernel)``; zero padding."""

    weight: np.ndarray
    bias: np.ndarray | None = None
    stride: tuple = 1
    padding: tuple = 0
    dilation: tuple = 1
    groups: int = 1

    def __post_init__(self):
        w = np.asarray(self.weight, dtype=np.float64)
        if w.ndim not in (3, 4):
            raise ShapeError(f"conv weight must be (C_out, C_in/groups, k) or (C_out, C_in/groups, kh, kw); got {w.shape}.")
        nd = w.ndim - 2
        object.__setattr__(self, "weight", _finite(w, "conv weight"))
        b = np.zeros(w.shape[0]) if self.bias is None else _finite(np.asarray(self.bias, dtype=np.float64), "conv bias")
        if b.shape != (w.shape[0],):
            raise ShapeError(f"conv bias has shape {b.shape}; it needs one entry per output channel ({w.shape[0]},).")
        object.__setattr__(self, "bias", b)
        for name in ("stride", "padding", "dilation"):
            object.__setattr__(self, name, _tuple(getattr(self, name), nd, f"conv {name}"))
        g = int(self.groups)
        if g < 1 or w.shape[0] % g:
            raise ShapeError(f"groups = {g} must divide the {w.shape[0]} output channels.")
        object.__setattr__(self, "groups", g)

    @property
    def nd(self) -> int:
        return self.weight.ndim - 2

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1] * self.groups

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def kernel(self) -> tuple:
        return self.weight.shape[2:]

    def out_shape(self, in_shape) -> tuple:
        c, *sp = in_shape
        if c != self.in_channels or len(sp) != self.nd:
            raise ShapeError(f"conv expects input (C={self.in_channels}, {self.nd} spatial dims); got {tuple(in_shape)}.")
        return (self.out_channels, *(_out_size(a, k, s, p, d) for a, k, s, p, d in
                                     zip(sp, self.kernel, self.stride, self.padding, self.dilation)))

    def patches(self, x) -> np.ndarray:
        """The patches P_p x: ``(M, groups, P, C_in/groups · prod(kernel))`` (PyTorch weight flattening order)."""
        x = np.asarray(x, dtype=np.float64)
        M, C = x.shape[:2]
        v = window_view(x, self.kernel, self.stride, self.padding, self.dilation)  # (M, C, *So, *k)
        so = v.shape[2:2 + self.nd]
        G, Cg = self.groups, C // self.groups
        v = v.reshape(M, G, Cg, *so, *self.kernel)
        nd = self.nd
        # (M, G, *So, Cg, *k): the patch index varies fastest over (Cg, *k) as in weight.reshape(C_out, -1)
        perm = (0, 1, *range(3, 3 + nd), 2, *range(3 + nd, 3 + 2 * nd))
        return v.transpose(perm).reshape(M, G, int(np.prod(so)), -1)

    def flat_weight(self) -> np.ndarray:
        """``(groups, C_out/groups, C_in/groups · prod(kernel))``: row w_c of output channel c."""
        return self.weight.reshape(self.groups, self.out_channels // self.groups, -1)

    def linear(self, x) -> np.ndarray:
        """W ⋆ x without bias, ``(M, C_in, *S)`` → ``(M, C_out, *S_out)``."""
        x = np.asarray(x, dtype=np.float64)
        out_shape = self.out_shape(x.shape[1:])
        P = self.patches(x)
        z = np.einsum("mgpk,gok->mgop", P, self.flat_weight(), optimize=True)
        return z.reshape(x.shape[0], *out_shape)

    def __call__(self, x) -> np.ndarray:
        z = self.linear(x)
        return z + self.bias.reshape((1, -1) + (1,) * self.nd)

    def as_matrix(self, in_shape) -> np.ndarray:
        """Dense ``(n_out, n_in)`` matrix of the linear part (for small inputs only)."""
        n = int(np.prod(in_shape))
        return self.linear(np.eye(n).reshape(n, *in_shape)).reshape(n, -1).T

    def jax_forward(self, x):
        """The same map in JAX (``jax.lax.conv_general_dilated``), for JAX-traced pipelines."""
        import jax.numpy as jnp

        return self.jax_linear(x) + jnp.asarray(self.bias).reshape((1, -1) + (1,) * self.nd)

    def jax_linear(self, x):
        """W ⋆ x without bias in JAX."""
        import jax
        import jax.numpy as jnp

        spec = ("NCH", "OIH", "NCH") if self.nd == 1 else ("NCHW", "OIHW", "NCHW")
        z = jax.lax.conv_general_dilated(jnp.asarray(x), jnp.asarray(self.weight), self.stride,
                                         [(p, p) for p in self.padding], rhs_dilation=self.dilation,
                                         dimension_numbers=spec, feature_group_count=self.groups,
                                         precision=jax.lax.Precision.HIGHEST)
        return z


@dataclass(frozen=True)
class Linear:
    """z = W h + b on flat features; ``weight`` out × in (nn.Linear)."""

    weight: np.ndarray
    bias: np.ndarray | None = None

    def __post_init__(self):
        w = np.asarray(self.weight, dtype=np.float64)
        if w.ndim != 2:
            raise ShapeError(f"linear weight must be 2-D (out x in); got {w.shape}.")
        b = np.zeros(w.shape[0]) if self.bias is None else _finite(np.asarray(self.bias, dtype=np.float64), "linear bias")
        if b.shape != (w.shape[0],):
            raise ShapeError(f"linear bias has shape {b.shape}; need ({w.shape[0]},).")
        object.__setattr__(self, "weight", _finite(w, "linear weight"))
        object.__setattr__(self, "bias", b)

    def out_shape(self, in_shape) -> tuple:
        if tuple(in_shape) != (self.weight.shape[1],):
            raise ShapeError(f"Linear expects flat input ({self.weight.shape[1]},); got {tuple(in_shape)} — add a "
                             "Flatten before it.")
        return (self.weight.shape[0],)

    def linear(self, x) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ self.weight.T

    def jax_linear(self, x):
        import jax.numpy as jnp

        return x @ jnp.asarray(self.weight).T

    def __call__(self, x) -> np.ndarray:
        return self.linear(x) + self.bias

    def as_matrix(self, in_shape) -> np.ndarray:
        self.out_shape(in_shape)
        return self.weight.copy()


@dataclass(frozen=True)
class BatchNormND:
    """BatchNorm over channel axis 1: BatchNorm1d on ``(M, n)`` (or ``(M, C, L)``) and BatchNorm2d on
    ``(M, C, H, W)``. Parameters are a :class:`cpa_theory.bn.BatchNorm` (train mode: conditioned on a batch,
    statistics over batch × positions; eval mode: running statistics)."""

    bn: BatchNorm

    def out_shape(self, in_shape) -> tuple:
        if in_shape[0] != self.bn.num_features:
            raise ShapeError(f"BatchNorm has {self.bn.num_features} features but its input has {in_shape[0]} channels.")
        return tuple(in_shape)


def _pool_out_shape(in_shape, kernel, stride, padding, dilation):
    c, *sp = in_shape
    if len(sp) != len(kernel):
        raise ShapeError(f"pool expects {len(kernel)} spatial dims; got input {tuple(in_shape)}.")
    return (c, *(_out_size(a, k, s, p, d) for a, k, s, p, d in zip(sp, kernel, stride, padding, dilation)))


@dataclass(frozen=True)
class AvgPool:
    """AvgPool1d/2d (count_include_pad=True, floor mode): a depthwise convolution with weights 1/|window|."""

    kernel: tuple
    stride: tuple | None = None
    padding: tuple = 0
    nd: int = 2

    def __post_init__(self):
        k = _tuple(self.kernel, self.nd, "pool kernel")
        object.__setattr__(self, "kernel", k)
        object.__setattr__(self, "stride", k if self.stride is None else _tuple(self.stride, self.nd, "pool stride"))
        object.__setattr__(self, "padding", _tuple(self.padding, self.nd, "pool padding"))

    def out_shape(self, in_shape) -> tuple:
        return _pool_out_shape(in_shape, self.kernel, self.stride, self.padding, (1,) * self.nd)

    def linear(self, x) -> np.ndarray:
        v = window_view(np.asarray(x, dtype=np.float64), self.kernel, self.stride, self.padding, (1,) * self.nd)
        return v.mean(axis=tuple(range(-self.nd, 0)))

    __call__ = linear

    def as_matrix(self, in_shape) -> np.ndarray:
        n = int(np.prod(in_shape))
        return self.linear(np.eye(n).reshape(n, *in_shape)).reshape(n, -1).T

    def jax_forward(self, x):
        import jax

        s = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 1, *self.kernel), (1, 1, *self.stride),
                                  [(0, 0), (0, 0), *[(p, p) for p in self.padding]])
        return s / float(np.prod(self.kernel))


def _adaptive_bins(n_in: int, n_out: int):
    # PyTorch: bin i covers [floor(i n_in / n_out), ceil((i+1) n_in / n_out)).
    return [(i * n_in // n_out, -((-(i + 1) * n_in) // n_out)) for i in range(n_out)]


@dataclass(frozen=True)
class AdaptiveAvgPool:
    """AdaptiveAvgPool1d/2d to ``output_size`` (PyTorch's bin rule); linear."""

    output_size: tuple
    nd: int = 2

    def __post_init__(self):
        object.__setattr__(self, "output_size", _tuple(self.output_size, self.nd, "adaptive pool output_size"))

    def out_shape(self, in_shape) -> tuple:
        return (in_shape[0], *self.output_size)

    def linear(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        for ax, n_out in enumerate(self.output_size):
            axis = 2 + ax
            bins = _adaptive_bins(x.shape[axis], n_out)
            x = np.stack([np.take(x, range(a, b), axis=axis).mean(axis=axis) for a, b in bins], axis=axis)
        return x

    def jax_forward(self, x):
        import jax.numpy as jnp

        for ax, n_out in enumerate(self.output_size):
            axis = 2 + ax
            bins = _adaptive_bins(x.shape[axis], n_out)
            x = jnp.stack([jnp.take(x, jnp.arange(a, b), axis=axis).mean(axis=axis) for a, b in bins], axis=axis)
        return x

    __call__ = linear

    def as_matrix(self, in_shape) -> np.ndarray:
        n = int(np.prod(in_shape))
        return self.linear(np.eye(n).reshape(n, *in_shape)).reshape(n, -1).T


@dataclass(frozen=True)
class MaxPool:
    """MaxPool1d/2d (floor mode, −inf padding). CPA: on the piece where entry j of a window is the maximum the
    output is z_j; switching sets are {z_i = z_j} for pairs of one window (THEORY §7)."""

    kernel: tuple
    stride: tuple | None = None
    padding: tuple = 0
    dilation: tuple = 1
    nd: int = 2

    def __post_init__(self):
        k = _tuple(self.kernel, self.nd, "pool kernel")
        object.__setattr__(self, "kernel", k)
        object.__setattr__(self, "stride", k if self.stride is None else _tuple(self.stride, self.nd, "pool stride"))
        object.__setattr__(self, "padding", _tuple(self.padding, self.nd, "pool padding"))
        object.__setattr__(self, "dilation", _tuple(self.dilation, self.nd, "pool dilation"))

    def out_shape(self, in_shape) -> tuple:
        return _pool_out_shape(in_shape, self.kernel, self.stride, self.padding, self.dilation)

    def _windows(self, x, fill):
        v = window_view(np.asarray(x, dtype=np.float64), self.kernel, self.stride, self.padding, self.dilation, fill)
        return v.reshape(*v.shape[:2 + self.nd], -1)

    def piece(self, x) -> np.ndarray:
        """Argmax within each window (the piece of the CPA map): int ``(M, C, *S_out)``; first maximum on ties."""
        return self._windows(x, -np.inf).argmax(axis=-1)

    def __call__(self, x) -> np.ndarray:
        return self._windows(x, -np.inf).max(axis=-1)

    def jax_forward(self, x):
        import jax

        return jax.lax.reduce_window(x, -np.inf, jax.lax.max, (1, 1, *self.kernel), (1, 1, *self.stride),
                                     [(0, 0), (0, 0), *[(p, p) for p in self.padding]],
                                     window_dilation=(1, 1, *self.dilation))

    def select(self, t, piece) -> np.ndarray:
        """The linear map of the piece ``piece`` applied to tangents ``t`` ``(k, C, *S)`` (zero padding)."""
        w = self._windows(t, 0.0)
        idx = np.broadcast_to(piece, w.shape[:-1])[..., None]
        return np.take_along_axis(w, idx, axis=-1)[..., 0]


@dataclass(frozen=True)
class Flatten:
    """``(M, C, *S)`` → ``(M, C·prod S)`` (nn.Flatten with start_dim=1)."""

    def out_shape(self, in_shape) -> tuple:
        return (int(np.prod(in_shape)),)

    def linear(self, x) -> np.ndarray:
        return np.asarray(x).reshape(np.shape(x)[0], -1)

    __call__ = linear

    def jax_forward(self, x):
        return x.reshape(x.shape[0], -1)

    def as_matrix(self, in_shape) -> np.ndarray:
        return np.eye(int(np.prod(in_shape)))


@dataclass(frozen=True)
class Activation:
    """An elementwise CPA activation (``cpa_theory.activations``)."""

    activation: CPAActivation

    def __post_init__(self):
        object.__setattr__(self, "activation", activation_from_spec(self.activation))

    def out_shape(self, in_shape) -> tuple:
        return tuple(in_shape)


@dataclass(frozen=True)
class Residual:
    """y = shortcut(x) + body(x); ``shortcut`` None is the identity (typically a 1×1 conv, maybe + BN)."""

    body: tuple
    shortcut: tuple | None = None

    def __post_init__(self):
        object.__setattr__(self, "body", tuple(self.body))
        if self.shortcut is not None:
            object.__setattr__(self, "shortcut", tuple(self.shortcut))

    def out_shape(self, in_shape) -> tuple:
        a = tuple(in_shape)
        for op in self.body:
            a = op.out_shape(a)
        b = tuple(in_shape)
        for op in self.shortcut or ():
            b = op.out_shape(b)
        if a != b:
            raise ShapeError(f"residual block: body output {a} and shortcut output {b} differ; add a 1x1-conv "
                             "shortcut that matches the shapes.")
        return a
