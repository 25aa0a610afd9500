"""JAX kernels for the C4 window criterion: hitting numbers over neurons × windows × breakpoints.

One jit boundary (``hit_counts``), pure functions inside. The criterion itself is the core's
``cpa_theory.windows.hyperplane_residual`` / ``window_slack`` called with ``xp=jax.numpy``: each
hyperplane is first divided by its dual norm, so the test |aᵀ(x0 − p) − c| < r‖a‖_q becomes
|âᵀ(x0 − p) − ĉ| < r — one matmul per chunk of windows and a comparison, with the N × M boolean
matrix reduced inside the chunk (never materialised for the whole problem).

Shapes: normals (N, d), offsets (N, K), anchor (d,), centers (M, d) → hits (M,) int32.
Deep form (C9): pass normals A_Pᵀw per parent region through :func:`deep_hit_counts`.
"""

from __future__ import annotations

import numpy as np

from cpa_theory.windows import dual_norm, hyperplane_residual, window_slack

__all__ = ["ensure_x64", "normalize_hyperplanes", "window_hits_dense", "euler_regions_2d", "hit_counts",
           "deep_hit_counts",
           "TRACE_COUNT"]

#: how many times each jitted kernel has been traced (tests assert no recompilation for repeated shapes):
#: ``hit_counts`` here, ``sweep_point`` for the sweep's per-point kernel (numerics.sweep)
TRACE_COUNT = {"hit_counts": 0, "sweep_point": 0}


def ensure_x64() -> None:
    """THE float64 switch of the JAX layer: everything that certifies runs in float64 (THEORY §6). Called
    explicitly by every entry point that needs it (sweeps with float64 or exact counts, reproduce)."""
    import jax

    if not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)


def window_hits_dense(normals, anchor, offsets, centers, radius, norms=None, xp=None):
    """THE C4 kernel body: per window, the number of (neuron, breakpoint) hyperplanes aᵀ(x − p) = c that cut
    the open ℓ∞ box W(x0, r), i.e. |aᵀ(x0 − p) − c| < r‖a‖₁ (the core's ``hyperplane_residual`` and
    ``window_slack``). normals (n, d), anchor (d,), offsets (n, K), centers (M, d) → (M,) counts.
    ``norms``: the dual norms (default ‖a‖₁; pass 1.0 for hyperplanes normalised by
    :func:`normalize_hyperplanes`). Pure and jittable (``xp`` jax.numpy, the default) or numpy."""
    if xp is None:
        import jax.numpy as xp
    if norms is None:
        norms = dual_norm(normals, np.inf, xp=xp)[None, :, None]
    slack = window_slack(norms, hyperplane_residual(normals, anchor, offsets, centers, xp=xp), radius, xp=xp)
    return xp.sum(slack > 0, axis=(1, 2))


def normalize_hyperplanes(normals, offsets, p=np.inf):
    """Divide each hyperplane by its dual norm ‖a‖_q once; degenerate rows (a = 0) get offset +inf (never cut)."""
    normals = np.asarray(normals)
    norms = dual_norm(normals, p)
    safe = np.where(norms > 0, norms, 1.0)
    unit = normals / safe[:, None]
    off = np.where(norms[:, None] > 0, np.asarray(offsets) / safe[:, None], np.inf)
    return unit, off


