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
import os
import signal
import sys
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


def _count_chunk(cond: ConditionedNetwork, centers, radius: float, linear: bool, progress=False) -> list[dict]:
    """Worker entry point (module level, so process pools can pickle it). ``progress``: each window's own bar
    (``count_regions``; None: once a window takes > 2 s, on a terminal)."""
    return [count_regions(cond, c, radius, linear=linear, progress=progress).as_json() for c in centers]


def _conditioned(net) -> ConditionedNetwork:
    if isinstance(net, ConditionedNetwork):
        return net
    if isinstance(net, Network):
        return net.condition()
    from .errors import CPAInputError

    raise CPAInputError(f"expected a Network or ConditionedNetwork, got {type(net).__name__}.")


def count_many(net, centers, radius: float, *, executor: Executor | None = None, client=None,
               linear: bool = True, progress: bool = False, chunk: int | None = None, out=None, fresh: bool = False) -> list[dict]:
    """Count regions in W(c, r) for every centre; results (``RegionCount.as_json()``) in the order of ``centers``.

    Args:
        net: ``Network`` (conditioned here, once) or ``ConditionedNetwork``; centers: ``(M, d)``; radius: r > 0.
        executor: any ``concurrent.futures.Executor`` (e.g. :func:`worker_pool`); ``None``: this process.
        client: a ``dask.distributed.Client``: count on its cluster (:func:`cpa_theory.distributed.count_windows_on`).
        chunk: windows per task (executor: ``EXECUTOR_CHUNK``; Dask: chosen from the cluster size).
        out: a run directory (``Network`` only): every finished chunk is written there at once, and a rerun
            with the same network, centres, radius and ``linear`` counts only the windows not yet written.
        fresh: with ``out``, replace an earlier count of other settings there (only the files it wrote).
    If interrupted (Ctrl-C) while waiting, the queued tasks are cancelled before the interrupt propagates.
    """
    if executor is not None and client is not None:
        from .errors import CPAInputError

        raise CPAInputError("give either executor= or client=, not both.")
    cond = _conditioned(net)
    centers = as_points(centers, cond.input_dim, "centers")
    if out is not None and len(centers):
        from .windows import Window

        Window(centers[0], radius)  # a bad radius is refused before the run directory is created
    run = None if out is None else _CountRun(out, net, centers, radius, linear, fresh)
    try:
        rows = _count_into(run, cond, centers, radius, executor, client, linear, progress, chunk)
    except BaseException:
        if run is not None:
            run.release(failed=True)
        raise
    if run is not None:
        run.release(failed=False)
    return rows


def _count_into(run, cond, centers, radius, executor, client, linear, progress, chunk) -> list[dict]:
    todo = np.arange(len(centers)) if run is None else np.array(run.missing(), dtype=np.int64)
    found: dict[int, dict] = {} if run is None else run.rows

    def finished(idx, rows):  # a chunk of windows came back: keep it (and write it when resumable)
        found.update(zip(idx.tolist(), rows))
        if run is not None:
            run.write(idx, rows)

    if len(todo) and client is not None:
        from .distributed import count_windows_on

        count_windows_on(client, [cond], [centers[todo]], radius, linear=linear, chunk=chunk, progress=progress,
                         on_chunk=lambda j, lo, hi, rows: finished(todo[lo:hi], rows))
    elif len(todo) and executor is not None:
        _count_on_executor(executor, cond, centers, todo, radius, linear, chunk or EXECUTOR_CHUNK, progress,
                           finished)
    elif len(todo):
        step = chunk or (EXECUTOR_CHUNK if run is not None else 1)
        for lo in _progress(range(0, len(todo), step), progress, "counting windows"):
            idx = todo[lo:lo + step]
            # in this process and without a bar over the windows, a window that takes > 2 s shows its own
            finished(idx, _count_chunk(cond, centers[idx], radius, linear, progress=False if progress else None))
    rows = [found[i] for i in range(len(centers))]
    if run is not None:
        run.finish(rows)
    return rows


def _count_on_executor(executor, cond, centers, todo, radius, linear, step, progress, finished) -> None:
    """Chunks of ``step`` windows as executor tasks; ``finished(indices, rows)`` as each one completes."""
    from concurrent.futures import as_completed

    futures = {executor.submit(_count_chunk, cond, centers[todo[lo:lo + step]], radius, linear): todo[lo:lo + step]
               for lo in range(0, len(todo), step)}
    try:
        for f in _progress(as_completed(futures), progress, "counting chunks of windows", total=len(futures)):
            finished(futures[f], f.result())
    except BaseException:
        for f in futures:  # Ctrl-C or a failed chunk: do not run what is still queued
            f.cancel()
        raise


