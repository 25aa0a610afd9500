"""Check of C9 (transfer inside parent regions), in THEORY §5's general case.

On a parent region P (W ⊆ P certified) the layer-2 input is h = A_P x + c_P. The TEXTBOOK side
(``oracles_textbook``) measures A_P and c_P by forward passes (the map is affine on P ⊇ W), takes h̄, s, τ from
the textbook batch computation, the least-squares pull-back x*_P and y⊥ = (h̄ − c_P) − A_P x*_P
(``numpy.linalg.lstsq``), and the transfer defect δ_w = wᵀy⊥/s. The general criterion
|wᵀA_P(x0 − x*_P) − s(τ + δ_w)| < r‖A_Pᵀw‖₁ is checked against (i) the textbook hits (ẑ₂ at the window's
corners), (ii) the core's deep hits and pull-back (``hyperplanes``), (iii) exact certified counts through
the d = 2 Euler count N = 1 + h + #crossings inside W. Exact transfer (δ_w = 0: h̄ − c_P ∈ range A_P) is
claimed only where it is certified, and how often that happens is reported (random width-8 networks,
trained networks, and square first layers where it holds by construction).
"""

from __future__ import annotations

import numpy as np

from .. import closed_forms as cf
from .. import hyperplanes as hyp
from ..bn import BatchNorm
from ..network import Layer, Network
from ..regions import count_regions
from ..tolerances import PULLBACK_RTOL
from ..windows import window_hits
from . import oracles_textbook as tb
from .common import Context, Evidence, symbolic

__all__ = ["check_c9", "pullback_instance", "parent_geometry", "deep_instance"]


def deep_instance(rng, d: int = 2, widths=(8, 8), act2=None) -> Network:
    """A d-widths-1 network, train-mode BN on both hidden layers (layer 2: γ = 1, β = 0 by default)."""
    from ..activations import identity, leaky_relu, relu

    X = rng.normal(size=(16, d))
    n1, n2 = widths
    l1 = Layer(rng.normal(size=(n1, d)) / np.sqrt(d), rng.normal(size=n1), leaky_relu(0.2),
               BatchNorm(n1, "train", rng.uniform(0.5, 2, n1), rng.normal(size=n1) * 0.3))
    l2 = Layer(rng.normal(size=(n2, n1)) / np.sqrt(n1), rng.normal(size=n2), act2 or relu(), BatchNorm(n2, "train"))
    return Network(d, (l1, l2, Layer(np.ones((1, n2)), np.zeros(1), identity(), None)), X)


def parent_geometry(net: Network, x0, r: float) -> dict:
    """Textbook C9 quantities at a window W(x0, r) inside one parent region (layer-2 switching sets)."""
    d = net.input_dim
    L1 = net.layers[0]
    h = lambda x: L1.activation(tb.layer_preactivation(net, np.atleast_2d(x), 0))  # noqa: E731
    eps = r / 2
    h0 = h(x0)[0]
    A = np.stack([(h(x0 + eps * e)[0] - h0) / eps for e in np.eye(d)], axis=1)  # affine on P ⊇ W
    c = h0 - A @ x0
    Hb = L1.activation(tb.layer_preactivation(net, net.batch, 0))
    hbar = Hb.mean(0)
    L2 = net.layers[1]
    Zb = Hb @ L2.weight.T + L2.bias
    s = np.sqrt(((Zb - Zb.mean(0)) ** 2).mean(0) + L2.batchnorm.eps)
    t = L2.activation.breakpoints_array
    tau = (t[None, :] - L2.batchnorm.beta[:, None]) / L2.batchnorm.gamma[:, None]
    x_star, y_perp = tb.lstsq_pullback(A, hbar - c)
    delta = (L2.weight @ y_perp) / s  # transfer defect δ_w per neuron
    normals = L2.weight @ A  # rows A_Pᵀw
    resid = (normals @ (x0 - x_star))[:, None] - s[:, None] * (tau + delta[:, None])
    hits_general = int((np.abs(resid) < r * np.abs(normals).sum(1)[:, None]).sum())
    resid0 = (normals @ (x0 - x_star))[:, None] - s[:, None] * tau  # mutated: the defect dropped
    hits_no_defect = int((np.abs(resid0) < r * np.abs(normals).sum(1)[:, None]).sum())
    rhs = s[:, None] * tau + (L2.weight @ (hbar - c))[:, None]  # (A_Pᵀw)ᵀx = sτ + wᵀ(h̄ − c_P)
    corners = tb.box_corners(x0, r)
    z2 = tb.layer_preactivation(net, corners, 1)
    hits_tb = int(sum(tb.corner_cut(z2, tk).sum() for tk in t))
    cut = np.abs(resid) < r * np.abs(normals).sum(1)[:, None]
    scale = np.linalg.norm(hbar - c) + np.linalg.norm(A) * np.linalg.norm(x_star) + 1.0
    return {"A": A, "c": c, "hbar": hbar, "x_star": x_star, "y_perp_norm": float(np.linalg.norm(y_perp)),
            "delta": delta, "s": s, "tau": tau, "hits_general": hits_general, "hits_textbook": hits_tb,
            "hits_no_defect": hits_no_defect,
            "exact_transfer": bool(np.linalg.matrix_rank(A) == d
                                   and np.linalg.norm(y_perp) <= PULLBACK_RTOL * scale),
            "lines": (np.repeat(normals, t.size, axis=0)[cut.ravel()], rhs.ravel()[cut.ravel()])}


