"""Statistics of the BN-vs-no-BN sweeps (THEORY C7): t intervals, Holm-corrected cell verdicts, crossover
distances with bootstrap confidence intervals.

* :func:`wilson_ci95` — Wilson score interval of a proportion.
* :func:`mean_ci95` — mean and a Student-t 95 % interval (t_{n−1}; with 8 counted networks that is t₇, not
  the normal 1.96).
* :func:`crossed_mean_ci95` — mean of a seeds × units table (crossed design) with a two-way random-effects
  interval and p-value (Satterthwaite degrees of freedom).
* :func:`t_test_p` — two-sided one-sample t-test p-value of "mean difference = 0" (the exact sign test's when
  every sample is equal; 1 below two samples).
* :func:`holm` — Holm's step-down adjustment of a family of p-values (controls the family-wise error).
* :func:`cell_verdicts` — 'bn' / 'plain' / 'tie' per grid cell from Holm-adjusted p-values.
* :func:`crossover` — D*: where E[BN] − E[plain], positive at the smallest distance (BN's phase at the centroid),
  first turns ≤ 0, by linear interpolation between the bracketing grid points; a curve that is not positive at
  the smallest distance has no crossover (BN never refines more there: a later positive blip is not a phase).
  Its confidence interval by a bootstrap over NETWORKS (the same networks at every distance of a slice —
  common random numbers — are resampled jointly), at 95 % and optionally at a stricter ``level`` (e.g.
  Bonferroni's 1 − 0.05/m when m intervals must all cover).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["mean_ci", "mean_ci95", "describe_ci", "wilson_ci95", "crossed_mean_ci95", "t_test_p", "holm", "cell_verdicts", "crossover", "attach_crossovers"]


def mean_ci(x, confidence: float = 0.95) -> tuple[float, list[float]]:
    """Mean and a Student-t confidence interval of independent samples (n ≥ 2; n = 1 gives ±inf). A sample
    without spread gives the zero-width interval [mean, mean]: no interval in fact (:func:`describe_ci` says
    so) — the t interval assumes a roughly normal mean, and with few, tied or skewed counts its coverage is
    below nominal (measured by a referee: 0.49–0.88 at n = 3 for counts that are mostly 1)."""
    from scipy.stats import t as student

    x = np.asarray(x, np.float64).ravel()
    mean = float(x.mean())
    if len(x) < 2:
        return mean, [-math.inf, math.inf]
    half = float(student.ppf(0.5 + confidence / 2, len(x) - 1)) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return mean, [mean - half, mean + half]


def mean_ci95(x) -> tuple[float, list[float]]:
    """:func:`mean_ci` at 95 %."""
    return mean_ci(x, 0.95)


def describe_ci(ci, n: int) -> str:
    """How a report prints an interval of :func:`mean_ci`: '[lo, hi]', or why there is none."""
    lo, hi = ci
    if n < 2 or not (math.isfinite(lo) and math.isfinite(hi)):
        return "n/a (one sample)"
    if lo == hi:
        return f"n/a (all {n} values equal: no spread to estimate)"
    return f"[{lo:.4g}, {hi:.4g}]"


def wilson_ci95(k: int, n: int) -> list[float]:
    """Wilson score 95 % interval of a proportion k/n (good coverage near 0 and 1, unlike the Wald interval)."""
    if n <= 0:
        return [0.0, 1.0]
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def crossed_mean_ci95(V) -> dict:
    """Mean of a seeds × units table from a crossed design (every seed measured on the same units) with a 95 %
    interval and a two-sided p-value of "mean = 0" that carry BOTH sources of variation.

    Model V_su = μ + a_s + b_u + e_su (seed, unit and interaction effects, independent). From the two-way ANOVA
    mean squares (E[MS_seed] = σ²_e + U σ²_a, E[MS_unit] = σ²_e + S σ²_b), Var(V̄) = σ²_a/S + σ²_b/U + σ²_e/(SU) is
    estimated by (MS_seed + MS_unit)/(SU), which exceeds it by σ²_e/(SU) (conservative), with Satterthwaite's
    degrees of freedom for that sum of two mean squares, ≥ min(S − 1, U − 1); the interval is mean ± t_df·se.
    (The unbiased (MS_seed + MS_unit − MS_res)/(SU) has Satterthwaite df that can fall far below 1 when the
    seed term is small — t quantiles of 10⁶ on real data —, so it is not used.) Simulated coverage of the 95 %
    interval (4,000 tables each, seeds × units 3 × 8 to 10 × 10): 0.93–0.99, the low end when 3 seeds carry
    all the variance. An interval over units of the
    seed-averaged values leaves σ²_a out (too narrow when seeds differ); over seeds' means it has S − 1 df only.
    Fewer than 2 seeds or units: an interval over the other axis alone (t with n − 1 df), p from
    :func:`t_test_p`. Returns {"mean", "ci95", "se", "df", "p"}.
    """
    from scipy.stats import t as student

    V = np.asarray(V, np.float64)
    S, U = V.shape
    mean = float(V.mean())
    if S < 2 or U < 2:
        x = V.ravel()
        m, ci = mean_ci95(x)
        se = float(x.std(ddof=1)) / math.sqrt(len(x)) if len(x) > 1 else math.inf
        return {"mean": m, "ci95": ci, "se": se, "df": float(len(x) - 1), "p": t_test_p(x)}
    ms = V.mean(axis=1) - mean
    mu = V.mean(axis=0) - mean
    MSs, MSu = U * float(ms @ ms) / (S - 1), S * float(mu @ mu) / (U - 1)
    num = MSs + MSu
    if num == 0.0:  # no variation at all
        return {"mean": mean, "ci95": [mean, mean], "se": 0.0, "df": math.inf,
                "p": 1.0 if mean == 0.0 else min(1.0, 2.0 * 0.5 ** (S * U))}
    df = num * num / (MSs * MSs / (S - 1) + MSu * MSu / (U - 1))
    se = math.sqrt(num / (S * U))
    half = float(student.ppf(0.975, df)) * se
    p = float(2.0 * student.sf(abs(mean) / se, df))
    return {"mean": mean, "ci95": [mean - half, mean + half], "se": se, "df": float(df), "p": p}


def t_test_p(x) -> float:
    """Two-sided p-value of H0: E[x] = 0 (one-sample t-test). Fewer than 2 samples: 1 (no test). A constant
    sample has no spread for t: its p-value is the exact two-sided sign test's, min(1, 2·2⁻ⁿ) (1 when the
    constant is 0) — a t p-value of 0 there rejected a true null in half of all 2-sample draws of ±1."""
    from scipy.stats import t as student

    x = np.asarray(x, np.float64)
    if len(x) < 2:
        return 1.0
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    if sd == 0.0:
        return 1.0 if mean == 0.0 else min(1.0, 2.0 * 0.5 ** len(x))
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


#: fewest networks for the crossover's bootstrap interval: a referee measured its coverage at 0.79–0.89 with 4
#: networks and ≈ 0.93 from 8 on (nominal 0.95); below this no interval is given
MIN_BOOTSTRAP_NETWORKS = 8


def _root(D, mean_diff):
    """First D where mean_diff goes from > 0 to ≤ 0 (linear interpolation); None without a sign change or when
    mean_diff is not > 0 at the first distance."""
    if len(D) == 0 or not mean_diff[0] > 0:
        return None
    for j in range(len(D) - 1):
        a, b = mean_diff[j], mean_diff[j + 1]
        if a > 0 >= b:
            return float(D[j] + (D[j + 1] - D[j]) * a / (a - b))
    return None


def crossover(D, diff, *, boot: int = 1000, seed: int = 0, level: float | None = None) -> dict:
    """D* of E[diff](D) with a percentile bootstrap CI over networks.

    Args: D (nD,) increasing distances; diff (nD, nets) per-network differences BN − plain with the SAME
    networks in every row (common random numbers); ``level``: also an interval at this confidence (key "ci",
    with "level"; give ``boot`` ≥ 20 / (1 − level) so its tails hold resamples), in which a resample whose mean
    difference stays > 0 over the grid has its root beyond the grid (the upper end is then None: unbounded) and
    one that is not > 0 at the first distance has none below (lower end None). Returns {"D_star", "ci95",
    "bracket", "boot_with_root", "networks", "method"}; D_star None when the mean difference is not > 0 at the
    first distance or never turns ≤ 0 on the grid; an interval is None when fewer than that share of the
    resamples have a root.
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
    all_roots = [_root(D, means[:, k]) for k in range(boot)]
    roots = [rb for rb in all_roots if rb is not None]

    def interval(lev):  # None when too many resamples have no sign change, or too few networks
        a = 100 * (1 - lev) / 2
        return [float(np.percentile(roots, a)), float(np.percentile(roots, 100 - a))] \
            if len(roots) >= lev * boot and nets >= MIN_BOOTSTRAP_NETWORKS else None

    bracket = None
    if root is not None:
        j = int(np.searchsorted(D, root, side="left"))
        bracket = [float(D[max(j - 1, 0)]), float(D[min(j, len(D) - 1)])]
    out = {"D_star": root, "ci95": interval(0.95), "bracket": bracket, "boot_with_root": len(roots) / boot,
           "networks": nets, "method": "linear interpolation between bracketing grid points; percentile "
                                       "bootstrap over networks (common random numbers across D)"}
    if nets < MIN_BOOTSTRAP_NETWORKS:
        out["ci_note"] = (f"no interval: {nets} networks (a percentile bootstrap over networks needs at least "
                          f"{MIN_BOOTSTRAP_NETWORKS}; it covers 0.79–0.89 at 4)")
    if level is not None and nets < MIN_BOOTSTRAP_NETWORKS:
        out.update(ci=[None, None], level=level)
    elif level is not None:  # censored: a resample still > 0 at the last distance has its root beyond the grid
        cens = np.array([rb if rb is not None else (np.inf if means[-1, k] > 0 and means[0, k] > 0 else -np.inf)
                         for k, rb in enumerate(all_roots)])
        a = 100 * (1 - level) / 2
        lo, hi = np.percentile(cens, a, method="lower"), np.percentile(cens, 100 - a, method="higher")
        out.update(ci=[float(lo) if np.isfinite(lo) else None, float(hi) if np.isfinite(hi) else None], level=level)
    return out


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