class _CountRun:
    """A resumable run directory of ``count_many`` (``out=``), claimed through :mod:`cpa_theory.rundir` (a
    manifest of what the toolkit wrote, and a lock while it writes): ``header.json`` (format, configuration
    hash, versions) and ``chunks/NNNNNNNNN.json`` (the rows of a chunk of windows, keyed by window index, with
    the configuration hash), each written atomically the moment the chunk is done; ``results.jsonl`` at the end.

    The configuration hash covers the network document, the centres (their float64 bytes), the radius and
    ``linear``: a rerun with any of them changed is refused, never mixed. A directory that holds anything the
    toolkit did not write is refused (nothing of a person's is read, overwritten or deleted).
    """

    FORMAT = "cpa-count-run/1"

    def __init__(self, out, net, centers: np.ndarray, radius: float, linear: bool, fresh: bool = False):
        import hashlib
        import json

        from .errors import CPAInputError, OutputError
        from .fileformat import network_to_dict
        from .rundir import claim_run_dir

        if not isinstance(net, Network):
            raise CPAInputError("out= (a resumable run directory) needs a Network, not a ConditionedNetwork.")
        self._json = json
        h = hashlib.sha256(json.dumps(network_to_dict(net), sort_keys=True).encode())
        h.update(np.ascontiguousarray(centers, dtype=np.float64).tobytes())
        h.update(json.dumps([float(radius), bool(linear)]).encode())
        self.hash, self.n = h.hexdigest()[:16], len(centers)
        self.run = claim_run_dir(out, "count", self.hash, fresh=fresh)
        try:
            self.dir = self.run.root
            self.chunks = self.run.mkdir("chunks")
            header = self.dir / "header.json"
            if self.run.read_owned(header) is None:
                import cpa_theory

                self._write(header, {"format": self.FORMAT, "config_hash": self.hash, "windows": self.n,
                                     "radius": float(radius), "linear": bool(linear),
                                     "versions": {"cpa_theory": cpa_theory.__version__, "numpy": np.__version__}},
                            indent=1)
            self.rows: dict[int, dict] = {}
            for path in sorted(self.chunks.glob("*.json")):
                raw = self.run.read_owned(path)  # a file the toolkit did not write here is refused, never read
                try:
                    doc = json.loads(raw)
                    ok = (isinstance(doc, dict) and doc.get("config_hash") == self.hash
                          and len(doc["indices"]) == len(doc["rows"])
                          and all(isinstance(i, int) and 0 <= i < self.n for i in doc["indices"]))
                except (ValueError, UnicodeDecodeError, KeyError, TypeError):
                    ok = False
                if not ok:
                    raise OutputError(f"chunk {str(path)!r} is corrupt or from another count; choose a new --out.")
                self.rows.update(zip(doc["indices"], doc["rows"]))
        except BaseException:
            self.run.release(failed=True)
            raise

    def _write(self, path, doc, indent=None) -> None:
        from .outputs import write_output

        write_output(path, self._json.dumps(doc, indent=indent, allow_nan=False) + "\n")

    def missing(self) -> list[int]:
        return [i for i in range(self.n) if i not in self.rows]

    def write(self, idx, rows) -> None:
        idx = [int(i) for i in idx]
        self._write(self.chunks / f"{idx[0]:09d}.json", {"config_hash": self.hash, "indices": idx, "rows": rows})

    def finish(self, rows) -> None:
        from .outputs import write_output

        write_output(self.dir / "results.jsonl", "".join(self._json.dumps(r, allow_nan=False) + "\n" for r in rows))

    def release(self, failed: bool) -> None:
        self.run.release(failed=failed)


def _progress(seq, on: bool, what: str, total: int | None = None):
    if not on:
        return seq
    from .progress import track  # stderr only, only on a terminal

    return track(seq, what, total=total, unit="done")


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

    @property
    def ci95(self) -> list | None:
        """Student-t 95 % interval of D_r over the query points as independent draws (None below 2 windows or
        without spread); :func:`numerics.stats.mean_ci`."""
        from numerics.stats import mean_ci95

        lo, hi = mean_ci95(self.per_window)[1]
        return [lo, hi] if self.per_window.size > 1 and lo < hi else None

    def as_json(self) -> dict:
        return {"radius": self.radius, "n_windows": int(self.per_window.size), "density": self.mean,
                "density_ci95": self.ci95, "per_volume": self.per_volume, "mean_log": self.mean_log,
                "log_density": math.log(self.mean)}


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
        _stop(executor)
        raise
    executor.shutdown()


def _stop(executor: ProcessPoolExecutor) -> None:
    """Cancel the queued tasks and terminate the pool's worker processes (running tasks are abandoned); return
    once the pool's manager thread has ended."""
    # taken before shutdown(), which forgets them
    manager = getattr(executor, "_executor_manager_thread", None)
    if hasattr(executor, "terminate_workers"):  # Python ≥ 3.14
        executor.terminate_workers()
    else:  # before 3.14 the pool offers no public way to stop a running task: terminate its processes directly
        _quiet_cancelled_futures()
        procs = list((getattr(executor, "_processes", None) or {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
    # Wait for the manager thread to see its workers gone and close its wake-up pipe. Left running, it races
    # the interpreter's exit hook (concurrent.futures' _python_exit), which writes to that pipe after checking
    # it open: "OSError: Bad file descriptor" printed after "terminated" (seen in CI, CPython 3.11).
    if manager is not None and manager.is_alive():
        manager.join(timeout=_STOP_JOIN_SECONDS)


_STOP_JOIN_SECONDS = 30.0  # a manager thread notices terminated workers within milliseconds; this only bounds a hang


def _quiet_cancelled_futures() -> None:
    """Before Python 3.12 the pool's manager thread, finding its workers terminated, sets BrokenProcessPool on
    every pending future — also on the ones just cancelled, which raises InvalidStateError in that thread and
    prints its traceback after "interrupted" (3.12 ignores it there). Install a thread excepthook that drops
    exactly that exception (raised in ``terminate_broken`` of ``concurrent.futures.process``) and passes
    every other one on."""
    import threading
    import traceback
    from concurrent.futures import InvalidStateError

    if sys.version_info >= (3, 12) or getattr(threading.excepthook, "_cpa_quiet", False):
        return
    previous = threading.excepthook

    def hook(args):
        frames = traceback.extract_tb(args.exc_traceback) if args.exc_traceback is not None else []
        if (args.exc_type is not None and issubclass(args.exc_type, InvalidStateError)
                and any(f.name == "terminate_broken" and f.filename.endswith(os.path.join("futures", "process.py"))
                        for f in frames)):
            return
        previous(args)

    hook._cpa_quiet = True
    threading.excepthook = hook
