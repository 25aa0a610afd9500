"""Pictures of 2-D partitions, made from the certified regions (data first, picture second)."""

from __future__ import annotations

import numpy as np

from .errors import ShapeError
from .hyperplanes import switching_hyperplanes
from .network import Network
from .outputs import output_target, write_output
from .regions import count_regions

__all__ = ["plot_partition", "plot_partition_comparison", "save_figure"]


def _ordered(vertices: np.ndarray) -> np.ndarray:
    """Vertices of a convex polygon in counter-clockwise order (duplicates removed)."""
    v = np.unique(np.round(vertices, 14), axis=0)
    c = v.mean(axis=0)
    return v[np.argsort(np.arctan2(v[:, 1] - c[1], v[:, 0] - c[0]))]


def plot_partition(ax, net: Network, center, radius: float, title: str = "") -> dict:
    """Draw the activation regions of ``net`` in W(center, r) on ``ax``; returns the count as a dict."""
    from matplotlib.patches import Polygon

    if net.input_dim != 2:
        raise ShapeError(f"plotting needs input dimension 2; this network has {net.input_dim}.")
    res = count_regions(net, center, radius, keep_regions=True)
    rng = np.random.default_rng(0)  # fixed colours: the same picture every run
    for reg in res.region_list:
        ax.add_patch(Polygon(_ordered(reg.vertices), closed=True, facecolor=rng.uniform(0.35, 0.95, 3),
                             edgecolor="k", linewidth=0.3))
    lo, hi = np.asarray(center) - radius, np.asarray(center) + radius
    hp = switching_hyperplanes(net.condition(), 0)
    normals, rhs = hp.equations()
    xs = np.linspace(lo[0], hi[0], 2)
    for i in range(hp.num_neurons):
        for k in range(rhs.shape[1]):
            if not hp.regular[i, k]:
                continue
            a, c = normals[i], rhs[i, k]
            if abs(a[1]) > 1e-12:
                ax.plot(xs, (c - a[0] * xs) / a[1], color="crimson", linewidth=0.8, alpha=0.7)
            else:
                ax.axvline(c / a[0], color="crimson", linewidth=0.8, alpha=0.7)
    if net.batch is not None:
        ax.scatter(net.batch[:, 0], net.batch[:, 1], s=10, color="navy", zorder=3, label="batch")
        xbar = net.batch.mean(axis=0)
        ax.scatter([xbar[0]], [xbar[1]], marker="*", s=120, color="gold", edgecolor="k", zorder=4, label="centroid")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.set_title(f"{title}\nN = {res.regions}, N_lin = {res.linear_regions}, h = {res.hits}", fontsize=9)
    return res.as_json()


def save_figure(fig, out) -> None:
    """Render ``fig`` to PNG bytes, then :func:`cpa_theory.outputs.write_output` them (atomic, regular files
    only, umask/mode respected): no half-written PNG, and a device or FIFO is refused before rendering."""
    import io

    output_target(out)  # refuse /dev/null, a FIFO, a directory, a missing folder before the (slow) rendering
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
    write_output(out, buf.getvalue())


def plot_partition_comparison(net: Network, center, radius: float, out) -> list[dict]:
    """Side by side: ``net`` (train-mode BN conditioned on its batch) and the same weights without BN."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    rows = [plot_partition(axes[0], net, center, radius, "as given (BN conditioned on the batch)"),
            plot_partition(axes[1], net.without_batchnorm(), center, radius, "same weights, no BN")]
    axes[0].legend(loc="lower right", fontsize=7)
    save_figure(fig, out)
    plt.close(fig)
    return rows
