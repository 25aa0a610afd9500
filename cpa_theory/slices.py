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

The dense network's weights are float64 products (g·W V, g·W, e − g·W p, and the materialised linear parts), so
its count is exact for *those* float64 data, as every count is for its network's data. Switching sets that meet
in one point exactly in the original network (e.g. a deeper train-mode layer's sets through the pulled-back
centroid, THEORY C9) can miss each other by rounding in the slice and add slivers a few ulps wide; the result's
``min_witness_radius`` shows them. :func:`cpa_theory.regions.count_regions` on the original network (input
dimension ≤ 10) takes the anchors exactly instead.

Residual blocks: the dense form has one activation per layer and layers in sequence, so a block's input
(needed again at its addition) is *carried* through the activations of its body by extra neurons whose
pre-activations stay strictly inside one affine piece of φ over the whole slice window (rigorous interval
bounds with wide margins). They never switch inside the window, so they add no region there: counts in
W(0, r) are exact, and the returned network equals the original one on the window (up to rounding) — not
outside it.

Max-pooling is a layer of its own: the current tensor h (e.g. the previous ReLU's output, then an identity
weight) is the pre-activation of a dense layer whose activation is :class:`cpa_theory.maxgroups.MaxGroups` over
the pool windows (stride, padding, dilation of :class:`cpa_theory.layers.MaxPool`; padded entries are −inf and
never win, so they are left out of the groups). Its pieces are the argmax patterns, exactly those of the pool —
writing max through ReLUs instead (max(a, b) = b + relu(a − b)) would add switching sets of losing pairs and of
carried values and over-count. Inside a residual body the carried tensors pass a max-pool layer as singleton
groups (max over one entry: the identity, no switching set).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import identity
from .convnet import CActivation, CMaxPool, ConditionedConvNetwork, ConvNetwork, CResidual
from .errors import ShapeError, WindowError
from .maxgroups import MaxGroups, pool_groups
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


def _phi_range(act, lo, hi):
    """Exact range of the CPA activation over [lo, hi] (elementwise): extremes at the ends or at breakpoints."""
    cand = [act(lo), act(hi)]
    for t in act.breakpoints:
        inside = (lo < t) & (t < hi)
        val = np.where(inside, act(np.full_like(lo, t)), np.nan)
        cand.append(val)
    C = np.stack(cand)
    return np.nanmin(C, axis=0), np.nanmax(C, axis=0)


def _carry_params(act, lo, hi):
    """Per element (λ, c, a, β): z = p/λ + c stays strictly inside one piece of φ with slope a ≠ 0 (intercept β)
    for every p in [lo, hi], so p = λ(φ(z) − β)/a − λc exactly there. Margins are generous (bounds are loose)."""
    t, a, icpt = act.breakpoints, act.slopes, act.intercepts()
    span = hi - lo + 1.0
    if not t:
        return np.ones_like(lo), np.zeros_like(lo), a[0], icpt[0]
    if a[-1] != 0:  # right unbounded piece: z = p + c > t_K
        return np.ones_like(lo), t[-1] - lo + span, a[-1], icpt[-1]
    if a[0] != 0:  # left unbounded piece: z = p + c < t_1
        return np.ones_like(lo), t[0] - hi - span, a[0], icpt[0]
    k = next(i for i in range(1, len(a) - 1) if a[i] != 0)  # a bounded piece with slope ≠ 0 (φ not constant)
    width = t[k] - t[k - 1]
    lam = 8.0 * span / width  # |z − midpoint| ≤ (hi − lo)/(2λ) < width/16
    return lam, (t[k] + t[k - 1]) / 2 - (lo + hi) / (2 * lam), a[k], icpt[k]


