"""The flat engines' float64 kernels, written once on an array namespace ``xp`` (numpy, or jax.numpy under the
one jit boundary of :mod:`numerics.frontier_jax`).

The hot loop of :mod:`cpa_theory.frontier` is host orchestration (waves of cells, splits, exact rational
fallbacks) around three pure array kernels; everything that certifies is decided by their float64 filters
with proven error bounds, and every entry a filter leaves undecided goes to the host's exact rational test
(with the numpy kernels, the CPU default, the filters run inside the compiled loops of
:mod:`cpa_theory.frontier_loops` instead — the same bounds, tested equal to these functions):

* :func:`box_sides` — side of a cell's bounding box for a hyperplane (the parent test and the first test of
  every wave): +1 / −1 when the whole box is strictly on one side of the *exact* hyperplane, 0 undecided.
* :func:`vertex_sides` — side of a vertex (float coordinates with an error bound) for a hyperplane: the sign,
  and a mask of the entries float64 cannot decide (sent to rationals) or that overflowed (an internal error).
* :func:`next_lines` — a layer's output charts on cells (from the parent's pre-activation chart and the cells'
  pieces) composed with the next layer (:meth:`cpa_theory.network.ConditionedLayer.chart`): the next layer's
  switching sets {ẑ_j = t_k} with their error bounds, and the magnitude bounds for the layer after.

Underflow. The filters' bounds are relative to the terms' magnitudes, plus an absolute term
``(3d + 5)·2^-1022·(1 + the terms' magnitudes)`` that covers every product or operand lost to underflow —
gradual (numpy: at most 2^-1075 each) or flushed to zero (XLA on CPU flushes subnormal float64: at most
2^-1022 each). The chart bounds carry no absolute term, so their magnitudes must stay clear of the underflow
range: :func:`cpa_theory.frontier._lines_dict` refuses charts whose products fall below
:data:`cpa_theory.frontier.CHART_MIN_PRODUCT` (an internal error), and a backend that flushes leaves chart
composition to numpy.
"""

from __future__ import annotations

import functools

import numpy as np

from .tolerances import DOT_EXTRA_TERMS, FILTER_SAFETY, UNIT_ROUNDOFF

__all__ = ["box_sides", "vertex_sides", "charts_after", "next_lines", "chart_tables", "left_multiply", "NumpyKernels",
           "NUMPY", "select_kernels", "TINY"]

U = UNIT_ROUNDOFF

#: smallest normal float64 (2^-1022): the absolute error of one flushed subnormal
TINY = 2.0 ** -1022


def box_sides(box, Tg, xp=np):
    """Side of a box for a hyperplane, decided in float64 when safe: int8, +1 / −1 when every point of the box is
    strictly on that side of the *exact* hyperplane, 0 when undecided. ``box (..., 2d)`` = (lo, hi);
    ``Tg (..., 2d + 3)`` the rows of :func:`cpa_theory.frontier._sign_table`; the leading axes broadcast (one
    box against the lines of its cell: ``box (C, 1, 2d)``, ``Tg (C, nK, 2d + 3)``).

    With M = max(|lo|, |hi|) per coordinate, |(a*·y − β*) − fl(a·y − β)| ≤ EA·M + Eβ + k(|a|·M + |β|) for every
    y in the box (the vertex filter's bound at |y| ≤ M, error 0), and the float function's minimum over the box
    is at the corner that takes lo where a ≥ 0 (maximum: the opposite corner)."""
    d = box.shape[-1] // 2
    lo, hi = box[..., :d], box[..., d:]
    a = Tg[..., :d]
    M = xp.maximum(xp.abs(lo), xp.abs(hi))
    E = FILTER_SAFETY * (xp.einsum("...d,...d->...", M, Tg[..., d + 1:2 * d + 1]) + Tg[..., 2 * d + 1]
                         + (3 * d + 4) * TINY * (1 + xp.einsum("...d->...", M) + Tg[..., 2 * d + 2]))
    pos = a >= 0
    vmin = xp.einsum("...d,...d->...", a, xp.where(pos, lo, hi)) - Tg[..., d]
    vmax = xp.einsum("...d,...d->...", a, xp.where(pos, hi, lo)) - Tg[..., d]
    side = (vmin > E).astype(xp.int8) - (vmax < -E).astype(xp.int8)
    finite = xp.isfinite(vmin) & xp.isfinite(vmax) & xp.isfinite(E)
    return xp.where(finite, side, xp.zeros_like(side))  # overflow decides nothing: exact signs


