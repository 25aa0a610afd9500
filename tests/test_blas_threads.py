"""BLAS at one thread while a flat engine counts, and every caller's setting restored afterwards."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import cpa_theory.frontier2d as F2
from cpa_theory import Layer, Network, identity, relu
from cpa_theory.blas_threads import one_blas_thread
from cpa_theory.regions import count_regions


def _blas_threads():
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


@pytest.fixture
def two_blas_threads():
    assert _blas_threads(), "threadpoolctl sees no BLAS library (numpy's wheels ship OpenBLAS)"
    with threadpool_limits(2, user_api="blas"):
        yield


def _net():
    rng = np.random.default_rng(3)
    return Network(2, (Layer(rng.normal(size=(8, 2)), rng.normal(size=8) * 0.3, relu()),
                       Layer(np.ones((1, 8)), [0.0], identity())))


def test_a_count_runs_blas_on_one_thread_and_restores_the_callers_setting(two_blas_threads, monkeypatch):
    seen = []
    orig = F2.refine

    def refine(*a, **k):
        seen.append(_blas_threads())
        return orig(*a, **k)

    monkeypatch.setattr(F2, "refine", refine)
    res = count_regions(_net(), np.zeros(2), 1.0)
    assert res.certified and seen and all(n == 1 for n in seen[0])
    assert all(n == 2 for n in _blas_threads())


def test_nested_counts_and_counts_in_other_threads_keep_the_limit_until_the_last_leaves(two_blas_threads):
    with one_blas_thread():
        with one_blas_thread():
            assert all(n == 1 for n in _blas_threads())
        assert all(n == 1 for n in _blas_threads())  # the outer count still runs
    assert all(n == 2 for n in _blas_threads())
    # a count in another thread that starts and ends while this one runs must not restore under it (checked from
    # the thread holding the outer count: here OpenBLAS ignored a worker thread's own setting once the main thread
    # had set one)
    with one_blas_thread():
        errors = []

        def short():
            try:
                with one_blas_thread():
                    pass
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(e)

        t = threading.Thread(target=short)
        t.start()
        t.join(10)
        assert not errors and all(n == 1 for n in _blas_threads())
    assert all(n == 2 for n in _blas_threads())


def test_the_library_scan_is_reused_until_a_module_is_imported(monkeypatch, two_blas_threads):
    """The scan of loaded libraries (~1.3 ms a count) is kept while no module was imported, done again after an
    import (a BLAS a new module brought in is then limited too), and the limit still holds inside the count."""
    import sys
    import types

    from cpa_theory import blas_threads as BT

    with one_blas_thread():
        pass
    first = BT._state["controller"]
    with one_blas_thread():
        assert all(n == 1 for n in _blas_threads())
    assert BT._state["controller"] is first and all(n == 2 for n in _blas_threads())
    monkeypatch.setitem(sys.modules, "cpa_theory_test_new_module", types.ModuleType("cpa_theory_test_new_module"))
    with one_blas_thread():
        assert all(n == 1 for n in _blas_threads())
    assert BT._state["controller"] is not first
