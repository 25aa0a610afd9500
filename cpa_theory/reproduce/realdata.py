"""Real data: local region density over training, BN (train mode / eval mode) vs no BN.

Two of scikit-learn's bundled datasets. A small MLP with BN and the same architecture without BN are
trained in JAX with optax (``numerics.training``); at every checkpoint the realised functions are measured
at held-out data points:

* **moons** (d = 2): exact certified region counts N and N_lin in W(x, r) (``cpa_theory.regions``) for the
  BN model conditioned on a real training batch, the BN model in eval mode, and the model without BN;
  density vs radius at the last checkpoint; partitions drawn at init and after training; histograms of
  the first layer's standardised offsets.
* **digits** (d = 64): exact first-layer hitting numbers (C4); the fraction of windows certified inside a
  parent region of layer 2 (no layer-1 switching set cuts them); layer-2 hitting numbers inside those parent
  regions (C9); exact certified counts by the LP counter (``numerics.lp_regions``).
"""

from __future__ import annotations

import numpy as np

from ..hyperplanes import switching_hyperplanes
from ..regions import count_regions
from ..windows import window_hits

__all__ = ["run_realdata", "effects", "MOONS_RADII", "DIGITS_RADIUS"]

MOONS_RADII = (0.05, 0.1, 0.2, 0.4)
MOONS_RADIUS = 0.1
DIGITS_RADIUS = 0.005


def _split(X, y, rng, n_test):
    perm = rng.permutation(len(X))
    return X[perm[n_test:]], y[perm[n_test:]], X[perm[:n_test]]


def _moons_data():
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=1000, noise=0.1, random_state=0)
    return (X - X.mean(0)) / X.std(0), y


def _ci(values) -> list:
    """Student-t 95 % interval of the mean over query points (the queries are the independent units)."""
    from numerics.stats import mean_ci95

    return mean_ci95(values)[1]


def _digits_data():
    from sklearn.datasets import load_digits

    from numerics.ensembles import dataset

    return dataset("digits"), load_digits().target


