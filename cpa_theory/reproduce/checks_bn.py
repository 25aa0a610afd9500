"""Checks of the one-neuron BN claims C1 (bias independence), C2 (reference hyperplane), C3 (translates).

The evidence comes from the textbook batch computation (``oracles_textbook``), which reads the raw bias b;
the code under test is the core's conditioned network (``Network.condition`` → ``bn.condition_bn``) and its
switching hyperplanes (``hyperplanes.switching_hyperplanes``). A mutation of the core (σ² with the unbiased
divisor, b not cancelled, τ without /γ, a wrong anchor) makes these checks fail (tests/test_reproduce.py).
"""

from __future__ import annotations

import numpy as np

from ..bn import BatchNorm
from ..hyperplanes import switching_hyperplanes
from ..network import Layer, Network
from ..tolerances import BATCH_FORMULA_RTOL
from . import oracles_textbook as tb
from .common import Context, Evidence, least, random_mlp, symbolic, with_biases, worst

__all__ = ["check_c1", "check_c2", "check_c3"]


def _rel(a, b) -> float:
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


def check_c1(ctx: Context) -> Evidence:
    from ..activations import hardtanh, relu

    ev = Evidence()
    symbolic(ev, ctx, ("C1", "C1-unbiased"), ("C1-neg",))
    rng = ctx.rng("C1")
    core_vs_tb, tb_redraw, core_redraw, eval_change = 0.0, 0.0, 0.0, np.inf
    nets = ctx.size["nets"]
    for j in range(nets):
        act = relu() if j % 2 else hardtanh()
        X = rng.normal(size=(200, 3)) * 2 + 5.0
        net = random_mlp(rng, (3, 8, 8, 1), act, gamma="random", beta="random", offset=5.0)
        y_tb = tb.batch_forward(net, X)  # textbook: z = Wx + b over the batch, μ, biased σ², with b
        core_vs_tb = worst(core_vs_tb, _rel(net.forward(X), y_tb))
        redrawn = with_biases(net, rng, 10.0, only_bn=True)
        tb_redraw = worst(tb_redraw, _rel(tb.batch_forward(redrawn, X), y_tb))
        core_redraw = worst(core_redraw, _rel(redrawn.forward(X), y_tb))
        # the same redraw in eval mode (running statistics): the textbook outputs must move
        ev_net = random_mlp(rng, (3, 8, 8, 1), act, mode="eval", gamma="random", beta="random")
        e0 = tb.batch_forward(ev_net, X)
        eval_change = least(eval_change, _rel(tb.batch_forward(with_biases(ev_net, rng, 10.0, only_bn=True), X), e0))
    tol = BATCH_FORMULA_RTOL
    ev.check("core forward = textbook batch forward (z = Wx + b, μ, biased σ², raw b included)", "instances",
             core_vs_tb <= tol, max_relative_difference=core_vs_tb, tolerance=tol, networks=nets)
    ev.check("textbook forward: redrawing every BN layer's raw bias (σ = 10) leaves the outputs unchanged",
             "instances", tb_redraw <= tol, max_relative_change=tb_redraw)
    ev.check("core forward after the redraw = textbook forward before it", "instances", core_redraw <= tol,
             max_relative_difference=core_redraw)
    ev.negative("eval-mode BN (running statistics): the same redraw changes the textbook outputs",
                eval_change > 1e3 * tol, min_over_networks_relative_change=eval_change)
    ev.says(f"verified on {nets} random deep networks (textbook batch forward with b; worst relative change "
            f"{tb_redraw:.1e}); positive control: eval mode moves by ≥ {eval_change:.2g}")
    ev.numbers = {"core_vs_textbook": core_vs_tb, "train_max_relative_change": tb_redraw,
                  "eval_min_relative_change": eval_change}
    return ev


