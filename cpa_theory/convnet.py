"""Convolutional CPA networks conditioned on a batch (THEORY §7, issue #14).

``ConvNetwork(input_shape, layers, batch)`` holds :mod:`cpa_theory.layers` operators in order (Residual blocks
nest). ``condition(batch)`` freezes every train-mode BatchNorm on the batch and returns a
:class:`ConditionedConvNetwork`: one fixed CPA function of x (the realised function during training).

BatchNorm is conditioned with the one BN algebra of :func:`cpa_theory.bn.condition_bn`:

- Conv followed by BatchNorm2d: the batch of channel c is the set of its patches P_p x_j over batch × positions,
  so ``condition_bn(w_c rows, b, bn, patches)`` gives the mean patch m̄ (the anchor), s_c and the gain γ_c/s_c:
  ẑ_{c,p}(x) = (γ_c/s_c) w_cᵀ(P_p x − m̄) + β_c. The raw bias b_c never enters (C10a).
- Linear followed by BatchNorm1d: exactly the MLP case.
- A BatchNorm not directly after a Conv/Linear: the identity weight on the channel values (batch × positions).

Every conditioned affine layer has the form y = g_c · (L x − L m̄)_c + e_c with L the layer's linear operator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .bn import BatchNorm, condition_bn
from .errors import BatchError, DegenerateBatchNormError, NonFiniteError, ShapeError
from .layers import (Activation, AdaptiveAvgPool, AvgPool, BatchNormND, Conv, Flatten, Linear, MaxPool, Residual,
                     UnsupportedLayerError)

__all__ = ["ConvNetwork", "ConditionedConvNetwork", "CAffine", "CLinearOp", "CActivation", "CMaxPool", "CResidual"]


def _channel(v, nd_total):
    """Broadcast a per-channel vector over ``(M, C, *S)`` (nd_total = 1 + len(S))."""
    return np.asarray(v).reshape((1, -1) + (1,) * (nd_total - 1))


def _sub_bn(bn: BatchNorm, sl: slice) -> BatchNorm:
    kw = {}
    if bn.running_mean is not None:
        kw["running_mean"] = bn.running_mean[sl]
    if bn.running_var is not None:
        kw["running_var"] = bn.running_var[sl]
    return BatchNorm(sl.stop - sl.start, bn.mode, bn.gamma[sl], bn.beta[sl], bn.eps, **kw)


@dataclass(frozen=True)
class CAffine:
    """A conditioned affine layer y = g · (L x − L p) + e per channel; ``op`` is a Conv, Linear or None
    (identity). ``bns`` are the ConditionedBN objects per conv group (anchor = the mean patch m̄ in train mode)."""

    op: object
    gain: np.ndarray
    offset: np.ndarray  # (C,) g·(L p)_c − e_c, so that y = g·L x − offset
    bns: tuple = ()
    name: str = ""

    def linear(self, t):
        z = t if self.op is None else self.op.linear(t)
        return z * _channel(self.gain, z.ndim - 1)

    def __call__(self, x):
        if self.bns and all(c.mode == "train" for c in self.bns):
            return self._relative_to_anchor(x)
        z = self.linear(x)
        return z - _channel(self.offset, z.ndim - 1)

    def _relative_to_anchor(self, x):
        """Train-mode BN: y = g·L(x − p) + e (a conv: g·w_cᵀ(P_p x − m̄) + e), THEORY C4's centroid-relative
        numerics: where the patches equal the mean patch (the centroid of a batch whose centroid image is
        constant) the offsets come out exactly e, not g·L x − g·L p rounded apart."""
        x = np.asarray(x, dtype=np.float64)
        shift = np.concatenate([c.shift for c in self.bns])
        if isinstance(self.op, Conv):
            P = self.op.patches(x)  # (M, G, positions, K)
            A = np.stack([c.anchor for c in self.bns])  # (G, K): the mean patch per group
            z = np.einsum("mgpk,gok->mgop", P - A[None, :, None, :], self.op.flat_weight(), optimize=True)
            z = z.reshape(x.shape[0], *self.op.out_shape(x.shape[1:]))
        elif isinstance(self.op, Linear):
            z = (x - self.bns[0].anchor) @ self.op.weight.T
        else:  # a standalone BN over channels
            z = x - _channel(self.bns[0].anchor, x.ndim - 1)
        return z * _channel(self.gain, z.ndim - 1) + _channel(shift, z.ndim - 1)

    def push(self, x, t):
        """The value at x and the linear part applied to tangents t (slices)."""
        return self(x), self.linear(t)

    def jax(self, x):
        import jax.numpy as jnp

        z = x if self.op is None else self.op.jax_linear(x)
        shape = (1, -1) + (1,) * (z.ndim - 2)
        return z * jnp.asarray(self.gain).reshape(shape) - jnp.asarray(self.offset).reshape(shape)


@dataclass(frozen=True)
class CLinearOp:
    """A parameter-free linear layer (Flatten, AvgPool, AdaptiveAvgPool)."""

    op: object

    def __call__(self, x):
        return self.op.linear(x)

    def push(self, x, t):
        return self.op.linear(x), self.op.linear(t)

    def jax(self, x):
        return self.op.jax_forward(x)


@dataclass(frozen=True)
class CActivation:
    activation: object

    def __call__(self, x):
        return self.activation(x)

    def push(self, x, t):
        slope = np.asarray(self.activation.slopes)[self.activation.piece_index(x)]
        return self.activation(x), t * slope

    def jax(self, x):
        import jax.numpy as jnp

        return self.activation(x, xp=jnp)


@dataclass(frozen=True)
class CMaxPool:
    op: MaxPool

    def __call__(self, x):
        return self.op(x)

    def push(self, x, t):
        return self.op(x), self.op.select(t, self.op.piece(x))

    def jax(self, x):
        return self.op.jax_forward(x)


@dataclass(frozen=True)
class CResidual:
    body: tuple
    shortcut: tuple | None = None


def _run(ops, x, record=None):
    for op in ops:
        if isinstance(op, CResidual):
            a = _run(op.body, x, record)
            b = x if op.shortcut is None else _run(op.shortcut, x, record)
            x = a + b
            continue
        if record is not None and isinstance(op, (CActivation, CMaxPool)):
            record.append(x)
        x = op(x)
    return x


def _run_jax(ops, x):
    for op in ops:
        if isinstance(op, CResidual):
            x = _run_jax(op.body, x) + (x if op.shortcut is None else _run_jax(op.shortcut, x))
        else:
            x = op.jax(x)
    return x


def _push(ops, x, t):
    for op in ops:
        if isinstance(op, CResidual):
            a, ta = _push(op.body, x, t)
            if op.shortcut is None:
                b, tb = x, t
            else:
                b, tb = _push(op.shortcut, x, t)
            x, t = a + b, ta + tb
            continue
        x, t = op.push(x, t)
    return x, t


def _check_undefined(cbns, name):
    bad = np.concatenate([c.undefined for c in cbns])
    if np.any(bad):
        raise DegenerateBatchNormError(f"{name}: channels {np.flatnonzero(bad).tolist()} have zero batch variance "
                                       "and eps = 0, so train-mode BN is undefined; set eps > 0.")


def _condition_affine(op, bn, h, name):
    """Fuse a Conv/Linear (or None) with an optional BatchNormND into a CAffine, conditioned on ``h``."""
    if bn is not None and bn.mode == "train" and h is None:
        raise BatchError(f"{name}: train-mode BN needs a batch; give one (B >= 2) or use eval mode.")
    if isinstance(op, Conv):
        G = op.groups
        og = op.out_channels // G
        W = op.flat_weight()
        P = op.patches(h) if h is not None and bn is not None and bn.mode == "train" else None
        cbns = []
        for g in range(G):
            sl = slice(g * og, (g + 1) * og)
            inputs = None if P is None else P[:, g].reshape(-1, P.shape[-1])  # batch × positions
            cbns.append(condition_bn(W[g], op.bias[sl], None if bn is None else _sub_bn(bn, sl), inputs))
        anchor_proj = np.concatenate([W[g] @ c.anchor for g, c in enumerate(cbns)])
    elif isinstance(op, Linear):
        cbns = [condition_bn(op.weight, op.bias, bn, h)]
        anchor_proj = op.weight @ cbns[0].anchor
    else:  # a standalone BatchNorm: identity weight over the channel values, batch × positions
        C = bn.num_features
        vals = None if h is None else np.moveaxis(h, 1, -1).reshape(-1, C)
        cbns = [condition_bn(np.eye(C), np.zeros(C), bn, vals)]
        anchor_proj = cbns[0].anchor
    _check_undefined(cbns, name)
    gain = np.concatenate([c.gain for c in cbns])
    shift = np.concatenate([c.shift for c in cbns])
    return CAffine(op, gain, gain * anchor_proj - shift, tuple(cbns), name)


def _condition_ops(layers, h, prefix=""):
    out = []
    i = 0
    layers = tuple(layers)
    while i < len(layers):
        op = layers[i]
        name = f"{prefix}layer {i} ({type(op).__name__})"
        if isinstance(op, (Conv, Linear)):
            bn = None
            if i + 1 < len(layers) and isinstance(layers[i + 1], BatchNormND):
                bn = layers[i + 1].bn
                i += 1
            cop = _condition_affine(op, bn, h, name)
        elif isinstance(op, BatchNormND):
            cop = _condition_affine(None, op.bn, h, name)
        elif isinstance(op, (Flatten, AvgPool, AdaptiveAvgPool)):
            cop = CLinearOp(op)
        elif isinstance(op, Activation):
            cop = CActivation(op.activation)
        elif isinstance(op, MaxPool):
            cop = CMaxPool(op)
        elif isinstance(op, Residual):
            body = _condition_ops(op.body, h, f"{name} body: ")
            sc = None if op.shortcut is None else _condition_ops(op.shortcut, h, f"{name} shortcut: ")
            cop = CResidual(tuple(body), None if sc is None else tuple(sc))
        else:
            raise UnsupportedLayerError(f"{name} is not a cpa_theory layer; use Conv, Linear, BatchNormND, AvgPool, "
                                        "AdaptiveAvgPool, MaxPool, Flatten, Activation or Residual.")
        out.append(cop)
        if h is not None:
            h = _run([cop], h)
        i += 1
    return out


def _needs_batch(layers) -> bool:
    for op in layers:
        if isinstance(op, BatchNormND) and op.bn.mode == "train":
            return True
        if isinstance(op, Residual) and (_needs_batch(op.body) or _needs_batch(op.shortcut or ())):
            return True
    return False


@dataclass(frozen=True)
class ConvNetwork:
    """A sequence of :mod:`cpa_theory.layers` operators on inputs of shape ``input_shape`` (e.g. (1, 8, 8)).

    ``batch`` ``(B, *input_shape)`` (or flat ``(B, d)``) is required when a layer has train-mode BN.
    """

    input_shape: tuple
    layers: tuple
    batch: np.ndarray | None = None
    output_shape: tuple = field(init=False, default=())

    def __post_init__(self):
        try:
            shape = tuple(int(a) for a in self.input_shape)
        except (TypeError, ValueError):
            raise ShapeError(f"input_shape must be a list of positive integers, e.g. [1, 8, 8] (channels, height, "
                             f"width); got {self.input_shape!r}.") from None
        if not shape or any(a < 1 for a in shape) or any(float(a) != b for a, b in zip(self.input_shape, shape)):
            raise ShapeError(f"input_shape must be a list of positive integers, e.g. [1, 8, 8] (channels, height, "
                             f"width); got {list(self.input_shape)!r}.")
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ShapeError("a network needs at least one layer.")
        s = shape
        for i, op in enumerate(self.layers):
            try:
                s = op.out_shape(s)
            except AttributeError:
                raise UnsupportedLayerError(f"layer {i} ({type(op).__name__}) is not a cpa_theory layer.") from None
        object.__setattr__(self, "output_shape", s)
        if self.batch is not None:
            object.__setattr__(self, "batch", _as_inputs(self.batch, shape, "batch"))
        if _needs_batch(self.layers):
            if self.batch is None:
                raise BatchError("a layer has train-mode BN but the network has no batch; give 'batch' "
                                 f"(B x {shape}, B >= 2) or switch BN to eval mode.")
            if self.batch.shape[0] < 2:
                raise BatchError(f"train-mode BN needs a batch of at least 2 points; got {self.batch.shape[0]}.")

    @property
    def input_dim(self) -> int:
        return int(np.prod(self.input_shape))

    def without_batchnorm(self) -> "ConvNetwork":
        """The same weights and raw biases with every BatchNorm removed (the no-BN comparison)."""
        def strip(layers):
            out = []
            for op in layers:
                if isinstance(op, BatchNormND):
                    continue
                if isinstance(op, Residual):
                    op = Residual(strip(op.body), None if op.shortcut is None else strip(op.shortcut))
                out.append(op)
            return tuple(out)
        return ConvNetwork(self.input_shape, strip(self.layers), self.batch)

    def condition(self, batch=None) -> "ConditionedConvNetwork":
        """Freeze train-mode BN on ``batch`` (default: the network's own)."""
        net = self if batch is None else ConvNetwork(self.input_shape, self.layers, batch)
        ops = _condition_ops(net.layers, net.batch)
        return ConditionedConvNetwork(net.input_shape, tuple(ops), net.batch)


def _as_inputs(x, shape, what="x") -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"{what} must be numbers; got {type(x).__name__}.") from exc
    d = int(np.prod(shape))
    if arr.shape == tuple(shape) or arr.shape == (d,):
        arr = arr.reshape(1, *shape)
    elif arr.ndim == 2 and arr.shape[1] == d:
        arr = arr.reshape(-1, *shape)
    elif arr.shape[1:] != tuple(shape):
        raise ShapeError(f"{what} has shape {arr.shape}; give (M, {', '.join(map(str, shape))}) or (M, {d}).")
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(f"{what} contains NaN or inf; give finite values.")
    return arr


