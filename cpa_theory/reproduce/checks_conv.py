"""Check of C10 (THEORY §7): train-mode BatchNorm2d after a convolution recentres at the mean patch m̄.

The evidence comes from the textbook loops of ``oracles_textbook`` (patches extracted position by position,
statistics over batch × positions, raw bias included) and, when torch is installed, from
``torch.nn.BatchNorm2d`` in train mode; the code under test is the core's conv network
(``convnet.ConvNetwork.condition`` → ``bn.condition_bn`` on the patches) and ``conv_geometry``.
Data: scikit-learn's 8×8 digits with a random 3×3 conv layer (stride 1; no padding, and zero padding 1).
"""

from __future__ import annotations

import numpy as np

from ..tolerances import BATCH_FORMULA_RTOL
from . import oracles_textbook as tb
from .common import Context, Evidence, symbolic
from .common import worst as worst_of

__all__ = ["check_c10"]


def _rel(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(1.0, float(np.max(np.abs(b)))))


def _digits_layer(ctx: Context, channels: int = 4, kernel: int = 3):
    from sklearn.datasets import load_digits

    rng = ctx.rng("C10")
    n = 128 if ctx.scale == "small" else 1024
    x = load_digits().images[:n, None].astype(np.float64) / 16.0  # (B, 1, 8, 8)
    w = rng.normal(size=(channels, 1, kernel, kernel)) * np.sqrt(2.0 / kernel ** 2)
    b = rng.normal(size=channels)
    gamma = rng.choice([-1.0, 1.0], channels) * rng.uniform(0.5, 1.5, channels)  # γ of both signs
    beta = rng.normal(size=channels) * 0.3
    return x, w, b, gamma, beta


def _core(x, w, b, gamma, beta, eps=1e-5, mode="train", padding=0):
    from ..bn import BatchNorm
    from ..convnet import ConvNetwork
    from ..layers import BatchNormND, Conv

    kw = {} if mode == "train" else {"running_mean": np.zeros(len(b)), "running_var": np.ones(len(b))}
    conv = Conv(w, b, 1, padding)
    bn = BatchNorm(len(b), mode, gamma, beta, eps, **kw)
    return conv, bn, ConvNetwork(x.shape[1:], (conv, BatchNormND(bn)), x if mode == "train" else None)


