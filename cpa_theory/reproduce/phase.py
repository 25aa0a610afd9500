"""C7: the BN-vs-no-BN phase diagram over distance from the centroid × bias scale (× radius × batch size).

The data are a resumable sweep (``numerics.sweep``) in ``DIR/phase``: E[h_BN] − E[h_plain] with 95 %
confidence intervals at every grid point, exact counts E[N] on the first few networks of every point. A
point is classified ``bn`` (BN refines more, CI above 0), ``plain`` (CI below 0: the refinement claim
fails there) or ``tie``, on the hitting numbers (``phase``) and on the exact counts (``phase_N``). Points
inside the sufficient condition of C5/C6 are marked: D < r (so x̄ ∈ int W) and the bias-density bound
E[N_plain] ≤ Σ_{k≤d} e_k(q) ≤ O3 = N_BN.
"""

from __future__ import annotations

import numpy as np

__all__ = ["phase_rows", "classify", "plot_phase", "plot_phase_slices"]


def phase_rows(ctx, progress: bool = False) -> list[dict]:
    from numerics.sweep import SweepConfig, run_sweep

    size = ctx.size
    cfg = SweepConfig(seed=ctx.seed, d=2, widths=(32,), networks=size["phase_networks"],
                      count_networks=size["phase_counted"], batch_sizes=size["phase_batch_sizes"],
                      bias_scales=size["phase_bias_scales"], radii=size["phase_radii"],
                      distances=size["phase_distances"])
    rows = run_sweep(cfg, ctx.out / "phase", progress=progress)
    from .checks import o3

    for r in rows:
        r["phase"] = classify(r["bn_minus_plain_ci95"])
        r["phase_N"] = classify(r["n_bn_minus_plain_ci95"]) if "n_bn_minus_plain_ci95" in r else None
        r["inside_sufficient_condition"] = bool(r["distance"] < r["radius"]
                                                and r["c6_bound_n_plain"] <= o3(r["widths"][0], cfg.d))
    return rows


def classify(ci) -> str:
    lo, hi = ci
    return "bn" if lo > 0 else "plain" if hi < 0 else "tie"


def plot_phase(rows: list[dict], out) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plotting import save_figure

    r0, b0 = rows[0]["radius"], rows[0]["batch_size"]
    sl = [r for r in rows if r["radius"] == r0 and r["batch_size"] == b0]
    Ds = sorted({r["distance"] for r in sl})
    Ss = sorted({r["bias_scale"] for r in sl})
    diff = np.full((len(Ss), len(Ds)), np.nan)
    ndiff = np.full((len(Ss), len(Ds)), np.nan)
    for r in sl:
        i, j = Ss.index(r["bias_scale"]), Ds.index(r["distance"])
        diff[i, j] = r["h_bn_mean"] - r["h_plain_mean"]
        if "n_bn_mean" in r:
            ndiff[i, j] = r["n_bn_mean"] - r["n_plain_mean"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, z, title in ((axes[0], diff, "E[h_BN] − E[h_plain] (Monte Carlo)"),
                         (axes[1], ndiff, "E[N_BN] − E[N_plain] (exact counts, few networks)")):
        lim = np.nanmax(np.abs(z)) or 1.0
        im = ax.imshow(np.sign(z) * np.log1p(np.abs(z)), origin="lower", aspect="auto", cmap="RdBu_r",
                       vmin=-np.log1p(lim), vmax=np.log1p(lim))
        if z is diff and np.isfinite(z).all() and (z > 0).any() and (z < 0).any():
            ax.contour(z, levels=[0.0], colors="k", linewidths=1.2)  # the crossover curve
        ax.set_xticks(range(len(Ds)), [f"{d:g}" for d in Ds])
        ax.set_yticks(range(len(Ss)), [f"{s:g}" for s in Ss])
        ax.set_xlabel("distance D of the window centre from the centroid")
        ax.set_ylabel("bias scale σ_b")
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, label="sign · log(1 + |difference|)")
    for r in sl:
        i, j = Ss.index(r["bias_scale"]), Ds.index(r["distance"])
        for ax, key in ((axes[0], "phase"), (axes[1], "phase_N")):
            if r.get(key) == "plain":
                ax.plot(j, i, "kx", markersize=8)
            if r["inside_sufficient_condition"]:
                ax.plot(j, i, "o", mfc="none", mec="gold", markersize=10)
    fig.suptitle(f"C7 phase diagram (d = 2, n = 32, r = {r0:g}, B = {b0}); × = no-BN refines more "
                 "(CI below 0), ○ = inside C5/C6's sufficient condition (D < r and Σ e_k(q) ≤ O3)", fontsize=9)
    save_figure(fig, out)
    plt.close(fig)


def plot_phase_slices(rows: list[dict], out) -> bool:
    """E[h_BN] − E[h_plain] over D × σ_b for every (radius, batch size) slice; False when there is one slice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plotting import save_figure

    radii = sorted({r["radius"] for r in rows})
    sizes = sorted({r["batch_size"] for r in rows})
    if len(radii) * len(sizes) == 1:
        return False
    Ds = sorted({r["distance"] for r in rows})
    Ss = sorted({r["bias_scale"] for r in rows})
    fig, axes = plt.subplots(len(radii), len(sizes), figsize=(4 * len(sizes), 3.2 * len(radii)), squeeze=False)
    for a, rad in enumerate(radii):
        for b, B in enumerate(sizes):
            z = np.full((len(Ss), len(Ds)), np.nan)
            for r in rows:
                if r["radius"] == rad and r["batch_size"] == B:
                    z[Ss.index(r["bias_scale"]), Ds.index(r["distance"])] = r["h_bn_mean"] - r["h_plain_mean"]
            lim = np.log1p(np.nanmax(np.abs(z)) or 1.0)
            ax = axes[a, b]
            ax.imshow(np.sign(z) * np.log1p(np.abs(z)), origin="lower", aspect="auto", cmap="RdBu_r", vmin=-lim,
                      vmax=lim)
            if (z > 0).any() and (z < 0).any():
                ax.contour(z, levels=[0.0], colors="k", linewidths=1.0)
            ax.set_xticks(range(len(Ds)), [f"{d:g}" for d in Ds], fontsize=6)
            ax.set_yticks(range(len(Ss)), [f"{s:g}" for s in Ss], fontsize=6)
            ax.set_title(f"r = {rad:g}, B = {B}", fontsize=8)
    fig.supxlabel("distance D from the centroid")
    fig.supylabel("bias scale σ_b")
    fig.suptitle("C7: E[h_BN] − E[h_plain] (red: BN refines more; black: crossover)", fontsize=9)
    save_figure(fig, out)
    plt.close(fig)
    return True
