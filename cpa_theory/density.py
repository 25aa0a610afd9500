"""The local region-density functional (THEORY §3): ρ_r(f; x0) and D_r(f; Q).

ρ_r(f; x0) = N(f; W(x0, r)) — exact certified counts from ``regions.count_regions`` — and its mean over a
query set Q, with per-volume (÷(2r)^d) and log variants. The network is conditioned once (BN statistics
frozen on its batch) and that ``ConditionedNetwork`` is what every window is counted on. Many windows can be
counted on any ``concurrent.futures.Executor`` (a process pool: :func:`worker_pool`), one task per chunk of
windows, or on a Dask cluster (``client=``, :mod:`cpa_theory.distributed`) with the network sent once per
worker. Results are in the order of the centres, identical whichever way they were computed.
"""

from __future__ import annotations

import math
import signal
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .network import ConditionedNetwork, Network, as_points
from .regions import count_regions

__all__ = ["DensityResult", "local_density", "density_functional", "count_many", "default_executor",
           "worker_pool"]

#: windows per executor task: amortises pickling the network and the round trip over several windows.
EXECUTOR_CHUNK = 8


def _count_chunk(cond: ConditionedNetwork, centers, radius: float, linear: bool) -> list[dict]:
    """Worker entry point (module level, so process pools can pickle it)."""
    return [count_regions(cond, c, radius, linear=linear).as_json() for c in centers]


def _conditioned(net) -> ConditionedNetwork:
    if isinstance(net, ConditionedNetwork):
        return net
    if isinstance(net, Network):
        return net.condition()
    from .errors import CPAInputError

    raise CPAInputError(f"expected a Network or ConditionedNetwork, got {type(net).__name__}.")


def count_many(net, centers, radius: float, *, executor: Executor | None = None, client=None,
               linear: bool = True, progress: bool = False, chunk: int | None = None) -> list[dict]:
    """Count regions in W(c, r) for every centre; results (``RegionCount.as_json()``) in the order of ``centers``.

    Args:
        net: ``Network`` (conditioned here, once) or ``ConditionedNetwork``; centers: ``(M, d)``; radius: r > 0.
        executor: any ``concurrent.futures.Executor`` (e.g. :func:`worker_pool`); ``None``: this process.
        client: a ``dask.distributed.Client``: count on its cluster (:func:`cpa_theory.distributed.count_windows_on`).
        chunk: windows per task (executor: ``EXECUTOR_CHUNK``; Dask: chosen from the cluster size).
    If interrupted (Ctrl-C) while waiting, the queued tasks are cancelled before the interrupt propagates.
    """
    if executor is not None and client is not None:
        from .errors import CPAInputError

        raise CPAInputError("give either executor= or client=, not both.")
    cond = _conditioned(net)
    centers = as_points(centers, cond.input_dim, "centers")
    if client is not None:
        from .distributed import count_windows_on

        return count_windows_on(client, [cond], [centers], radius, linear=linear, chunk=chunk, progress=progress)[0]
    if executor is None:
        return [count_regions(cond, c, radius, linear=linear).as_json()
                for c in _progress(centers, progress, "counting windows")]
    step = chunk or EXECUTOR_CHUNK
    futures = [executor.submit(_count_chunk, cond, centers[i:i + step], radius, linear)
               for i in range(0, len(centers), step)]
    rows: list[dict] = []
    try:
        for f in _progress(futures, progress, "counting chunks of windows"):
            rows.extend(f.result())
    except BaseException:
        for f in futures:  # Ctrl-C or a failed chunk: do not run what is still queued
            f.cancel()
        raise
    return rows


def _progress(seq, on: bool, what: str):
    if not on:
        return seq
    from rich.console import Console
    from rich.progress import track

    return track(seq, description=what, transient=True, console=Console(stderr=True))


@dataclass(frozen=True)
class DensityResult:
    """D_r(f; Q) and its variants; ``per_window`` holds ρ_r at every query point."""

    radius: float
    dim: int
    per_window: np.ndarray

    @property
    def mean(self) -> float:
        """D_r(f; Q) = (1/|Q|) Σ ρ_r(f; x0)."""
        return float(self.per_window.mean())

    @property
    def per_volume(self) -> float:
        """D_r / (2r)^d."""
        return self.mean / (2.0 * self.radius) ** self.dim

    @property
    def mean_log(self) -> float:
        """(1/|Q|) Σ log ρ_r."""
        return float(np.mean(np.log(self.per_window)))

    def as_json(self) -> dict:
        return {"radius": self.radius, "n_windows": int(self.per_window.size), "density": self.mean,
                "per_volume": self.per_volume, "mean_log": self.mean_log, "log_density": math.log(self.mean)}


def local_density(net, center, radius: float) -> int:
    """ρ_r(f; x0) = N(f; W(x0, r))."""
    return count_regions(net, center, radius, linear=False).regions


def density_functional(net, queries, radius: float, *, executor: Executor | None = None,
                       client=None) -> DensityResult:
    """D_r(f; Q) over the query points ``queries`` ``(|Q|, d)`` (on ``executor`` or a Dask ``client``)."""
    cond = _conditioned(net)
    rows = count_many(cond, queries, radius, executor=executor, client=client, linear=False)
    return DensityResult(float(radius), cond.input_dim, np.array([r["regions"] for r in rows], dtype=np.int64))


def _ignore_sigint() -> None:
    # pool workers leave Ctrl-C to the parent, which cancels the queue and stops them (see worker_pool)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def default_executor(max_workers: int | None = None) -> Executor:
    """The default parallel executor: a process pool started with ``spawn`` (forking a process that has
    loaded JAX can deadlock) whose workers ignore SIGINT (the parent handles Ctrl-C)."""
    import multiprocessing

    return ProcessPoolExecutor(max_workers=max_workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_ignore_sigint)


@contextmanager
def worker_pool(max_workers: int | None = None):
    """:func:`default_executor` as a context: on normal exit it waits for its workers; on an exception
    (Ctrl-C included) it cancels every queued task and stops the workers at once instead of finishing the
    queue, so an interrupted run returns promptly."""
    executor = default_executor(max_workers)
    try:
        yield executor
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        _stop_workers(executor)
        raise
    executor.shutdown()


def _stop_workers(executor: ProcessPoolExecutor) -> None:
    """Terminate the pool's worker processes (the tasks they are running are abandoned)."""
    if hasattr(executor, "terminate_workers"):  # Python ≥ 3.14
        executor.terminate_workers()
        return
    # before 3.14 the pool offers no public way to stop a running task: terminate its processes directly
    for proc in list((getattr(executor, "_processes", None) or {}).values()):
        if proc.is_alive():
            proc.terminate()