class _Affine:
    """h = v + Σ_i u_i T_i: a tensor as an affine function of the last emitted layer's output u."""

    def __init__(self, v, T):
        self.v, self.T = v, T

    def bounds(self, u_lo, u_hi):
        mid, rad = (u_lo + u_hi) / 2, (u_hi - u_lo) / 2
        T = self.T.reshape(self.T.shape[0], -1)
        c = self.v.reshape(-1) + mid @ T
        r = rad @ np.abs(T)
        slack = 1e-9 * (np.abs(c) + r + 1.0)  # float64 rounding of the interval sums, with wide headroom
        return c - r - slack, c + r + slack


class _SliceBuilder:
    """Composes the conditioned ops with the slice map into dense layers. Tensors needed after an activation
    (the inputs and partial outputs of enclosing residual blocks) are *carried* through that layer by neurons
    that stay on one affine piece of φ over the whole slice window (interval bounds), so they add no switching
    set inside the window and the activation regions counted there are exactly those of the network."""

    def __init__(self, sl: Slice, shape):
        self.layers = []
        self.u_lo, self.u_hi = -np.full(sl.k, sl.radius), np.full(sl.k, sl.radius)
        self.pending: list[_Affine] = []
        self.h = _Affine(sl.x0.reshape(1, *shape), sl.V.T.reshape(sl.k, *shape))
        self.dirty = True

    def emit(self, act):
        h = self.h
        n_u = h.T.shape[0]
        Ws, bs, lo_all, hi_all = [h.T.reshape(n_u, -1).T], [h.v.reshape(-1)], [], []
        zlo, zhi = h.bounds(self.u_lo, self.u_hi)
        lo_all.append(zlo), hi_all.append(zhi)
        carry = []
        for p in self.pending:
            plo, phi = p.bounds(self.u_lo, self.u_hi)
            lam, c, a, beta = _carry_params(act, plo, phi)
            Ws.append(p.T.reshape(n_u, -1).T / lam[:, None])
            bs.append(p.v.reshape(-1) / lam + c)
            lo_all.append(plo / lam + c), hi_all.append(phi / lam + c)
            carry.append((p, lam, c, a, beta))
        W, b = np.concatenate(Ws), np.concatenate(bs)
        self.layers.append(Layer(W, b, act, None))
        ylo, yhi = _phi_range(act, np.concatenate(lo_all), np.concatenate(hi_all))
        self.u_lo, self.u_hi = ylo, yhi
        n = W.shape[0]
        eye = np.eye(n)
        off = h.T[0].size
        self.h = _Affine(np.zeros((1, *h.T.shape[1:])), eye[:, :off].reshape(n, *h.T.shape[1:]))
        new_pending = []
        for p, lam, c, a, beta in carry:
            m = p.T[0].size
            sel = eye[:, off:off + m]  # u → carried z
            off += m
            # p = λ(u_z − β)/a − λc
            v = (-lam * beta / a - lam * c).reshape(1, *p.T.shape[1:])
            T = (sel * (lam / a)[None, :]).reshape(n, *p.T.shape[1:])
            new_pending.append(_Affine(v, T))
        self.pending = new_pending
        self.dirty = False

    def emit_max(self, pool):
        """A dense layer W = (tangents of h), b = h's value, with the max-group activation over the pool windows of
        h's tensor; carried tensors pass as singleton groups (the identity: no switching set)."""
        h = self.h
        n_u = h.T.shape[0]
        shape = h.T.shape[1:]
        main = pool_groups(pool, shape)
        out_shape = pool.out_shape(shape)
        Ws, bs = [h.T.reshape(n_u, -1).T], [h.v.reshape(-1)]
        zlo, zhi = h.bounds(self.u_lo, self.u_hi)
        lo_all, hi_all = [main(zlo[None])[0]], [main(zhi[None])[0]]  # max is monotone: bounds of the maxima
        groups = list(main.groups)
        n_h = Ws[0].shape[0]
        sizes = []
        for p in self.pending:
            plo, phi = p.bounds(self.u_lo, self.u_hi)
            Ws.append(p.T.reshape(n_u, -1).T)
            bs.append(p.v.reshape(-1))
            m = p.T[0].size
            groups += [(n_h + sum(sizes) + k,) for k in range(m)]
            sizes.append(m)
            lo_all.append(plo), hi_all.append(phi)
        W, b = np.concatenate(Ws), np.concatenate(bs)
        self.layers.append(Layer(W, b, MaxGroups(groups, W.shape[0]), None))
        self.u_lo, self.u_hi = np.concatenate(lo_all), np.concatenate(hi_all)
        G = len(groups)
        eye = np.eye(G)
        off = main.n_groups
        self.h = _Affine(np.zeros((1, *out_shape)), eye[:, :off].reshape(G, *out_shape))
        new_pending = []
        for p, m in zip(self.pending, sizes):
            new_pending.append(_Affine(np.zeros((1, *p.T.shape[1:])), eye[:, off:off + m].reshape(G, *p.T.shape[1:])))
            off += m
        self.pending = new_pending
        self.dirty = False

    def run(self, ops, prefix=""):
        for i, op in enumerate(ops):
            if isinstance(op, CMaxPool):
                self.emit_max(op.op)
                continue
            if isinstance(op, CActivation):
                self.emit(op.activation)
                continue
            if isinstance(op, CResidual):
                if not _has_cpa([op]):
                    self.h = _Affine(*_push_affine([op], self.h.v, self.h.T))
                    self.dirty = True
                    continue
                entry = self.h
                self.pending.append(entry)
                self.run(op.body, f"{prefix}layer {i} body: ")
                entry = self.pending.pop()
                body_out = self.h
                if op.shortcut is None:
                    short = entry
                else:
                    self.pending.append(body_out)
                    self.h = entry
                    self.run(op.shortcut, f"{prefix}layer {i} shortcut: ")
                    short, body_out = self.h, self.pending.pop()
                self.h = _Affine(body_out.v + short.v, body_out.T + short.T)
                self.dirty = True
                continue
            self.h = _Affine(*_push_affine([op], self.h.v, self.h.T))
            self.dirty = True


