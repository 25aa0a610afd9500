"""Switching hyperplanes of a layer (THEORY C2, C3, C8, C9).

Every (neuron i, breakpoint k) switching set is stored in *anchored* form

    a_iᵀ (x − p) = c_ik,

with normal a_i in input coordinates, one anchor point p per layer and offset
c_ik. For a first layer with train-mode BN, p is the batch centroid x̄ and
c_ik = s_i τ_ik (C3); the reference hyperplane is c = 0 (C2). For a deeper layer
whose input on a parent region P is h = A_P x + c_P (C9), a_i = A_Pᵀ w_i and p is
the pull-back of the layer's batch centroid when it exists. Keeping offsets
relative to the anchor is what keeps concurrent hyperplanes exactly concurrent
and far-from-origin data numerically safe.

Degenerate neurons get a named :class:`HyperplaneStatus`, never a NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable
from enum import IntEnum

import numpy as np

from .errors import ShapeError
from .maxgroups import distinct_pairs, is_max_groups
from .network import ConditionedNetwork, Network
from .tolerances import PULLBACK_RTOL

__all__ = ["HyperplaneStatus", "SwitchingHyperplanes", "switching_hyperplanes", "layer_switching_sets",
           "pullback_anchors"]


class HyperplaneStatus(IntEnum):
    """What a (neuron, breakpoint) switching set is."""

    REGULAR = 0  #: a genuine hyperplane
    CONSTANT = 1  #: neuron constant (γ = 0, w = 0 or A_Pᵀw = 0) and off the breakpoint: no switching set
    ON_BREAKPOINT = 2  #: neuron constant and exactly on the breakpoint: the whole space, never a cut
    BN_UNDEFINED = 3  #: s = 0 (ε = 0 and zero batch variance): BN undefined


@dataclass(frozen=True)
class SwitchingHyperplanes:
    """Switching sets a_iᵀ(x − p) = c_ik of one layer, in input coordinates.

    Shapes (n neurons, K breakpoints, d input dimension):
        normals ``(n, d)``, anchor ``(d,)``, offsets ``(n, K)``, breakpoints ``(K,)``,
        status ``(n, K)`` (:class:`HyperplaneStatus` values), tau ``(n, K)`` (train-mode BN
        only, else None), scale ``(n,)`` s_i (train-mode BN only, else None).
    """

    layer: int
    normals: np.ndarray
    anchor: np.ndarray
    offsets: np.ndarray
    breakpoints: np.ndarray
    status: np.ndarray
    tau: np.ndarray | None = None
    scale: np.ndarray | None = None
    anchor_is_pullback: bool = True
    #: ``(n,)`` bound on |ρ − ρ*|, the float residual aᵀ(x − p) − c against the network's exact one (the float
    #: anchor p against the exact batch centroid); None when the data are the definition (no exact form)
    residual_error: np.ndarray | None = None
    #: ``exact(i, k) → (a, β)``: switching set (i, k) of the network taken exactly, {a·x = β} in rationals (the
    #: exact batch centroid, float64 gains and shifts as data: what the region counter decides on); or None
    exact: Callable[[int, int], tuple] | None = field(default=None, compare=False, repr=False)

    @property
    def num_neurons(self) -> int:
        return self.normals.shape[0]

    @property
    def regular(self) -> np.ndarray:
        """``(n, K)`` bool: which switching sets are genuine hyperplanes."""
        return self.status == HyperplaneStatus.REGULAR

    def reference(self) -> "SwitchingHyperplanes":
        """The reference hyperplanes a_iᵀ(x − p) = 0 (through the centroid in train mode, C2)."""
        n = self.num_neurons
        undefined = np.any(self.status == HyperplaneStatus.BN_UNDEFINED, axis=1)
        nonzero = np.any(self.normals != 0, axis=1)
        status = np.where(nonzero & ~undefined, HyperplaneStatus.REGULAR, HyperplaneStatus.CONSTANT).astype(np.int8)
        return replace(self, offsets=np.zeros((n, 1)), breakpoints=np.array([np.nan]), status=status[:, None],
                       tau=None if self.tau is None else np.zeros((n, 1)), residual_error=None, exact=None)

    def signed_distances(self) -> np.ndarray:
        """``(n, K)`` signed Euclidean distance of each hyperplane from the anchor: c_ik/‖a_i‖₂ (0 if degenerate)."""
        norms = np.linalg.norm(self.normals, axis=1)[:, None]
        return np.where(self.regular, self.offsets / np.where(norms > 0, norms, 1.0), 0.0)

    def equations(self) -> tuple[np.ndarray, np.ndarray]:
        """Plain form a_iᵀx = rhs_ik: ``(normals (n, d), rhs (n, K))``. Loses the anchoring: for display."""
        return self.normals, self.normals @ self.anchor[:, None] + self.offsets


def pullback_anchors(A: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched pull-back: least-squares y with A y ≈ target for ``A (C, m, d)``, ``target (C, m)``.

    Returns ``(y (C, d), ok (C,))``; ``ok`` iff A is injective (rank d) and target ∈ range(A) within
    ``PULLBACK_RTOL`` — then y is the unique pull-back x*_P of C9.
    """
    U, S, Vt = np.linalg.svd(A, full_matrices=False)
    cutoff = S.max(axis=1, keepdims=True, initial=0.0) * max(A.shape[1:]) * np.finfo(np.float64).eps
    keep = S > cutoff
    inv = np.where(keep, 1.0 / np.where(keep, S, 1.0), 0.0)
    y = np.einsum("ckd,ck,cmk,cm->cd", Vt, inv, U, target)
    resid = np.linalg.norm(np.einsum("cmd,cd->cm", A, y) - target, axis=1)
    scale = np.linalg.norm(target, axis=1) + np.linalg.norm(A, axis=(1, 2)) * np.linalg.norm(y, axis=1) + 1.0
    return y, (keep.sum(axis=1) == A.shape[2]) & (resid <= PULLBACK_RTOL * scale)