def vertex_sides(V, Tg, xp=np):
    """Side of vertices ``V (M, d + 1)`` (coordinates, error bound) for hyperplanes ``Tg (M, 2d + 3)``:
    ``(sign (M,) int8, undecided (M,) bool, bad (M,) bool)``. float64 decides where |a·v − β| > E (the filter
    bound of :func:`cpa_theory.polytope.vertex_signs`); ``bad`` marks overflow or NaN (an internal error)."""
    d = V.shape[1] - 1
    vals = xp.einsum("md,md->m", V[:, :d], Tg[:, :d]) - Tg[:, d]
    E = FILTER_SAFETY * (xp.einsum("md,md->m", xp.abs(V[:, :d]), Tg[:, d + 1:2 * d + 1]) + Tg[:, 2 * d + 1]
                         + Tg[:, 2 * d + 2] * V[:, d] + (3 * d + 5) * TINY * (1 + xp.einsum("md->m", xp.abs(V))
                                                                            + Tg[:, 2 * d + 2]))
    bad = ~(xp.isfinite(vals) & xp.isfinite(E))
    return xp.sign(vals).astype(xp.int8), ~(xp.abs(vals) > E), bad


def left_multiply(weight, A, xp=np):
    """``weight (n, m)`` times every chart in the stack ``A (..., m, d)``: ``(..., n, d)``, as ONE matrix product
    over all charts and columns (a tensor contraction) — numpy's stacked ``matmul`` runs one small product per
    chart (2048 charts of 100 × 2 after a 100-wide layer: 14 ms against 3 ms). Each entry is a dot product of
    length m in some summation order, which is all the error bounds assume."""
    return xp.swapaxes(xp.tensordot(A, weight, axes=([A.ndim - 2], [1])), -1, -2)


def chart_tables(act):
    """Per piece of ``act``: slope, intercept and the intercept's magnitude bound (the tables
    :func:`charts_after` indexes with the cells' pieces)."""
    K = len(act.breakpoints)
    slope = np.asarray(act.slopes, dtype=np.float64)
    icpt = np.asarray(act.intercepts(), dtype=np.float64)
    t = act.breakpoints_array
    mag = np.abs(icpt) + np.abs(slope) * (np.abs(t).max() if K else 0.0) + (
        np.abs(np.asarray(act.values_at_breakpoints())).max() if K else 0.0)
    return slope, icpt, mag


def charts_after(N, z0, mlin, mgap, pieces, tables, g, e, xp=np):
    """A layer's output chart h = A y + c on cells whose pre-activation chart is ẑ = N y + z0 (rows of the parent,
    already gathered: ``N (C, n, d)``, ``z0 (C, n)``, magnitudes ``mlin``, ``mgap``) and whose neurons sit on
    ``pieces (C, n)``: ``(A, c, mA, mc)`` with the magnitude bounds of :func:`cpa_theory.regions._refine_batch`."""
    slope_tab, icpt_tab, mag_tab = tables
    slope, icpt = slope_tab[pieces], icpt_tab[pieces]
    aslope = xp.abs(slope)
    A = slope[:, :, None] * N
    c = slope * z0 + icpt
    mA = aslope[:, :, None] * xp.abs(g)[None, :, None] * mlin
    mc = aslope * (xp.abs(g)[None, :] * mgap + xp.abs(e)[None, :]) + mag_tab[pieces]
    return A, c, mA, mc