def check_c10(ctx: Context) -> Evidence:
    from ..conv_geometry import reference_distances

    ev = Evidence()
    symbolic(ev, ctx, ("C10a", "C10b", "C10b-stationary", "C10c"), ("C10a-neg", "C10b-neg", "C10c-neg"))
    x, w, b, gamma, beta = _digits_layer(ctx)
    eps, tol = 1e-5, BATCH_FORMULA_RTOL
    rng = ctx.rng("C10-redraw")
    b2 = b + rng.normal(size=b.shape) * 10.0

    # C10a: the raw bias cancels per channel (textbook with b; core against it)
    y_tb = tb.batchnorm2d_train(x, w, b, gamma, beta, eps)
    redraw_tb = _rel(tb.batchnorm2d_train(x, w, b2, gamma, beta, eps), y_tb)
    _, _, net = _core(x, w, b, gamma, beta, eps)
    core_vs_tb = _rel(net.condition().forward(x).reshape(y_tb.shape), y_tb)
    _, _, net2 = _core(x, w, b2, gamma, beta, eps)
    core_redraw = _rel(net2.condition().forward(x).reshape(y_tb.shape), y_tb)
    ev.check("core conv + BN2d forward = textbook loops (statistics over batch × positions, raw b included)",
             "instances", core_vs_tb <= tol, max_relative_difference=core_vs_tb, images=len(x))
    ev.check("C10a: redrawing the conv's raw bias (σ = 10) leaves the train-mode outputs unchanged "
             "(textbook and core)", "instances", worst_of(redraw_tb, core_redraw) <= tol,
             textbook_relative_change=redraw_tb, core_relative_change=core_redraw)
    _, _, ev0 = _core(x, w, b, gamma, beta, eps, mode="eval")
    _, _, ev1 = _core(x, w, b2, gamma, beta, eps, mode="eval")
    eval_change = _rel(ev1.condition().forward(x), ev0.condition().forward(x))
    ev.negative("eval-mode BN2d (running statistics): the same bias redraw changes the outputs",
                eval_change > 1e3 * tol, relative_change=eval_change)

    # C10b: offsets w_cᵀ(P_p x̄ − m̄) and distances, core against the textbook loops; a point on the core's
    # reference set has textbook ẑ = β
    conv, bn, _ = _core(x, w, b, gamma, beta, eps)
    geo = reference_distances(conv, bn, x)
    off_tb, norm_tb = tb.conv_reference_offsets(x, w)
    off_diff = _rel(geo.offset, off_tb)
    dist_tb = np.abs(off_tb) / norm_tb
    ev.check("C10b: core offsets w_cᵀ(P_p x̄ − m̄) and ‖P_pᵀw_c‖ = textbook loops", "instances",
             off_diff <= tol and _rel(geo.norm, norm_tb) <= tol, max_relative_difference=off_diff,
             neurons=int(off_tb.size))
    # the foot of the perpendicular from x̄ onto the core's reference set of neuron (c, p): textbook ẑ there = β_c
    xbar = x.mean(axis=0)
    worst = 0.0
    P = tb.conv2d_patches(x, 3, 3)
    z = P @ w.reshape(len(b), -1).T + b
    mu, var = z.mean(axis=(0, 1, 2)), z.var(axis=(0, 1, 2))
    for c in range(len(b)):
        for (i, j) in ((0, 0), (2, 3), (5, 5)):
            a = np.zeros_like(xbar)
            a[:, i:i + 3, j:j + 3] = w[c]  # P_pᵀ w_c
            foot = xbar - geo.offset[c, i, j] * a / np.sum(a * a)
            zf = np.sum(tb.conv2d_patches(foot[None], 3, 3)[0, i, j] * w[c].ravel()) + b[c]
            zhat = gamma[c] * (zf - mu[c]) / np.sqrt(var[c] + eps) + beta[c]
            worst = worst_of(worst, abs(zhat - beta[c]))
    ev.check("C10b: the core's reference set {w_cᵀ(P_p x − m̄) = 0} is where the textbook ẑ = β (12 neurons)",
             "instances", worst <= tol, max_abs_error=worst)
    frac_off = float(np.mean(dist_tb > 1e6 * tol * max(1.0, float(np.linalg.norm(xbar)))))
    ev.negative("'every reference set passes through x̄' (C2 verbatim) on digits: refuted by positions off x̄",
                frac_off > 0, fraction_of_positions_off_centroid=frac_off, median_distance=float(np.median(dist_tb)),
                max_distance=float(dist_tb.max()), centroid_norm=float(np.linalg.norm(xbar)))
    const = np.concatenate([x, 1.0 - x])  # constant centroid image 0.5·1: stationary at every scale
    off_c, norm_c = tb.conv_reference_offsets(const, w)
    geo_c = reference_distances(conv, bn, const)
    const_max = float(max(np.max(np.abs(off_c) / norm_c), np.nanmax(geo_c.distance)))
    ev.check("C10b iff: with a constant centroid image every reference set passes through x̄ (textbook and core)",
             "instances", const_max <= tol, max_distance=const_max)
    # zero padding (THEORY §7: padding is zeros): the textbook loops run on the zero-padded images, which is the
    # padded convolution; the core pads inside its conv layer
    conv_p, bn_p, net_p = _core(x, w, b, gamma, beta, eps, padding=1)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    y_tb_p = tb.batchnorm2d_train(xp, w, b, gamma, beta, eps)
    pad_fwd = _rel(net_p.condition().forward(x).reshape(y_tb_p.shape), y_tb_p)
    off_tb_p, _ = tb.conv_reference_offsets(xp, w)
    pad_off = _rel(reference_distances(conv_p, bn_p, x).offset, off_tb_p)
    ev.check("zero padding 1: core conv + BN2d forward and offsets w_cᵀ(P_p x̄ − m̄) = textbook loops on the "
             "zero-padded images", "instances", worst_of(pad_fwd, pad_off) <= tol,
             forward_max_relative_difference=pad_fwd, offsets_max_relative_difference=pad_off)
    # zero padding breaks stationarity at the border even for a constant centroid (measured, reported)
    padded = reference_distances(conv_p, bn_p, const).distance
    ev.numbers["padding_1_constant_centroid_max_distance"] = float(np.nanmax(padded))
    ev.numbers["padding_1_constant_centroid_median_distance"] = float(np.nanmedian(padded))

    # C10c: per neuron the switching normal is a = γ_c P_pᵀ w_c / s_c (core's local linear map vs textbook)
    A, _ = net.condition().affine_map_at(x[0])
    s_tb = np.sqrt(var + eps)
    rows, rows_pos = [], []
    s_pos = np.sqrt(z.var(axis=0) + eps)  # BatchNorm1d per position: s from one position's batch values only
    for c in range(len(b)):
        for i in range(6):
            for j in range(6):
                a = np.zeros((1, 8, 8))
                a[:, i:i + 3, j:j + 3] = w[c]  # P_pᵀ w_c
                rows.append(gamma[c] * a.ravel() / s_tb[c])
                rows_pos.append(gamma[c] * a.ravel() / s_pos[i, j, c])
    a_tb, a_pos = np.array(rows), np.array(rows_pos)
    a_diff = _rel(A, a_tb)
    ev.check("C10c: the core's normals = γ_c P_pᵀ w_c / s_c (s_c over batch × positions)", "instances",
             a_diff <= tol, max_relative_difference=a_diff)
    ev.negative("C10c with s from one position's batch values (BatchNorm1d per position) does not match the core",
                _rel(A, a_pos) > 1e3 * tol, max_relative_difference=_rel(A, a_pos))

    try:
        from ..conv_geometry import torch_reference_check

        torch_diff = torch_reference_check(conv, bn, x)
    except ImportError:
        torch_diff = None
    if torch_diff is not None:
        ev.check("C10b offsets read off torch.nn.BatchNorm2d in train mode = core", "instances",
                 torch_diff <= tol * max(1.0, float(np.max(np.abs(off_tb)))), max_abs_difference=torch_diff)
        torch_pad = torch_reference_check(conv_p, bn_p, x)
        ev.check("C10b offsets with zero padding 1 read off torch.nn.Conv2d(padding=1) + BatchNorm2d = core",
                 "instances", torch_pad <= tol * max(1.0, float(np.max(np.abs(off_tb_p)))),
                 max_abs_difference=torch_pad)
    ev.numbers.update({"images": len(x), "median_distance": float(np.median(dist_tb)),
                       "max_distance": float(dist_tb.max()), "min_distance": float(dist_tb.min()),
                       "fraction_off_centroid": frac_off, "torch_max_abs_difference": torch_diff})
    ev.says(f"verified on {len(x)} digits × {off_tb.size} neurons (textbook loops"
            + (", torch BatchNorm2d" if torch_diff is not None else "") + f"); reference sets miss x̄ at "
            f"{100 * frac_off:.0f} % of positions (median distance {np.median(dist_tb):.3f}, centroid norm "
            f"{np.linalg.norm(xbar):.2f}); constant centroid: all through x̄ (max {const_max:.1e}); with zero "
            f"padding even a constant centroid gives distances up to {np.nanmax(padded):.2f} at the border")
    return ev