def _moons(ctx) -> tuple[dict, dict]:

    from numerics.training import TrainConfig, checkpoint_networks, train

    rng = ctx.rng("moons")
    X, y = _moons_data()
    Xtr, ytr, Q = _split(X, y, rng, ctx.size["queries"])
    batch = Xtr[rng.choice(len(Xtr), 32, replace=False)]
    steps = ctx.size["train_steps"]
    checkpoints = tuple(sorted({0, steps // 10, steps // 3, steps}))
    rows, nets_at = [], {}
    for bn in (True, False):
        cfg = TrainConfig(widths=(2, 16, 16, 2), batchnorm=bn, steps=steps, checkpoints=checkpoints)
        for ck in train(ctx.key(f"moons-{bn}"), Xtr, ytr, cfg):
            for mode, net in checkpoint_networks(ck, cfg, batch).items():
                counts = [count_regions(net, q, MOONS_RADIUS) for q in Q]
                rows.append({"dataset": "moons", "step": ck.step, "mode": mode, "loss": ck.loss,
                             "accuracy": ck.accuracy, "radius": MOONS_RADIUS,
                             "D_r": float(np.mean([c.regions for c in counts])),
                             "D_r_ci95": _ci([c.regions for c in counts]),
                             "counts": [int(c.regions) for c in counts],
                             "D_r_linear": float(np.mean([c.linear_regions for c in counts])),
                             "hits_layer1": float(np.mean([c.hits for c in counts])),
                             "certified": all(c.certified for c in counts)})
                nets_at[(mode, ck.step)] = net
    last = max(checkpoints)
    by_radius = []
    for mode in ("train", "eval", "plain"):
        for r in MOONS_RADII:
            counts = [count_regions(nets_at[(mode, last)], q, r) for q in Q]
            by_radius.append({"mode": mode, "radius": r, "D_r": float(np.mean([c.regions for c in counts])),
                              "D_r_ci95": _ci([c.regions for c in counts]),
                              "per_volume": float(np.mean([c.regions for c in counts])) / (2 * r) ** 2,
                              "certified": all(c.certified for c in counts)})
    extra = {"nets": nets_at, "batch": batch, "queries": Q, "last": last, "by_radius": by_radius}
    return {"rows": rows, "by_radius": by_radius}, extra


def _digits(ctx) -> dict:
    from numerics.lp_regions import count_regions_lp
    from numerics.stats import wilson_ci95
    from numerics.training import TrainConfig, checkpoint_networks, train

    rng = ctx.rng("digits")
    X, y = _digits_data()
    Xtr, ytr, Q = _split(X, y, rng, ctx.size["queries"])
    batch = Xtr[rng.choice(len(Xtr), 64, replace=False)]
    steps = ctx.size["digits_steps"]
    r = DIGITS_RADIUS
    rows = []
    for bn in (True, False):
        cfg = TrainConfig(widths=(64, 32, 32, 10), batchnorm=bn, steps=steps, checkpoints=(0, steps // 4, steps))
        for ck in train(ctx.key(f"digits-{bn}"), Xtr, ytr, cfg):
            for mode, net in checkpoint_networks(ck, cfg, batch).items():
                cond = net.condition()
                h1 = window_hits(switching_hyperplanes(cond), Q, r)
                inside = h1 == 0  # W ⊆ P for layer 2, certified by the exact criterion of C4
                h2 = [int(window_hits(switching_hyperplanes(cond, 1, affine=cond.affine_map(q, 1)), q[None], r)[0])
                      for q in Q[inside]]
                counts = [count_regions_lp(net, q, r) for q in Q]
                rows.append({"dataset": "digits", "step": ck.step, "mode": mode, "loss": ck.loss,
                             "accuracy": ck.accuracy, "radius": r, "hits_layer1": float(h1.mean()),
                             "fraction_inside_parent": float(inside.mean()),
                             "fraction_inside_parent_ci95": wilson_ci95(int(inside.sum()), int(inside.size)),
                             "hits_layer2_inside_parent": float(np.mean(h2)) if h2 else None,
                             "D_r": float(np.mean([c.regions for c in counts])),
                             "D_r_ci95": _ci([c.regions for c in counts]),
                             "counts": [int(c.regions) for c in counts],
                             "certified": all(c.certified for c in counts)})
    return {"rows": rows}


#: the paired comparisons of the real-data tables: the same held-out points in every mode
COMPARISONS = (("train", "plain"), ("eval", "plain"), ("train", "eval"))


def effects(rows) -> list[dict]:
    """Paired effects per (dataset, step, comparison): the mean difference of D_r over the SAME held-out points
    (per-point differences of exact counts) with its t interval, the ratio of means, and a paired t-test's
    p-value, Holm-adjusted over the whole family (:mod:`numerics.stats`)."""
    from numerics.stats import holm, mean_ci95, t_test_p

    by = {(r["dataset"], r["step"], r["mode"]): np.asarray(r["counts"], np.float64) for r in rows if "counts" in r}
    out = []
    for ds, step in sorted({(k[0], k[1]) for k in by}):
        for a, b in COMPARISONS:
            if (ds, step, a) not in by or (ds, step, b) not in by:
                continue
            d = by[(ds, step, a)] - by[(ds, step, b)]
            mean, ci = mean_ci95(d)
            out.append({"dataset": ds, "step": step, "comparison": f"{a} − {b}", "mean_difference": mean,
                        "ci95": ci, "ratio": float(by[(ds, step, a)].mean() / by[(ds, step, b)].mean()),
                        "p": t_test_p(d), "points": int(d.size)})
    for e, p in zip(out, holm([e["p"] for e in out])):
        e["p_holm"] = float(p)
    return out


def run_realdata(ctx) -> dict:
    """The study's data (JSON-ready) and its figures in ``ctx.out``."""
    from .figures import plot_density_radius, plot_offsets, plot_partitions, plot_training

    moons, extra = _moons(ctx)
    digits = _digits(ctx)
    out = {"moons": moons, "digits": digits, "effects": effects(moons["rows"] + digits["rows"]), "figures": []}
    for name, fn in (("density_over_training.png", lambda p: plot_training(moons["rows"] + digits["rows"], p)),
                     ("density_vs_radius.png", lambda p: plot_density_radius(extra["by_radius"], p)),
                     ("partitions_bn_vs_plain.png", lambda p: plot_partitions(extra, p)),
                     ("standardized_offsets.png", lambda p: plot_offsets(extra, p))):
        fn(ctx.out / name)
        out["figures"].append(name)
    out["certified"] = all(r["certified"] for r in moons["rows"] + moons["by_radius"] + digits["rows"])
    return out