@dataclass(frozen=True)
class ConditionedConvNetwork:
    """A conv network with all statistics frozen: one fixed CPA function of x (float64 numpy)."""

    input_shape: tuple
    ops: tuple
    batch: np.ndarray | None = None

    @property
    def input_dim(self) -> int:
        return int(np.prod(self.input_shape))

    def forward(self, x) -> np.ndarray:
        """f(x) for ``x`` ``(M, *input_shape)`` or ``(M, d)`` → ``(M, *output_shape)``."""
        return _run(self.ops, _as_inputs(x, self.input_shape))

    def forward_jax(self, x):
        """The same function in JAX (jit- and grad-traceable; float64 when jax_enable_x64 is on)."""
        import jax.numpy as jnp

        return _run_jax(self.ops, jnp.asarray(x).reshape(-1, *self.input_shape))  # traceable: no numpy validation

    def preactivations(self, x) -> list:
        """Inputs of every CPA layer (activations and max-pools) in execution order (residual: body, then
        shortcut), each ``(M, *shape)``."""
        rec: list = []
        _run(self.ops, _as_inputs(x, self.input_shape), rec)
        return rec

    def activation_code(self, x) -> tuple:
        """Piece of every CPA unit, in the order of :meth:`preactivations`: activation piece indices, and for
        max-pools the argmax within each window (first maximum on ties). A tuple of int arrays ``(M, *shape)``."""
        kinds: list = []

        def walk(ops):
            for op in ops:
                if isinstance(op, CResidual):
                    walk(op.body)
                    walk(op.shortcut or ())
                elif isinstance(op, (CActivation, CMaxPool)):
                    kinds.append(op)
        walk(self.ops)
        rec = self.preactivations(x)
        return tuple(op.activation.piece_index(z) if isinstance(op, CActivation) else op.op.piece(z)
                     for op, z in zip(kinds, rec))

    def affine_map_at(self, x, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """The local affine map (A ``(n_out, d)``, c ``(n_out,)``) with f(y) = A y + c on the piece of ``x``
        (one point). The Jacobian is pushed through the operators as tangent images, ``chunk`` basis vectors at
        a time (memory ~ chunk × the widest layer, never a dense per-layer matrix)."""
        x = _as_inputs(x, self.input_shape)
        if x.shape[0] != 1:
            raise ShapeError("affine_map_at takes one point.")
        d = self.input_dim
        cols, y = [], None
        for start in range(0, d, max(1, int(chunk))):
            basis = np.eye(d)[start:start + chunk].reshape(-1, *self.input_shape)
            y, t = _push(self.ops, x, basis)
            cols.append(t.reshape(len(basis), -1))
        A = np.concatenate(cols).T
        c = y.reshape(-1) - A @ x.reshape(-1)
        return A, c

    def conditioned_bns(self) -> list:
        """``[(name, CAffine)]`` of every conditioned affine layer (for C10: anchors = mean patches)."""
        out = []

        def walk(ops):
            for op in ops:
                if isinstance(op, CResidual):
                    walk(op.body)
                    walk(op.shortcut or ())
                elif isinstance(op, CAffine):
                    out.append((op.name, op))
        walk(self.ops)
        return out
