"""The flat counting engines' kernels in JAX: :mod:`cpa_theory.frontier_kernels` under one jit boundary.

``count_regions(..., kernels="jax")`` (or ``"auto"`` when JAX's default backend is a GPU) runs the float64
filters of every wave — box sides and vertex sides — and the chart composition of every layer through
:func:`_kernel`, the module's one jitted function. Everything else stays on the host: the waves, the splits and
the exact rational decision of every entry a filter leaves undecided (``exact_fallbacks``), so the counts and
certificates are those of the numpy kernels.

Shapes vary from call to call, so the leading axis (cells, vertices, rows) is padded to a power of two of at
least ``_MIN_ROWS`` (capacity doubling): a window compiles each kernel O(log N) times, and repeated shapes
reuse the compiled code (``TRACE_COUNT``; a test asserts it).

Float64 everywhere (:func:`numerics.kernels.ensure_x64`). The filters' bounds hold whether the backend keeps
subnormal float64 values or flushes them to zero (their absolute underflow term,
:mod:`cpa_theory.frontier_kernels`); a backend that flushes (XLA on CPU does;
:meth:`JaxKernels.flushes_subnormals` measures it once) has its chart composition done by numpy, since the
charts' error bounds are relative to their magnitudes.
"""

from __future__ import annotations

import numpy as np

from cpa_theory.frontier_kernels import NUMPY, box_sides, charts_after, next_lines, vertex_sides

from .kernels import ensure_x64

__all__ = ["JaxKernels", "TRACE_COUNT"]

#: traces of :func:`_kernel` per kind (tests assert that repeated shapes do not recompile)
TRACE_COUNT = {"box": 0, "vertex": 0, "compose": 0, "probe": 0}

_MIN_ROWS = 256


def _kernel(which: str, *arrays):
    """THE jit boundary of this module (``which`` static)."""
    import jax.numpy as jnp

    TRACE_COUNT[which] += 1  # Python side effect: once per trace
    if which == "box":
        return box_sides(*arrays, xp=jnp)
    if which == "vertex":
        return vertex_sides(*arrays, xp=jnp)
    if which == "compose":
        N, z0, mlin, mgap, pieces, st, it, mt, g, e, W2, p2, g2, e2, t2, rel, zerr = arrays
        A, c, mA, mc = charts_after(N, z0, mlin, mgap, pieces, (st, it, mt), g, e, xp=jnp)
        return next_lines(W2, p2, g2, e2, t2, A, c, mA, mc, rel, zerr, xp=jnp)
    if which == "probe":  # half of the smallest normal float64: a subnormal, or 0 where the backend flushes
        return arrays[0] * 0.5
    raise ValueError(which)


def _rows(n: int) -> int:
    return max(_MIN_ROWS, 1 << max(0, int(n) - 1).bit_length())


def _padded(x, rows: int):
    x = np.asarray(x)
    if x.shape[0] == rows:
        return x
    out = np.zeros((rows,) + x.shape[1:], dtype=x.dtype)
    out[: x.shape[0]] = x
    return out


class JaxKernels:
    """:class:`cpa_theory.frontier_kernels.NumpyKernels`'s interface on JAX (jitted, padded, results as numpy)."""

    name = "jax"
    compiled = False  # the flat engines call these kernels (not the CPU's compiled loops)
    _instance = None

    @classmethod
    def shared(cls) -> "JaxKernels":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def __init__(self):
        import jax

        ensure_x64()
        self._jit = jax.jit(_kernel, static_argnums=(0,))
        self.flush = self.flushes_subnormals()
        self.backend = jax.default_backend()

    def flushes_subnormals(self) -> bool:
        """Whether this backend flushes subnormal float64 results to zero (measured, once)."""
        tiny = np.array([2.0 ** -1022])
        return float(np.asarray(self._jit("probe", tiny))[0]) == 0.0

    def _rows_call(self, which, n, *arrays):
        rows = _rows(n)
        out = self._jit(which, *(_padded(a, rows) for a in arrays))
        return tuple(np.asarray(o)[:n] for o in out) if isinstance(out, tuple) else np.asarray(out)[:n]

    def box_sides(self, box, Tg):
        return self._rows_call("box", len(box), box, Tg)

    def vertex_sides(self, V, Tg):
        return self._rows_call("vertex", len(V), V, Tg)

    def compose(self, args):
        if self.flush:  # relative chart bounds only: no flushing backend composes them (module docstring)
            return NUMPY.compose(args)
        N, z0, mlin, mgap, pieces, (st, it, mt), g, e, W2, p2, g2, e2, t2, rel, zerr = args
        n = len(N)
        rows = _rows(n)
        out = self._jit("compose", *(_padded(a, rows) for a in (N, z0, mlin, mgap, pieces)),
                        st, it, mt, g, e, W2, p2, g2, e2, t2, np.float64(rel), zerr)
        return tuple(np.asarray(o)[:n] for o in out)
