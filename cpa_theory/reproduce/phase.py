"""C7: the BN-vs-no-BN phase diagrams, for both measures of refinement (hits h and regions N).

Three settings of the window and the batch (THEORY C7 "Settings"), d = 2, n = 32 ReLU neurons (β = 0, γ = 1),
w ~ N(0, I/2), r = 0.2, B = 16, each a resumable sweep (``numerics.sweep``) in ``DIR/phase/<setting>``:

* ``axis-origin``:   window centre x̄ + D·e_1, batch recentred so that x̄ = 0 (closed forms exist:
  ``closed_forms.box_*_2d``),
* ``random-origin``: uniformly random direction, x̄ = 0 (closed forms exist),
* ``random-random``: random direction, x̄ the drawn batch's mean (the setting of THEORY's example).

The sweeps use many networks: E[h] by the C4 kernel and E[N] by Euler's formula for a line arrangement in
the window (N = 1 + h + Σ_p (m_p − 1), ``numerics.kernels.euler_regions_2d``); ``counted`` re-counts the first
networks of a few cells with the exact certified counter (N must equal the Euler count network by network,
and gives t₇ intervals on its own); ``example`` is THEORY's example point (random-random, D = 0, σ_b = 0.1)
with exact counts. Every cell gets Holm-corrected verdicts for h and N (``numerics.stats.cell_verdicts``);
every σ_b slice gets D*_h and D*_N with bootstrap CIs over networks (``numerics.stats.crossover``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["SETTINGS", "phase_runs", "annotate", "plot_phase"]

SETTINGS = {"axis-origin": {"window_direction": (1.0, 0.0), "batch_centroid": "origin"},
            "random-origin": {"window_direction": "random", "batch_centroid": "origin"},
            "random-random": {"window_direction": "random", "batch_centroid": "random"}}
WEIGHT_SD = float(np.sqrt(0.5))  # w ~ N(0, weight_scale²/fan_in) with fan_in = d = 2


def _cfg(ctx, setting: str, **kw):
    from numerics.sweep import SweepConfig

    size = ctx.size
    base = dict(seed=ctx.seed, d=2, widths=(32,), networks=size["phase_networks"], batch_sizes=(16,),
                bias_scales=size["phase_bias_scales"], radii=(0.2,), distances=size["phase_distances"],
                **SETTINGS[setting])
    base.update(kw)
    return SweepConfig(**base)


def phase_runs(ctx, progress: bool = False) -> dict:
    """{"h": {setting: rows}, "counted": rows, "example": rows} (rows annotated with Holm verdicts: the hit
    sweeps of all settings form one family, the counted sweep another)."""
    from numerics.sweep import run_sweep

    size = ctx.size
    out = {"h": {}}
    for name in SETTINGS:
        out["h"][name] = run_sweep(_cfg(ctx, name), ctx.out / "phase" / name, progress=progress)
    # one Holm family over every setting's cells: C7's checks and negative controls pool the settings (any / all)
    annotate([r for rows in out["h"].values() for r in rows])
    # the same networks count (and spec) as the hit sweeps: the compiled kernels are reused
    counted = _cfg(ctx, "axis-origin", count_networks=size["phase_counted"],
                   bias_scales=size["counted_bias_scales"], distances=size["counted_distances"])
    out["counted"] = annotate(run_sweep(counted, ctx.out / "phase" / "counted", progress=progress))
    example = _cfg(ctx, "random-random", networks=size["phase_networks"], count_networks=size["example_counted"],
                   bias_scales=(0.1,), distances=(0.0,))
    out["example"] = run_sweep(example, ctx.out / "phase" / "example", progress=progress)
    return out


def annotate(rows: list[dict]) -> list[dict]:
    """Holm-corrected verdicts per cell: ``phase`` (h) and ``phase_N`` (exact counts), 'bn' / 'plain' / 'tie'."""
    from numerics.stats import cell_verdicts

    verdicts, padj = cell_verdicts([np.subtract(r["h_bn_samples"], r["h_plain_samples"]) for r in rows])
    for r, v, p in zip(rows, verdicts, padj):
        r["phase"], r["p_holm"] = v, float(p)
    for prefix, key in (("n_", "phase_N_counted"), ("n_euler_", "phase_N")):
        if all(f"{prefix}bn_samples" in r for r in rows):
            verdicts, padj = cell_verdicts([np.subtract(r[f"{prefix}bn_samples"], r[f"{prefix}plain_samples"])
                                            for r in rows])
            for r, v, p in zip(rows, verdicts, padj):
                r[key], r[f"p_holm_{key}"] = v, float(p)
    return rows


def _grid(rows, key):
    Ds = sorted({r["distance"] for r in rows})
    Ss = sorted({r["bias_scale"] for r in rows})
    z = np.full((len(Ss), len(Ds)), np.nan)
    for r in rows:
        if key in r and r[key] is not None:
            z[Ss.index(r["bias_scale"]), Ds.index(r["distance"])] = r[key]
    return np.asarray(Ds), np.asarray(Ss), z


def _edges(v, log=False):
    v = np.asarray(v, float)
    if log:
        lv = np.log10(v)
        mid = (lv[1:] + lv[:-1]) / 2
        step = (lv[1] - lv[0]) if len(lv) > 1 else 0.5
        return 10 ** np.r_[lv[0] - step / 2, mid, lv[-1] + step / 2]
    mid = (v[1:] + v[:-1]) / 2
    return np.r_[v[0] - (mid[0] - v[0]) if len(v) > 1 else v[0] - 0.5, mid, v[-1] + (v[-1] - mid[-1])
                 if len(v) > 1 else v[-1] + 0.5]


def _panel(fig, ax, rows, mean_key, phase_key, cross_key, title, exact=None):
    from matplotlib.colors import TwoSlopeNorm

    Ds, Ss, z = _grid(rows, mean_key)
    lim = float(np.nanmax(np.abs(z))) or 1.0
    mesh = ax.pcolormesh(_edges(Ds), _edges(Ss, log=True), z, cmap="RdBu_r", shading="flat",
                         norm=TwoSlopeNorm(0.0, -lim, lim))
    fig.colorbar(mesh, ax=ax, label="E[BN] − E[no BN]  (red: BN refines more)")
    ax.set_yscale("log")
    for verdict, marker, label in (("plain", "x", "no-BN refines more (Holm, 5 %)"),
                                   ("tie", ".", "no significant difference")):
        pts = [(r["distance"], r["bias_scale"]) for r in rows if r.get(phase_key) == verdict]
        if pts:
            ax.plot(*zip(*pts), marker, color="k", ms=5 if marker == "x" else 3, ls="none", label=label)
    cr = []
    for s in sorted({r["bias_scale"] for r in rows}):
        c = next(r for r in rows if r["bias_scale"] == s).get("crossover", {}).get(cross_key)
        if c and c["D_star"] is not None:
            lo, hi = c["ci95"] if c["ci95"] else (c["D_star"], c["D_star"])
            cr.append((c["D_star"], s, c["D_star"] - lo, hi - c["D_star"]))
    if cr:
        D_, S_, el, eh = map(np.asarray, zip(*cr))
        ax.errorbar(D_, S_, xerr=[el, eh], fmt="o-", color="gold", mec="k", capsize=3,
                    label="crossover D* (95 % bootstrap CI)")
    if exact:
        ax.plot([e[0] for e in exact], [e[1] for e in exact], "k--", lw=1.2, label="exact D*_h (closed form)")
    ax.set_xlabel("distance D of the window centre from the batch centroid")
    ax.set_ylabel("bias scale σ_b (no-BN biases ~ N(0, σ_b²))")
    ax.set_yticks(Ss, [f"{v:g}" for v in Ss])
    ax.minorticks_off()
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6.5, loc="lower right", framealpha=0.9)


def plot_phase(runs: dict, exact_axis: list, out) -> None:
    """2 × 2 panels: hits h and regions N, for the axis-origin setting (with the exact D*_h curve) and the
    random-random setting (THEORY's example)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plotting import save_figure

    fig, axes = plt.subplots(2, 2, figsize=(15, 10.5))
    nets = runs["h"]["axis-origin"][0]["networks"]
    _panel(fig, axes[0, 0], runs["h"]["axis-origin"], "bn_minus_plain_mean", "phase", "h",
           f"hits h ({nets} networks per cell): window along e₁, centroid at the origin", exact=exact_axis)
    _panel(fig, axes[0, 1], runs["h"]["axis-origin"], "n_euler_bn_minus_plain_mean", "phase_N", "N_euler",
           "regions N (Euler count = exact count for generic lines): e₁, origin")
    _panel(fig, axes[1, 0], runs["h"]["random-random"], "bn_minus_plain_mean", "phase", "h",
           "hits h: random direction, random batch centroid")
    _panel(fig, axes[1, 1], runs["h"]["random-random"], "n_euler_bn_minus_plain_mean", "phase_N", "N_euler",
           "regions N: random direction, random batch centroid")
    fig.suptitle(f"C7 phase diagrams, d = 2, n = 32 ReLU (β = 0), r = 0.2, B = 16, {nets} networks per cell.\n"
                 "Colour: E[BN] − E[no BN]; unmarked: BN refines more, × no-BN refines more, · no significant "
                 "difference (Holm-corrected t-tests over networks).\nGold: crossover distance D* where the "
                 "difference turns ≤ 0 (95 % bootstrap CI over networks); no gold point: no crossover on the grid "
                 "(BN refines LESS by N already at D = 0 for small σ_b).", fontsize=9)
    save_figure(fig, out)
    plt.close(fig)
