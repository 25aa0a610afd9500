"""Exact-tie benchmark: CNN slices whose max-pools tie exactly, against a whole-code cache in the same run.

A convolutional network with a max-pool inside a residual body (Conv → BN2d train → ReLU → [Conv → ReLU →
MaxPool(3, 1, 1)] + skip → MaxPool 2 → Linear → BN train → ReLU → Linear; 6×6 inputs, a batch of 10) has pools
of dead ReLUs tied at exactly 0 on most cells, so refinement and the facet probe decide them in rationals
(:class:`cpa_theory.exact.ExactCharts`). Each window (a plane through three batch images, at several half-widths)
is counted with the default charts, whose cache is keyed by each row's dependency cone, and with a baseline whose
cache is keyed by the whole code of the cell (the previous behaviour): equal counts and certificates are required,
seconds and the ratio are printed. Ends with one JSON line of headline figures.

    python benchmarks/bench_exact_ties.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

import cpa_theory.exact as EX
from cpa_theory.activations import relu
from cpa_theory.bn import BatchNorm
from cpa_theory.convnet import ConvNetwork
from cpa_theory.layers import Activation, BatchNormND, Conv, Flatten, Linear, MaxPool, Residual
from cpa_theory.slices import count_on_slice, slice_from_basis, slice_through_points


def pooled_resnet(seed: int = 3) -> ConvNetwork:
    rng = np.random.default_rng(seed)

    def bn(c):
        return BatchNormND(BatchNorm(c, "train", np.ones(c), np.zeros(c)))

    def conv(cout, cin, k):
        bound = 1 / np.sqrt(cin * k * k)
        return Conv(rng.uniform(-bound, bound, (cout, cin, k, k)), rng.uniform(-bound, bound, cout), padding=1)

    return ConvNetwork((1, 6, 6), (
        conv(2, 1, 3), bn(2), Activation(relu()),
        Residual((conv(2, 2, 3), Activation(relu()), MaxPool((3, 3), (1, 1), (1, 1)))),
        MaxPool((2, 2)), Flatten(),
        Linear(rng.uniform(-0.25, 0.25, (3, 18)), rng.uniform(-0.25, 0.25, 3)),
        BatchNormND(BatchNorm(3, "train", np.ones(3), np.zeros(3))), Activation(relu()),
        Linear(rng.uniform(-0.5, 0.5, (1, 3)), rng.uniform(-0.5, 0.5, 1))), rng.normal(size=(10, 1, 6, 6)))


def _timed(net, sl, whole_code: bool):
    saved = EX.ExactCharts._cone
    if whole_code:
        EX.ExactCharts._cone = lambda self, kind, l, i: EX._WHOLE
    try:
        t = time.perf_counter()
        res = count_on_slice(net, sl)
        return res, time.perf_counter() - t
    finally:
        EX.ExactCharts._cone = saved


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="two small windows, one repeat")
    args = ap.parse_args()
    net = pooled_resnet()
    full = slice_through_points(*net.batch[[0, 4, 7]].reshape(3, -1))
    fractions = (0.1, 0.2) if args.quick else (0.1, 0.2, 0.3)
    repeats = 1 if args.quick else 2
    print(f"{'half-width':>10} {'regions':>8} {'N_lin':>6} {'cone s':>8} {'whole s':>8} {'ratio':>6} {'certified':>9}")
    ratios, rows = [], []
    for f in fractions:
        sl = slice_from_basis(full.x0, full.V, f * full.radius)
        t_new, t_old = [], []
        for _ in range(repeats):  # alternate, so a slow spell of the machine hits both
            res, t = _timed(net, sl, whole_code=False)
            t_new.append(t)
            base, t = _timed(net, sl, whole_code=True)
            t_old.append(t)
            if (res.regions, res.linear_regions, res.certified, res.complete) != (
                    base.regions, base.linear_regions, base.certified, base.complete):
                raise SystemExit(f"counts differ at half-width {sl.radius}: {res} vs {base}")
        new, old = statistics.median(t_new), statistics.median(t_old)
        ratios.append(old / new)
        rows.append({"half_width": sl.radius, "regions": res.regions, "seconds": new, "baseline_seconds": old})
        print(f"{sl.radius:>10.3f} {res.regions:>8} {res.linear_regions:>6} {new:>8.2f} {old:>8.2f} {old / new:>6.2f} "
              f"{str(res.certified and res.complete):>9}")
    print(f"machine: {os.cpu_count()} CPUs, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(json.dumps({"speedup_vs_whole_code_cache": statistics.median(ratios), "windows": rows,
                      "identical_counts": True, "load_average_1min": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
