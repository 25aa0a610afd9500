"""Freed memory kept for reuse (glibc's malloc), opt-in for a program, on for the command line.

A count allocates and frees tens of MiB per layer (wave tables, pools, hash sets). glibc adapts its thresholds
as chunks come and go and hands freed heap tops and large chunks back to the system, so the next layer faults
the same pages in again: about 4,000 minor page faults per 3-D bench window (3-16-16-16-1, six windows: 15,000–
25,000 faults a pass). :func:`keep_freed_memory` fixes the two thresholds at the maxima glibc's own adaptation
can reach — chunks below 32 MiB come from the heap, and a free heap top is given back only beyond 64 MiB — and
the faults fall to a few hundred a pass (measured: 0.19 s against 0.24 s wall for the six windows, CPU time
−20 %; the 2-D bench windows −7 %).

The setting is process-wide and cannot be undone (glibc has no call that restores its adaptive thresholds), so
the library never applies it on its own: the ``cpa-theory`` command applies it to its own process (opt out with
``CPA_THEORY_MALLOC=system``), a program calls :func:`keep_freed_memory` once if it wants it. Off glibc, or when
the process was started with glibc's own ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` environment
variables or ``glibc.malloc.`` tunables in ``GLIBC_TUNABLES`` (the user's choice stands), it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

__all__ = ["keep_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 * 2**20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: the largest adaptive mmap threshold
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # what the adaptation sets beside it
_USER_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

_lock = threading.Lock()
_state: dict = {"applied": None}


def keep_freed_memory() -> bool:
    """Fix glibc's mmap threshold at 32 MiB and its trim threshold at 64 MiB, once per process. Returns whether
    the setting is in force: False off glibc, when the user's environment sets glibc's thresholds
    (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or a ``glibc.malloc.`` tunable in
    ``GLIBC_TUNABLES``), or when mallopt refuses either value (the other may then be in force)."""
    with _lock:
        if _state["applied"] is None:
            _state["applied"] = _apply()
        return _state["applied"]


def _apply() -> bool:
    if (not sys.platform.startswith("linux") or any(k in os.environ for k in _USER_ENV)
            or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: musl's mallopt ignores these parameters)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mmap_ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    trim_ok = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return mmap_ok and trim_ok


def wanted_by_the_command_line() -> bool:
    """Whether the ``cpa-theory`` command applies :func:`keep_freed_memory` (``CPA_THEORY_MALLOC`` unset or
    ``keep``; ``system`` leaves glibc's defaults)."""
    mode = os.environ.get("CPA_THEORY_MALLOC", "keep").strip().lower()
    if mode not in ("keep", "system"):
        from .errors import CPAInputError

        raise CPAInputError(f"CPA_THEORY_MALLOC={mode!r}: use 'keep' (the default: freed memory kept for reuse) or "
                            "'system' (glibc's adaptive thresholds).")
    return mode == "keep"
