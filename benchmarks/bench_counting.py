"""Region-counting benchmark: ratios against baselines measured in the same run.

(a) a straightforward splitter that solves fresh cvxpy LPs for every (cell, hyperplane) pair, on the same
    network and window: identical counts required, speed-up reported (goal ≥ 50×);
(b) certified regions per second for d = 2, 4, 8 on 2- and 3-hidden-layer networks of width 16–32;
(c) the shared benchmark networks (../shared/bench, 18 nets, boxes ±1 and ±0.5): wall and CPU seconds of the
    default engine (plane / space engines in d = 2 / 3), regions/s, the ratios to the PREVIOUS engine (the
    cell-by-cell engine, ``engine="cells"``) and to the frozen first engine (``benchmarks/_engine_v1.py``), both
    run in the same process on the same window with equal counts asserted, peak memory (tracemalloc, separate
    run; it does not see the compiled loops' own short-lived buffers, a few arrays of one wave's entries), and the peer tool's medians beside (wall and CPU ratios: on a shared machine CPU time is the fairer
    figure against the peer's idle-machine wall times);
(d) d = 4–6 windows (4-16-16-1, 5-32-32-1, 6-16-16-16-1; radii in ``HIGH_DIM``) with --high-dim: regions, N_lin,
    certified/complete, seconds, regions/s and peak RSS, each window in a fresh process;
(e) with --sections e: the flat engines' kernels on JAX (``kernels="jax"``) against numpy on the seed-0 bench
    nets (on a GPU machine this is the GPU figure).

--malloc keep (default) runs as the ``cpa-theory`` command does, freed memory kept for reuse
(:mod:`cpa_theory.allocator`; 3-D windows ~20 % faster); --malloc system leaves glibc's adaptive thresholds,
as a program that imports the library without opting in gets.

    python benchmarks/bench_counting.py [--quick] [--high-dim] [--sections abce] [--peer-times rows.json]
                                        [--malloc keep|system]

--peer-times: the peer's seconds measured on this machine by your own run of it (rows {arch, seed, radius,
peer_wall_s}); the published medians in ../shared/bench come from another machine.

Ends with one JSON line of headline figures (median_seconds_2d, median_seconds_3d, regions_per_second,
speedup_vs_previous_engine, speedup_vs_cvxpy_splitter, ...).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import re
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from cpa_theory import Layer, Network, identity, load_network, relu
from cpa_theory.regions import count_regions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _engine_v1 import count_regions_v1  # noqa: E402  (frozen previous engine: benchmarks only)

BENCH = Path(__file__).resolve().parents[2] / "shared" / "bench"


def random_net(rng, widths):
    layers = []
    for i, (m, n) in enumerate(zip(widths[:-1], widths[1:])):
        last = i == len(widths) - 2
        layers.append(Layer(rng.normal(size=(n, m)) / np.sqrt(m), rng.normal(size=n) * 0.1,
                            identity() if last else relu()))
    return Network(widths[0], tuple(layers))


def cvxpy_splitter(net, center, radius) -> int:
    """Baseline: cells as H-representations; every (cell, hyperplane) decided by two fresh cvxpy LPs."""
    import cvxpy as cp

    cond = net.condition()
    d = net.input_dim
    G0 = np.vstack([np.eye(d), -np.eye(d)])
    h0 = np.concatenate([center + radius, -(center - radius)])
    cells = [(G0, h0)]
    for li, layer in enumerate(cond.layers):
        if not layer.activation.breakpoints:
            continue
        out = []
        for G, h in cells:
            # affine map of the layer input on this cell, read at its Chebyshev centre
            x = cp.Variable(d)
            rho = cp.Variable()
            cp.Problem(cp.Maximize(rho), [G @ x + np.linalg.norm(G, axis=1) * rho <= h]).solve(solver=cp.HIGHS)
            A, c = cond.affine_map(x.value, li)
            pieces = [(G, h)]
            for i in range(layer.weight.shape[0]):
                a = layer.bn.gain[i] * layer.weight[i] @ A
                z0 = layer.bn.gain[i] * layer.weight[i] @ (c - layer.bn.anchor) + layer.bn.shift[i]
                for t in layer.activation.breakpoints:
                    new = []
                    for Gp, hp in pieces:
                        y = cp.Variable(d)
                        lo = cp.Problem(cp.Minimize(a @ y), [Gp @ y <= hp])
                        lo.solve(solver=cp.HIGHS)
                        hi = cp.Problem(cp.Maximize(a @ y), [Gp @ y <= hp])
                        hi.solve(solver=cp.HIGHS)
                        beta = t - z0
                        if lo.value < beta - 1e-9 and hi.value > beta + 1e-9:
                            new += [(np.vstack([Gp, a]), np.append(hp, beta)), (np.vstack([Gp, -a]), np.append(hp, -beta))]
                        else:
                            new.append((Gp, hp))
                    pieces = new
            out += pieces
        cells = out
    return len(cells)


def timed(fn, repeat=3):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def _cpu_time(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def peer_table(path: str = ""):
    """Peer seconds per arch: ``(box ±1 by seed, box ±0.5 by seed)``. Default: the published medians of
    ``../shared/bench/README.md``; ``path``: a JSON list of rows ``{arch, seed, radius, peer_wall_s}`` from the
    user's own run of the peer on this machine (the only fair comparison on another machine: see README)."""
    rows: dict = {}
    if path:
        from cpa_theory.inputs import read_json

        for r in read_json(path, "peer times"):
            col = 0 if float(r["radius"]) == 1.0 else 1
            rows.setdefault(r["arch"], ([math.nan] * 3, [math.nan] * 3))[col][int(r["seed"])] = float(r["peer_wall_s"])
        return rows
    text = (BENCH / "README.md").read_text()
    for line in text.splitlines():
        m = re.match(r"\| ([\d-]+) \| ([\d./ ]+) \| ([\d./ ]+) \|", line)
        if m:
            rows[m.group(1)] = ([float(v) for v in m.group(2).split("/")], [float(v) for v in m.group(3).split("/")])
    return rows


