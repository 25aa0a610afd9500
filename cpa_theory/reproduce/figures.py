"""Figures of the reproduce report (data first: every figure is drawn from rows already in results)."""

from __future__ import annotations

import numpy as np

from ..plotting import plot_partition, save_figure

__all__ = ["plot_training", "plot_density_radius", "plot_partitions", "plot_offsets", "plot_cnn_measure",
           "plot_cnn_effects"]

_STYLE = {"train": ("tab:blue", "BN, train mode (real batch)"), "eval": ("tab:green", "BN, eval mode"),
          "plain": ("tab:red", "no BN")}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training(rows, out) -> None:
    plt = _plt()
    sets = sorted({r["dataset"] for r in rows})
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4), squeeze=False)
    for ax, ds in zip(axes[0], sets):
        for mode, (colour, label) in _STYLE.items():
            rs = sorted((r for r in rows if r["dataset"] == ds and r["mode"] == mode), key=lambda r: r["step"])
            if rs:
                steps = [r["step"] for r in rs]
                ax.plot(steps, [r["D_r"] for r in rs], "o-", color=colour, label=label)
                if all("D_r_ci95" in r for r in rs):
                    ax.fill_between(steps, [max(r["D_r_ci95"][0], 1.0) for r in rs], [r["D_r_ci95"][1] for r in rs],
                                    color=colour, alpha=0.18, lw=0)
        radius = next(r["radius"] for r in rows if r["dataset"] == ds)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"D_r: mean exact region count, r = {radius:g}\n(band: 95 % t interval over held-out points)")
        ax.set_title(f"{ds}: local region density at held-out points", fontsize=9)
        ax.legend(fontsize=7)
    save_figure(fig, out)
    plt.close(fig)


def plot_density_radius(rows, out) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for mode, (colour, label) in _STYLE.items():
        rs = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["radius"])
        radii = [r["radius"] for r in rs]
        ax.loglog(radii, [r["D_r"] for r in rs], "o-", color=colour, label=label)
        if all("D_r_ci95" in r for r in rs):  # counts are ≥ 1: clip the band's lower end there (log axis)
            ax.fill_between(radii, [max(r["D_r_ci95"][0], 1.0) for r in rs], [r["D_r_ci95"][1] for r in rs],
                            color=colour, alpha=0.18, lw=0)
    radii = sorted({r["radius"] for r in rows})
    ax.set_xticks(radii, [f"{v:g}" for v in radii])
    ax.minorticks_off()
    ax.set_yticks([1, 2, 5, 10, 20, 50, 100], ["1", "2", "5", "10", "20", "50", "100"])
    ax.set_ylim(bottom=1)
    ax.set_xlabel("window radius r")
    ax.set_ylabel("D_r (mean exact region count; band: 95 % t interval over held-out points)", fontsize=8)
    ax.set_title("moons, trained: density vs radius", fontsize=9)
    ax.legend(fontsize=7)
    save_figure(fig, out)
    plt.close(fig)


def plot_partitions(extra, out) -> None:
    plt = _plt()
    nets, last = extra["nets"], extra["last"]
    centre = extra["batch"].mean(0)
    fig, axes = plt.subplots(2, 2, figsize=(10, 10))
    for i, step in enumerate((0, last)):
        for j, mode in enumerate(("train", "plain")):
            plot_partition(axes[i, j], nets[(mode, step)], centre, 1.5,
                           f"{_STYLE[mode][1]}, step {step}")
    save_figure(fig, out)
    plt.close(fig)


def _plain_standardized_offsets(net, batch) -> np.ndarray:
    """(t − b − wᵀx̄)/√(wᵀΣ_B w): where a plain first layer's switching sets sit, in batch-standardised units."""
    layer = net.layers[0]
    W, b = layer.weight, layer.bias
    proj = batch @ W.T
    s = proj.std(axis=0)
    t = layer.activation.breakpoints_array
    return ((t[None, :] - b[:, None] - proj.mean(0)[:, None]) / s[:, None]).ravel()