def pullback_instance(rng, d: int = 3, n2: int = 8) -> tuple[Network, np.ndarray]:
    """A SQUARE first layer (d-d-n2-1; leaky ReLU then ReLU; BN γ = 1, β = 0 on layer 2), where exact transfer
    holds by construction (A_P invertible), and the pull-back x*_P of h̄ in the parent region containing it.
    For wider first layers see :func:`parent_geometry` (least-squares pull-back, transfer defect)."""
    from ..activations import identity, leaky_relu, relu

    X = rng.normal(size=(16, d))
    l1 = Layer(rng.normal(size=(d, d)), rng.normal(size=d), leaky_relu(0.2),
               BatchNorm(d, "train", rng.uniform(0.5, 2, d), rng.normal(size=d) * 0.3))
    l2 = Layer(rng.normal(size=(n2, d)), rng.normal(size=n2), relu(), BatchNorm(n2, "train"))
    net = Network(d, (l1, l2, Layer(np.ones((1, n2)), np.zeros(1), identity(), None)), X)
    cond = net.condition()
    hbar, b1 = cond.layers[1].bn.anchor, cond.layers[0].bn
    z_target = np.where(hbar > 0, hbar, hbar / 0.2)  # leaky ReLU is invertible
    return net, b1.anchor + np.linalg.solve(b1.gain[:, None] * l1.weight, z_target - b1.shift)


def _trained_deltas(ctx) -> dict:
    """δ_w over the parent regions of the batch points of a BN MLP trained on moons (width 16 > d = 2)."""
    from numerics.training import TrainConfig, checkpoint_networks, train

    from .realdata import _moons_data

    rng = ctx.rng("C9-trained")
    X, y = _moons_data()
    steps = ctx.size["c9_train_steps"]
    cfg = TrainConfig(widths=(2, 16, 16, 2), batchnorm=True, steps=steps, checkpoints=(steps,))
    ck = train(ctx.key("C9-trained"), X, y, cfg)[-1]
    net = checkpoint_networks(ck, cfg, X[rng.choice(len(X), 32, replace=False)])["train"]
    deltas, exact = [], 0
    for x0 in net.batch[:16]:
        g = parent_geometry(net, x0, 1e-4)
        deltas += list(np.abs(g["delta"]))
        exact += int(g["exact_transfer"])
    return {"abs_delta": deltas, "exact_transfer": exact, "regions": 16, "steps": steps, "accuracy": ck.accuracy}


def _quantiles(x) -> dict:
    x = np.asarray(x)
    return {k: float(np.quantile(x, q)) for k, q in (("min", 0), ("q10", .1), ("median", .5), ("q90", .9),
                                                        ("max", 1))}