def _conv_slice(cond: ConditionedConvNetwork, sl: Slice) -> Network:
    if sl.x0.shape[0] != cond.input_dim:
        raise ShapeError(f"slice lives in dimension {sl.x0.shape[0]}; the network's input has {cond.input_dim}.")
    b = _SliceBuilder(sl, cond.input_shape)
    b.run(cond.ops)
    if b.dirty or not b.layers:
        h = b.h
        b.layers.append(Layer(h.T.reshape(h.T.shape[0], -1).T, h.v.reshape(-1), identity(), None))
    return Network(sl.k, tuple(b.layers))


def slice_network(net, sl: Slice) -> Network:
    """The network restricted to the slice, as a dense :class:`Network` of input dimension k (no BN: train-mode
    statistics are those of the original batch, frozen before composing). ``net``: :class:`Network`,
    :class:`ConditionedNetwork`, :class:`ConvNetwork` or :class:`ConditionedConvNetwork`.

    With residual blocks the result equals the network on the slice window [−r, r]^k only (carried neurons, see
    the module docstring); count it in that window (:func:`count_on_slice`)."""
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

    centres = np.atleast_2d(np.asarray(centres, dtype=np.float64))
    keys = jax.random.split(key, len(centres))
    jobs = [(net, random_slice(c, k, key=kk, radius=radius)) for c, kk in zip(centres, keys)]
    results = list(executor.map(_count_one, jobs) if executor is not None else map(_count_one, jobs))
    from numerics.stats import mean_ci

    counts = np.array([r[0] for r in results], dtype=np.float64)
    mean, (lo, hi) = mean_ci(counts, confidence)
    return {"counts": counts.astype(int), "mean": mean, "ci": (lo, hi), "confidence": confidence,
            "k": k, "radius": float(radius), "certified": all(r[1] for r in results)}
