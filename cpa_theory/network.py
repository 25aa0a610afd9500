"""MLP networks of dense layers with optional BN and CPA activations.

``Network`` holds parameters as given (raw biases, BN in train or eval mode,
an optional batch). ``Network.condition()`` freezes train-mode statistics on
the batch, propagating it through the earlier layers, and returns a
``ConditionedNetwork``: one fixed CPA function of x — the realised function
during training (THEORY §1).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .activations import CPAActivation, activation_from_spec
from .bn import BatchNorm, ConditionedBN, condition_bn
from .errors import ArgumentTypeError, BatchError, BatchNormError, DegenerateBatchNormError, NonFiniteError, ShapeError
from .inputs import check_numbers, short
from .maxgroups import is_max_groups
from .frontier_kernels import TINY, left_multiply
from .tolerances import DOT_EXTRA_TERMS, FILTER_SAFETY, UNIT_ROUNDOFF

__all__ = ["Layer", "Network", "ConditionedLayer", "ConditionedNetwork", "as_point", "as_points"]


def _finite_array(x, what: str, ndim: int) -> np.ndarray:
    if isinstance(x, (list, tuple, np.ndarray, str, bool)):
        check_numbers(x if not isinstance(x, (str, bool)) else [x], what, ShapeError)
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"{what} must be a numeric array; got {type(x).__name__}.") from exc
    if arr.ndim != ndim:
        raise ShapeError(f"{what} must be {ndim}-D; got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(f"{what} contains NaN or inf; replace them with finite values.")
    return arr


def as_points(x, dim: int, what: str = "x") -> np.ndarray:
    """Validate points: ``(dim,)`` or ``(M, dim)`` → float64 ``(M, dim)``."""
    if isinstance(x, (list, tuple, np.ndarray, str, bool)):
        check_numbers(x if not isinstance(x, (str, bool)) else [x], what, ShapeError)
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ShapeError(f"{what} must be numbers; got {short(x)}.") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ShapeError(f"{what} has shape {np.shape(x)}; the network's input dimension is {dim}, so give "
                         f"({dim},) or (M, {dim}).")
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(f"{what} contains NaN or inf; give finite coordinates.")
    return arr


def as_point(x, dim: int, what: str = "x", many: str = "") -> np.ndarray:
    """Validate ONE point: ``(dim,)`` or ``(1, dim)`` → float64 ``(dim,)``. Several points are refused (never
    silently cut to the first); ``many`` names the function that takes several."""
    arr = as_points(x, dim, what)
    if arr.shape[0] != 1:
        hint = f"; for several use {many}" if many else "; pass one point"
        raise ShapeError(f"{what} holds {arr.shape[0]} points (shape {np.shape(x)}), but this takes one point "
                         f"({dim},){hint}.")
    return arr[0]


def _layer_index(layer, n_layers: int, allow_end: bool = False) -> int:
    last = n_layers if allow_end else n_layers - 1
    if isinstance(layer, (bool, np.bool_)) or not isinstance(layer, (int, np.integer)) or not 0 <= layer <= last:
        raise ShapeError(f"layer index {short(layer, 30)} is not an integer in 0..{last} (this network has "
                         f"{n_layers} layers).")
    return int(layer)


@dataclass(frozen=True)
class Layer:
    """z = W h + b, then optional BN, then φ. ``weight`` is out × in (nn.Linear).

    With a :class:`cpa_theory.maxgroups.MaxGroups` activation (max-pooling) the layer's pre-activations are the
    ``weight.shape[0]`` rows (= ``n_in`` of the groups, BN over them) and its outputs are the group maxima
    (``out_dim`` = number of groups)."""

    weight: np.ndarray
    bias: np.ndarray
    activation: CPAActivation
    batchnorm: BatchNorm | None = None

    def __post_init__(self):
        w = _finite_array(self.weight, "layer weight", 2)
        b = _finite_array(self.bias, "layer bias", 1)
        if 0 in w.shape:
            raise ShapeError(f"layer weight has shape {w.shape}; a layer needs at least one neuron (row) and one "
                             "input (column).")
        if b.shape != (w.shape[0],):
            raise ShapeError(f"bias has {b.shape[0]} entries but weight has {w.shape[0]} rows (out x in); "
                             "give one bias per output neuron.")
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)
        object.__setattr__(self, "activation", activation_from_spec(self.activation))
        if self.batchnorm is not None and not isinstance(self.batchnorm, BatchNorm):
            raise BatchNormError(f"batchnorm must be None or a BatchNorm, e.g. BatchNorm({w.shape[0]}, 'train'); got "
                                 f"{short(self.batchnorm, 30)}.")
        act = self.activation
        if is_max_groups(act) and act.n_in != w.shape[0]:
            raise ShapeError(f"the max groups index {act.n_in} pre-activations but the layer weight has {w.shape[0]} "
                             "rows; give groups over the rows of the weight.")
        if self.batchnorm is not None and self.batchnorm.num_features != w.shape[0]:
            raise ShapeError(f"batchnorm has {self.batchnorm.num_features} features but the layer has "
                             f"{w.shape[0]} neurons; give gamma/beta of length {w.shape[0]}.")

    @property
    def in_dim(self) -> int:
        return self.weight.shape[1]

    @property
    def out_dim(self) -> int:
        if is_max_groups(self.activation):
            return self.activation.n_groups
        return self.weight.shape[0]


@dataclass(frozen=True)
class Network:
    """An MLP. ``batch`` ``(B, input_dim)`` is required if any layer has train-mode BN."""

    input_dim: int
    layers: tuple[Layer, ...]
    batch: np.ndarray | None = None

    def __post_init__(self):
        if isinstance(self.input_dim, bool) or not isinstance(self.input_dim, (int, np.integer)) or self.input_dim < 1:
            raise ShapeError(f"input_dim must be a positive integer; got {self.input_dim!r}.")
        if isinstance(self.layers, Layer) or not isinstance(self.layers, (list, tuple)):
            raise ArgumentTypeError(f"layers must be a tuple of Layer objects, e.g. (Layer(W, b, relu()),); got "
                                    f"{short(self.layers, 40)}.")
        layers = tuple(self.layers)
        bad = [i for i, l in enumerate(layers) if not isinstance(l, Layer)]
        if bad:
            raise ArgumentTypeError(f"layers[{bad[0]}] is {short(layers[bad[0]], 40)}, not a Layer; build each layer "
                                    "with Layer(weight, bias, activation, batchnorm).")
        if not layers:
            raise ShapeError("a network needs at least one layer.")
        width = self.input_dim
        for i, layer in enumerate(layers):
            if layer.in_dim != width:
                raise ShapeError(f"layer {i} weight has {layer.in_dim} columns but its input has {width} "
                                 "features; weights are out x in (PyTorch nn.Linear convention).")
            width = layer.out_dim
        object.__setattr__(self, "layers", layers)
        if self.batch is not None:
            batch = as_points(self.batch, self.input_dim, "batch")
            object.__setattr__(self, "batch", batch)
        if self.needs_batch:
            if self.batch is None:
                raise BatchError("a layer has train-mode BN but the network has no batch; give 'batch' "
                                 f"(B x {self.input_dim}, B >= 2) or switch BN to eval mode.")
            if self.batch.shape[0] < 2:
                raise BatchError(f"train-mode BN needs a batch of at least 2 points; got {self.batch.shape[0]}. "
                                 "Give a larger batch or use eval mode.")

    @property
    def needs_batch(self) -> bool:
        return any(l.batchnorm is not None and l.batchnorm.mode == "train" for l in self.layers)

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.input_dim, *(l.out_dim for l in self.layers))

    def with_batch(self, batch) -> "Network":
        return Network(self.input_dim, self.layers, batch)

    def without_batchnorm(self) -> "Network":
        """The same weights and raw biases with every BN layer removed (the no-BN comparison)."""
        layers = tuple(Layer(l.weight, l.bias, l.activation, None) for l in self.layers)
        return Network(self.input_dim, layers, self.batch)

    def condition(self, batch=None) -> "ConditionedNetwork":
        """Freeze train-mode BN on ``batch`` (default: the network's own)."""
        net = self if batch is None else self.with_batch(batch)
        h = net.batch
        dh = None if h is None else np.zeros_like(h)  # |h − h*|: the float representations against the exact ones
        out = []
        for i, layer in enumerate(net.layers):
            cbn = condition_bn(layer.weight, layer.bias, layer.batchnorm, h)
            if cbn.mode == "train":
                cbn = replace(cbn, zerr=_anchor_z_error(layer.weight, cbn, h, dh))
            clayer = ConditionedLayer(layer.weight, cbn, layer.activation)
            out.append(clayer)
            if h is not None and i + 1 < len(net.layers):
                if np.any(cbn.undefined):
                    if any(l.batchnorm is not None and l.batchnorm.mode == "train" for l in net.layers[i + 1:]):
                        raise DegenerateBatchNormError(
                            f"layer {i}: neurons {np.flatnonzero(cbn.undefined).tolist()} have zero batch "
                            "variance and eps = 0, so BN is undefined and later statistics cannot be "
                            "computed; set eps > 0.")
                    h = None
                else:
                    h, dh = _forward_with_error(clayer, h, dh)
        return ConditionedNetwork(net.input_dim, tuple(out), net.batch)

    def forward(self, x, xp=np):
        """The realised function (train-mode BN conditioned on the network's batch)."""
        return self.condition().forward(x, xp=xp)


def _anchor_error(h, dh, anchor):
    """|p − p*| for the float batch mean p of float representations ``h (B, m)`` with |h − h*| ≤ ``dh``, p* the
    exact mean of h*: the inputs' error plus the summation's (γ_{B+1}·mean|h|) and the division's."""
    B = h.shape[0]
    return dh.mean(axis=0) + (B + 2 + DOT_EXTRA_TERMS) * UNIT_ROUNDOFF * (np.abs(h).mean(axis=0) + np.abs(anchor))


def _anchor_z_error(weight, cbn, h, dh):
    """The ẑ error the float anchor causes: FILTER_SAFETY·|g|·(|W| @ |p − p*|) (``ConditionedBN.z_error``)."""
    with np.errstate(over="ignore", invalid="ignore"):
        dp = _anchor_error(h, dh, cbn.anchor)
        return FILTER_SAFETY * np.abs(cbn.gain) * (np.abs(weight) @ dp)


def _forward_with_error(clayer, h, dh):
    """The layer's float outputs on the batch and a bound on their distance to the exact outputs of the exact
    representations (:meth:`ConditionedLayer.preactivation_bound`, then the activation's Lipschitz constant and
    rounding); a max-group layer's output moves by at most its members' largest error."""
    act = clayer.activation
    z, dz = clayer.preactivation_bound(h, dh)
    with np.errstate(over="ignore", invalid="ignore"):
        out = act(z)
        if is_max_groups(act):
            return out, np.broadcast_to(dz.max(axis=1, keepdims=True), out.shape).copy()
        slopes = np.abs(np.asarray(act.slopes, dtype=np.float64))
        L = float(slopes.max()) if slopes.size else 1.0
        rounding = 4 * UNIT_ROUNDOFF * (np.abs(out) + L * np.abs(z) + float(np.abs(act.intercepts()).max()))
    return out, FILTER_SAFETY * (L * dz + rounding)


@dataclass(frozen=True)
class ConditionedLayer:
    """One layer with frozen statistics: ẑ = g · W(h − p) + e, then φ."""

    weight: np.ndarray
    bn: ConditionedBN
    activation: CPAActivation

    def preactivation(self, h, xp=np):
        """ẑ for ``h`` ``(M, m)`` → ``(M, n)``."""
        bn = self.bn
        return (h - xp.asarray(bn.anchor)) @ xp.asarray(self.weight).T * xp.asarray(bn.gain) + xp.asarray(bn.shift)

    def forward(self, h, xp=np):
        return self.activation(self.preactivation(h, xp=xp), xp=xp)

    def preactivation_bound(self, h, dh):
        """ẑ at float inputs ``h (M, m)`` with |h − h*| ≤ ``dh`` and a bound ``dz`` with |ẑ − ẑ*(h*)| ≤ dz (ẑ* the
        exact layer, exact anchor included): the forward error of g·W(h − p) + e times FILTER_SAFETY, an absolute
        term for underflow (each of the m products and the sum lose at most 2^-1022 before the gain multiplies
        them) and the float anchor's error (``bn.z_error``); non-finite entries get dz = inf."""
        W, bn = self.weight, self.bn
        aW, ag = np.abs(W), np.abs(bn.gain)
        m = W.shape[1]
        with np.errstate(over="ignore", invalid="ignore"):
            z = self.preactivation(h)
            dz = FILTER_SAFETY * (ag * (dh @ aW.T) + (m + DOT_EXTRA_TERMS + 2) * UNIT_ROUNDOFF * (
                ag * ((np.abs(h) + np.abs(bn.anchor)) @ aW.T) + np.abs(bn.shift))
                + (m + 3) * TINY * (1 + ag * (1 + aW.sum(axis=1)))) + bn.z_error
        dz[~(np.isfinite(z) & np.isfinite(dz))] = np.inf
        return z, dz

    def chart(self, A, c):
        """This layer on a parent chart h = A y + c (C9) — the one place a layer is pulled back.

        ``A (..., m, d)``, ``c (..., m)`` → ``lin (..., n, d) = W A`` and ``gap (..., n) = W(c − p)``; then
        ẑ(y) = g·(lin y + gap) + e (normals g·lin) and {ẑ = t_k} is {lin·y = (t_k − e)/g − gap}.
        """
        return left_multiply(self.weight, A), (c - self.bn.anchor) @ self.weight.T


@dataclass(frozen=True)
class ConditionedNetwork:
    """A network with all statistics frozen: one fixed CPA function of x."""

    input_dim: int
    layers: tuple[ConditionedLayer, ...]
    batch: np.ndarray | None = None

    def _check_defined(self):
        for i, layer in enumerate(self.layers):
            if np.any(layer.bn.undefined):
                raise DegenerateBatchNormError(
                    f"layer {i}: neurons {np.flatnonzero(layer.bn.undefined).tolist()} have s = √(σ²+ε) = 0 "
                    "(zero batch variance, eps = 0), so train-mode BN is undefined; set eps > 0.")

    def _inputs(self, x, xp):
        if xp is np:
            return as_points(x, self.input_dim)
        x = xp.asarray(x)
        return x[None, :] if x.ndim == 1 else x

    def preactivations(self, x, xp=np) -> list:
        """ẑ of every layer for points ``x`` ``(M, d)``: a list of ``(M, n_l)``."""
        self._check_defined()
        h = self._inputs(x, xp)
        out = []
        for layer in self.layers:
            z = layer.preactivation(h, xp=xp)
            out.append(z)
            h = layer.activation(z, xp=xp)
        return out

    def forward(self, x, xp=np):
        """f(x) for ``x`` ``(M, d)`` or ``(d,)`` → ``(M, n_out)``; ``xp`` numpy or jax.numpy."""
        self._check_defined()
        h = self._inputs(x, xp)
        for layer in self.layers:
            h = layer.forward(h, xp=xp)
        return h

    def activation_code(self, x) -> tuple[np.ndarray, ...]:
        """Piece index of every neuron of every layer: a tuple of int ``(M, n_l)`` arrays (a max-group layer:
        the argmax position per group, ``(M, G)``)."""
        return tuple(layer.activation.piece_index(z) for layer, z in zip(self.layers, self.preactivations(x)))

    def affine_map(self, x, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """(A_P, c_P) with h_layer(y) = A_P y + c_P on the activation region P of the point ``x``.

        ``layer`` is the index of the layer whose *input* is wanted (0 gives the identity). The
        pieces are read off the pre-activations at ``x`` (C9's parent region).
        """
        layer = _layer_index(layer, len(self.layers), allow_end=True)
        x = as_point(x, self.input_dim, "x", "affine_map once per point")
        A, c = np.eye(self.input_dim), np.zeros(self.input_dim)
        for l, z in zip(self.layers[:layer], self.preactivations(x)[:layer]):
            if is_max_groups(l.activation):  # the output of group g is its winner's pre-activation
                win = l.activation.winners(l.activation.piece_index(z[0]))
                lin, gap = l.chart(A, c)
                A, c = (l.bn.gain[:, None] * lin)[win], (l.bn.gain * gap + l.bn.shift)[win]
                continue
            pieces = l.activation.piece_index(z[0])
            slope = np.asarray(l.activation.slopes)[pieces]
            icpt = np.asarray(l.activation.intercepts())[pieces]
            lin, gap = l.chart(A, c)
            zA, zc = l.bn.gain[:, None] * lin, l.bn.gain * gap + l.bn.shift
            A, c = slope[:, None] * zA, slope * zc + icpt
        return A, c

    def batch_inputs(self, layer: int) -> np.ndarray:
        """The batch's representations at the input of ``layer`` (``(B, n_{l-1})``)."""
        layer = _layer_index(layer, len(self.layers), allow_end=True)
        if self.batch is None:
            raise BatchError("this network has no batch; condition it on one first.")
        h = self.batch
        for l in self.layers[:layer]:
            h = l.forward(h)
        return h