print = functools.partial(print, flush=True)  # noqa: A001  (progress visible when piped)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer networks, one repetition")
    ap.add_argument("--sections", default="abc",
                    help="which parts to run, e.g. 'c' (default abc; e on request; d via --high-dim)")
    ap.add_argument("--peer-times", default="",
                    help="JSON rows {arch, seed, radius, peer_wall_s} of the peer run on this machine "
                         "(default: the published medians)")
    ap.add_argument("--high-dim", action="store_true", help="also the d = 4-6 windows of section (d) (minutes)")
    ap.add_argument("--high-dim-radius", default="",
                    help="radii for (d)'s three nets, e.g. 1,0.3,0.2 (default: HIGH_DIM)")
    ap.add_argument("--malloc", choices=("keep", "system"), default="keep",
                    help="keep: freed memory kept for reuse, as the cpa-theory command runs "
                         "(cpa_theory.allocator.keep_freed_memory); system: glibc's adaptive defaults")
    args = ap.parse_args()
    repeat = 1 if args.quick else 3
    rng = np.random.default_rng(0)
    headline = {"malloc": args.malloc, "malloc_applied": _malloc(args.malloc)}
    print(f"malloc: {args.malloc} ({'in force' if headline['malloc_applied'] else 'glibc defaults'})")

    # (a)
    if "a" in args.sections:
        _section_a(headline, rng, repeat)
    if "b" in args.sections:
        _section_b(headline, repeat)
    _section_c_d(headline, args, repeat)
    print(json.dumps(headline))


def _section_a(headline, rng, repeat):
    net = random_net(rng, (2, 6, 6, 1))
    center, radius = np.zeros(2), 1.0
    t = time.perf_counter()
    base_count = cvxpy_splitter(net, center, radius)
    t_base = time.perf_counter() - t
    res, t_ours = timed(lambda: count_regions(net, center, radius, linear=False), repeat)
    print(f"(a) 2-6-6-1 box ±1: cvxpy splitter {base_count} regions in {t_base:.2f} s; ours {res.regions} "
          f"certified={res.certified} in {t_ours * 1e3:.1f} ms -> speed-up {t_base / t_ours:.0f}x")
    assert res.regions == base_count, "counts must agree"
    headline["speedup_vs_cvxpy_splitter"] = round(t_base / t_ours, 1)


def _section_b(headline, repeat):
    rps = {}
    for d, widths, r in [(2, (2, 32, 32, 1), 1.0), (2, (2, 16, 16, 16, 1), 1.0), (4, (4, 16, 16, 1), 0.5),
                         (4, (4, 16, 16, 16, 1), 0.3), (8, (8, 16, 16, 1), 0.05), (8, (8, 8, 8, 8, 1), 0.05)]:
        net = random_net(np.random.default_rng(d), widths)
        res, t = timed(lambda: count_regions(net, np.zeros(d), r, linear=False), repeat)
        name = "-".join(map(str, widths))
        rps[name] = round(res.regions / t, 1)
        assert res.certified
        print(f"(b) {name} r={r}: {res.regions} certified regions in {t:.3f} s -> {res.regions / t:.0f} regions/s")
    headline["regions_per_second_small_nets"] = rps


