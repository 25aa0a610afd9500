"""Statistics of the BN-vs-no-BN sweeps (THEORY C7): t intervals, Holm-corrected cell verdicts, crossover
distances with bootstrap confidence intervals.

* :func:`mean_ci95` — mean and a Student-t 95 % interval (t_{n−1}; with 8 counted networks that is t₇, not
  the normal 1.96).
* :func:`t_test_p` — two-sided one-sample t-test p-value of "mean difference = 0" (exact 0 or 1 when every
  sample is equal).
* :func:`holm` — Holm's step-down adjustment of a family of p-values (controls the family-wise error).
* :func:`cell_verdicts` — 'bn' / 'plain' / 'tie' per grid cell from Holm-adjusted p-values.
* :func:`crossover` — D*: the first distance where E[BN] − E[plain] turns from > 0 to ≤ 0, by linear
  interpolation between the bracketing grid points; its confidence interval by a bootstrap over NETWORKS
  (the same networks at every distance of a slice — common random numbers — are resampled jointly).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["mean_ci95", "t_test_p", "holm", "cell_verdicts", "crossover", "attach_crossovers"]


def mean_ci95(x) -> tuple[float, list[float]]:
    """Mean and a Student-t 95 % confidence interval of independent samples (n ≥ 2; n = 1 gives ±inf)."""
    from scipy.stats import t as student

    x = np.asarray(x, np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, [-math.inf, math.inf]
    half = float(student.ppf(0.975, len(x) - 1)) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return mean, [mean - half, mean + half]


def t_test_p(x) -> float:
    """Two-sided p-value of H0: E[x] = 0 (one-sample t-test); a constant sample gives 1 (mean 0) or 0."""
    from scipy.stats import t as student

    x = np.asarray(x, np.float64)
    mean, sd = float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    stat = mean / (sd / math.sqrt(len(x)))
    return float(2.0 * student.sf(abs(stat), len(x) - 1))


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values (same order as the input)."""
    p = np.asarray(pvalues, np.float64)
    m = len(p)
    order = np.argsort(p)
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj


def cell_verdicts(diff_samples: list, alpha: float = 0.05) -> tuple[list[str], np.ndarray]:
    """Per cell: 'bn' (BN refines more), 'plain' or 'tie', from Holm-adjusted t-test p-values over the family."""
    p = holm([t_test_p(x) for x in diff_samples])
    out = []
    for x, pa in zip(diff_samples, p):
        m = float(np.mean(x))
        out.append("tie" if pa >= alpha else ("bn" if m > 0 else "plain"))
    return out, p


def _root(D, mean_diff):
    """First D where mean_diff goes from > 0 to ≤ 0 (linear interpolation); None without a sign change."""
    for j in range(len(D) - 1):
        a, b = mean_diff[j], mean_diff[j + 1]
        if a > 0 >= b:
            return float(D[j] + (D[j + 1] - D[j]) * a / (a - b))
    return None


def crossover(D, diff, *, boot: int = 1000, seed: int = 0) -> dict:
    """D* of E[diff](D) with a percentile bootstrap CI over networks.

    Args: D (nD,) increasing distances; diff (nD, nets) per-network differences BN − plain with the SAME
    networks in every row (common random numbers). Returns {"D_star", "ci95", "bracket", "boot_with_root",
    "networks", "method"}; D_star None when the mean difference never turns ≤ 0 on the grid.
    """
    D = np.asarray(D, np.float64)
    diff = np.asarray(diff, np.float64)
    order = np.argsort(D)
    D, diff = D[order], diff[order]
    root = _root(D, diff.mean(axis=1))
    rng = np.random.default_rng(seed)
    nets = diff.shape[1]
    # a bootstrap resample is a multinomial weighting of the networks: all resampled means in one product
    weights = rng.multinomial(nets, np.full(nets, 1.0 / nets), size=boot).T / nets  # (nets, boot)
    means = diff @ weights  # (nD, boot)
    roots = [rb for rb in (_root(D, means[:, k]) for k in range(boot)) if rb is not None]
    ci = [float(np.percentile(roots, 2.5)), float(np.percentile(roots, 97.5))] if len(roots) >= 0.95 * boot \
        else None  # too many resamples without a sign change: no interval
    bracket = None
    if root is not None:
        j = int(np.searchsorted(D, root, side="left"))
        bracket = [float(D[max(j - 1, 0)]), float(D[min(j, len(D) - 1)])]
    return {"D_star": root, "ci95": ci, "bracket": bracket, "boot_with_root": len(roots) / boot,
            "networks": nets, "method": "linear interpolation between bracketing grid points; percentile "
                                        "bootstrap over networks (common random numbers across D)"}


def attach_crossovers(rows: list[dict], boot: int = 1000) -> list[dict]:
    """Add ``crossover`` = {"h": …, "N": …} to every row of each (batch size, bias scale, radius) slice whose
    grid has a distance axis (rows need ``h_bn_samples``/``h_plain_samples``, and ``n_*_samples`` for N)."""
    slices: dict = {}
    for r in rows:
        if r.get("distance") is None or "h_bn_samples" not in r:
            continue
        slices.setdefault((r["batch_size"], r["bias_scale"], r["radius"]), []).append(r)
    for key, sl in slices.items():
        if len({r["distance"] for r in sl}) < 2:
            continue
        sl = sorted(sl, key=lambda r: r["distance"])
        D = [r["distance"] for r in sl]
        out = {"h": crossover(D, [np.subtract(r["h_bn_samples"], r["h_plain_samples"]) for r in sl], boot=boot)}
        if all("n_bn_samples" in r for r in sl):  # exact certified counts
            out["N"] = crossover(D, [np.subtract(r["n_bn_samples"], r["n_plain_samples"]) for r in sl], boot=boot)
        if all("n_euler_bn_samples" in r for r in sl):  # Euler counts over every network (d = 2)
            out["N_euler"] = crossover(D, [np.subtract(r["n_euler_bn_samples"], r["n_euler_plain_samples"])
                                           for r in sl], boot=boot)
        for r in sl:
            r["crossover"] = out
    return rows
