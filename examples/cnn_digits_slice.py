"""Train a small BatchNorm CNN on scikit-learn digits, import it, count its regions exactly on the plane
through three test digits in three modes, and save the figure (issue #14, item 7).

Run from the repository root (needs PyTorch, the ``torch`` extra):

    python examples/cnn_digits_slice.py --out cnn_digits_slice.png

Modes: train-mode BN conditioned on a training batch (the realised training-time function), eval mode
(running statistics), and the same weights with BN removed. Regions are coloured by their affine map (maximal
linear regions share a colour); black lines are the decision boundary; white dots are the three digits.
Prints one JSON line with the exact certified counts.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def train(seed: int, epochs: int):
    import torch
    from sklearn.datasets import load_digits

    torch.manual_seed(seed)
    torch.set_default_dtype(torch.float64)
    nn = torch.nn
    d = load_digits()
    X = torch.from_numpy(d.images[:, None] / 16.0)
    y = torch.from_numpy(d.target)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    tr, te = perm[:1500], perm[1500:]
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d(2),
                          nn.Conv2d(4, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        model.train()
        for i in range(0, len(tr), 64):
            idx = tr[i:i + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(X[te]).argmax(1) == y[te]).double().mean())
    return model, X[tr[:64]].numpy(), X[te].numpy(), acc


def draw(ax, res, sl, net_slice, title):
    from matplotlib.collections import PolyCollection

    rng = np.random.default_rng(0)
    colours, polys, faces = {}, [], []
    for reg in res.region_list:
        key = np.round(np.concatenate([reg.out_A.ravel(), reg.out_c]), 8).tobytes()
        if key not in colours:
            colours[key] = rng.uniform(0.25, 0.95, 3)
        V = reg.vertices
        c = V.mean(axis=0)
        polys.append(V[np.argsort(np.arctan2(V[:, 1] - c[1], V[:, 0] - c[0]))])
        faces.append(colours[key])
    ax.add_collection(PolyCollection(polys, facecolors=faces, edgecolors="none"))
    g = np.linspace(-sl.radius, sl.radius, 300)
    T = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    cls = net_slice.forward(T).argmax(axis=1).reshape(300, 300)
    ax.contour(g, g, cls, levels=np.arange(11) - 0.5, colors="k", linewidths=0.6)
    ax.scatter(*sl.points.T, c="w", edgecolors="k", s=30, zorder=3)
    ax.set_xlim(-sl.radius, sl.radius)
    ax.set_ylim(-sl.radius, sl.radius)
    ax.set_aspect("equal")
    ax.set_xlabel("t1 (slice coordinate)")
    ax.set_ylabel("t2 (slice coordinate)")
    ax.set_title(f"{title}: N = {res.regions}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="cnn_digits_slice.png")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--margin", type=float, default=0.1)
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cpa_theory.importers_torch_fx import from_torch_convnet
    from cpa_theory.slices import count_on_slice, slice_network, slice_through_points

    model, batch, test, acc = train(args.seed, args.epochs)
    train_net = from_torch_convnet(model, batch).network
    nets = {"train-mode BN": train_net,
            "eval mode": from_torch_convnet(model, input_shape=(1, 8, 8)).network,
            "BN removed": train_net.without_batchnorm()}
    sl = slice_through_points(test[0].ravel(), test[1].ravel(), test[2].ravel(), args.margin)
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    out = {"test_accuracy": acc, "slice_radius": sl.radius}
    for ax, (name, net) in zip(axes, nets.items()):
        t0 = time.perf_counter()
        res = count_on_slice(net, sl, keep_regions=True)
        out[name] = {"regions": res.regions, "linear_regions": res.linear_regions, "certified": res.certified,
                     "seconds": round(time.perf_counter() - t0, 2)}
        draw(ax, res, sl, slice_network(net, sl), name)
    fig.tight_layout()
    from cpa_theory.plotting import save_figure

    save_figure(fig, args.out)  # atomic; never over a file cpa-theory did not write
    print(json.dumps(out))


if __name__ == "__main__":
    main()
