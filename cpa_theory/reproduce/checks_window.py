"""Checks of the window criterion C4 and of general CPA activations C8.

C4: the core's criterion (``windows.window_relations``) against the range of aᵀx over the window computed by
cvxpy LPs (HiGHS for the ℓ∞ box and ℓ1, Clarabel for ℓ2) — ℓ∞ is the paper's box, ℓ2 is the Hölder form.
C8: the spacing of the K parallel switching sets MEASURED geometrically — ẑ = t_k located along the normal
by forward passes of the textbook batch computation and root finding — against the statement's formula
and against the core's hyperplanes; O4 in d = 1 from the located breakpoints; C6 with K per neuron against
the exact E[h_plain].
"""

from __future__ import annotations

import numpy as np

from .. import closed_forms as cf
from ..hyperplanes import switching_hyperplanes
from ..regions import count_regions
from ..tolerances import LP_FEASIBILITY_TOL
from ..windows import WindowRelation, dual_norm, window_relations
from . import oracles_textbook as tb
from .common import Context, Evidence, least, random_mlp, symbolic, worst

__all__ = ["check_c4", "check_c8"]


def check_c4(ctx: Context) -> Evidence:
    from numerics.certificates import affine_range_over_window

    from ..activations import hardtanh

    ev = Evidence()
    symbolic(ev, ctx, ("C4", "C4-holder"), ("C4-neg",))
    rng = ctx.rng("C4")
    stats = {p: {"agree": 0, "total": 0, "l2_mutant_disagree": 0} for p in (np.inf, 2.0)}
    for j in range(ctx.size["nets"]):
        d = 2 + j % 4
        # data off the origin (mean ~ ±10 per coordinate), so a criterion that drops the anchor x̄ is far off
        net = random_mlp(rng, (d, 12, 1), hardtanh(), gamma="random", beta="random",
                         offset=10.0 * rng.choice([-1.0, 1.0], d))
        hp = switching_hyperplanes(net)
        x0 = net.batch.mean(0) + rng.normal(size=d) * 0.7
        r = float(rng.uniform(0.1, 0.8))
        for p in (np.inf, 2.0):
            rel = window_relations(hp, x0[None], r, p)[0]  # the core's decision
            resid = (x0 - hp.anchor) @ hp.normals.T
            # mutated statement: ‖a‖₂ for the box, ‖a‖_∞ for the ℓ2 ball (neither is the dual norm)
            mut_norm = dual_norm(hp.normals, 2.0) if p == np.inf else np.max(np.abs(hp.normals), 1)
            for i in range(hp.normals.shape[0]):
                rng_lp = affine_range_over_window(hp.normals[i], x0, r, p)
                for k in range(hp.offsets.shape[1]):
                    c = hp.normals[i] @ hp.anchor + hp.offsets[i, k]
                    margin = 10 * LP_FEASIBILITY_TOL * (1 + abs(c))
                    lp_cut = rng_lp.minimum + margin < c < rng_lp.maximum - margin
                    lp_miss = c < rng_lp.minimum - margin or c > rng_lp.maximum + margin
                    if not (lp_cut or lp_miss):
                        continue  # within the solver's tolerance of a touch: the LP cannot decide
                    st = stats[p]
                    st["total"] += 1
                    st["agree"] += int((rel[i, k] == WindowRelation.CUTS) == lp_cut)
                    mut_cut = abs(resid[i] - hp.offsets[i, k]) < r * mut_norm[i]
                    st["l2_mutant_disagree"] += int(mut_cut != lp_cut)
    box, ball = stats[np.inf], stats[2.0]
    ev.check("ℓ∞ box: core criterion = LP range of aᵀx (cvxpy/HiGHS) on every decidable pair", "certificate",
             box["agree"] == box["total"] > 0, pairs=box["total"], agreements=box["agree"])
    ev.check("ℓ2 ball (Hölder, dual norm ‖a‖₂): core criterion = conic range (cvxpy/Clarabel)", "certificate",
             ball["agree"] == ball["total"] > 0, pairs=ball["total"], agreements=ball["agree"])
    ev.negative("‖a‖₂ in place of ‖a‖₁ for the box (and ‖a‖_∞ for the ball) disagrees with the LP",
                box["l2_mutant_disagree"] > 0 and ball["l2_mutant_disagree"] > 0,
                box_disagreements=box["l2_mutant_disagree"], ball_disagreements=ball["l2_mutant_disagree"])
    touch = _c4_touching_windows(rng, ctx.size["nets"])
    ev.check("strictness: windows built so that a switching set passes exactly through a corner or along a face "
             "(data mean 100) — core = exact corner enumeration (rationals) on every pair, touches included",
             "certificate", touch["agree"] == touch["total"] and touch["touches"] > 0, pairs=touch["total"],
             agreements=touch["agree"], touches=touch["touches"], touches_found_by_core=touch["core_touches"])
    ev.negative("'meets' (≤) in place of 'cuts' (<) disagrees with the corner enumeration on the touching pairs",
                touch["nonstrict_mutant_disagree"] > 0, disagreements=touch["nonstrict_mutant_disagree"])
    ev.says(f"certified against LP ranges on {box['total']} (box) + {ball['total']} (ℓ2 ball) hyperplane/window "
            f"pairs, all agreeing; {touch['touches']} exact touches (corner or face) classified as touching, not "
            "cutting")
    return ev