def plot_offsets(extra, out) -> None:
    plt = _plt()
    nets, last, batch = extra["nets"], extra["last"], extra["batch"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, step in zip(axes, (0, last)):
        tau = switching_tau(nets[("train", step)])
        plain = _plain_standardized_offsets(nets[("plain", step)], batch)
        # bins of width 0.2 centred on multiples of 0.2 (so τ = 0 at init sits in the middle of the centre bin);
        # the two outer bins collect everything beyond ±4 (marked)
        edges = np.r_[-np.inf, np.arange(-4.1, 4.11, 0.2), np.inf]
        centres = np.r_[-4.3, np.arange(-4.0, 4.01, 0.2), 4.3]
        for vals, colour, label, off in ((tau, "tab:blue", "BN: τ = (t − β)/γ", -0.05),
                                         (plain, "tab:red", "no BN: (t − b − wᵀx̄)/√(wᵀΣ_B w)", 0.05)):
            counts, _ = np.histogram(np.asarray(vals, float), bins=edges)
            ax.bar(centres + off, counts, width=0.1, color=colour, alpha=0.8, label=label)
        ax.axvline(-4.2, color="grey", lw=0.6, ls=":")
        ax.axvline(4.2, color="grey", lw=0.6, ls=":")
        ax.set_ylabel("number of (neuron, breakpoint) switching sets")
        ax.set_title(f"moons, step {step}", fontsize=9)
        ax.legend(fontsize=7)
    fig.supxlabel("standardised offset of the first-layer switching sets, in units of the batch sd of wᵀx "
                  "(outer bars: beyond ±4)", fontsize=9)
    save_figure(fig, out)
    plt.close(fig)


def switching_tau(net) -> np.ndarray:
    from ..hyperplanes import switching_hyperplanes

    return np.asarray(switching_hyperplanes(net).tau).ravel()


_CNN_TITLE = {"slice": "N on the plane through three test digits (whole slice window)",
              "window": "N in W(0, r) of a random 2-D slice\nthrough a test digit"}


def plot_cnn_measure(rows, measure, out) -> None:
    """One panel per radius: mean exact count over training steps per mode, its crossed (seeds × units) 95 %
    interval (the rows' ``ci95``) as a band and each seed's mean as a small marker (rows of ``reproduce.cnn_study``)."""
    plt = _plt()
    radii = sorted({r["radius"] for r in rows}, key=lambda v: -1.0 if v is None else v)
    fig, axes = plt.subplots(1, len(radii), figsize=(5.5 * len(radii), 4), squeeze=False)
    for ax, radius in zip(axes[0], radii):
        for k, (mode, (colour, label)) in enumerate(_STYLE.items()):
            rs = sorted((r for r in rows if r["radius"] == radius and r["mode"] == mode), key=lambda r: r["step"])
            if not rs:
                continue
            steps = np.array([r["step"] for r in rs], float)
            ax.plot(steps, [r["mean"] for r in rs], "o-", color=colour, label=label)
            ax.fill_between(steps, [r["ci95"][0] for r in rs], [r["ci95"][1] for r in rs], color=colour, alpha=0.18,
                            lw=0)
            jitter = (k - 1) * 0.012 * max(steps.max(), 1.0)  # seeds' means beside the mean, per mode
            for r, st in zip(rs, steps):
                ax.plot([st + jitter] * len(r["seed_means"]), r["seed_means"], "_", color=colour, ms=8, alpha=0.8)
        ax.set_xlabel("training step")
        if ax is axes[0][0]:
            ax.set_ylabel("mean exact certified region count N\n(band: 95 % interval over seeds and units; "
                          "ticks: each seed's mean)", fontsize=8)
        n = rs[0]
        where = "" if radius is None else f"r = {radius:g}, "
        ax.set_title(f"CNN on digits: {_CNN_TITLE[measure]}\n({where}{n['seeds']} seeds × {n['units']} "
                     f"{'triples' if measure == 'slice' else 'test digits'})", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    save_figure(fig, out)
    plt.close(fig)


def plot_cnn_effects(effects, out) -> None:
    """Paired differences of mean counts (train − eval, train − plain, eval − plain) per measure and training
    step with their crossed (seeds × units) 95 % intervals; filled markers where the Holm-adjusted p-value is < 0.05."""
    plt = _plt()
    groups = sorted({(e["measure"], e["radius"]) for e in effects}, key=lambda g: (g[0], g[1] or 0))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups) + 1.5, 0.32 * len(effects) / len(groups)
                                                      + 2.0), squeeze=False, sharey=True)
    colours = {"train − eval": "tab:blue", "train − plain": "tab:purple", "eval − plain": "tab:green"}
    for ax, (measure, radius) in zip(axes[0], groups):
        es = [e for e in effects if e["measure"] == measure and e["radius"] == radius]
        es.sort(key=lambda e: (e["step"], list(colours).index(e["comparison"])))
        for y, e in enumerate(es):
            c = colours[e["comparison"]]
            lo, hi = e["ci95"]
            ax.plot([lo, hi], [y, y], color=c, lw=2)
            ax.plot(e["mean"], y, "o", color=c, mfc=c if e["p_holm"] < 0.05 else "white", ms=6)
        ax.axvline(0.0, color="grey", lw=0.8, ls=":")
        if ax is axes[0][0]:  # every panel lists the same (step, comparison) rows in the same order
            ax.set_yticks(range(len(es)), [f"step {e['step']}: {e['comparison']}" for e in es], fontsize=7)
            ax.invert_yaxis()
        where = "plane through three test digits" if measure == "slice" else f"window r = {radius:g}"
        ax.set_title(f"CNN on digits, {where}", fontsize=9)
        ax.set_xlabel("paired difference of mean N (95 % interval over seeds\nand units; filled: Holm-adjusted "
                      "p < 0.05)", fontsize=8)
    save_figure(fig, out)
    plt.close(fig)
