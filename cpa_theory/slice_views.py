"""The three BN views of a network on a 2-D slice, and their picture (issue #14, item 3: ``cpa-theory slice``).

Views: train-mode BN conditioned on the network's batch, eval mode (running statistics when the file carries
them, else the batch's own statistics — then the same map as train mode, and the title says so), and BN removed.
Each view is restricted to the slice (:func:`cpa_theory.slices.slice_network`) and counted exactly; the picture
is drawn from the certified regions (data first, picture second).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .convnet import ConvNetwork
from .errors import ShapeError
from .layers import BatchNormND, Residual
from .network import Network

__all__ = ["as_convnet", "bn_views", "plot_slice_views"]


def as_convnet(net) -> ConvNetwork:
    """A v1 :class:`Network` in layer form; a :class:`ConvNetwork` as it is."""
    if isinstance(net, Network):
        from .fileformat_v2 import network_as_convnet

        return network_as_convnet(net)
    return net


def _bns(layers):
    for op in layers:
        if isinstance(op, BatchNormND):
            yield op.bn
        elif isinstance(op, Residual):
            yield from _bns(op.body)
            yield from _bns(op.shortcut or ())


def _set_mode(layers, mode):
    out = []
    for op in layers:
        if isinstance(op, BatchNormND):
            op = BatchNormND(replace(op.bn, mode=mode))
        elif isinstance(op, Residual):
            op = Residual(_set_mode(op.body, mode), None if op.shortcut is None else _set_mode(op.shortcut, mode))
        out.append(op)
    return tuple(out)


def bn_views(net) -> list[tuple[str, ConvNetwork | None, str]]:
    """``[(key, network or None, title)]`` for keys ``train``, ``eval``, ``no_bn``.

    ``train``: every BN in train mode on the network's batch (None when the file has BN but no batch). ``eval``:
    every BN in eval mode with the file's running statistics; without them the batch's own statistics are used,
    which is the train-mode map (BN frozen on the same batch), and the title says so. ``no_bn``: BN removed.
    """
    net = as_convnet(net)
    bns = list(_bns(net.layers))
    plain = net.without_batchnorm()
    if not bns:
        return [("train", net, "no BN in this network"), ("eval", net, "no BN in this network"),
                ("no_bn", plain, "no BN in this network")]
    B = None if net.batch is None else net.batch.shape[0]
    train = None if net.batch is None else ConvNetwork(net.input_shape, _set_mode(net.layers, "train"), net.batch)
    train_title = f"train-mode BN on the file's batch (B = {B})" if train is not None else \
        "train-mode BN: not drawn (the file holds no batch)"
    if all(b.running_mean is not None and b.running_var is not None for b in bns):
        ev = ConvNetwork(net.input_shape, _set_mode(net.layers, "eval"), net.batch)
        eval_title = "eval-mode BN (the file's running statistics)"
    else:
        ev = train
        eval_title = ("eval-mode BN with the batch's own statistics\n(no running statistics in the file: "
                      "the same map as train mode)") if train is not None else "eval-mode BN: not drawn (no running " \
                                                                               "statistics, no batch)"
    return [("train", train, train_title), ("eval", ev, eval_title), ("no_bn", plain, "BN removed (same weights)")]


def _decision_grid(net, sl, n: int = 301):
    """Output-derived field on an n × n grid of slice coordinates: (T1, T2, field, levels). Scalar output: the
    output itself, level 0; several outputs: the argmax class, levels between consecutive classes."""
    r = sl.radius
    g = np.linspace(-r, r, n)
    T1, T2 = np.meshgrid(g, g)
    t = np.stack([T1.ravel(), T2.ravel()], axis=1)
    y = np.asarray(net.condition().forward(sl.embed(t)), dtype=np.float64).reshape(len(t), -1)
    if y.shape[1] == 1:
        return T1, T2, y[:, 0].reshape(T1.shape), [0.0]
    lab = np.argmax(y, axis=1).reshape(T1.shape).astype(float)
    return T1, T2, lab, list(np.arange(y.shape[1] - 1) + 0.5)


def plot_slice_views(net, sl, out, *, point_labels=None) -> list[dict]:
    """Draw the three BN views of ``net`` on the 2-D slice ``sl`` side by side and write the PNG to ``out``
    (through :func:`cpa_theory.outputs.write_output`). Regions are the certified regions of each view,
    coloured by their affine map on one shared gradient scale; the slice's data points, the decision boundary
    and the layer-1 switching lines are overlaid. Returns one count dict per view (None for a view not drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from .plotting import _gradient_scale, plot_partition, save_figure
    from .regions import count_regions
    from .slices import slice_network

    if sl.k != 2:
        raise ShapeError(f"--out draws 2-D slices; this slice has k = {sl.k}: use three points or --random 2.")
    views = bn_views(net)
    dense = [None if v is None else slice_network(v, sl) for _, v, _ in views]
    results = [None if d is None else count_regions(d, np.zeros(2), sl.radius, keep_regions=True) for d in dense]
    scale = max((_gradient_scale(r.region_list) for r in results if r is not None), default=0.0)
    fig, axes = plt.subplots(1, 3, figsize=(15.5, 6.0), layout="constrained")
    rows = []
    for ax, (key, v, title), d, res in zip(axes, views, dense, results):
        if d is None:
            ax.text(0.5, 0.5, title, ha="center", va="center", transform=ax.transAxes, fontsize=9, wrap=True)
            ax.set_axis_off()
            rows.append(None)
            continue
        row = plot_partition(ax, d, np.zeros(2), sl.radius, title, grad_scale=scale, legend=False, _result=res)
        row["view"] = key
        rows.append(row)
        T1, T2, field, levels = _decision_grid(v, sl)
        if len(levels) == 1:
            shown = bool(field.min() < 0 < field.max())
        else:
            shown = len(np.unique(field)) > 1
        if shown:
            ax.contour(T1, T2, field, levels=levels, colors="k", linewidths=1.6, linestyles="--")
        else:
            ax.set_title(ax.get_title() + "\n(no decision boundary in view: one class throughout)", fontsize=9)
        if len(sl.points):
            ax.scatter(sl.points[:, 0], sl.points[:, 1], s=60, marker="o", color="white", edgecolor="k",
                       linewidth=1.2, zorder=6)
            for i, p in enumerate(sl.points):
                name = point_labels[i] if point_labels is not None else f"p{i + 1}"
                ax.annotate(str(name), p, textcoords="offset points", xytext=(6, 6), fontsize=8, zorder=7)
        ax.set_xlabel("t₁ (slice coordinate)")
        ax.set_ylabel("t₂ (slice coordinate)")
    handles = [Patch(facecolor="0.85", edgecolor="0.35", linewidth=0.5, label="activation region (colour: its map)"),
               Line2D([], [], color="crimson", linewidth=0.8, label="layer-1 switching lines"),
               Line2D([], [], color="k", linestyle="--", linewidth=1.6, label="decision boundary"),
               Line2D([], [], marker="+", linestyle="", markersize=9, color="k", label="slice centre x₀ (t = 0)")]
    if len(sl.points):
        handles.append(Line2D([], [], marker="o", linestyle="", markersize=7, markerfacecolor="white",
                              markeredgecolor="k", label="data points"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(f"Activation regions on the 2-D slice x = x₀ + V t, t ∈ [−{sl.radius:.3g}, {sl.radius:.3g}]² "
                 "(V orthonormal); colour: direction (hue) and size (shade) of ∇f of output 0", fontsize=10)
    save_figure(fig, out)
    plt.close(fig)
    return rows