def _pullback(A: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, bool]:
    """One pull-back (see :func:`pullback_anchors`)."""
    y, ok = pullback_anchors(A[None], target[None])
    return y[0], bool(ok[0])


def switching_hyperplanes(net, layer: int = 0, affine=None, anchor=None) -> SwitchingHyperplanes:
    """All (neuron, breakpoint) switching sets of ``layer``.

    Args:
        net: a :class:`ConditionedNetwork` (or a :class:`Network`, conditioned on its batch).
        layer: layer index; for ``layer > 0`` give ``affine``.
        affine: ``(A, c)`` with ``A (m, d)``, ``c (m,)``: the layer's input is h = A x + c on
            the parent region (C9). Default for layer 0: the identity.
        anchor: ``(d,)`` anchor point p in input coordinates. Default: the layer's BN anchor
            pulled back through ``affine`` (x̄ itself for layer 0).
    """
    if isinstance(net, Network):
        net = net.condition()
    if not isinstance(net, ConditionedNetwork):
        from .inputs import check_network

        check_network(net, "switching_hyperplanes")  # a typed error (also a TypeError)
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= layer < len(net.layers):
        raise ShapeError(f"layer {layer!r} does not exist; give an integer layer index in 0..{len(net.layers) - 1}.")
    cl = net.layers[layer]
    W, bn = cl.weight, cl.bn
    d = net.input_dim
    if affine is None:
        if layer != 0:
            raise ShapeError(f"layer {layer} is not affine in x globally; pass affine=(A_P, c_P), the map of its "
                             "input on a parent region (see parent_affine_map / C9).")
        A, c = np.eye(d), np.zeros(d)
    else:
        A, c = (np.asarray(v, dtype=np.float64) for v in affine)
        if A.shape != (W.shape[1], d) or c.shape != (W.shape[1],):
            raise ShapeError(f"affine map must be A ({W.shape[1]}, {d}) and c ({W.shape[1]},); got "
                             f"{A.shape} and {c.shape}.")
    if anchor is None:
        if affine is None:
            p, is_pullback = bn.anchor.copy(), True
        else:
            p, is_pullback = _pullback(A, bn.anchor - c)
    else:
        p = np.asarray(anchor, dtype=np.float64)
        if p.shape != (d,):
            raise ShapeError(f"anchor must have shape ({d},); got {p.shape}.")
        is_pullback = False
    normals, offsets, status, tau = layer_switching_sets(cl, A, c, p)
    if is_max_groups(cl.activation):  # one "neuron" per distinct pair, the difference z_a − z_b, breakpoint 0
        return SwitchingHyperplanes(layer, normals, p, offsets, np.zeros(1), status, None, None, is_pullback)
    scale = None if bn.scale is None else bn.scale.copy()
    err, exact = None, None
    if layer == 0 and affine is None and anchor is None:
        err, exact = _first_layer_exact(net)
    return SwitchingHyperplanes(layer, normals, p, offsets, cl.activation.breakpoints_array, status, tau, scale,
                                is_pullback, err, exact)