def _section_c_d(headline, args, repeat):
    # (c)
    if BENCH.is_dir() and "c" in args.sections:
        peer = peer_table(args.peer_times)
        headline["peer_times"] = args.peer_times or "published medians (../shared/bench/README.md)"
        ratios, cpu_ratios, speedups, cell_speedups, secs2, secs3, cpu2, cpu3 = {}, {}, [], [], [], [], [], []
        tot_regions = tot_seconds = 0.0
        print(f"(c) load: {os.getloadavg()[0]:.2f} (1-min load average; 2 cores shared). 'new': the default engine "
              "(plane / space engine for d = 2 / 3); 'cells': the cell-by-cell engine of the previous landing; "
              "'v1': the frozen first engine; 'cpu s': process CPU time of 'new' (robust to a shared machine)")
        print(f"{'net':20s} {'box':>4s} {'regions':>7s} {'cert':>5s} {'new s':>7s} {'cpu s':>7s} {'reg/s':>7s} "
              f"{'cells s':>7s} {'v1 s':>7s} {'cells/new':>9s} {'v1/new':>6s} {'MiB':>6s} {'peer s':>6s} "
              f"{'new/peer':>8s} {'cpu/peer':>8s}")
        for path in sorted((BENCH / "nets").glob("*.json")):
            if args.quick and not path.stem.endswith("s0"):
                continue
            net = load_network(path)
            arch = path.stem.rsplit("-s", 1)[0]
            seed = int(path.stem.rsplit("-s", 1)[1])
            for col, r in ((0, 1.0), (1, 0.5)):
                c0 = np.zeros(net.input_dim)
                res, t = timed(lambda: count_regions(net, c0, r, linear=False), repeat)
                cpu = min(_cpu_time(lambda: count_regions(net, c0, r, linear=False)) for _ in range(repeat))
                cells, t_cells = timed(lambda: count_regions(net, c0, r, linear=False, engine="cells"), 1)
                old, t_old = timed(lambda: count_regions_v1(net, c0, r, linear=False), 1)
                assert res.regions == old.regions == cells.regions, (
                    f"{path.stem} box ±{r}: new {res.regions}, cells {cells.regions}, v1 {old.regions}")
                assert res.certified and res.complete
                tracemalloc.start()
                count_regions(net, c0, r, linear=False)
                peak = tracemalloc.get_traced_memory()[1] / 2**20
                tracemalloc.stop()
                peer_t = peer[arch][col][seed]
                ratios[f"{path.stem}@{r}"] = round(t / peer_t, 2)
                cpu_ratios[f"{path.stem}@{r}"] = round(cpu / peer_t, 2)
                speedups.append(t_old / t)
                cell_speedups.append(t_cells / t)
                (secs2 if net.input_dim == 2 else secs3).append(t)
                (cpu2 if net.input_dim == 2 else cpu3).append(cpu)
                tot_regions += res.regions
                tot_seconds += t
                print(f"{path.stem:20s} {r:4.1f} {res.regions:7d} {str(res.certified):>5s} {t:7.3f} {cpu:7.3f} "
                      f"{res.regions / t:7.0f} {t_cells:7.3f} {t_old:7.3f} {t_cells / t:9.2f} {t_old / t:6.2f} "
                      f"{peak:6.1f} {peer_t:6.3f} {t / peer_t:8.2f} {cpu / peer_t:8.2f}")
        headline["median_seconds_2d"] = round(statistics.median(secs2), 4)
        headline["median_seconds_3d"] = round(statistics.median(secs3), 4)
        headline["median_cpu_seconds_2d"] = round(statistics.median(cpu2), 4)
        headline["median_cpu_seconds_3d"] = round(statistics.median(cpu3), 4)
        headline["regions_per_second"] = round(tot_regions / tot_seconds, 1)
        headline["speedup_vs_previous_engine"] = round(statistics.median(cell_speedups), 2)
        headline["speedup_vs_frozen_v1"] = round(statistics.median(speedups), 2)
        headline["time_over_peer_median"] = round(statistics.median(ratios.values()), 2)
        headline["cpu_time_over_peer_median"] = round(statistics.median(cpu_ratios.values()), 2)
        headline["time_over_peer"] = ratios
        headline["cpu_time_over_peer"] = cpu_ratios

    # (d)
    if args.high_dim:
        _section_d(headline, args)
    # (e)
    if "e" in args.sections and BENCH.is_dir():
        _section_e(headline, repeat)