def _constant_on_parent(rng, nets: int) -> dict:
    """THEORY C9: "if A_Pᵀw = 0 the neuron is constant on P: report it". First layer ReLU; on a window W ⊆ P some
    layer-1 neurons are off on all of P (rows of A_P exactly 0), so a layer-2 weight supported on them has
    A_Pᵀw = 0 exactly. The core must give it status CONSTANT and no hit; the textbook ẑ₂ at the corners of W is
    one value; the control neuron (weight on an active layer-1 neuron) is REGULAR."""
    from numerics.certificates import window_inside_parent_region

    from ..activations import identity, relu

    out = {"windows": 0, "constant_reported": 0, "textbook_constant": 0, "control_regular": 0, "on_breakpoint": 0}
    for _ in range(nets):
        d, n1 = 2, 8
        X = rng.normal(size=(16, d))
        W1, b1 = rng.normal(size=(n1, d)), rng.normal(size=n1)
        for x0 in X[:8]:
            r = 0.05
            z1 = W1 @ x0 + b1  # no BN on layer 1: ReLU is off where z1 < 0
            off, on = np.flatnonzero(z1 < -2 * r * np.abs(W1).sum(1)), np.flatnonzero(z1 > 0)
            if not len(off) or not len(on):
                continue
            W2 = rng.normal(size=(3, n1))
            W2[0] = 0.0
            W2[0, off] = rng.normal(size=len(off))  # reads only ReLUs that are off on W's parent
            W2[1] = 0.0
            W2[1, on[0]] = 1.0  # control: reads an active ReLU
            net = Network(d, (Layer(W1, b1, relu()), Layer(W2, rng.normal(size=3), relu(), BatchNorm(3, "train")),
                              Layer(np.ones((1, 3)), np.zeros(1), identity())), X)
            cond = net.condition()
            if not window_inside_parent_region(cond, x0, r, 1):
                continue
            A, c = cond.affine_map(x0, 1)
            hp = hyp.switching_hyperplanes(cond, 1, affine=(A, c))
            z2 = tb.layer_preactivation(net, tb.box_corners(x0, r), 1)[:, 0]
            out["windows"] += 1
            # on the breakpoint when the ReLUs it reads are off on the whole batch too: zero variance and ẑ₂ = β = t
            # everywhere on P (THEORY C3's degenerate case; decided on the batch, not on a rounded ẑ₂)
            dead = np.all(np.maximum(X @ W1.T + b1, 0.0)[:, off] == 0.0)
            want = hyp.HyperplaneStatus.ON_BREAKPOINT if dead else hyp.HyperplaneStatus.CONSTANT
            out["constant_reported"] += int(hp.status[0, 0] == want and not hp.regular[0, 0])
            out["on_breakpoint"] += int(want == hyp.HyperplaneStatus.ON_BREAKPOINT)
            out["textbook_constant"] += int(np.all(z2 == z2[0]))
            out["control_regular"] += int(hp.status[1, 0] == hyp.HyperplaneStatus.REGULAR)
    return out


