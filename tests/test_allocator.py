"""Freed memory kept for reuse (cpa_theory.allocator): opt-in for a program, applied by the command line.

Each check runs in a fresh interpreter: the setting is process-wide and permanent, so a test process that had it
applied (or not) would decide the outcome of the next test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")

_PROBE = """
import resource, sys, numpy as np
from cpa_theory import Layer, Network, identity, relu
from cpa_theory.regions import count_regions
from cpa_theory.allocator import keep_freed_memory
if sys.argv[1] == 'keep':
    assert keep_freed_memory() and keep_freed_memory()
rng = np.random.default_rng(0)
net = Network(2, (Layer(rng.normal(size=(40, 2)), rng.normal(size=40) * 0.3, relu()),
                  Layer(rng.normal(size=(40, 40)) / 6, rng.normal(size=40) * 0.3, relu()),
                  Layer(np.ones((1, 40)), [0.0], identity())))
for _ in range(3):
    count_regions(net, np.zeros(2), 1.0)
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    res = count_regions(net, np.zeros(2), 1.0)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) // 3, res.regions)
"""


def _probe(mode, **env):
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    faults, regions = map(int, out.stdout.split())
    return faults, regions


def test_keeping_freed_memory_stops_the_page_faults_of_a_count():
    """A plane-engine count (a 2-40-40-1 ReLU net, radius 1, ~2,300 regions; one thread, so the count of faults
    does not depend on how a second thread's malloc arena is reused under load) after warm-up: with glibc's
    adaptive thresholds it faults ~1,800 pages in again per count; with :func:`keep_freed_memory` a few dozen at
    most, and the same regions. Started with the user's own glibc thresholds in the environment (``MALLOC_*_`` or
    ``GLIBC_TUNABLES``), the call leaves them (False)."""
    plain, n_plain = _probe("plain")
    kept, n_kept = _probe("keep")
    assert n_plain == n_kept > 1000
    assert plain > 500 and kept < plain / 5, (plain, kept)
    for user in ({"MALLOC_TRIM_THRESHOLD_": "131072"}, {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072"}):
        out = subprocess.run([sys.executable, "-c",
                              "from cpa_theory.allocator import keep_freed_memory as k; print(k())"],
                             capture_output=True, text=True, timeout=120, env={**os.environ, **user})
        assert out.stdout.strip() == "False", user


def test_the_command_line_keeps_freed_memory_unless_told_not_to():
    """``cpa-theory`` applies the setting to its own process (``CPA_THEORY_MALLOC`` unset or ``keep``), leaves
    glibc's defaults with ``system``, and refuses another value as bad input (exit 2, naming the choices)."""
    code = ("import sys; from cpa_theory import cli, allocator\n"
            "rc = cli.main(None)\n"
            "print('applied' if allocator._state['applied'] else 'not applied', rc)")
    example = str(Path(__file__).resolve().parents[1] / "examples" / "bn_relu_2d.json")
    run = lambda env: subprocess.run([sys.executable, "-c", code, "info", example], capture_output=True,  # noqa: E731
                                     text=True, timeout=300, env={**os.environ, **env})
    for env, want in (({}, "applied 0"), ({"CPA_THEORY_MALLOC": "keep"}, "applied 0"),
                      ({"CPA_THEORY_MALLOC": "system"}, "not applied 0")):
        out = run(env)
        assert out.stdout.strip().splitlines()[-1] == want, (env, out.stdout, out.stderr)
    bad = run({"CPA_THEORY_MALLOC": "jemalloc"})
    assert bad.stdout.strip().splitlines()[-1] == "not applied 2"
    assert "CPA_THEORY_MALLOC" in bad.stderr and "'system'" in bad.stderr
