"""Train a small BatchNorm MLP on scikit-learn's moons in PyTorch, import it, and compare local region densities.

Three views of the same trained weights (THEORY §1):

* train mode: BN conditioned on a training batch (the function the network computes during training),
* eval mode: BN with its running statistics (the deployed function),
* BN removed: the same weights and raw biases without BN.

For each, the exact certified region count N(f; W(x0, r)) is computed in ℓ∞ windows around held-out points,
and its mean D_r is reported with a t-based 95 % confidence interval (held-out points are the independent
units). The three partitions around the training batch's centroid are drawn side by side into a PNG.

    python examples/torch_moons_bn.py                       # defaults: well under 30 s on a laptop CPU
    python examples/torch_moons_bn.py --epochs 300 --points 64 --radius 0.2 --out moons.png
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np


def train(width: int, epochs: int, batch_size: int, seed: int):
    """A 2 → width → width → 1 MLP with BN after each hidden Linear, trained with Adam on noisy moons."""
    import torch
    from sklearn.datasets import make_moons

    torch.manual_seed(seed)
    torch.set_num_threads(1)  # a 16-wide MLP: threads only add overhead (and contend on shared machines)
    X, y = make_moons(n_samples=600, noise=0.15, random_state=seed)
    X = (X - X.mean(0)) / X.std(0)
    X_train, y_train, X_test = X[:400], y[:400], X[400:]
    nn = torch.nn
    model = nn.Sequential(nn.Linear(2, width), nn.BatchNorm1d(width), nn.ReLU(),
                          nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt = torch.tensor(X_train, dtype=torch.float32)
    yt = torch.tensor(y_train, dtype=torch.float32)[:, None]
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(batch_size):
            if len(idx) < 2:  # train-mode BN needs two points
                continue
            loss = nn.functional.binary_cross_entropy_with_logits(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float(((model(xt) > 0).float() == yt).float().mean())
    return model, X_train, X_test, acc


def mean_ci95(x) -> tuple[float, float, float]:
    """Mean and t-based 95 % confidence interval."""
    from scipy.stats import t

    x = np.asarray(x, dtype=np.float64)
    m = float(x.mean())
    if x.size < 2:
        return m, m, m
    half = float(t.ppf(0.975, x.size - 1)) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return m, m - half, m + half


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=int, default=16, help="hidden width (default 16)")
    p.add_argument("--epochs", type=int, default=60, help="training epochs (default 60)")
    p.add_argument("--batch-size", type=int, default=32, help="training batch size, also the BN batch (default 32)")
    p.add_argument("--points", type=int, default=24, help="held-out points = windows per mode (default 24)")
    p.add_argument("--radius", type=float, default=0.15, help="window radius r (default 0.15)")
    p.add_argument("--plot-radius", type=float, default=1.0, help="half-width of the drawn window (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="moons_partitions.png", help="PNG of the three partitions")
    args = p.parse_args(argv)

    import torch

    import cpa_theory as cpa
    from cpa_theory.regions import count_regions

    t0 = time.perf_counter()
    model, X_train, X_test, acc = train(args.width, args.epochs, args.batch_size, args.seed)
    rng = np.random.default_rng(args.seed)
    batch = X_train[rng.choice(len(X_train), args.batch_size, replace=False)]
    nets = {"train-mode BN (batch of %d)" % len(batch): cpa.from_torch(model, batch=torch.tensor(batch)),
            "eval-mode BN (running stats)": cpa.from_torch(model)}
    nets["BN removed"] = next(iter(nets.values())).without_batchnorm()
    points = X_test[: args.points]
    print(f"trained {args.epochs} epochs, train accuracy {acc:.3f}; windows: {len(points)} held-out points, "
          f"r = {args.radius}")
    print(f"{'network':<30} {'D_r = mean N':>12} {'95 % CI (t)':>20} {'certified':>10}")
    rows = {}
    for name, net in nets.items():
        counts = [count_regions(net, x0, args.radius, linear=False) for x0 in points]
        m, lo, hi = mean_ci95([c.regions for c in counts])
        rows[name] = (m, lo, hi)
        ok = sum(c.certified for c in counts)
        print(f"{name:<30} {m:>12.2f} {f'[{lo:.2f}, {hi:.2f}]':>20} {ok:>6}/{len(counts)}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cpa_theory.plotting import _gradient_scale, plot_partition, save_figure

    centre = batch.mean(axis=0)
    radius = args.plot_radius
    results = {name: count_regions(net, centre, radius, keep_regions=True) for name, net in nets.items()}
    scale = max(_gradient_scale(r.region_list) for r in results.values())
    fig, axes = plt.subplots(1, 3, figsize=(15, 6.2), layout="constrained")
    for ax, (name, net) in zip(axes, nets.items()):
        plot_partition(ax, net, centre, radius, name, grad_scale=scale, _result=results[name])
    fig.suptitle(f"One trained BN MLP (moons, width {args.width}) in the window x̄ ± {radius:g} around the batch "
                 "centroid; colour: direction (hue) and size (shade) of ∇f", fontsize=10)
    save_figure(fig, args.out)
    plt.close(fig)
    print(f"figure: {Path(args.out)}  ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