def _first_layer_exact(cond):
    """``(residual_error, exact)`` of the first layer (see :class:`SwitchingHyperplanes`): the exact switching sets
    come from :class:`cpa_theory.exact.ExactCharts` at the origin, built on first use."""
    from .exact import ExactCharts

    bn = cond.layers[0].bn
    g = np.abs(bn.gain)
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.where(g > 0, bn.z_error / np.where(g > 0, g, 1.0), 0.0)
    charts = []

    def exact(i: int, k: int):
        if not charts:
            charts.append(ExactCharts(cond, np.zeros(cond.input_dim)))
        return charts[0].hyperplane((), i, k)

    return err, exact


def layer_switching_sets(cl, A, c, anchor):
    """Switching sets of a conditioned layer whose input is h = A y + c, in anchored form aᵀ(y − anchor) = off.

    The one place where a layer's switching sets are pulled back through an affine map (C3, C8, C9);
    ``switching_hyperplanes`` and the region counter both call it. ``A (..., m, d)`` and ``c (..., m)`` may
    carry leading batch axes (one map per parent region).

    Returns ``normals (..., n, d)``, ``offsets (..., n, K)``, ``status (..., n, K)`` int8, ``tau (n, K)`` or None.
    A max-group layer (max-pooling) has as switching sets the pairwise differences {ẑ_a = ẑ_b} of its groups:
    then n is the number of distinct pairs (``maxgroups.distinct_pairs``), K = 1 (breakpoint 0 of ẑ_a − ẑ_b) and
    tau is None.
    """
    if is_max_groups(cl.activation):
        return _pair_switching_sets(cl, A, c, anchor)
    bn = cl.bn
    # rows Aᵀ w_i, and w_iᵀ(A p + c − p_layer): zero when p is an exact pull-back; kept so the offsets stay exact.
    normals, anchor_gap = cl.chart(A, np.matmul(A, anchor) + c)
    t = cl.activation.breakpoints_array
    base, tau = bn.switching_offsets(t)
    offsets = base - anchor_gap[..., None]
    constant = (bn.gain == 0) | ~np.any(normals != 0, axis=-1)
    status = np.full(offsets.shape, HyperplaneStatus.REGULAR, dtype=np.int8)
    if np.any(constant):
        const_value = bn.gain * cl.chart(A, c)[1] + bn.shift
        status[constant] = HyperplaneStatus.CONSTANT
        status[constant[..., None] & (const_value[..., None] == t)] = HyperplaneStatus.ON_BREAKPOINT
    status[..., bn.undefined, :] = HyperplaneStatus.BN_UNDEFINED
    regular = status == HyperplaneStatus.REGULAR
    if not regular.all():
        offsets = np.where(regular, offsets, 0.0)
        if tau is not None and regular.ndim == 2:
            tau = np.where(regular, tau, 0.0)
    return normals, offsets, status, tau


def _pair_switching_sets(cl, A, c, anchor):
    """:func:`layer_switching_sets` of a max-group layer: ẑ_a − ẑ_b = (g_a lin_a − g_b lin_b)(y − anchor)
    + (g_a gap_a + e_a) − (g_b gap_b + e_b), so the set {ẑ_a = ẑ_b} has normal g_a lin_a − g_b lin_b and offset
    (g_b gap_b + e_b) − (g_a gap_a + e_a)."""
    bn = cl.bn
    lin, anchor_gap = cl.chart(A, np.matmul(A, anchor) + c)
    lo, hi = distinct_pairs(cl.activation)
    Nl = bn.gain[:, None] * lin
    zg = bn.gain * anchor_gap + bn.shift
    normals = Nl[..., lo, :] - Nl[..., hi, :]
    offsets = (zg[..., hi] - zg[..., lo])[..., None]
    status = np.full(offsets.shape, HyperplaneStatus.REGULAR, dtype=np.int8)
    constant = ~np.any(normals != 0, axis=-1)
    if np.any(constant):
        const_diff = (bn.gain * cl.chart(A, c)[1] + bn.shift)
        const_diff = const_diff[..., lo] - const_diff[..., hi]
        status[constant] = HyperplaneStatus.CONSTANT
        status[constant & (const_diff == 0)] = HyperplaneStatus.ON_BREAKPOINT
    undefined = bn.undefined[lo] | bn.undefined[hi]
    status[..., undefined, :] = HyperplaneStatus.BN_UNDEFINED
    offsets = np.where(status == HyperplaneStatus.REGULAR, offsets, 0.0)
    return normals, offsets, status, None