def check_c2(ctx: Context) -> Evidence:
    from ..activations import relu

    ev = Evidence()
    symbolic(ev, ctx, ("C2", "C2-unbiased"), ("C2-neg", "C2-neg-running-mean"))
    rng = ctx.rng("C2")
    worst_tb, worst_core, worst_hp, eval_gap = 0.0, 0.0, 0.0, np.inf
    nets = ctx.size["nets"]
    for _ in range(nets):
        d, n = int(rng.integers(2, 6)), 32
        X = rng.normal(size=(16, d)) + 100.0 * rng.normal(size=d)  # data far from the origin
        W, b = rng.normal(size=(n, d)), rng.normal(size=n) * 50
        gamma, beta = rng.uniform(0.5, 2, n) * rng.choice([-1.0, 1.0], n), rng.normal(size=n)
        xbar = X.mean(0)
        net = Network(d, (Layer(W, b, relu(), BatchNorm(n, "train", gamma, beta)),), X)
        worst_tb = worst(worst_tb, float(np.max(np.abs(tb.layer_preactivation(net, xbar[None], 0)[0] - beta))))
        worst_core = worst(worst_core, float(np.max(np.abs(net.condition().preactivations(xbar[None])[0][0] - beta))))
        # the core's reference hyperplane (offset at t = β) must contain x̄: measured by the textbook ẑ at its
        # anchor point, which must be x̄
        net0 = Network(d, (Layer(W, b, relu(), BatchNorm(n, "train", gamma, gamma * 0)),), X)
        hp = switching_hyperplanes(net0)
        on_ref = hp.anchor + (hp.offsets[:, 0] / np.sum(W * W, 1))[:, None] * W  # foot points of H_ref
        worst_hp = worst(worst_hp, float(np.max(np.abs(np.sum(W * (on_ref - xbar), 1)))))
        run_mean = W @ (xbar + rng.normal(size=d)) + b  # a running mean that is not this batch's mean
        ev_net = Network(d, (Layer(W, b, relu(), BatchNorm(n, "eval", gamma, beta, running_mean=run_mean,
                                                           running_var=np.ones(n))),))
        eval_gap = least(eval_gap, float(np.max(np.abs(tb.layer_preactivation(ev_net, xbar[None], 0)[0] - beta))))
    tol = BATCH_FORMULA_RTOL * 100.0 * 50.0  # relative tolerance times the scale of |z| (data at 100, b ~ 50)
    ev.check("textbook: ẑ(x̄) = β for every neuron (data at 100, |b| ~ 50)", "instances", worst_tb <= tol,
             max_abs_deviation=worst_tb, tolerance=tol)
    ev.check("core: ẑ(x̄) = β and the core's H_ref passes through x̄", "instances",
             worst(worst_core, worst_hp) <= tol, max_abs_deviation=worst_core, ref_residual=worst_hp)
    ev.negative("eval mode with a foreign running mean: ẑ(x̄) ≠ β", eval_gap > tol, min_max_deviation=eval_gap)
    ev.says(f"verified on {nets} layers of 32 neurons with data far from 0 (worst |ẑ(x̄) − β| = "
            f"{max(worst_tb, worst_core):.1e})")
    return ev


