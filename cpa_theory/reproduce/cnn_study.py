"""Real data, convolutional (issue #14, item 5): local region density of a trained CNN on digits, BN vs no BN.

A measurement, not a claim: THEORY states no claim about trained CNNs, so nothing here passes or fails; the
study reports exact certified counts with confidence intervals and effect sizes (the claims registry is
untouched). Every count is an exact certified count (``cpa_theory.regions.count_regions`` on the network
restricted to a 2-D slice, ``cpa_theory.slices``); a count that is not certified raises
:class:`~cpa_theory.errors.CPAInternalError` — it is an error, never a data point.

Design. scikit-learn's digits (8×8, pixels / 16) with one fixed train / test split. For each seed s, the CNN of
:mod:`numerics.training_cnn` (Conv 3×3 pad 1 → [BN2d] → ReLU → AvgPool 2 → Flatten → Linear → [BN1d] → ReLU →
Linear) is trained in JAX + optax with BN and, from the same initial weights and minibatch sequence, without BN.
At each checkpoint the trained parameters are converted into :class:`cpa_theory.convnet.ConvNetwork` s (the
conversion is verified: JAX forward = ConvNetwork forward to 1e-10) in three modes: ``train`` (BN conditioned on
a real training batch of the seed: the realised training-time function), ``eval`` (running statistics) and
``plain`` (the model trained without BN). Measures, on the SAME slices for every seed, mode and checkpoint
(paired comparisons):

* ``slice``: N on the plane through three test digits (``slice_through_points``: centroid, differences,
  10 % margin), one triple of test digits per unit;
* ``window``: N in W(0, r) of a random 2-D slice through a test digit (``random_slice`` with a fixed key per
  test digit), small r.

Statistics (``numerics.stats``). The values of a measure form a seeds × units table (units: triples or test
digits, drawn once and shared by the seeds: a crossed design). ``ci95`` is the crossed random-effects 95 %
interval (:func:`numerics.stats.crossed_mean_ci95`: V = μ + seed + unit + interaction, Var(mean) from the two-way
ANOVA mean squares, Satterthwaite degrees of freedom ``df``) — both the training randomness and the choice of
units; ``ci95_t_units`` the Student-t interval over units of the seed-averaged values (conditional on these
seeds: it leaves the seed variance out, so it is too narrow when seeds differ); ``ci95_boot`` a percentile
*pigeonhole* bootstrap over seeds × units (Owen 2007; few seeds make it optimistic); ``ci95_t_seeds`` a t
interval over the seeds' means (t_{S−1}). Effect sizes: paired differences (train − eval, train − plain,
eval − plain) per (seed, unit) with the same intervals, the ratio of means with a pigeonhole bootstrap interval,
the crossed random-effects test of mean difference = 0 (``p``, consistent with ``ci95``) and Holm's adjustment
over the whole family of comparisons (all measures, radii, checkpoints).
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import CPAInputError, CPAInternalError
from .common import worst

__all__ = ["run_cnn_study", "cnn_config", "summarize", "COMPARISONS", "MODES"]

MODES = ("train", "eval", "plain")
COMPARISONS = (("train", "eval"), ("train", "plain"), ("eval", "plain"))
BOOT = 2000


def cnn_config(size: dict) -> dict:
    """The study's configuration from a scale's sizes (``reproduce.common.SCALES``)."""
    keys = ("cnn_seeds", "cnn_steps", "cnn_checkpoints", "cnn_channels", "cnn_hidden", "cnn_slices",
            "cnn_centres", "cnn_radii", "cnn_test")
    cfg = {k[4:]: size[k] for k in keys}
    for k in ("seeds", "slices", "centres"):
        if int(cfg[k]) < 2:  # an interval needs two independent draws
            raise CPAInputError(f"CNN study: {k} = {cfg[k]}; give at least 2.")
    if max(cfg["checkpoints"]) != cfg["steps"] or min(cfg["checkpoints"]) < 0:
        raise CPAInputError(f"CNN study: checkpoints {cfg['checkpoints']} must lie in [0, steps] and end at "
                            f"steps = {cfg['steps']}.")
    return cfg


def _digits(rng, n_test):
    from sklearn.datasets import load_digits

    d = load_digits()
    X = d.images[:, None].astype(np.float64) / 16.0  # (1797, 1, 8, 8) in [0, 1]
    perm = rng.permutation(len(X))
    te, tr = perm[:n_test], perm[n_test:]
    return X[tr], d.target[tr], X[te], d.target[te]


def _count(net, sl) -> int:
    """Exact certified count on a slice; an uncertified count is an error."""
    from ..slices import count_on_slice

    res = count_on_slice(net, sl, linear=False)
    if not res.certified:
        raise CPAInternalError(f"CNN study: an uncertified count on a slice (N = {res.regions}, complete = "
                               f"{res.complete}); this is a bug to report, not a data point.")
    return int(res.regions)


# -- statistics --------------------------------------------------------------------------------------------
def _pigeonhole(V, rng, boot=BOOT, stat=None):
    """Bootstrap replicates of the mean of a seeds × units table V, resampling seeds and units independently
    (multinomial weights: every replicate's mean in one product). ``stat``: a function of the replicates'
    means of several tables (e.g. a ratio); V may then be a tuple of tables."""
    tables = V if isinstance(V, tuple) else (V,)
    S, n = tables[0].shape
    ws = rng.multinomial(S, np.full(S, 1.0 / S), size=boot) / S  # (boot, S)
    wu = rng.multinomial(n, np.full(n, 1.0 / n), size=boot) / n  # (boot, n)
    means = [np.einsum("bs,sn,bn->b", ws, T, wu) for T in tables]
    return means[0] if stat is None else stat(*means)


def _interval(reps) -> list:
    reps = np.asarray(reps, np.float64)
    reps = reps[np.isfinite(reps)]
    return [float(np.percentile(reps, 2.5)), float(np.percentile(reps, 97.5))] if len(reps) else [None, None]


def summarize(V, rng) -> dict:
    """Mean of a seeds × units table with its 95 % intervals (see the module docstring); ``ci95`` is the crossed
    random-effects interval (seeds and units), ``p`` its test of mean = 0."""
    from numerics.stats import crossed_mean_ci95, mean_ci95

    V = np.asarray(V, np.float64)
    seed_means = V.mean(axis=1)
    crossed = crossed_mean_ci95(V)
    return {"mean": crossed["mean"], "ci95": crossed["ci95"], "se": crossed["se"], "df": crossed["df"],
            "p": crossed["p"], "ci95_t_units": mean_ci95(V.mean(axis=0))[1],
            "ci95_boot": _interval(_pigeonhole(V, rng)), "ci95_t_seeds": mean_ci95(seed_means)[1],
            "seed_means": seed_means.tolist(), "seeds": V.shape[0], "units": V.shape[1]}


def _effect(A, B, rng) -> dict:
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    D = A - B
    out = summarize(D, rng)
    out["ratio"] = float(A.mean() / B.mean())
    out["ratio_ci95"] = _interval(_pigeonhole((A, B), rng, stat=lambda a, b: a / b))
    # out["p"]: the crossed random-effects test of mean difference = 0 (seeds and units), from summarize
    return out


# -- the study ---------------------------------------------------------------------------------------------
def _measure(nets, slices_by_measure) -> dict:
    """{(measure, radius): {mode: [counts per unit]}} for one seed and checkpoint."""
    out = {}
    for key, slices in slices_by_measure.items():
        out[key] = {mode: [_count(net, sl) for sl in slices] for mode, net in nets.items()}
    return out


def run_cnn_study(ctx, log=lambda msg: None) -> dict:
    """Train, convert, count, summarise: the study's data (JSON-ready) and its figures in ``ctx.out``."""
    import jax

    from numerics.training_cnn import CNNConfig, checked_convnets, train_cnn

    from ..slices import random_slice, slice_through_points

    t_start = time.perf_counter()
    cfg_s = cnn_config(ctx.size)
    rng = ctx.rng("cnn-digits")
    Xtr, ytr, Xte, yte = _digits(rng, cfg_s["test"])
    n_sl, n_c = cfg_s["slices"], cfg_s["centres"]
    # the units, shared by every seed, mode and checkpoint (paired comparisons)
    triples = rng.permutation(len(Xte))[:3 * n_sl].reshape(n_sl, 3)
    centres = rng.permutation(len(Xte))[:n_c]
    slices = {("slice", None): [slice_through_points(*Xte[t].reshape(3, -1)) for t in triples]}
    for r in cfg_s["radii"]:
        keys = jax.random.split(ctx.key(f"cnn-window-{r}"), n_c)
        slices[("window", float(r))] = [random_slice(Xte[i].ravel(), 2, key=k, radius=r)
                                        for i, k in zip(centres, keys)]
    steps = cfg_s["steps"]
    counts: dict = {}  # (measure, radius, step, mode) -> seeds × units
    acc: dict = {}  # (step, model) -> [(train acc, test acc) per seed]
    max_conv_err = 0.0
    for s in range(cfg_s["seeds"]):
        key = ctx.key(f"cnn-seed-{s}")  # same init and minibatches with and without BN
        batch = Xtr[ctx.rng(f"cnn-batch-{s}").choice(len(Xtr), 64, replace=False)]
        for bn in (True, False):
            cfg = CNNConfig(channels=cfg_s["channels"], hidden=cfg_s["hidden"], batchnorm=bn, steps=steps,
                            checkpoints=tuple(cfg_s["checkpoints"]))
            t0 = time.perf_counter()
            cks = train_cnn(key, Xtr, ytr, Xte, yte, cfg)
            for ck in cks:
                nets, errs = checked_convnets(ck, cfg, batch)  # verified: raises if the conversion is not exact
                max_conv_err = worst(max_conv_err, *errs.values())
                acc.setdefault((ck.step, "bn" if bn else "plain"), []).append((ck.accuracy, ck.test_accuracy))
                for (measure, r), by_mode in _measure(nets, slices).items():
                    for mode, vals in by_mode.items():
                        counts.setdefault((measure, r, ck.step, mode), [None] * cfg_s["seeds"])[s] = vals
            log(f"CNN study: seed {s + 1}/{cfg_s['seeds']}, {'BN' if bn else 'no BN'}: trained and counted "
                f"({time.perf_counter() - t0:.1f} s)")
    srng = ctx.rng("cnn-bootstrap")
    rows = []
    for (measure, r, step, mode), V in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0, kv[0][2],
                                                                             MODES.index(kv[0][3]))):
        model = "plain" if mode == "plain" else "bn"
        a = np.array(acc[(step, model)])
        rows.append({"measure": measure, "radius": r, "step": step, "mode": mode,
                     "train_accuracy": float(a[:, 0].mean()), "test_accuracy": float(a[:, 1].mean()),
                     "counts": V, "certified": True, **summarize(V, srng)})
    effects = []
    for measure, r, step in sorted({k[:3] for k in counts}, key=lambda k: (k[0], k[1] or 0, k[2])):
        for a, b in COMPARISONS:
            effects.append({"measure": measure, "radius": r, "step": step, "comparison": f"{a} − {b}",
                            **_effect(counts[(measure, r, step, a)], counts[(measure, r, step, b)], srng)})
    from numerics.stats import holm

    for e, p in zip(effects, holm([e["p"] for e in effects])):
        e["p_holm"] = float(p)
    out = {"config": {**cfg_s, "architecture": f"Conv2d(1→{cfg_s['channels']}, 3×3, pad 1) → [BN2d] → ReLU → "
                                               f"AvgPool2d(2) → Flatten → Linear({cfg_s['channels'] * 16}→"
                                               f"{cfg_s['hidden']}) → [BN1d] → ReLU → Linear(10)",
                      "framework": "JAX + optax (numerics.training_cnn)", "train_batch": 64,
                      "slice_radii": [sl.radius for sl in slices[("slice", None)]]},
           "rows": rows, "effects": effects, "max_conversion_error": max_conv_err, "certified": True,
           "figures": []}
    out["figures"] = _figures(ctx.out, out)
    out["seconds"] = round(time.perf_counter() - t_start, 2)
    return out


def _figures(folder, data) -> list[str]:
    from .figures import plot_cnn_effects, plot_cnn_measure

    names = []
    for measure in ("slice", "window"):
        name = f"cnn_{measure}_counts.png"
        plot_cnn_measure([r for r in data["rows"] if r["measure"] == measure], measure, folder / name)
        names.append(name)
    plot_cnn_effects(data["effects"], folder / "cnn_effects.png")
    names.append("cnn_effects.png")
    return names
