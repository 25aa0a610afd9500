"""BLAS held at one thread while a flat engine counts.

The flat engines' linear algebra is thousands of tiny products (3×3 solves, d-column charts); OpenBLAS's worker
threads gain no wall time on them but keep a second core busy (3-16-16-16-1 at radius 1: 0.37 s wall either
way, 0.59 s CPU with two BLAS threads against 0.36 s with one), which a process pool or a Dask worker running
counts side by side pays for. :func:`one_blas_thread` limits the BLAS pools (threadpoolctl) for the duration of
a count and restores them after; nested and concurrent counts in threads share one limit, released by the last
to leave, so no caller's setting is left changed. (Observed with numpy's OpenBLAS: a limit set from a worker
thread after the main thread set one has no effect there; the count is then just not limited.)
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

__all__ = ["one_blas_thread"]

_lock = threading.Lock()
_state = {"depth": 0, "limiter": None, "controller": None, "modules": -1}


def _controller():
    """threadpoolctl's view of the loaded libraries, scanned again only when a module was imported since the last
    scan (a scan reads the process's memory map: ~1.3 ms with numba loaded, per count otherwise). Call under
    ``_lock``."""
    import sys

    n = len(sys.modules)
    if _state["controller"] is None or n != _state["modules"]:
        from threadpoolctl import ThreadpoolController

        _state["controller"], _state["modules"] = ThreadpoolController(), n
    return _state["controller"]


@contextmanager
def one_blas_thread():
    """Run the body with every loaded BLAS pool at one thread (re-entrant; thread-safe)."""
    with _lock:
        if _state["depth"] == 0:
            # the BLAS libraries loaded now (a library loaded later, e.g. scipy's, is seen by the next count)
            _state["limiter"] = _controller().limit(limits=1, user_api="blas")
        _state["depth"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["depth"] -= 1
            if _state["depth"] == 0:
                _state["limiter"].restore_original_limits()
                _state["limiter"] = None