def next_lines(weight, anchor, g, e, t, A, c, mA, mc, rel, zerr, xp=np):
    """Switching sets of a layer (weight ``(n, m)``, BN anchor, gain ``g``, shift ``e``, breakpoints ``t``) on C
    parent charts h = A y + c (``A (C, m, d)``, ``c (C, m)``, magnitude bounds ``mA``, ``mc``, relative error
    ``rel``) — the chart primitive :meth:`cpa_theory.network.ConditionedLayer.chart` written on ``xp``. ``zerr``
    ``(n,)``: the absolute error of ẑ from the float anchor (:attr:`cpa_theory.bn.ConditionedBN.z_error`).

    Returns ``(fa (C, nK, d), fb (C, nK), EA, EB, N, z0, mlin, mgap, EN, Ez)``: line (j, k) at index j·K + k is
    {ẑ_j = t_k} = {fa·y = fb}, EA, EB its error bounds; ẑ = N y + z0 with error bounds EN, Ez; ``mlin``,
    ``mgap`` the magnitudes for the next chart. The relative error of this layer is
    ``rel + (m + DOT_EXTRA_TERMS + 2)·u``."""
    lin, gap = left_multiply(weight, A, xp), (c - anchor) @ weight.T
    N = g[None, :, None] * lin
    z0 = g * gap + e
    mlin = left_multiply(xp.abs(weight), mA, xp)
    mgap = (mc + xp.abs(anchor)) @ xp.abs(weight).T
    rel2 = rel + (weight.shape[1] + DOT_EXTRA_TERMS + 2) * U
    EN = rel2 * xp.abs(g)[None, :, None] * mlin
    Ez = rel2 * (xp.abs(g) * mgap + xp.abs(e)) + zerr
    C, n = z0.shape
    K = t.shape[0]
    fb = (t[None, None, :] - z0[:, :, None]).reshape(C, n * K)
    if K == 1:  # one breakpoint (ReLU): line j is neuron j, no copies
        return N, fb, EN, Ez + U * xp.abs(fb), N, z0, mlin, mgap, EN, Ez
    fa = xp.repeat(N, K, axis=1)
    return fa, fb, xp.repeat(EN, K, axis=1), xp.repeat(Ez, K, axis=1) + U * xp.abs(fb), N, z0, mlin, mgap, EN, Ez


class NumpyKernels:
    """The kernels on numpy (the CPU default): the reference every other backend is tested against."""

    name = "numpy"
    flush = False
    #: the flat engines run the filters of these kernels (parent test, 3-D waves) inside the compiled loops of
    #: :mod:`cpa_theory.frontier_loops` (the same bounds, tested equal to :func:`box_sides`, :func:`vertex_sides`)
    compiled = True

    def box_sides(self, box, Tg):
        with np.errstate(over="ignore", invalid="ignore"):
            return box_sides(box, Tg)

    def vertex_sides(self, V, Tg):
        with np.errstate(over="ignore", invalid="ignore"):
            return vertex_sides(V, Tg)

    def compose(self, args):
        """:func:`charts_after` then :func:`next_lines` on one chunk: ``args`` = (N, z0, mlin, mgap, pieces,
        tables, g, e, weight, anchor, g2, e2, t2, rel, zerr)."""
        N, z0, mlin, mgap, pieces, tables, g, e, W2, p2, g2, e2, t2, rel, zerr = args
        with np.errstate(over="ignore", invalid="ignore"):
            A, c, mA, mc = charts_after(N, z0, mlin, mgap, pieces, tables, g, e)
            return next_lines(W2, p2, g2, e2, t2, A, c, mA, mc, rel, zerr)


NUMPY = NumpyKernels()


def select_kernels(kind: str = "auto"):
    """``"numpy"``; ``"jax"`` (:class:`numerics.frontier_jax.JaxKernels`, jitted, any backend); ``"auto"``: jax
    when JAX's default backend is a GPU, numpy otherwise (CPU stays the default; JAX is not imported just to
    learn that no GPU plugin is installed)."""
    if kind == "numpy":
        return NUMPY
    if kind not in ("jax", "auto"):
        from .errors import ConfigError

        raise ConfigError(f"kernels must be 'auto', 'numpy' or 'jax', not {kind!r}.")
    if kind == "auto":
        import sys

        if "jax" not in sys.modules and not any(map(_installed, _GPU_PLUGINS)):
            return NUMPY
        import jax

        if jax.default_backend() not in ("gpu", "cuda", "rocm"):
            return NUMPY
    from numerics.frontier_jax import JaxKernels

    return JaxKernels.shared()


_GPU_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "jax_rocm7_plugin", "jaxlib.cuda")


@functools.lru_cache(maxsize=None)
def _installed(module: str) -> bool:
    """Whether ``module`` can be imported (looked up once per process: ~0.1 ms each)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
