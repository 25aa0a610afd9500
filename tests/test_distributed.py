"""Counting past one process (issue #15, issue #11 item 10): exact counts on a Dask cluster equal the
single-process run byte for byte, a worker killed mid-run loses nothing, the network is sent once per worker
with one task per chunk of windows, and Ctrl-C during ``count --workers`` cancels the queued work."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cpa_theory import save_network
from cpa_theory.density import count_many, density_functional
from cpa_theory.errors import CPAInputError

from helpers import CLI_WITH_CTRL_C, random_bn_net

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "bn_relu_2d.json"

needs_dask = pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                                reason="dask[distributed] is not installed: pip install -e '.[dask]'")


def cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "cpa_theory", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, **kw)


@pytest.fixture(scope="module")
def client():
    if importlib.util.find_spec("distributed") is None:
        pytest.skip("dask[distributed] is not installed: pip install -e '.[dask]'")
    from cpa_theory.distributed import dask_client

    with dask_client("local:2") as c:
        yield c


@pytest.fixture(scope="module")
def slow_net():
    """≈ 20 ms per window: long enough to kill a worker in the middle of a run."""
    rng = np.random.default_rng(11)
    net = random_bn_net(rng, widths=(2, 16, 16, 1))
    centers = net.batch.mean(axis=0) + rng.uniform(-1.0, 1.0, size=(120, 2))
    return net, centers


# -- Dask: identical results ---------------------------------------------------------------------------
@needs_dask
def test_count_cli_on_a_local_dask_cluster_is_byte_identical_to_one_process(tmp_path):
    rng = np.random.default_rng(3)
    centres = tmp_path / "centres.txt"
    centres.write_text("\n".join(f"{x:.17g},{y:.17g}" for x, y in rng.uniform(-2, 2, size=(40, 2))) + "\n")
    args = ("count", str(EXAMPLE), "--center", str(centres), "--radius", "0.4", "--json")
    runs = [cli(*args), cli(*args, "--scheduler", "local:2", "--out", str(tmp_path / "run")),
            cli(*args, "--workers", "2")]
    outs = [p.communicate(timeout=240) for p in runs]
    for p, (_, err) in zip(runs, outs):
        assert p.returncode == 0, err[-2000:]
    serial, dask, pool = (o for o, _ in outs)
    assert len(json.loads(serial)) == 40
    assert dask == serial and pool == serial  # byte for byte
    assert [json.loads(x) for x in (tmp_path / "run" / "results.jsonl").read_text().splitlines()] == json.loads(serial)


@needs_dask
def test_count_many_and_density_functional_on_a_client_match_one_process(client, rng):
    net = random_bn_net(rng, widths=(2, 8, 6, 1))
    centers = rng.normal(size=(37, 2))
    serial = count_many(net, centers, 0.3)
    for chunk in (None, 1, 5, 100):  # ragged last chunks, one-window chunks, a single task
        assert json.dumps(count_many(net, centers, 0.3, client=client, chunk=chunk)) == json.dumps(serial)
    on_dask = density_functional(net, centers, 0.3, client=client)
    assert on_dask.as_json() == density_functional(net, centers, 0.3).as_json()
    # negative control: the comparison sees a different window set
    assert json.dumps(count_many(net, centers[::-1], 0.3, client=client)) != json.dumps(serial)


@needs_dask
def test_sweep_exact_counts_on_dask_write_the_same_results(client, tmp_path):
    from numerics.sweep import SweepConfig, run_sweep

    from test_multiprocess_jax import CFG  # the same shapes: one JIT compilation serves both test files

    cfg = SweepConfig(**CFG)
    serial = run_sweep(cfg, tmp_path / "serial")
    dask = run_sweep(cfg, tmp_path / "dask", client=client)
    assert all("n_bn_mean" in r for r in dask)
    assert (tmp_path / "dask" / "results.jsonl").read_bytes() == (tmp_path / "serial" / "results.jsonl").read_bytes()
    assert dask == serial


@needs_dask
def test_one_task_per_network_and_chunk_and_the_network_sent_once(client, rng, monkeypatch):
    from distributed import get_task_stream

    from cpa_theory.distributed import choose_chunk, count_windows_on

    nets = [random_bn_net(rng, widths=(2, 6, 1)) for _ in range(3)]
    centers = [rng.normal(size=(m, 2)) for m in (10, 3, 7)]
    scatters = []
    real_scatter = client.scatter
    monkeypatch.setattr(client, "scatter", lambda data, **kw: scatters.append((len(data), kw)) or
                        real_scatter(data, **kw))
    with get_task_stream(client) as ts:
        rows = count_windows_on(client, nets, centers, 0.2, chunk=4)
    assert [len(r) for r in rows] == [10, 3, 7]
    assert [[r["center"] for r in rr] for rr in rows] == [c.tolist() for c in centers]  # input order
    tasks = [t for t in ts.data if t["key"].startswith("_count_chunk")]
    assert len(tasks) == 3 + 1 + 2  # ⌈10/4⌉ + ⌈3/4⌉ + ⌈7/4⌉
    assert scatters == [(3, {"broadcast": True, "hash": False})]  # all networks, once, to every worker
    assert choose_chunk(10**5, 4) == 64 and choose_chunk(10, 4) == 1 and choose_chunk(100, 2) == 13


# -- resumable count run directories ----------------------------------------------------------------------
def _interrupted_run(net, centers, out, monkeypatch, after: int):
    """count_many into ``out``, interrupted (Ctrl-C) at the ``after``-th window."""
    import cpa_theory.density as density

    real, calls = density.count_regions, []

    def flaky(*a, **kw):
        calls.append(1)
        if len(calls) > after:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(density, "count_regions", flaky)
    with pytest.raises(KeyboardInterrupt):
        count_many(net, centers, 0.3, out=out, chunk=4)
    monkeypatch.setattr(density, "count_regions", real)


def test_count_run_directory_resumes_without_recounting_or_mixing(tmp_path, rng, monkeypatch):
    import cpa_theory.density as density
    from cpa_theory.errors import OutputError

    net = random_bn_net(rng, widths=(2, 8, 6, 1))
    centers = rng.normal(size=(30, 2))
    ref = count_many(net, centers, 0.3)
    run = tmp_path / "run"
    _interrupted_run(net, centers, run, monkeypatch, after=13)
    assert len(list((run / "chunks").glob("*.json"))) == 3  # 3 finished chunks of 4 windows were kept
    assert not (run / "results.jsonl").exists()
    real, calls = density.count_regions, []
    monkeypatch.setattr(density, "count_regions", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    rows = count_many(net, centers, 0.3, out=run)
    assert len(calls) == 30 - 12  # only the windows not yet written
    assert json.dumps(rows) == json.dumps(ref)
    assert [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()] == ref
    calls.clear()
    assert count_many(net, centers, 0.3, out=run) == ref and not calls  # finished: nothing recounted
    # never mixed: other windows, another radius, a foreign or corrupt directory are refused
    with pytest.raises(CPAInputError, match="another configuration"):
        count_many(net, centers, 0.31, out=run)
    with pytest.raises(CPAInputError, match="another configuration"):
        count_many(net, centers[:-1], 0.3, out=run)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not empty"):
        count_many(net, centers, 0.3, out=foreign)
    assert (foreign / "notes.txt").read_text() == "keep me" and len(list(foreign.iterdir())) == 1
    with pytest.raises(CPAInputError):
        count_many(net, centers, -0.3, out=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()  # refused before anything was created
    next((run / "chunks").glob("*.json")).write_text('{"config_hash": "x"}')  # a chunk a person edited
    with pytest.raises(OutputError, match="changed after cpa-theory wrote it"):
        count_many(net, centers, 0.3, out=run)
    assert count_many(net, centers, 0.31, out=tmp_path / "other") is not None
    edited = tmp_path / "other" / "notes.txt"
    edited.write_text("mine")
    assert count_many(net, centers, 0.3, out=tmp_path / "other", fresh=True) == ref  # --fresh: only its own files
    assert edited.read_text() == "mine"


@needs_dask
def test_a_count_interrupted_in_one_process_resumes_on_dask(client, tmp_path, rng, monkeypatch):
    net = random_bn_net(rng, widths=(2, 8, 6, 1))
    centers = rng.normal(size=(25, 2))
    _interrupted_run(net, centers, tmp_path / "run", monkeypatch, after=9)
    rows = count_many(net, centers, 0.3, out=tmp_path / "run", client=client)
    assert json.dumps(rows) == json.dumps(count_many(net, centers, 0.3))
    assert len((tmp_path / "run" / "results.jsonl").read_text().splitlines()) == 25


# -- Dask: a worker killed mid-run ---------------------------------------------------------------------
class Killer(threading.Thread):
    """Watches a run directory from a second client; once ``after`` chunks are written, SIGKILLs the process
    of a worker that is counting."""

    def __init__(self, address, run, after=3):
        super().__init__()
        self.address, self.run_dir, self.after, self.seen, self.stop = address, run, after, {}, threading.Event()

    def run(self):
        from distributed import Client

        with Client(self.address) as watcher:
            while not self.stop.is_set():
                chunks = self.run_dir / "chunks"
                written = len(list(chunks.glob("*.json"))) if chunks.is_dir() else 0
                if written >= self.after:
                    processing = watcher.run_on_scheduler(lambda dask_scheduler: {
                        k: len(ws.processing) for k, ws in dask_scheduler.workers.items()})
                    busy = [w for w, n in processing.items() if n]
                    if busy:
                        pid = watcher.run(os.getpid, workers=[busy[0]])[busy[0]]
                        os.kill(pid, signal.SIGKILL)
                        self.seen.update(pid=pid, written=written, running=processing[busy[0]])
                        return
                time.sleep(0.02)


def _count_while_killing(client, net, centers, run):
    killer = Killer(client.scheduler.address, run)
    killer.start()
    try:
        rows = count_many(net, centers, 0.5, client=client, chunk=4, out=run)  # ≈ 80 ms per task
    finally:
        killer.stop.set()
        killer.join()
    seen = killer.seen
    assert seen, "the worker was not killed during the run"
    n_chunks = -(-len(centers) // 4)
    assert 3 <= seen["written"] < n_chunks and seen["running"] >= 1  # killed mid-run, while counting a chunk
    with pytest.raises(ProcessLookupError):
        os.kill(seen["pid"], 0)  # that process is gone
    assert len(list((run / "chunks").glob("*.json"))) == n_chunks
    print("killed mid-run:", seen)
    return rows


@needs_dask
def test_a_worker_killed_mid_run_loses_nothing(client, slow_net, tmp_path):
    net, centers = slow_net
    serial = count_many(net, centers, 0.5)
    client.wait_for_workers(2)
    rows = _count_while_killing(client, net, centers, tmp_path / "run")
    assert json.dumps(rows) == json.dumps(serial)  # nothing lost, nothing duplicated, same order
    client.wait_for_workers(2)  # the nanny restarts the worker for the next test


@needs_dask
def test_the_only_worker_killed_mid_run_loses_nothing_either(slow_net, tmp_path):
    # with one worker its copy of the network dies with it: the chunks are resubmitted, the network sent again
    from cpa_theory.distributed import dask_client

    net, centers = slow_net
    centers = centers[:48]
    serial = count_many(net, centers, 0.5)
    with dask_client("local:1") as one:
        rows = _count_while_killing(one, net, centers, tmp_path / "run")
    assert json.dumps(rows) == json.dumps(serial)


@needs_dask
def test_scheduler_argument_errors_are_one_line_exit_2():
    from cpa_theory.distributed import dask_client

    p = cli("count", str(EXAMPLE), "--center", "0,0", "--radius", "0.2", "--scheduler", "local:0")
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "local:N" in err and len(err.strip().splitlines()) == 1, err
    for bad in ("local:x", "local:100000", "local:-1", ""):
        with pytest.raises(CPAInputError, match="local:N"):
            with dask_client(bad):
                pass
    with pytest.raises(CPAInputError, match="cannot reach a Dask scheduler"):
        with dask_client("tcp://127.0.0.1:9", timeout=1):
            pass


# -- Ctrl-C during count --workers (issue #11 item 10) ---------------------------------------------------
def _signal_state(pid):
    """The signal masks of a process and of each of its threads (Linux /proc), for a failure message."""
    out = {}
    for st in [Path(f"/proc/{pid}/status")] + sorted(Path(f"/proc/{pid}/task").glob("*/status")):
        try:
            out[str(st.parent.name)] = [ln.split(":")[1].strip() for ln in st.read_text().splitlines()
                                        if ln.startswith(("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"))]
        except OSError:
            pass
    return out


def _busy_count_workers(tmp_path):
    """``count --workers 2`` on 1,600 windows, started and left running until both pool workers are counting:
    ``(proc, psutil, pool workers)``. ≈ 0.15 s per window: a task (8 windows) runs for about a second, the run
    ≈ 2 min. Started through ``CLI_WITH_CTRL_C`` (Ctrl-C at its default whatever this process inherited)."""
    psutil = pytest.importorskip("psutil", reason="psutil (installed with the dask extra) finds the pool workers")

    rng = np.random.default_rng(5)
    net = random_bn_net(rng, widths=(3, 16, 16, 1))
    path = tmp_path / "net.json"
    save_network(net, path)
    centres = tmp_path / "centres.txt"
    centres.write_text("\n".join(",".join(f"{v:.17g}" for v in row)
                                 for row in net.batch.mean(axis=0) + rng.uniform(-1, 1, size=(1600, 3))) + "\n")
    proc = subprocess.Popen(CLI_WITH_CTRL_C + ["count", str(path), "--center", str(centres), "--radius", "0.5",
                                               "--workers", "2", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    parent = psutil.Process(proc.pid)
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until both pool workers are counting
        kids = [k for k in parent.children() if k.cpu_times().user > 0.3]
        if len(kids) >= 2:
            break
        time.sleep(0.1)
    assert len(kids) >= 2, "the worker pool did not start"
    workers = parent.children()
    assert proc.poll() is None, "the run finished before the signal: make it longer"
    return proc, psutil, workers


def test_ctrl_c_during_count_workers_cancels_the_queue_and_exits_130_promptly(tmp_path):
    proc, psutil, workers = _busy_count_workers(tmp_path)
    status = _signal_state(proc.pid)
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:  # the signal was not acted on: say what the child's signal state was
        after = _signal_state(proc.pid)
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"no exit 20 s after SIGINT; before: {status}; after: {after}; stderr: {err[-1000:]}")
    elapsed = time.time() - t0
    assert proc.returncode == 130, (status, elapsed, err[-2000:])
    assert elapsed < 4, f"took {elapsed:.1f} s after Ctrl-C"  # waits for neither the queue nor running tasks
    assert "interrupted" in err and "Traceback" not in err
    assert out == ""  # nothing half-printed
    gone, alive = psutil.wait_procs(workers, timeout=2)
    assert not alive  # no orphaned worker keeps counting


def test_stopping_a_pool_silences_only_the_cancelled_future_race_of_its_manager_thread(monkeypatch):
    """CPython < 3.12: after the pool's workers are terminated its manager thread sets BrokenProcessPool on
    cancelled futures too, and the InvalidStateError it raises printed a traceback after "interrupted" (seen in
    the Ctrl-C test above, now and then). _stop installs a thread excepthook that drops exactly that; any
    other thread exception still reaches the previous hook."""
    import sys
    import threading
    from concurrent.futures import Future, InvalidStateError
    from concurrent.futures import process as cfp

    import cpa_theory.density as D

    if sys.version_info >= (3, 12):
        pytest.skip("Python >= 3.12 ignores the race itself (no hook is installed)")
    seen = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_type))

    def run(fn):
        t = threading.Thread(target=fn)
        t.start()
        t.join()

    class Item:
        def __init__(self):
            self.future = Future()
            self.future.cancel()

    class Manager:  # terminate_broken of CPython 3.11 on a cancelled pending future
        pending_work_items = {0: Item()}
        processes, call_queue, executor_reference = {}, None, lambda self: None

    def broken():
        cfp._ExecutorManagerThread.terminate_broken(Manager(), None)

    run(broken)
    assert seen == [InvalidStateError]  # the race, reproduced (negative control)
    seen.clear()
    D._quiet_cancelled_futures()
    D._quiet_cancelled_futures()  # idempotent: one wrapper
    run(broken)
    assert seen == []
    run(lambda: (_ for _ in ()).throw(InvalidStateError("elsewhere")))  # not from terminate_broken: passed on
    run(lambda: 1 / 0)
    assert seen == [InvalidStateError, ZeroDivisionError]


def test_stopping_a_pool_returns_after_its_manager_thread_has_ended():
    """CI, CPython 3.11: after SIGTERM the pool's manager thread was still closing its wake-up pipe when the
    interpreter's exit hook wrote to it, and "OSError: Bad file descriptor" followed "terminated". _stop now
    returns only once that thread has ended (its pipe closed), so the exit hook finds nothing to wake."""
    import time as _time

    import cpa_theory.density as D

    executor = D.default_executor(max_workers=2)
    futures = [executor.submit(_time.sleep, 30) for _ in range(4)]
    deadline = _time.time() + 60
    while _time.time() < deadline and not any(f.running() for f in futures):
        _time.sleep(0.05)
    manager = executor._executor_manager_thread
    wakeup = executor._executor_manager_thread_wakeup
    assert manager is not None and manager.is_alive()
    t0 = _time.time()
    D._stop(executor)
    assert not manager.is_alive()
    assert wakeup._closed
    assert _time.time() - t0 < 10  # the running sleeps were abandoned, not waited for
    assert all(f.done() for f in futures)


def test_sigterm_during_count_workers_stops_the_workers_and_exits_143(tmp_path):
    """Referee's case: SIGTERM (what timeout, Slurm and systemd send) killed the parent and left both pool
    workers counting, re-parented to init. It now unwinds like Ctrl-C."""
    proc, psutil, workers = _busy_count_workers(tmp_path)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert "terminated" in err and "Traceback" not in err and out == ""
    gone, alive = psutil.wait_procs(workers, timeout=5)
    assert not alive, [p.pid for p in alive]