def _c4_touching_windows(rng, nets: int) -> dict:
    """Windows that a switching set touches exactly. ReLU with β = 0 puts every reference hyperplane through the
    centroid x̄ (offset 0); with dyadic data (batch of 8 points on a 1/8 grid near 100, so x̄ and x̄ ± r are exact
    in float64) the box W(x̄ + r·sign(w_i), r) has x̄ as a corner, which neuron i's hyperplane touches; a weight
    row e_1 touches a whole face. Every (neuron, window) pair is compared with the textbook corner enumeration
    (:func:`oracles_textbook.box_relation_exact`)."""
    from fractions import Fraction as F

    from ..activations import relu
    from ..bn import BatchNorm
    from ..network import Layer, Network

    out = {"agree": 0, "total": 0, "touches": 0, "core_touches": 0, "nonstrict_mutant_disagree": 0}
    for j in range(max(2, nets // 2)):
        d, n, r = 2 + j % 3, 6, 0.25
        W = rng.integers(-4, 5, size=(n, d)).astype(np.float64)
        W[W.sum(1) == 0, 0] += 1.0
        W[0] = np.eye(d)[0]  # a face
        batch = 100.0 + rng.integers(-16, 17, size=(8, d)) / 8.0
        net = Network(d, (Layer(W, rng.normal(size=n), relu(), BatchNorm(n, "train", np.ones(n), np.zeros(n))),
                          Layer(np.ones((1, n)), [0.0], relu())), batch)
        hp = switching_hyperplanes(net)
        xbar = hp.anchor
        centers = [xbar + r * np.where(W[i] >= 0, 1.0, -1.0) for i in range(n)] + [xbar + r * rng.uniform(-1, 1, d)]
        rel = window_relations(hp, np.array(centers), r)
        for m, x0 in enumerate(centers):
            for i in range(n):
                c = sum(F(float(a)) * F(float(q)) for a, q in zip(hp.normals[i], xbar)) + F(float(hp.offsets[i, 0]))
                truth = tb.box_relation_exact(hp.normals[i], c, x0, r)
                core = WindowRelation(int(rel[m, i, 0])).name.lower()
                out["total"] += 1
                out["agree"] += int(core == truth)
                out["touches"] += int(truth == "touches")
                out["core_touches"] += int(core == "touches")
                # the mutated statement "cuts iff |aᵀx0 − c| ≤ r‖a‖₁", decided exactly
                a = [F(float(v)) for v in hp.normals[i]]
                mut_cut = abs(sum(ai * F(float(v)) for ai, v in zip(a, x0)) - c) <= F(r) * sum(abs(v) for v in a)
                out["nonstrict_mutant_disagree"] += int(mut_cut != (truth == "cuts"))
    return out


def _c6_regions_with_k_breakpoints(rng, samples: int) -> dict:
    """THEORY C6 for K breakpoints: parallel hyperplanes of one neuron never meet, so by deletion–restriction
    N ≤ Σ_{k≤d} Σ_S Π_{i∈S} h_i over k-sets S of DISTINCT neurons (h_i: that neuron's hits), and with independent
    biases E[N] ≤ Σ_{k≤d} e_k(K·q). Exact counts of hard-tanh layers without BN (d = 2) against the textbook line
    count (both lines of every neuron), the chain on each instance, and the mean against the bound."""
    from numerics.stats import mean_ci95

    from ..activations import hardtanh, identity
    from ..network import Layer, Network

    n, d, r, sigma_b = 6, 2, 0.3, 1.0
    W = rng.normal(size=(n, d)) / np.sqrt(d)
    x0 = rng.normal(size=d) * 0.1
    t = hardtanh().breakpoints_array
    q = cf.c6_q(np.abs(W).sum(1), r, cf.gaussian_density_bound(sigma_b), breakpoints=len(t))
    out = {"instances": 0, "count_equals_textbook": 0, "chain_holds": 0, "non_generic": 0}
    Ns = []
    for _ in range(max(20, samples // 3)):
        b = rng.normal(size=n) * sigma_b
        net = Network(d, (Layer(W, b, hardtanh()), Layer(np.ones((1, n)), np.zeros(1), identity())))
        Ns.append(count_regions(net, x0, r).regions)
        # the lines w_iᵀx + b_i − t_k = 0, neuron by neuron
        lines_W, lines_b = np.repeat(W, len(t), axis=0), (b[:, None] - t[None, :]).ravel()
        tb_n = tb.line_regions_2d_exact(lines_W, lines_b, x0, r)
        if tb_n is None:
            out["non_generic"] += 1
            continue
        h = tb_n[1].reshape(n, len(t)).sum(1)  # hits per neuron (exact corner enumeration)
        e = cf.elementary_symmetric(h.astype(np.float64), d)
        out["instances"] += 1
        out["count_equals_textbook"] += int(Ns[-1] == tb_n[0])
        out["chain_holds"] += int(Ns[-1] <= float(np.sum(e)))
    m, ci = mean_ci95(Ns)
    out.update(E_N=m, E_N_ci95=ci, bound_N=float(cf.c6_bound_n(q, d)), samples=len(Ns))
    # d = 1, where the chain is tight: N = 1 + all breakpoints strictly inside W, and with σ_b ≫ |t_k|, r‖w‖₁ the
    # hit probabilities are close to K·q_i — a bound 10 % too small must be refuted by these counts
    n1, r1, s1 = 100, 0.5, 4.0
    w = rng.normal(size=n1)
    x1 = rng.normal() * 0.05
    q1 = cf.c6_q(np.abs(w), r1, cf.gaussian_density_bound(s1), breakpoints=len(t))
    N1, textbook = [], 0
    for _ in range(max(2 * samples, 300)):
        b = rng.normal(size=n1) * s1
        net = Network(1, (Layer(w[:, None], b, hardtanh()), Layer(np.ones((1, n1)), np.zeros(1), identity())))
        N1.append(count_regions(net, [x1], r1).regions)
        textbook += int(N1[-1] == 1 + int(np.sum(np.abs(w[:, None] * x1 + b[:, None] - t[None, :]) < r1 * np.abs(w)[:, None])))
    m1, ci1 = mean_ci95(N1)
    out["tight_d1"] = {"n": n1, "r": r1, "sigma_b": s1, "E_N": m1, "E_N_ci95": ci1, "samples": len(N1),
                       "bound_N": float(cf.c6_bound_n(q1, 1)), "counts_equal_textbook": textbook}
    return out


def _c8_activations():
    from ..activations import hardtanh, leaky_relu, relu6, spline

    return {"hardtanh": hardtanh(), "relu6": relu6(), "leaky_relu": leaky_relu(0.2),
            "spline": spline([-1.0, 0.5, 2.0], [0.0, 1.0, 0.5], 0.0, 1.0)}


def check_c8(ctx: Context) -> Evidence:
    ev = Evidence()
    symbolic(ev, ctx, ("C8",), ("C8-neg", "C8-neg-scale"))
    rng = ctx.rng("C8")
    worst_formula, worst_core, worst_order, mutated_gamma, mutated_signed = 0.0, 0.0, 0.0, np.inf, 0.0
    o4, pairs = [], 0
    for name, act in _c8_activations().items():
        t = act.breakpoints_array
        for _ in range(ctx.size["nets"]):
            net = random_mlp(rng, (3, 10, 1), act, gamma="random", beta="random")
            hp = switching_hyperplanes(net)
            L, X = net.layers[0], net.batch
            xbar = X.mean(0)
            s = np.sqrt(((X - xbar) @ L.weight.T).var(0) + L.batchnorm.eps)  # textbook s
            for i in range(L.weight.shape[0]):
                w = L.weight[i]
                u = w / np.linalg.norm(w)
                f = lambda x, i=i: tb.layer_preactivation(net, x[None], 0)[0, i]  # noqa: E731
                lam = np.array([tb.locate_level(f, tk, xbar, u) for tk in t])  # measured positions along ŵ
                core = (hp.anchor - xbar) @ u + hp.offsets[i] / np.linalg.norm(w)  # core's positions
                worst_core = worst(worst_core, float(np.max(np.abs(lam - core)) / (1 + np.max(np.abs(lam)))))
                g = L.batchnorm.gamma[i]
                for k in range(t.size - 1):
                    pairs += 1
                    want = s[i] * (t[k + 1] - t[k]) / (abs(g) * np.linalg.norm(w))
                    got = abs(lam[k + 1] - lam[k])
                    worst_formula = worst(worst_formula, abs(got - want) / want)
                    mutated_gamma = least(mutated_gamma, abs(got - s[i] * (t[k + 1] - t[k]) / (abs(g) * np.abs(w).sum()))
                                        / want)
                    # signed displacement along ŵ: γ < 0 reverses the breakpoints' order (THEORY C3/C8)
                    step = lam[k + 1] - lam[k]
                    worst_order = worst(worst_order, abs(step - want * abs(g) / g) / want)
                    mutated_signed = worst(mutated_signed, abs(step - want) / want)
            # O4 in d = 1: N = 1 + distinct breakpoint locations strictly inside the window, located by roots
            net1 = random_mlp(rng, (1, 6, 1), act, gamma="random", beta="random")
            x0, r = net1.batch.mean(0) + rng.normal(size=1) * 0.3, float(rng.uniform(0.2, 1.0))
            roots = []
            for i in range(6):
                f1 = lambda x, i=i: tb.layer_preactivation(net1, x[None], 0)[0, i]  # noqa: E731
                roots += [x0[0] + tb.locate_level(f1, tk, x0, np.ones(1)) for tk in t]
            inside = np.unique(np.round([q for q in roots if abs(q - x0[0]) < r], 12))
            o4.append((count_regions(net1, x0, r).regions, cf.o4(len(inside))))
    tol = 1e-8
    ev.check("measured spacing (ẑ = t_k located along ŵ by textbook forward passes + brentq) = "
             "s(t_{k+1} − t_k)/(|γ|‖w‖₂)", "instances", worst_formula <= tol, max_relative_error=worst_formula,
             spacings=pairs)
    ev.check("measured signed displacement λ_{k+1} − λ_k along ŵ = s(t_{k+1} − t_k)/(γ‖w‖₂): γ < 0 reverses the "
             "order", "instances", worst_order <= tol, max_relative_error=worst_order)
    ev.check("core's hyperplanes sit where ẑ = t_k is measured", "instances", worst_core <= tol,
             max_relative_error=worst_core)
    ev.check("d = 1 (O4): exact count = 1 + distinct measured breakpoints inside W, every activation",
             "exact-count", all(a == b for a, b in o4), instances=len(o4), pairs=o4)
    # C6 with K breakpoints per neuron (hard-tanh, K = 2): exact E[h_plain] ≤ Σ K·q_i
    from ..activations import hardtanh

    rows = []
    for sigma_b in (0.5, 2.0):
        W = rng.normal(size=(24, 3)) / np.sqrt(3)
        x0, r = rng.normal(size=3) * 0.2, 0.1
        exact = cf.expected_plain_hits_gaussian(W, 0.0, x0, r, hardtanh().breakpoints_array, sigma_b)
        q = cf.c6_q(np.abs(W).sum(1), r, cf.gaussian_density_bound(sigma_b), breakpoints=2)
        rows.append({"sigma_b": sigma_b, "exact_E_h_plain": exact, "bound_sum_Kq": float(cf.c6_bound_h(q))})
    ev.check("C6 with K = 2 per neuron (hard-tanh): exact E[h_plain] ≤ Σ K·q_i", "closed-form",
             all(r_["exact_E_h_plain"] <= r_["bound_sum_Kq"] for r_ in rows), rows=rows)
    kn = _c6_regions_with_k_breakpoints(rng, ctx.size["mc_counts"])
    ev.check("C6's N with K = 2 per neuron (hard-tanh, d = 2, no BN): each exact count = the textbook line count "
             "and ≤ Σ_{k≤d} Σ_S Π h_i over sets of distinct neurons; E[N_plain] ≤ Σ_{k≤d} e_k(K·q) (t interval: "
             "lower end ≤ bound)", "exact-count",
             kn["instances"] > 0 and kn["count_equals_textbook"] == kn["chain_holds"] == kn["instances"]
             and kn["E_N_ci95"][0] <= kn["bound_N"], **kn)
    t1 = kn["tight_d1"]
    ev.check("the same with K = 2 in d = 1, where the bound is tight: each count = 1 + breakpoints strictly inside W "
             "(textbook) and E[N_plain] ≤ 1 + Σ K·q_i (t interval: lower end ≤ bound)", "exact-count",
             t1["counts_equal_textbook"] == t1["samples"] and t1["E_N_ci95"][0] <= t1["bound_N"], **t1)
    ev.negative("K = 2, d = 1: a bound 10 % too small (0.9 Σ_{k≤d} e_k(K·q)) is refuted by the same counts (t interval's "
                "lower end above it)", t1["E_N_ci95"][0] > 0.9 * t1["bound_N"], **t1)
    ev.negative("mutated spacing with ‖w‖₁ for ‖w‖₂: does not match the measured spacing",
                mutated_gamma > tol, min_relative_error=mutated_gamma)
    ev.negative("mutated order: H_{k+1} always on the + side of H_k along ŵ (spacing with |γ|, signed): does not "
                "match the measured displacement for γ < 0", mutated_signed > tol, max_relative_error=mutated_signed)
    ev.says(f"verified on {pairs} measured spacings (4 activations, γ of both signs) and {len(o4)} exact d = 1 "
            "counts")
    return ev