def _section_e(headline, repeat):
    """The flat engines' float kernels on JAX (jitted, padded; exact decisions on the host) against numpy, same
    window, same process, equal counts asserted. Warm-up compiles; the times are after it."""
    import jax

    print(f"(e) kernels: numpy vs jax (backend {jax.default_backend()}), seed-0 nets, box ±1")
    print(f"{'net':22s} {'regions':>8s} {'numpy s':>8s} {'jax s':>8s} {'jax/numpy':>9s}")
    ratios = {}
    for path in sorted((BENCH / "nets").glob("*-s0.json")):
        net = load_network(path)
        d = net.input_dim
        a, t_np = timed(lambda: count_regions(net, np.zeros(d), 1.0, kernels="numpy"), repeat)
        b, t_jx = timed(lambda: count_regions(net, np.zeros(d), 1.0, kernels="jax"), repeat)
        assert (a.regions, a.linear_regions, a.certified) == (b.regions, b.linear_regions, b.certified)
        ratios[path.stem] = round(t_jx / t_np, 2)
        print(f"{path.stem:22s} {a.regions:8d} {t_np:8.3f} {t_jx:8.3f} {t_jx / t_np:9.2f}")
    headline["jax_kernels_backend"] = jax.default_backend()
    headline["jax_kernels_time_over_numpy_median"] = round(statistics.median(ratios.values()), 2)


#: (d): the d = 4–6 nets and the radius each is counted at: the largest of 1 / 0.5 / 0.3 / 0.2 / 0.1 that
#: finishes within ~5 CPU minutes (issue 12, shared 2-core machine, CPU s): 4-16-16-1 r=1 (20,601 regions,
#: ~10 s), 5-32-32-1 r=0.1 (97,725 regions, ~79 s; r=0.2 did not finish), 6-16-16-16-1 r=0.2 (130,508 regions,
#: ~221 s)
HIGH_DIM = (((4, 16, 16, 1), 1.0), ((5, 32, 32, 1), 0.1), ((6, 16, 16, 16, 1), 0.2))


def _malloc(mode) -> bool:
    """Apply the allocator mode ``keep`` (:func:`cpa_theory.allocator.keep_freed_memory`); whether it is in force."""
    if mode != "keep":
        return False
    from cpa_theory.allocator import keep_freed_memory

    return keep_freed_memory()


def _count_high_dim(widths, radius, malloc="keep"):
    """One (d) window in a fresh process: the result, seconds and the process's peak RSS."""
    import resource

    _malloc(malloc)
    net = random_net(np.random.default_rng(0), widths)
    t, cpu = time.perf_counter(), time.process_time()
    res = count_regions(net, np.zeros(widths[0]), radius, progress=None)
    t, cpu = time.perf_counter() - t, time.process_time() - cpu
    return res.as_json(), t, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _section_d(headline, args):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    radii = [float(v) for v in args.high_dim_radius.split(",")] if args.high_dim_radius else None
    print(f"(d) load: {os.getloadavg()[0]:.2f} (1-min load average; 2 cores shared); each window in a fresh "
          "process, peak = its maximum RSS (the imports alone ~50 MiB); CPU s = that process's CPU time")
    print(f"{'net':18s} {'r':>5s} {'regions':>9s} {'N_lin':>9s} {'cert':>5s} {'compl':>5s} {'seconds':>8s} "
          f"{'CPU s':>8s} {'reg/s':>7s} {'peak MiB':>9s}")
    ctx = mp.get_context("spawn")
    for k, (widths, r) in enumerate(HIGH_DIM):
        r = radii[k] if radii else r
        with ProcessPoolExecutor(1, mp_context=ctx) as pool:
            js, t, cpu, peak = pool.submit(_count_high_dim, widths, r, args.malloc).result()
        name = "-".join(map(str, widths))
        print(f"{name:18s} {r:5.2f} {js['regions']:9d} {js['linear_regions']:9d} {str(js['certified']):>5s} "
              f"{str(js['complete']):>5s} {t:8.1f} {cpu:8.1f} {js['regions'] / t:7.0f} {peak:9.0f}")
        headline[f"high_dim_{name}"] = {"radius": r, "regions": js["regions"], "linear_regions": js["linear_regions"],
                                        "certified": js["certified"], "complete": js["complete"],
                                        "seconds": round(t, 2), "cpu_seconds": round(cpu, 2),
                                        "regions_per_second": round(js["regions"] / t, 1),
                                        "peak_mib": round(peak, 1)}

if __name__ == "__main__":
    main()
