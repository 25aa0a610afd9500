"""Scaling benchmark: exact counts on Dask (issue #15), ratios against the single-process run in the same run.

(a) windows counted per second: one network, many windows (``density.count_many``), in this process and on a
    LocalCluster of 1, 2 and 4 single-threaded worker processes, at two numbers of windows;
(b) sweep networks per second: ``numerics.sweep.run_point`` with exact counts (``count_networks``) of every
    network, in this process and on the same clusters;
(c) Dask's per-task overhead: empty tasks through the scheduler, at two numbers of tasks, and the extra time
    per window of the 1-worker cluster over this process at both sizes (it must not grow with the windows).

This process is timed again beside every cluster (best of --repeats, alternating), so a shared
machine's load changes the ratios less. Every Dask result is compared with the single-process one (identical JSON required). Cluster start-up is
timed separately and not counted in the throughput. On a 2-core machine expect no gain past 2 workers: what
is measured here is correctness, no loss and a flat overhead.

    python benchmarks/bench_scale.py [--quick]

Ends with one JSON line of headline figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from cpa_theory import BatchNorm, Layer, Network, identity, relu
from cpa_theory.density import count_many
from cpa_theory.distributed import dask_client

WORKERS = (1, 2, 4)


def bench_net(seed: int = 0) -> tuple[Network, np.ndarray]:
    """A 2-16-16-1 ReLU MLP with train-mode BN (≈ 10–20 ms per window of radius 0.5) and its batch."""
    rng = np.random.default_rng(seed)
    layers = []
    widths = (2, 16, 16, 1)
    for i, (m, n) in enumerate(zip(widths[:-1], widths[1:])):
        last = i == len(widths) - 2
        layers.append(Layer(rng.normal(size=(n, m)) / np.sqrt(m), rng.normal(size=n) * 0.5,
                            identity() if last else relu(), None if last else BatchNorm(n, "train")))
    batch = rng.normal(size=(16, 2))
    return Network(2, tuple(layers), batch), batch


def _noop(i):
    return i


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer windows and tasks (a smoke run)")
    ap.add_argument("--repeats", type=int, default=2, help="timings per configuration; the best is kept")
    args = ap.parse_args()
    sizes = (40, 160) if args.quick else (200, 800)
    empty = (100, 1000) if args.quick else (200, 2000)
    radius = 0.5

    from numerics.sweep import SweepConfig, grid_points, run_point

    net, batch = bench_net()
    cond = net.condition()
    rng = np.random.default_rng(1)
    centers = {n: batch.mean(axis=0) + rng.uniform(-1.5, 1.5, size=(n, 2)) for n in sizes}
    sweep_cfg = SweepConfig(seed=0, d=2, widths=(16, 16), networks=8 if args.quick else 16, batch_sizes=(16,),
                            bias_scales=(0.5,), radii=(0.3,), distances=(0.0, 1.0), count_networks=8 if args.quick
                            else 16, heldout=4)
    points = grid_points(sweep_cfg)
    sweep_networks = sweep_cfg.count_networks * len(points)

    # -- single-process baseline (measured again beside every cluster: the machine may be shared) -----------
    def baseline():
        times = {n: timed(lambda n=n: count_many(cond, centers[n], radius)) for n in sizes}
        sweep_t, sweep = timed(lambda: [run_point(sweep_cfg, p) for p in points])
        return {n: t for n, (t, _) in times.items()}, {n: r for n, (_, r) in times.items()}, sweep_t, sweep

    run_point(sweep_cfg, points[0])  # compile the JAX kernel outside the timing
    base_t, base_rows, base_sweep_t, base_sweep = baseline()
    print(f"single process: {sizes[-1] / base_t[sizes[-1]]:.1f} windows/s, "
          f"{sweep_networks / base_sweep_t:.2f} sweep networks/s (exact counts)")

    results = {}
    for w in WORKERS:
        t0 = time.perf_counter()
        with dask_client(f"local:{w}") as client:
            client.wait_for_workers(w)
            start = time.perf_counter() - t0
            count_many(cond, centers[sizes[0]][: 2 * w], radius, client=client)  # warm the workers' imports
            row = {"startup_s": start, "base": {}, "dask": {}}
            for _ in range(args.repeats):  # alternate this process and the cluster; keep the best of each
                bt, _, bst, _ = baseline()
                for n in sizes:
                    t, rows = timed(lambda n=n: count_many(cond, centers[n], radius, client=client))
                    if json.dumps(rows) != json.dumps(base_rows[n]):
                        raise SystemExit(f"{w} workers, {n} windows: results differ from the single-process run")
                    row["base"][n] = min(row["base"].get(n, np.inf), bt[n])
                    row["dask"][n] = min(row["dask"].get(n, np.inf), t)
                t, sw = timed(lambda: [run_point(sweep_cfg, p, client=client) for p in points])
                if sw != base_sweep:
                    raise SystemExit(f"{w} workers: sweep rows differ from the single-process run")
                row["base"]["sweep"] = min(row["base"].get("sweep", np.inf), bst)
                row["dask"]["sweep"] = min(row["dask"].get("sweep", np.inf), t)
            for n in sizes:
                row[f"windows_per_s_{n}"] = n / row["dask"][n]
                row[f"speedup_{n}"] = row["base"][n] / row["dask"][n]
                # what Dask adds to each window's cost (meaningful on 1 worker), at this number of windows
                row[f"extra_ms_per_window_{n}"] = 1e3 * (row["dask"][n] - row["base"][n]) / n
            row["sweep_networks_per_s"] = sweep_networks / row["dask"]["sweep"]
            row["sweep_speedup"] = row["base"]["sweep"] / row["dask"]["sweep"]
            for m in empty:  # empty tasks: what Dask itself costs per task
                client.gather(client.map(_noop, range(10), pure=False))
                t = min(timed(lambda m=m: client.gather(client.map(_noop, range(m), pure=False)))[0]
                        for _ in range(args.repeats))
                row[f"empty_task_ms_{m}"] = 1e3 * t / m
        results[w] = row
        print(f"{w} Dask worker(s): start-up {row['startup_s']:.1f} s, "
              + ", ".join(f"{row[f'windows_per_s_{n}']:.1f} windows/s ({n} windows)" for n in sizes)
              + f", {row['sweep_networks_per_s']:.2f} sweep networks/s, empty task "
              + ", ".join(f"{row[f'empty_task_ms_{m}']:.2f} ms ({m} tasks)" for m in empty))

    big = sizes[-1]
    print()
    print(f"{'run':<20} {'windows/s':>10} {'beside it':>10} {'speed-up':>9} {'sweep nets/s':>13} {'beside it':>10} "
          f"{'speed-up':>9}")
    print(f"{'single process':<20} {big / base_t[big]:>10.1f} {'':>10} {1.0:>9.2f} {sweep_networks / base_sweep_t:>13.2f} "
          f"{'':>10} {1.0:>9.2f}")
    for w, row in results.items():
        print(f"{f'Dask, {w} worker(s)':<20} {row[f'windows_per_s_{big}']:>10.1f} {big / row['base'][big]:>10.1f} "
              f"{row[f'speedup_{big}']:>9.2f} {row['sweep_networks_per_s']:>13.2f} "
              f"{sweep_networks / row['base']['sweep']:>10.2f} {row['sweep_speedup']:>9.2f}")
    print("('beside it': this process, timed again next to that cluster; speed-ups are against that figure)")
    one = results[1]
    print(f"per-task overhead (empty tasks, 1 worker): {one[f'empty_task_ms_{empty[0]}']:.2f} ms at {empty[0]} tasks, "
          f"{one[f'empty_task_ms_{empty[1]}']:.2f} ms at {empty[1]} tasks")
    print(f"extra time per window on 1 worker vs this process: {one[f'extra_ms_per_window_{sizes[0]}']:.2f} ms at "
          f"{sizes[0]} windows, {one[f'extra_ms_per_window_{sizes[1]}']:.2f} ms at {sizes[1]} windows")
    print(f"machine: {os.cpu_count()} CPUs, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    headline = {f"dask_speedup_{w}_workers": results[w][f"speedup_{big}"] for w in WORKERS}
    headline.update({f"sweep_speedup_{w}_workers": results[w]["sweep_speedup"] for w in WORKERS})
    headline.update({
        "single_process_windows_per_s": big / base_t[big],
        "single_process_sweep_networks_per_s": sweep_networks / base_sweep_t,
        "per_task_overhead_ms": one[f"empty_task_ms_{empty[1]}"],
        f"per_task_overhead_ms_{empty[0]}_tasks": one[f"empty_task_ms_{empty[0]}"],
        f"extra_ms_per_window_{sizes[0]}_windows": one[f"extra_ms_per_window_{sizes[0]}"],
        f"extra_ms_per_window_{sizes[1]}_windows": one[f"extra_ms_per_window_{sizes[1]}"],
        "identical_results": True, "cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0],
    })
    print(json.dumps(headline))


if __name__ == "__main__":
    main()
