"""Sweeps across JAX processes (issue #15): two local CPU processes joined by ``jax.distributed.initialize``
(coordinator on 127.0.0.1) resume one sweep with the network axis sharded over both processes' devices; the
rows equal the single-process run's, both processes skip the same finished point, and only process 0 writes
the run directory."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from numerics.sweep import SweepConfig, run_sweep

ROOT = Path(__file__).resolve().parents[1]

CFG = dict(seed=5, d=2, widths=(8,), networks=10, batch_sizes=(8,), bias_scales=(0.5,), radii=(0.2,),
           distances=(0.0, 1.5, 3.0), count_networks=2, heldout=3)

# One process of the pair: the README's multi-host recipe with explicit arguments (on a Slurm or Open MPI
# allocation jax.distributed.initialize() takes them from the environment).
WORKER = """
import json, sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")  # cross-process collectives on CPU
jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
jax.config.update("jax_enable_x64", True)
from numerics.sweep import SweepConfig, run_sweep
cfg = SweepConfig(**json.loads(sys.argv[4]))
rows = run_sweep(cfg, sys.argv[3])
print("RESULT " + json.dumps({"process": jax.process_index(), "processes": jax.process_count(),
                              "devices": len(jax.devices()), "local": len(jax.local_devices()), "rows": rows}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _result(stdout: str) -> dict:
    return json.loads(next(line for line in stdout.splitlines() if line.startswith("RESULT "))[len("RESULT "):])


@pytest.mark.slow  # 15-45 s; the default run shards over 8 host devices (tests/test_sweep.py)
def test_sweep_across_two_jax_processes_equals_one_process(tmp_path):
    cfg = SweepConfig(**CFG)
    run0 = tmp_path / "run0"
    single = run_sweep(cfg, run0)  # this process: one CPU device
    assert len(single) == 3
    # leave point 0 finished: the pair must resume, both processes skipping the same point
    for name in ("chunks/000001.json", "chunks/000002.json", "results.jsonl"):
        (run0 / name).unlink()
    kept = (run0 / "chunks" / "000000.json").stat()

    coordinator = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # each process gets its own --out so that a write by process 1 would be seen
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, coordinator, str(i), str(tmp_path / f"run{i}"),
                               json.dumps(CFG)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT, env=env) for i in range(2)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=240))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    res = [_result(out) for out, _ in outs]
    assert [r["process"] for r in res] == [0, 1]
    assert all(r["processes"] == 2 and r["devices"] == 4 and r["local"] == 2 for r in res)  # a global mesh

    assert res[0]["rows"] == res[1]["rows"]  # both processes return process 0's rows
    for a, b in zip(res[0]["rows"], single):  # points 1 and 2 computed across the two processes
        for k in ("h_bn_mean", "h_plain_mean", "bn_minus_plain_mean", "p_bn_refines_more", "n_bn_mean",
                  "n_plain_mean", "n_lin_bn_mean", "n_lin_plain_mean", "config_hash", "index"):
            assert a[k] == b[k], k
        for k in ("c6_bound_h_plain", "c6_bound_n_plain", "mean_distance_to_centroid"):
            assert a[k] == pytest.approx(b[k], rel=1e-12), k
    # process 0 completed the run directory without touching the finished point; process 1 wrote nothing
    again = (run0 / "chunks" / "000000.json").stat()
    assert (again.st_ino, again.st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)
    assert len(list((run0 / "chunks").glob("*.json"))) == 3
    assert [json.loads(x) for x in (run0 / "results.jsonl").read_text().splitlines()] == res[0]["rows"]
    assert not (tmp_path / "run1").exists()