def check_c9(ctx: Context) -> Evidence:
    from numerics.certificates import injective, window_inside_parent_region

    ev = Evidence()
    symbolic(ev, ctx, ("C9", "C9-general"), ("C9-neg", "C9-neg-range"))
    rng = ctx.rng("C9")
    rows, deltas = [], []
    regions = exact_regions = 0
    for _ in range(ctx.size["nets"]):
        net = deep_instance(rng)
        cond = net.condition()
        for x0 in net.batch[:8] + rng.normal(size=(8, 2)) * 0.1:
            # the largest radius whose window stays inside its parent region: layer-2 sets then cross inside W
            # often enough that the Euler count below exercises its crossing term (at r = 0.05 alone: none)
            r = next((r for r in (0.4, 0.2, 0.1, 0.05) if window_inside_parent_region(cond, x0, r, 1)), None)
            if r is None:
                continue
            g = parent_geometry(net, x0, r)
            regions += 1
            exact_regions += int(g["exact_transfer"])
            deltas += list(np.abs(g["delta"]))
            # the core: deep hits (normal A_Pᵀw) and its pull-back
            A_core, c_core = cond.affine_map(x0, 1)
            hp = hyp.switching_hyperplanes(cond, 1, affine=(A_core, c_core))
            h_core = int(window_hits(hp, x0[None], r)[0])
            y_core, _ = hyp.pullback_anchors(A_core[None], (cond.layers[1].bn.anchor - c_core)[None])
            res = count_regions(net, x0, r)
            normals, rhs = g["lines"]
            crossings = tb.segment_crossings_2d(normals, rhs, x0, r)
            lo, hi = cf.o1_bounds(cf.distinct_hyperplanes(normals, rhs[:, None]), 2)
            rows.append({"hits_general": g["hits_general"], "hits_textbook": g["hits_textbook"], "hits_core": h_core,
                         "pullback_error": float(np.linalg.norm(y_core[0] - g["x_star"])
                                                 / (1 + np.linalg.norm(g["x_star"]))),
                         "N": res.regions, "euler": 1 + g["hits_general"] + crossings, "crossings": crossings,
                         "radius": r,
                         "hits_no_defect": g["hits_no_defect"], "o1": [lo, hi],
                         "certified": res.certified, "max_abs_delta": float(np.max(np.abs(g["delta"])))})
    # square first layers: exact transfer certified, C5 inside P (N = O3 at the pull-back)
    sq = []
    for _ in range(max(2, ctx.size["nets"] // 2)):
        net, x_star = pullback_instance(rng, 3, 8)
        cond = net.condition()
        A, c = cond.affine_map(x_star, 1)
        hp2 = hyp.switching_hyperplanes(cond, 1, affine=(A, c))
        g_inside = window_inside_parent_region(cond, x_star, 0.02, 1)
        sq.append({"injective": injective(A), "W_inside_P": g_inside, "anchor_is_pullback": hp2.anchor_is_pullback,
                   "N": count_regions(net, x_star, 0.02).regions, "O3": cf.o3(8, 3),
                   "h2": int(window_hits(hp2, x_star[None], 0.02)[0])})
    const = _constant_on_parent(rng, max(2, ctx.size["nets"] // 2))
    trained = _trained_deltas(ctx)
    ev.check("general criterion (least-squares x*_P, offset τ + δ_w) = textbook hits (ẑ₂ at the corners) = core "
             "deep hits, on every certified window W ⊆ P (width 8 > d = 2)", "instances",
             len(rows) > 0 and all(r_["hits_general"] == r_["hits_textbook"] == r_["hits_core"] for r_ in rows),
             windows=len(rows))
    ev.check("exact certified counts: N = 1 + h + #crossings inside W (d = 2 Euler count of the general-case "
             "lines, its crossing term exercised) and O1 with distinct hyperplanes", "exact-count",
             all(r_["N"] == r_["euler"] and r_["o1"][0] <= r_["N"] <= r_["o1"][1] and r_["certified"] for r_ in rows)
             and sum(r_["crossings"] for r_ in rows) > 0,
             windows=len(rows), N=[r_["N"] for r_ in rows], hits=sum(r_["hits_general"] for r_ in rows),
             crossings=sum(r_["crossings"] for r_ in rows), radii=sorted({r_["radius"] for r_ in rows}))
    ev.check("core pull-back x*_P = least-squares pull-back (numpy lstsq)", "instances",
             all(r_["pullback_error"] <= 1e-8 for r_ in rows), max_relative_error=max(r_["pullback_error"]
                                                                                      for r_ in rows))
    ev.check("exact transfer where certified (square first layer: A_P injective, h̄ − c_P ∈ range A_P, W ⊆ P): "
             "h₂ = n₂ and N = O3 at x*_P", "exact-count",
             all(s_["injective"] and s_["W_inside_P"] and s_["anchor_is_pullback"] and s_["h2"] == 8
                 and s_["N"] == s_["O3"] for s_ in sq), instances=sq)
    ev.check("A_Pᵀw = 0 is reported: a layer-2 neuron reading only layer-1 ReLUs that are off on P is CONSTANT in "
             "the core (ON_BREAKPOINT where that constant is t; no switching set, no hit) and the textbook ẑ₂ takes "
             "one value on W; the same neuron reading an active ReLU is REGULAR", "instances",
             const["windows"] > 0 and const["constant_reported"] == const["textbook_constant"] == const["windows"]
             and const["control_regular"] == const["windows"], **const)
    ev.negative("'transfer is exact' (δ_w = 0) on wide layers: refuted, |δ_w| > 0 on random width-8 parents",
                regions > exact_regions and max(deltas) > 1e-6, exact_on=exact_regions, of=regions)
    mutated_wrong = sum(int(r_["hits_textbook"] != r_["hits_no_defect"]) for r_ in rows)
    ev.negative("dropping the defect (offset τ instead of τ + δ_w) mispredicts the hits", mutated_wrong > 0,
                windows=len(rows), wrong=mutated_wrong)
    ev.numbers = {"abs_delta_random": _quantiles(deltas), "exact_transfer_random": [exact_regions, regions],
                  "abs_delta_trained": _quantiles(trained["abs_delta"]),
                  "exact_transfer_trained": [trained["exact_transfer"], trained["regions"]],
                  "trained_accuracy": trained["accuracy"]}
    ev.says(f"general case verified on {len(rows)} certified windows of random width-8 networks (exact counts = "
            f"Euler count of the general-case lines); exact transfer certified on {exact_regions} of {regions} "
            f"random parent regions and {trained['exact_transfer']} of {trained['regions']} trained ones "
            f"(median |δ_w| {np.median(deltas):.3g} random, {np.median(trained['abs_delta']):.3g} trained), "
            f"and on {len(sq)} of {len(sq)} square first layers")
    return ev
