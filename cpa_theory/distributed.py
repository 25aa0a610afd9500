"""Exact counts on a Dask cluster: many networks × many windows past one machine (THEORY §3, §5; serves the
exact counts behind C5–C7 and the density functional D_r).

The unit of work is one network × a chunk of its windows, never one window: Dask costs ≈ 0.2–1 ms per task
(``benchmarks/bench_scale.py`` measures it), a window of a small network ≈ 1–10 ms, so a chunk of tens of
windows keeps the overhead at a few per cent while leaving several tasks per worker for load balance. Each
network is conditioned once here and sent once to every worker (``Client.scatter(..., broadcast=True)``);
the tasks refer to that copy. A worker that dies mid-run loses nothing: Dask reschedules the tasks it was
running, and a chunk whose worker or whose network copy was lost is resubmitted here (the network scattered
again when no copy is left). Results come back in the order of the inputs, whatever the order of
completion, so the JSON is byte-for-byte that of the single-process run.

``dask`` is optional (``pip install -e '.[dask]'``); it is imported only when a client is used.
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import contextmanager

from .errors import CPAInputError
from .density import _conditioned, _count_chunk  # the task body and conditioning, shared with the executor path
from .network import as_points

__all__ = ["dask_client", "count_windows_on", "choose_chunk", "MAX_CHUNK", "TASKS_PER_THREAD", "MAX_RESUBMITS"]

#: at most this many windows per task: bounds the work redone after a worker dies and keeps workers balanced.
MAX_CHUNK = 64

#: aim for this many tasks per worker thread (load balance) unless that makes tasks smaller than one window.
TASKS_PER_THREAD = 4

#: how often one chunk is resubmitted after losing its worker (or its network copy) before the run fails.
MAX_RESUBMITS = 3

#: ``local:N`` starts N worker processes; more than this many per CPU core only costs memory.
_LOCAL_WORKERS_PER_CPU = 4


def _distributed():
    try:
        import distributed
    except ImportError:
        raise CPAInputError("Dask is not installed: pip install -e '.[dask]' (or run without --scheduler).") from None
    return distributed


def _local_workers(spec: str) -> int:
    text = spec[len("local:"):]
    limit = _LOCAL_WORKERS_PER_CPU * (os.cpu_count() or 1)
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= limit:
        raise CPAInputError(f"--scheduler {spec!r}: give local:N with N a whole number of worker processes, "
                            f"1 to {limit}, or a scheduler address such as tcp://HOST:8786.")
    return n


@contextmanager
def dask_client(scheduler: str, *, timeout: float = 20.0):
    """A ``distributed.Client`` for ``scheduler``, closed on exit.

    ``scheduler``: ``"local:N"`` starts a ``LocalCluster`` of N single-threaded worker processes (with
    nannies, so a killed worker is restarted) listening on 127.0.0.1 only (its status page too, on a free
    port: the scheduler always serves one), shut down on exit; anything else
    is the address of a running scheduler (``tcp://HOST:8786``), which is left running.
    """
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise CPAInputError("--scheduler needs an address such as tcp://HOST:8786, or local:N.")
    distributed = _distributed()
    if scheduler.startswith("local:"):
        n = _local_workers(scheduler)
        with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                      dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR) as cluster, \
                distributed.Client(cluster) as client:
            yield client
        return
    try:
        client = distributed.Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise CPAInputError(f"cannot reach a Dask scheduler at {scheduler!r} ({type(exc).__name__}); check the "
                            "address (e.g. tcp://HOST:8786) or use local:N.") from None
    with client:
        yield client


def choose_chunk(n_windows: int, n_threads: int) -> int:
    """Windows per task: ``TASKS_PER_THREAD`` tasks per worker thread, between 1 and ``MAX_CHUNK``."""
    return max(1, min(MAX_CHUNK, math.ceil(n_windows / (TASKS_PER_THREAD * max(1, n_threads)))))


def count_windows_on(client, nets, centers, radius: float, *, linear: bool = True, chunk: int | None = None,
                     progress: bool = False, on_chunk=None) -> list[list[dict]]:
    """Exact certified counts of every network in its windows, on the Dask cluster of ``client``.

    Args:
        client: a ``distributed.Client``.
        nets: J networks (``Network``, conditioned here once, or ``ConditionedNetwork``).
        centers: J arrays of window centres, ``(M_j, d_j)`` each.
        radius: window radius r > 0 (ℓ∞ windows W(c, r), as ``regions.count_regions``).
        linear: also count maximal linear regions (N_lin).
        chunk: windows per task (default :func:`choose_chunk` of the total and the cluster's threads).
        on_chunk: called as ``on_chunk(j, lo, hi, rows)`` in this process as each chunk (network j, its
            centres lo:hi) comes back, in completion order (e.g. to write it to a resumable run directory).
    Returns:
        per network, the list of ``RegionCount.as_json()`` rows in the order of its centres.
    """
    distributed = _distributed()
    nets = [_conditioned(n) for n in nets]
    if len(centers) != len(nets):
        raise CPAInputError(f"{len(nets)} networks but {len(centers)} lists of centres; give one list per network.")
    centers = [as_points(c, n.input_dim, "centers") for n, c in zip(nets, centers)]
    total = sum(len(c) for c in centers)
    if chunk is None:
        chunk = choose_chunk(total, sum(client.nthreads().values()))
    elif not (isinstance(chunk, int) and chunk >= 1):
        raise CPAInputError(f"chunk = {chunk!r}: give a whole number of windows per task, >= 1.")
    jobs = [(j, lo, min(lo + chunk, len(c))) for j, c in enumerate(centers) for lo in range(0, len(c), chunk)]
    # the networks travel once to every worker; tasks carry only their centres and refer to the shared copy
    shared = client.scatter(nets, broadcast=True, hash=False)

    def submit(job):
        j, lo, hi = job
        return client.submit(_count_chunk, shared[j], centers[j][lo:hi], radius, linear, pure=False)

    pending = {submit(job): job for job in jobs}
    attempts = dict.fromkeys(jobs, 0)
    done: dict = {}
    bar = _Bar(total, progress)
    queue = distributed.as_completed(list(pending))
    try:
        for fut in queue:
            job = pending.pop(fut)
            if fut.status == "finished":
                done[job] = fut.result()
                bar.advance(job[2] - job[1])
                if on_chunk is not None:
                    on_chunk(*job, done[job])
                continue
            if fut.status == "error" and not isinstance(fut.exception(), distributed.KilledWorker):
                fut.result()  # an error of the computation itself (bad input, internal error): raise it here
            # the chunk's worker died (KilledWorker) or its network copy was lost (cancelled): resubmit
            attempts[job] += 1
            if attempts[job] > MAX_RESUBMITS:
                raise RuntimeError(f"a chunk of windows lost its worker more than {MAX_RESUBMITS} times; the "
                                   "cluster is unstable (see the Dask worker logs).")
            j = job[0]
            if shared[j].status != "finished":  # no copy of the network is left on any worker
                shared[j] = client.scatter(nets[j], broadcast=True, hash=False)
            new = submit(job)
            pending[new] = job
            queue.add(new)
    except BaseException:
        client.cancel(list(pending))  # Ctrl-C or a failure: queued chunks are dropped, not run
        raise
    finally:
        bar.close()
    out = [[] for _ in nets]
    for job in jobs:  # input order, whatever the order of completion
        out[job[0]].extend(done[job])
    return out


class _Bar:
    """A rich progress bar on stderr over windows (nothing when off)."""

    def __init__(self, total: int, on: bool):
        self._p = None
        if on:
            from rich.console import Console
            from rich.progress import Progress

            self._p = Progress(console=Console(stderr=True), transient=True)
            self._task = self._p.add_task("counting windows", total=total)
            self._p.start()

    def advance(self, n: int) -> None:
        if self._p is not None:
            self._p.advance(self._task, n)

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()