def check_c3(ctx: Context) -> Evidence:
    """The core's switching hyperplanes are placed by the core (offsets s·τ); the evidence is the textbook ẑ at
    points ON them, which must equal t_k; τ is recomputed by hand only to build the mutated negative."""
    from ..activations import hardtanh

    ev = Evidence()
    symbolic(ev, ctx, ("C3",), ("C3-neg", "C3-unbiased-neg"))
    rng = ctx.rng("C3")
    t = hardtanh().breakpoints_array
    worst_on, worst_tau, worst_mut = 0.0, 0.0, np.inf
    side = {"points": 0, "agree": 0, "by_sign_of_normal_agree": 0, "gamma_negative": 0}
    nets = ctx.size["nets"]
    for _ in range(nets):
        d, n = 3, 16
        X = rng.normal(size=(12, d)) * 2 + 20
        W, b = rng.normal(size=(n, d)), rng.normal(size=n) * 3
        gamma = rng.uniform(0.5, 2, n) * rng.choice([-1.0, 1.0], n)
        beta = rng.normal(size=n) * 0.3
        net = Network(d, (Layer(W, b, hardtanh(), BatchNorm(n, "train", gamma, beta)),), X)
        hp = switching_hyperplanes(net)
        wn2 = np.sum(W * W, 1)
        for k in range(t.size):
            v = rng.normal(size=(n, d))
            v -= (np.sum(v * W, 1) / wn2)[:, None] * W  # any direction inside the hyperplane
            pts = hp.anchor + (hp.offsets[:, k] / wn2)[:, None] * W + v  # points of the CORE's H_k
            z = np.array([tb.layer_preactivation(net, pts[i:i + 1], 0)[0, i] for i in range(n)])
            worst_on = worst(worst_on, float(np.max(np.abs(z - t[k]))))
            # negative: the textbook places H_k with τ = t − β (no /γ); the points then miss ẑ = t_k
            s = np.sqrt(np.var((X - X.mean(0)) @ W.T, axis=0) + 1e-5)
            pts_m = X.mean(0) + (s * (t[k] - beta) / wn2)[:, None] * W
            zm = np.array([tb.layer_preactivation(net, pts_m[i:i + 1], 0)[0, i] for i in range(n)])
            worst_mut = least(worst_mut, float(np.max(np.abs(zm - t[k]))))
        # sides: which piece a point is in comes from the value of ẑ (THEORY C3: γ < 0 flips the sides); the
        # core's activation code off the hyperplanes against the textbook ẑ's piece, and the mutated rule
        # "piece k+1 on the side where wᵀ(x − x̄) > s τ_k" (the sign of aᵀx − c) that γ < 0 breaks
        cond = net.condition()
        for _ in range(4):
            q = hp.anchor + rng.normal(size=(8, d)) * rng.uniform(0.05, 2.0)
            code = cond.activation_code(q)[0]  # (8, n) piece index per neuron
            z = tb.layer_preactivation(net, q, 0)  # (8, n)
            tb_piece = np.searchsorted(t, z, side="right")
            far = np.min(np.abs(z[..., None] - t), axis=-1) > 1e-9  # off every breakpoint set
            by_sign = np.sum((((q - hp.anchor) @ W.T)[..., None] > hp.offsets[None]), axis=-1)
            side["points"] += int(far.sum())
            side["agree"] += int(np.sum((code == tb_piece) & far))
            side["by_sign_of_normal_agree"] += int(np.sum((by_sign == tb_piece) & far))
            side["gamma_negative"] += int(np.sum(far[:, gamma < 0]))
        # τ from the core does not depend on b, on a rescaled w, or on the batch
        others = [Network(d, (Layer(W * 3.0, b + 7, hardtanh(), BatchNorm(n, "train", gamma, beta)),), X * 0.5 - 4),
                  Network(d, (Layer(rng.normal(size=(n, d)), -b, hardtanh(), BatchNorm(n, "train", gamma, beta)),),
                          rng.normal(size=(9, d)))]
        worst_tau = worst(worst_tau, *[float(np.max(np.abs(switching_hyperplanes(o).tau - hp.tau))) for o in others])
    tol = BATCH_FORMULA_RTOL * 1e3
    ev.check("points on the core's H_k have textbook ẑ = t_k (hard-tanh, γ of both signs)", "instances",
             worst_on <= tol, max_abs_deviation=worst_on, tolerance=tol)
    ev.check("τ_k unchanged under new b, rescaled w, another batch", "instances", worst_tau <= 1e-12,
             max_abs_change=worst_tau)
    ev.check("sides: the core's piece off the hyperplanes = the piece of the textbook ẑ (γ of both signs)",
             "instances", side["points"] > 0 and side["gamma_negative"] > 0 and side["agree"] == side["points"],
             **side)
    ev.negative("mutated side rule (piece from the sign of wᵀ(x − x̄) − s τ_k) disagrees where γ < 0",
                side["by_sign_of_normal_agree"] < side["points"], points=side["points"],
                agree=side["by_sign_of_normal_agree"])
    ev.negative("mutated τ = t − β (no /γ): the placed points miss ẑ = t_k", worst_mut > tol,
                min_max_deviation=worst_mut)
    ev.says(f"verified on {nets} layers × {t.size} breakpoints × 16 neurons (worst |ẑ − t_k| = {worst_on:.1e})")
    return ev
