"""Exact counts on k-dimensional affine slices through data (issue #14, item 3).

A slice is S = {x0 + V t : t ∈ [−r, r]^k}, k = 1 … 4, of a network's input space. Restricted to S, a
network is a CPA function of t; :func:`slice_network` writes it as a dense :class:`cpa_theory.Network` of input
dimension k, so the existing exact engine (:func:`cpa_theory.regions.count_regions`) counts its activation
regions exactly and certifies them, in the window W(0, r) of t.

Choice (stated in the issue): **condition first, then compose.** Train-mode BN statistics are frozen on the
original batch (in the original input space) and each BN becomes the fixed per-neuron affine map it is for the
realised training-time function; the slice map x0 + V t is then composed into the first affine layer, and the
linear parts of later layers (convolutions, pools, flatten, BN, residual additions without activations inside)
are *materialised as dense matrices* between consecutive activations. This is exact and cheap for small inputs
(8×8 digits); the resulting network carries no BN (its BN is already conditioned), so counting it counts the
training-time function, not a network re-normalised on a batch of slice coordinates.

Limits of the dense ``cpa-network/1`` form (one activation per layer, layers in sequence): max-pooling and
residual blocks with an activation inside their body cannot be expressed; :func:`slice_network` refuses them
with :class:`cpa_theory.layers.UnsupportedLayerError` (supported: sequential conv nets without MaxPool, and
any dense :class:`Network`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import identity
from .convnet import CActivation, CMaxPool, ConditionedConvNetwork, ConvNetwork, CResidual
from .errors import ShapeError, WindowError
from .layers import UnsupportedLayerError
from .network import ConditionedNetwork, Layer, Network
from .tolerances import SLICE_BASIS_RTOL

__all__ = ["Slice", "slice_through_points", "random_slice", "slice_from_basis", "slice_network", "count_on_slice",
           "slice_density"]

MAX_SLICE_DIM = 4


@dataclass(frozen=True)
class Slice:
    """S = {x0 + V t : t ∈ [−r, r]^k}.

    Attributes: ``x0`` ``(d,)`` the centre; ``V`` ``(d, k)``; ``radius`` r > 0; ``points`` ``(P, k)`` slice
    coordinates of the data points that defined the slice (may be empty).
    """

    x0: np.ndarray
    V: np.ndarray
    radius: float
    points: np.ndarray | None = None

    def __post_init__(self):
        x0 = np.asarray(self.x0, dtype=np.float64).reshape(-1)
        V = np.asarray(self.V, dtype=np.float64)
        if V.ndim == 1:
            V = V[:, None]
        if V.ndim != 2 or V.shape[0] != x0.shape[0]:
            raise ShapeError(f"slice basis V has shape {V.shape}; it needs (d, k) with d = {x0.shape[0]} (len x0).")
        if not 1 <= V.shape[1] <= MAX_SLICE_DIM:
            raise ShapeError(f"slice dimension k = {V.shape[1]}; exact slices support k = 1 … {MAX_SLICE_DIM}.")
        if not (np.all(np.isfinite(x0)) and np.all(np.isfinite(V))):
            raise ShapeError("slice centre or basis contains NaN or inf; give finite values.")
        if np.linalg.matrix_rank(V) < V.shape[1]:
            raise ShapeError("slice basis V is rank deficient (its columns are dependent); give independent "
                             "directions (e.g. three points that are not collinear).")
        r = float(self.radius)
        if not (np.isfinite(r) and r > 0):
            raise WindowError(f"slice radius must be a finite number > 0; got {self.radius!r}.")
        object.__setattr__(self, "x0", x0)
        object.__setattr__(self, "V", V)
        object.__setattr__(self, "radius", r)
        pts = np.zeros((0, V.shape[1])) if self.points is None else np.asarray(self.points, dtype=np.float64)
        object.__setattr__(self, "points", pts)

    @property
    def k(self) -> int:
        return self.V.shape[1]

    def embed(self, t) -> np.ndarray:
        """x = x0 + V t for ``t`` ``(M, k)`` → ``(M, d)``."""
        return self.x0 + np.atleast_2d(np.asarray(t, dtype=np.float64)) @ self.V.T


def _orthonormal(D) -> np.ndarray:
    Q, R = np.linalg.qr(D)
    if np.min(np.abs(np.diag(R))) <= SLICE_BASIS_RTOL * max(1.0, np.max(np.abs(R))):
        raise ShapeError("the slice directions are (numerically) dependent: the points are collinear or repeated; "
                         "choose points that span a plane.")
    return Q * np.sign(np.diag(R))  # keep the orientation of the given differences


def slice_through_points(p1, p2, p3, margin: float = 0.1) -> Slice:
    """The plane through three data points (SplineCam's convention): centred at their centroid, spanned by the
    orthonormalised differences p2 − p1, p3 − p1; the window half-width is the largest slice coordinate of the
    three points times (1 + margin). ``points`` holds their slice coordinates."""
    P = np.stack([np.asarray(p, dtype=np.float64).reshape(-1) for p in (p1, p2, p3)])
    if not margin >= 0:
        raise WindowError(f"margin must be >= 0; got {margin!r}.")
    c = P.mean(axis=0)
    V = _orthonormal(np.stack([P[1] - P[0], P[2] - P[0]], axis=1))
    t = (P - c) @ V
    return Slice(c, V, float(np.max(np.abs(t))) * (1 + margin), t)


def random_slice(x0, k: int, *, key, radius: float = 1.0) -> Slice:
    """A uniformly random k-dimensional slice through ``x0`` (orthonormal basis of a Gaussian matrix drawn
    with the JAX PRNG ``key``)."""
    import jax

    x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
    G = np.asarray(jax.random.normal(key, (x0.shape[0], int(k))), dtype=np.float64)
    return Slice(x0, _orthonormal(G), radius)


def slice_from_basis(x0, V, radius: float = 1.0) -> Slice:
    """A slice with a user-given basis ``V`` ``(d, k)`` (used as given: not orthonormalised)."""
    return Slice(x0, V, radius)


def _dense_slice(cond: ConditionedNetwork, sl: Slice) -> Network:
    layers = []
    for i, l in enumerate(cond.layers):
        g, p, e = l.bn.gain, l.bn.anchor, l.bn.shift
        if i == 0:  # ẑ = g · W(x0 + V t − p) + e
            W = g[:, None] * (l.weight @ sl.V)
            b = g * (l.weight @ (sl.x0 - p)) + e
        else:
            W = g[:, None] * l.weight
            b = e - g * (l.weight @ p)
        layers.append(Layer(W, b, l.activation, None))
    return Network(sl.k, tuple(layers))


def _has_cpa(ops) -> bool:
    for op in ops:
        if isinstance(op, (CActivation, CMaxPool)):
            return True
        if isinstance(op, CResidual) and (_has_cpa(op.body) or _has_cpa(op.shortcut or ())):
            return True
    return False


def _push_affine(ops, v, T):
    """Push the point v ``(1, *shape)`` and tangents T ``(n, *shape)`` through affine-only ops."""
    for op in ops:
        if isinstance(op, CResidual):
            a, ta = _push_affine(op.body, v, T)
            b, tb = (v, T) if op.shortcut is None else _push_affine(op.shortcut, v, T)
            v, T = a + b, ta + tb
        else:
            v, T = op.push(v, T)
    return v, T


def _conv_slice(cond: ConditionedConvNetwork, sl: Slice) -> Network:
    if sl.x0.shape[0] != cond.input_dim:
        raise ShapeError(f"slice lives in dimension {sl.x0.shape[0]}; the network's input has {cond.input_dim}.")
    shape = cond.input_shape
    v = sl.x0.reshape(1, *shape)
    T = sl.V.T.reshape(sl.k, *shape)  # column j of the composed map, as a tangent image
    layers = []
    pending = True  # an affine map since the last activation that has not been emitted
    for i, op in enumerate(cond.ops):
        if isinstance(op, CMaxPool):
            raise UnsupportedLayerError(f"layer {i} (MaxPool): max-pooling is not expressible in the dense "
                                        "cpa-network/1 form (one activation per layer), so slices support networks "
                                        "without MaxPool for now; use AvgPool or count with the conv network's own "
                                        "engine when it exists.")
        if isinstance(op, CResidual) and _has_cpa([op]):
            raise UnsupportedLayerError(f"layer {i} (Residual): a residual block with an activation inside its body "
                                        "is not expressible in the dense cpa-network/1 form; slices support "
                                        "sequential networks (and residual blocks that are affine).")
        if isinstance(op, CActivation):
            n_in = T.shape[0]
            W = T.reshape(n_in, -1).T
            layers.append(Layer(W, v.reshape(-1), op.activation, None))
            n = W.shape[0]
            v = np.zeros((1, *T.shape[1:]))
            T = np.eye(n).reshape(n, *T.shape[1:])
            pending = False
            continue
        v, T = _push_affine([op], v, T)
        pending = True
    if pending or not layers:
        layers.append(Layer(T.reshape(T.shape[0], -1).T, v.reshape(-1), identity(), None))
    return Network(sl.k, tuple(layers))


def slice_network(net, sl: Slice) -> Network:
    """The network restricted to the slice, as a dense :class:`Network` of input dimension k (no BN: train-mode
    statistics are those of the original batch, frozen before composing). ``net``: :class:`Network`,
    :class:`ConditionedNetwork`, :class:`ConvNetwork` or :class:`ConditionedConvNetwork`."""
    if isinstance(net, Network):
        net = net.condition()
    if isinstance(net, ConvNetwork):
        net = net.condition()
    if isinstance(net, ConditionedNetwork):
        if sl.x0.shape[0] != net.input_dim:
            raise ShapeError(f"slice lives in dimension {sl.x0.shape[0]}; the network's input has {net.input_dim}.")
        net._check_defined()
        return _dense_slice(net, sl)
    if isinstance(net, ConditionedConvNetwork):
        return _conv_slice(net, sl)
    raise TypeError("slice_network needs a Network, ConditionedNetwork, ConvNetwork or ConditionedConvNetwork.")


def count_on_slice(net, sl: Slice, **kwargs):
    """Exact certified count of the activation regions of ``net`` on the slice (window [−r, r]^k in slice
    coordinates): :func:`cpa_theory.regions.count_regions` on :func:`slice_network`. Keyword arguments are
    passed on (``keep_regions``, ``exact_recheck``, ``linear``)."""
    from .regions import count_regions

    return count_regions(slice_network(net, sl), np.zeros(sl.k), sl.radius, **kwargs)


def _count_one(args):
    net, sl = args
    res = count_on_slice(net, sl, linear=False)
    return res.regions, res.certified


def slice_density(net, centres, *, radius: float, key, k: int = 2, confidence: float = 0.95, executor=None) -> dict:
    """Local region density on slices: for each centre x0 a random k-dim slice through x0 (independent keys split
    from ``key``) and the exact count N in [−r, r]^k; returns the counts and their mean with a Student-t
    confidence interval (the slices are independent draws).

    Args:
        net: any network :func:`slice_network` accepts. centres: ``(n, d)`` (flat) points.
        executor: optional ``concurrent.futures.Executor``; windows are counted with ``executor.map`` (parallel
            over windows), else serially.
    Returns: ``{"counts" (n,), "mean", "ci" (lo, hi), "confidence", "k", "radius", "certified"}``.
    """
    import jax
    from scipy import stats

    centres = np.atleast_2d(np.asarray(centres, dtype=np.float64))
    keys = jax.random.split(key, len(centres))
    jobs = [(net, random_slice(c, k, key=kk, radius=radius)) for c, kk in zip(centres, keys)]
    results = list(executor.map(_count_one, jobs) if executor is not None else map(_count_one, jobs))
    counts = np.array([r[0] for r in results], dtype=np.float64)
    n = len(counts)
    mean = float(counts.mean())
    if n > 1:
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * counts.std(ddof=1) / np.sqrt(n))
    else:
        half = float("inf")
    return {"counts": counts.astype(int), "mean": mean, "ci": (mean - half, mean + half), "confidence": confidence,
            "k": k, "radius": float(radius), "certified": all(r[1] for r in results)}