def euler_regions_2d(normals, rhs, concurrent_at, centers, radius, xp=None):
    """Regions of a line arrangement in the open square W(x0, r), d = 2, by Euler's formula for lines in a
    convex window: N = 1 + h + Σ_p (m_p − 1) over the intersection points p inside int W (m_p lines through p).

    Lines aᵢᵀx = cᵢ: ``normals`` (n, 2), ``rhs`` (n,); lines with ``concurrent_at`` True all pass through ONE
    known point (BN at β = t: the centroid, given as ``point`` = centers' anchor below) and are counted with
    their common point once; every other pair is assumed to meet in at most one point of multiplicity 2 (generic
    lines: true with probability 1 for continuous parameter laws). ``centers`` (M, 2) → (M,) counts.
    Used by the sweep for E[N] over many networks; the exact counter certifies it on the counted ones."""
    if xp is None:
        import jax.numpy as xp
    point, flags = concurrent_at
    l1 = xp.sum(xp.abs(normals), axis=1)
    a11, a12 = normals[:, None, 0], normals[:, None, 1]
    b11, b12 = normals[None, :, 0], normals[None, :, 1]
    det = a11 * b12 - a12 * b11  # (n, n)
    safe = xp.where(det == 0, 1.0, det)
    px = (rhs[:, None] * b12 - a12 * rhs[None, :]) / safe
    py = (a11 * rhs[None, :] - rhs[:, None] * b11) / safe
    n = normals.shape[0]
    upper = xp.triu(xp.ones((n, n), dtype=bool), 1)
    both_concurrent = flags[:, None] & flags[None, :]
    pair_ok = upper & (det != 0) & ~both_concurrent

    def one(x0):
        h = xp.sum(xp.abs(normals @ x0 - rhs) < radius * l1)
        inside = (xp.abs(px - x0[0]) < radius) & (xp.abs(py - x0[1]) < radius)
        crossings = xp.sum(pair_ok & inside)
        m0 = xp.sum(flags & (xp.abs(normals @ x0 - rhs) < radius * l1))
        at_point = xp.all(xp.abs(point - x0) < radius)
        return 1 + h + crossings + xp.where(at_point & (m0 > 0), m0 - 1, 0)

    if xp is np:
        return np.array([one(x0) for x0 in centers])
    import jax

    return jax.vmap(one)(centers)


def _hits_impl(unit_normals, unit_offsets, anchor, centers, radius, chunk):
    import jax
    import jax.numpy as jnp

    TRACE_COUNT["hit_counts"] += 1  # Python side effect: runs once per trace, not per call
    M, d = centers.shape
    pad = (-M) % chunk
    padded = jnp.concatenate([centers, jnp.broadcast_to(anchor, (pad, d)).astype(centers.dtype)], axis=0)
    blocks = padded.reshape(-1, chunk, d)

    def one_block(block):
        return window_hits_dense(unit_normals, anchor, unit_offsets, block, radius, norms=1.0,
                                 xp=jnp).astype(jnp.int32)

    return jax.lax.map(one_block, blocks).reshape(-1)[:M]


_hits_jit = None


def hit_counts(unit_normals, unit_offsets, anchor, centers, radius, *, chunk: int = 256):
    """Per-window hitting numbers (strict cuts) for hyperplanes already normalised by :func:`normalize_hyperplanes`.

    dtype follows the inputs (float32 or float64; float64 needs ``jax_enable_x64``). Compiles once per
    shape/dtype/chunk; repeated calls with the same shapes reuse the compiled kernel.
    """
    global _hits_jit
    import jax

    if _hits_jit is None:
        _hits_jit = jax.jit(_hits_impl, static_argnames=("chunk",))
    return _hits_jit(unit_normals, unit_offsets, anchor, centers, radius, chunk=chunk)


def deep_hit_counts(W, A_stack, c_stack, layer_anchor, offsets, centers, radius, p=np.inf):
    """C9: hitting numbers of a deep layer inside parent regions, one parent map per window.

    Args: W (n, m) the layer's weights; A_stack (M, m, d), c_stack (M, m) the parent maps at the windows;
    layer_anchor (m,) the layer's BN anchor (h̄); offsets (n, K) the layer's switching offsets s·τ;
    centers (M, d). Returns (M,) hits with the normal A_Pᵀw and the residual wᵀ(A x0 + c − h̄) − sτ.
    """
    import jax
    import jax.numpy as jnp

    def one(A, c, x0):
        normals = W @ A  # (n, d): rows A_Pᵀ w
        resid = (W @ (A @ x0 + c - layer_anchor))[:, None] - offsets
        slack = window_slack(dual_norm(normals, p, xp=jnp)[:, None], resid, radius, xp=jnp)
        return jnp.sum(slack > 0, dtype=jnp.int32)

    return jax.jit(jax.vmap(one))(A_stack, c_stack, centers)

