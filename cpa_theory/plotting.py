"""Pictures of 2-D partitions, made from the certified regions (data first, picture second)."""

from __future__ import annotations

import numpy as np

from .errors import ShapeError
from .hyperplanes import switching_hyperplanes
from .network import Network
from .outputs import check_replaceable, write_output
from .regions import count_regions

__all__ = ["plot_partition", "plot_partition_comparison", "save_figure", "bn_mode_label"]


def _ordered(vertices: np.ndarray) -> np.ndarray:
    """Vertices of a convex polygon in counter-clockwise order (duplicates removed)."""
    v = np.unique(np.round(vertices, 14), axis=0)
    c = v.mean(axis=0)
    return v[np.argsort(np.arctan2(v[:, 1] - c[1], v[:, 0] - c[0]))]


def bn_mode_label(net: Network) -> str:
    """What the BN layers of ``net`` actually do, for titles: train mode (on which batch), eval mode, or none."""
    modes = {l.batchnorm.mode for l in net.layers if l.batchnorm is not None}
    if not modes:
        return "no BN"
    if modes == {"eval"}:
        return "eval-mode BN (running statistics)"
    batch = "" if net.batch is None else f", B = {net.batch.shape[0]}"
    mixed = " (and eval-mode layers)" if "eval" in modes else ""
    return f"train-mode BN conditioned on its batch{batch}{mixed}"


def _map_colours(regions, grad_scale: float) -> list:
    """One colour per region from its affine map f(x) = A x + c (first output): hue = direction of ∇f, shade =
    |∇f| relative to ``grad_scale``. Regions with the same map get the same colour; similar maps, similar ones."""
    from matplotlib.colors import hsv_to_rgb

    out = []
    for reg in regions:
        g = np.asarray(reg.out_A, dtype=np.float64)[0]
        size = float(np.linalg.norm(g))
        hue = (np.arctan2(g[1], g[0]) / (2 * np.pi)) % 1.0 if size > 0 else 0.0
        rel = min(1.0, size / grad_scale) if grad_scale > 0 else 0.0
        out.append(hsv_to_rgb((hue, 0.15 + 0.6 * rel, 0.97 - 0.25 * rel)))
    return out


def _gradient_scale(regions) -> float:
    sizes = [float(np.linalg.norm(np.asarray(r.out_A, dtype=np.float64)[0])) for r in regions]
    return max(sizes, default=0.0)


def plot_partition(ax, net: Network, center, radius: float, title: str = "", *, grad_scale: float | None = None,
                   legend: bool = True, _result=None) -> dict:
    """Draw the certified activation regions of ``net`` in the ℓ∞ window W(center, r) on ``ax``.

    Regions are coloured by their affine map (hue: direction of ∇f, shade: |∇f| relative to ``grad_scale``,
    default this window's largest), first-layer switching hyperplanes are drawn in red, the batch and its
    centroid (train-mode BN) and the window centre are marked. Returns the count as a dict.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Polygon

    if net.input_dim != 2:
        raise ShapeError(f"plotting needs input dimension 2; this network has {net.input_dim}.")
    res = count_regions(net, center, radius, keep_regions=True) if _result is None else _result
    regions = res.region_list
    scale = _gradient_scale(regions) if grad_scale is None else grad_scale
    for reg, colour in zip(regions, _map_colours(regions, scale)):
        ax.add_patch(Polygon(_ordered(reg.vertices), closed=True, facecolor=colour, edgecolor="0.35", linewidth=0.3))
    center = np.asarray(center, dtype=np.float64)
    lo, hi = center - radius, center + radius
    hp = switching_hyperplanes(net.condition(), 0)
    normals, rhs = hp.equations()
    xs = np.linspace(lo[0], hi[0], 2)
    for i in range(hp.num_neurons):
        for k in range(rhs.shape[1]):
            if not hp.regular[i, k]:
                continue
            a, c = normals[i], rhs[i, k]
            if abs(a[1]) > 1e-12 * abs(a[0]):
                ax.plot(xs, (c - a[0] * xs) / a[1], color="crimson", linewidth=0.8, alpha=0.8)
            else:
                ax.axvline(c / a[0], color="crimson", linewidth=0.8, alpha=0.8)
    handles = [Patch(facecolor="0.85", edgecolor="0.35", linewidth=0.5, label="activation region (colour: its map)"),
               Line2D([], [], color="crimson", linewidth=0.8, label="layer-1 switching hyperplanes")]
    train = any(l.batchnorm is not None and l.batchnorm.mode == "train" for l in net.layers)
    if net.batch is not None and train:
        inside = np.all(np.abs(net.batch - center) <= radius, axis=1)
        ax.scatter(net.batch[inside, 0], net.batch[inside, 1], s=10, color="navy", zorder=3)
        xbar = net.batch.mean(axis=0)
        ax.scatter([xbar[0]], [xbar[1]], marker="*", s=130, color="gold", edgecolor="k", zorder=4)
        handles += [Line2D([], [], marker="o", linestyle="", markersize=3.5, color="navy",
                           label=f"batch points ({int(inside.sum())} of {len(inside)} in view)"),
                    Line2D([], [], marker="*", linestyle="", markersize=11, markerfacecolor="gold",
                           markeredgecolor="k", label="batch centroid x̄")]
    ax.scatter([center[0]], [center[1]], marker="+", s=80, color="k", zorder=5)
    handles.append(Line2D([], [], marker="+", linestyle="", markersize=9, color="k", label="window centre x₀"))
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.set_xlabel("x₁ (input units)")
    ax.set_ylabel("x₂ (input units)")
    ax.tick_params(labelsize=7)
    ax.set_title(f"{title}\nN = {res.regions} regions, N_lin = {res.linear_regions}, h = {res.hits} "
                 "first-layer hits", fontsize=9)
    if legend:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=7, ncol=2,
                  frameon=False)
    return res.as_json()


def save_figure(fig, out) -> None:
    """Render ``fig`` to PNG bytes, then :func:`cpa_theory.outputs.write_output` them (atomic, regular files
    only, umask/mode respected): no half-written PNG, and a device or FIFO is refused before rendering."""
    import io

    check_replaceable(out)  # refuse /dev/null, a FIFO, a directory, a file not ours before the (slow) rendering
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
    write_output(out, buf.getvalue())


def plot_partition_comparison(net: Network, center, radius: float, out) -> list[dict]:
    """Side by side: ``net`` as given (its BN mode in the title) and the same weights with BN removed.

    Both panels share one colour scale for ∇f, so equal colours mean equal maps across the panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plain = net.without_batchnorm()
    results = [count_regions(n, center, radius, keep_regions=True) for n in (net, plain)]
    scale = max(_gradient_scale(r.region_list) for r in results)
    has_bn = any(l.batchnorm is not None for l in net.layers)
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 6.2), layout="constrained")
    rows = [plot_partition(axes[0], net, center, radius, f"as given: {bn_mode_label(net)}", grad_scale=scale,
                           _result=results[0]),
            plot_partition(axes[1], plain, center, radius,
                           "same weights and biases, BN removed" if has_bn else "same network (it has no BN)",
                           grad_scale=scale, _result=results[1])]
    c = np.asarray(center, dtype=np.float64)
    fig.suptitle(f"Activation regions in the ℓ∞ window x₀ ± r, x₀ = ({c[0]:.4g}, {c[1]:.4g}), r = {radius:g}; "
                 "colour: direction (hue) and size (shade) of ∇f", fontsize=10)
    save_figure(fig, out)
    plt.close(fig)
    return rows
