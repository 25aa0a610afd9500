"""Checks of the refinement claims: C5 (centroid in the window), C6 (expected refinement, a sufficient
condition) and C7 (where it fails: phase diagrams for hits h and regions N, crossover distances).

Evidence: exact certified counts (``regions.count_regions``), certificates (exact rank, x̄ ∈ int W), the
closed forms of ``cpa_theory.closed_forms`` (O1, O3, the C6 bounds, the exact Gaussian E[h_plain], the
ℓ2 and d = 2 box hit probabilities) and Monte Carlo with Student-t intervals and Holm-corrected verdicts
(``numerics.stats``). Closed forms are looked up through the module (``cf.o3``), so a mutated closed form
or a mutated implementation makes these checks fail (tests/test_reproduce.py).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .. import closed_forms as cf
from ..bn import BatchNorm
from ..hyperplanes import switching_hyperplanes
from ..network import Layer, Network
from ..regions import count_regions
from ..windows import plain_window_slack
from . import oracles_textbook as tb
from .common import Context, Evidence, random_mlp, with_biases
from .common import worst as worst_of

__all__ = ["check_c5", "check_c6", "check_c7", "generic_normals"]


def generic_normals(W) -> bool:
    """Certificate: every d-subset of the rows of W is linearly independent (exact rank, rationals)."""
    from numerics.certificates import injective

    n, d = W.shape
    return all(injective(W[list(S)].T) for S in itertools.combinations(range(n), d))


# -- C5 ----------------------------------------------------------------------------------------------------
C5_EDGE_MARGIN = 1e-3  # x̄'s distance to a face of W in the edge windows, as a fraction of r


def check_c5(ctx: Context) -> Evidence:
    from numerics.certificates import centroid_in_window

    from ..activations import identity, leaky_relu, relu, spline

    ev = Evidence()
    rng = ctx.rng("C5")
    rows, outside, edge = [], [], []
    for j in range(ctx.size["nets"]):
        d, n = (2, 10) if j % 2 == 0 else (3, 8)
        if j % 2:  # any γ ≠ 0 (both signs) and a breakpoint t ≠ 0 with β = t
            t0 = float(rng.uniform(-1.5, 1.5))
            act = spline([t0], [float(rng.normal())], float(rng.uniform(-0.5, 0.5)), float(rng.uniform(0.6, 2.0)))
            net = random_mlp(rng, (d, n, 1), act, gamma="random", beta=np.full(n, t0))
        else:
            act = relu() if j % 4 else leaky_relu(0.1)
            net = random_mlp(rng, (d, n, 1), act)  # γ = 1, β = 0 = t
        t_bp = float(act.breakpoints[0])
        xbar = net.batch.mean(0)
        r = float(rng.uniform(0.2, 1.0))
        x0 = xbar + rng.uniform(-0.9, 0.9, d) * r  # x̄ ∈ int W by construction, certified below
        cert = centroid_in_window(net.batch, x0, r) and generic_normals(net.layers[0].weight)
        res = count_regions(net, x0, r)
        # h_BN from the textbook: first-layer ẑ at the box corners straddles t = 0 (no window criterion)
        z_corners = tb.layer_preactivation(net, tb.box_corners(x0, r), 0)
        h_tb = int(tb.corner_cut(z_corners, t_bp).sum())
        rows.append({"d": d, "n": n, "certified_hypotheses": cert, "N_BN": res.regions, "O3": cf.o3(n, d),
                     "h_BN": h_tb, "certified_count": res.certified})
        far = xbar + 2.5 * r * rng.choice([-1.0, 1.0], d)  # x̄ ∉ W: outside the hypothesis
        res_far = count_regions(net, far, r)
        shifted = Network(d, (Layer(net.layers[0].weight, net.layers[0].bias, act,
                                    BatchNorm(n, "train", net.layers[0].batchnorm.gamma,
                                              t_bp + rng.choice([-1.0, 1.0], n) * rng.uniform(2, 4, n))),
                                net.layers[1]), net.batch)
        res_beta = count_regions(shifted, x0, r)  # β ≠ t: outside the hypothesis
        # at the hypothesis's edge: x̄ a margin δ inside / outside each face of W (the textbook centroid, not the
        # core's anchor), so an anchor off by more than δ in any coordinate shows as N_BN ≠ O3 on one of them
        delta = C5_EDGE_MARGIN * r
        for k in range(d):
            for sgn in (-1.0, 1.0):
                base = xbar + rng.uniform(-0.5, 0.5, d) * r
                base[k] = xbar[k]
                x_in, x_out = base.copy(), base.copy()
                x_in[k] -= sgn * (r - delta)   # x̄ lies δ inside the face on the side sgn
                x_out[k] -= sgn * (r + delta)  # x̄ lies δ outside it
                edge.append({"face": [k, sgn], "N_inside": count_regions(net, x_in, r).regions,
                             "N_outside": count_regions(net, x_out, r).regions, "O3": cf.o3(n, d),
                             "inside_certified": centroid_in_window(net.batch, x_in, r),
                             "outside_certified": not centroid_in_window(net.batch, x_out, r)})
        outside.append({"N_far": res_far.regions, "N_beta_ne_t": res_beta.regions, "O3": cf.o3(n, d),
                        "x_bar_in_far_window": centroid_in_window(net.batch, far, r)})
    # O1 with coincident switching sets: w, 2w, −w under BN (β = 0) give ONE hyperplane through x̄
    w = rng.normal(size=2)
    X = rng.normal(size=(16, 2))
    par = Network(2, (Layer(np.stack([w, 2 * w, -w]), rng.normal(size=3), relu(), BatchNorm(3, "train")),
                      Layer(np.ones((1, 3)), np.zeros(1), identity(), None)), X)
    hp = switching_hyperplanes(par)
    r0 = 0.3
    h_cut = int(tb.corner_cut(tb.layer_preactivation(par, tb.box_corners(X.mean(0), r0), 0), 0.0).sum())
    h_distinct = cf.distinct_hyperplanes(hp.normals, hp.offsets, hp.anchor)
    n_par = count_regions(par, X.mean(0), r0).regions
    lo, hi = cf.o1_bounds(h_distinct, 2)
    ev.check("hypotheses certified (x̄ ∈ int W exactly; every d-subset of normals full rank)", "certificate",
             all(r_["certified_hypotheses"] for r_ in rows), instances=len(rows))
    ev.check("h_BN = n (textbook: ẑ at the box corners straddles t) and N_BN = O3 = 2 Σ_{k<d} C(n−1, k) "
             "(exact certified counts; γ = 1, t = 0 and γ of both signs with β = t ≠ 0)", "exact-count",
             all(r_["N_BN"] == r_["O3"] and r_["h_BN"] == r_["n"] and r_["certified_count"] for r_ in rows),
             instances=rows)
    ev.check(f"at the edge of the hypothesis: x̄ {C5_EDGE_MARGIN:g}·r inside each face of W gives N_BN = O3 (exact "
             "certified counts; x̄ ∈ int W certified in rationals)", "exact-count",
             all(e["inside_certified"] and e["N_inside"] == e["O3"] for e in edge), instances=edge)
    ev.check("O1 counts DISTINCT hyperplanes: w, 2w, −w under BN cut W 3 times but are 1 hyperplane, N = 2",
             "exact-count", h_cut == 3 and h_distinct == 1 and lo <= n_par <= hi and n_par == 2,
             switching_sets_cutting=h_cut, distinct=h_distinct, N=n_par, o1=[lo, hi])
    ev.negative("x̄ ∉ W or β ≠ t: the same check finds N_BN ≠ O3",
                all(o["N_far"] != o["O3"] and o["N_beta_ne_t"] != o["O3"] and not o["x_bar_in_far_window"]
                    for o in outside), instances=outside)
    ev.negative(f"x̄ {C5_EDGE_MARGIN:g}·r outside a face of W: the same check finds N_BN ≠ O3",
                all(e["outside_certified"] and e["N_outside"] != e["O3"] for e in edge), instances=edge)
    ev.says(f"sufficient condition certified on {sum(r_['certified_hypotheses'] for r_ in rows)} of {len(rows)} "
            f"windows, N_BN = O3 by exact counts on all and on {len(edge)} windows with x̄ {C5_EDGE_MARGIN:g}·r inside a "
            f"face; fails outside its conditions on {len(outside)} of {len(outside)} (x̄ ∉ W, β ≠ t) and on the "
            f"{len(edge)} mirrored windows with x̄ {C5_EDGE_MARGIN:g}·r outside")
    return ev


# -- C6 ----------------------------------------------------------------------------------------------------
def check_c6(ctx: Context) -> Evidence:
    """Instances chosen near the boundary of the h-bound (exact E[h_plain] within a few % of Σq) and of the
    N-condition (Σ e_k(q) close to O3 = N_BN)."""
    from numerics.certificates import affine_range_over_window, centroid_in_window
    from numerics.stats import mean_ci95

    from ..activations import identity, relu

    ev = Evidence()
    rng = ctx.rng("C6")
    n_mc, n_count = ctx.size["mc_biases"], ctx.size["mc_counts"]
    inst_h, inst_n = [], []
    # (1) the h-bound: x0 near the origin (the biases' centre), r‖w‖₁ ≪ σ_b: the bound is nearly tight
    for d, n, r, sigma_b in ((2, 16, 0.1, 1.0), (3, 12, 0.05, 0.5), (2, 24, 0.2, 2.0), (4, 8, 0.1, 1.0)):
        W = rng.normal(size=(n, d)) / np.sqrt(d)
        x0 = rng.normal(size=d) * 0.02
        # 2r‖w‖₁ certified as the LP range of wᵀx over W (cvxpy + HiGHS), not by the closed form
        widths = np.array([(lambda a: a.maximum - a.minimum)(affine_range_over_window(w, x0, r)) for w in W])
        q = cf.c6_q(widths / (2 * r), r, cf.gaussian_density_bound(sigma_b))
        bound = float(cf.c6_bound_h(q))
        exact = cf.expected_plain_hits_gaussian(W, 0.0, x0, r, [0.0], sigma_b)
        b = rng.normal(size=(n_mc, n)) * sigma_b  # Monte Carlo through the core's criterion
        hits = (plain_window_slack(W[None], b, 0.0, x0, r) > 0).sum(axis=1)
        m, ci = mean_ci95(hits)
        z = (m - exact) / (float(np.std(hits, ddof=1)) / math.sqrt(n_mc))
        inst_h.append({"d": d, "n": n, "r": r, "sigma_b": sigma_b, "exact_E_h_plain": exact, "bound_sum_q": bound,
                       "exact_over_bound": exact / bound, "monte_carlo": m, "monte_carlo_ci95": ci, "z": z})
    # (2) the N-condition near its boundary: Σ_{k≤d} e_k(q) just below O3 = N_BN (d = 2, batch at the origin);
    # every sampled no-BN count is also checked on its own against the textbook line-arrangement count, and the
    # instance-level chain N ≤ Σ_{k≤d} C(h, k) (one breakpoint per neuron: Σ_S Π h_i = C(h, k))
    chain = {"instances": 0, "count_equals_textbook": 0, "chain_holds": 0, "non_generic": 0}
    for d, n, target in ((2, 8, 0.92), (2, 6, 0.97)):
        W = rng.normal(size=(n, d)) / np.sqrt(d)
        X = rng.normal(size=(16, d))
        X -= X.mean(0)
        r, x0 = 0.2, rng.uniform(-0.5, 0.5, d) * 0.2
        l1 = np.abs(W).sum(1)
        # σ_b such that Σ e_k(q) = target · O3 (bisection on the closed form)
        lo_s, hi_s = 1e-3, 1e3
        for _ in range(100):
            mid = math.sqrt(lo_s * hi_s)
            val = cf.c6_bound_n(cf.c6_q(l1, r, cf.gaussian_density_bound(mid)), d)
            lo_s, hi_s = (mid, hi_s) if val > target * cf.o3(n, d) else (lo_s, mid)
        sigma_b = hi_s
        q = cf.c6_q(l1, r, cf.gaussian_density_bound(sigma_b))
        bn_net = Network(d, (Layer(W, np.zeros(n), relu(), BatchNorm(n, "train")),
                             Layer(np.ones((1, n)), np.zeros(1), identity(), None)), X)
        n_bn = count_regions(bn_net, x0, r)
        plain = bn_net.without_batchnorm()
        Ns = []
        for _ in range(n_count):
            net_k = with_biases(plain, rng, sigma_b)
            Ns.append(count_regions(net_k, x0, r).regions)
            tb_n = tb.line_regions_2d_exact(net_k.layers[0].weight, net_k.layers[0].bias, x0, r) if d == 2 else None
            if tb_n is None:
                chain["non_generic"] += 1
                continue
            chain["instances"] += 1
            chain["count_equals_textbook"] += int(Ns[-1] == tb_n[0])
            chain["chain_holds"] += int(Ns[-1] <= sum(math.comb(int(tb_n[1].sum()), k) for k in range(d + 1)))
        mN, ciN = mean_ci95(Ns)
        inst_n.append({"d": d, "n": n, "r": r, "sigma_b": sigma_b, "bound_N": float(cf.c6_bound_n(q, d)),
                       "O3": cf.o3(n, d), "N_BN": n_bn.regions, "E_N_plain": mN, "E_N_plain_ci95": ciN,
                       "E_N_plain_over_N_BN": mN / n_bn.regions,
                       "sufficient_condition_certified": bool(centroid_in_window(X, x0, r)
                                                              and cf.c6_bound_n(q, d) <= cf.o3(n, d))})
    # (3) d = 1, where the chain is tight: N = 1 + h exactly and E[h] = Σ p_i ≈ Σ q_i when r‖w‖₁ ≪ σ_b, so the
    # N-bound check has power here — the same exact counts must refute a bound 10 % too small
    inst_tight = []
    for n, r, sigma_b in ((60, 0.2, 1.0),):
        W = rng.normal(size=(n, 1))
        x0 = rng.normal(size=1) * 0.02
        q = cf.c6_q(np.abs(W[:, 0]), r, cf.gaussian_density_bound(sigma_b))
        plain = Network(1, (Layer(W, np.zeros(n), relu(), None), Layer(np.ones((1, n)), np.zeros(1), identity(), None)))
        Ns, textbook = [], 0
        for _ in range(max(2 * n_count, 300)):
            net_k = with_biases(plain, rng, sigma_b)
            Ns.append(count_regions(net_k, x0, r).regions)
            b = net_k.layers[0].bias  # textbook: 1 + breakpoints −b_i/w_i strictly inside (x0 − r, x0 + r)
            textbook += int(Ns[-1] == 1 + int(np.sum(np.abs(W[:, 0] * x0[0] + b) < r * np.abs(W[:, 0]))))
        mN, ciN = mean_ci95(Ns)
        inst_tight.append({"d": 1, "n": n, "r": r, "sigma_b": sigma_b, "bound_N": float(cf.c6_bound_n(q, 1)),
                           "E_N_plain": mN, "E_N_plain_ci95": ciN, "samples": len(Ns),
                           "counts_equal_textbook": textbook, "E_N_plain_over_bound": mN / float(cf.c6_bound_n(q, 1))})
    ev.check("exact E[h_plain] (Gaussian closed form) ≤ Σ q_i on every instance (bound within a few % of it)",
             "closed-form", all(i["exact_E_h_plain"] <= i["bound_sum_q"] for i in inst_h), instances=inst_h)
    ev.check("the closed form is right: Monte Carlo over biases through the core criterion within 4 s.e.",
             "monte-carlo", all(abs(i["z"]) < 4 for i in inst_h), max_abs_z=max(abs(i["z"]) for i in inst_h))
    ev.check("E[N_plain] ≤ Σ_{k≤d} e_k(q) (exact counts, t interval: lower end ≤ bound; d = 2 near O3, and "
             "d = 1 where the bound is tight)", "exact-count",
             all(i["E_N_plain_ci95"][0] <= i["bound_N"] for i in inst_n + inst_tight), instances=inst_n,
             tight_instances=inst_tight)
    ev.check("d = 1: every sampled count N = 1 + breakpoints strictly inside W (textbook, independent of the "
             "counter)", "exact-count", all(i["counts_equal_textbook"] == i["samples"] for i in inst_tight),
             instances=len(inst_tight))
    ev.check("each sampled no-BN count N = 1 + h + #crossings strictly inside W (textbook count of the 2-D line "
             "arrangement in rationals, independent of the counter) and N ≤ Σ_{k≤d} C(h, k)", "exact-count",
             chain["instances"] > 0 and chain["count_equals_textbook"] == chain["chain_holds"] == chain["instances"],
             **chain)
    cert = [i for i in inst_n if i["sufficient_condition_certified"]]
    ev.check("where the sufficient condition is certified (x̄ ∈ int W, Σ e_k(q) ≤ O3): N_BN = O3 and "
             "E[N_plain] ≤ N_BN (t interval: lower end ≤ N_BN)", "certificate",
             len(cert) > 0 and all(i["N_BN"] == i["O3"] and i["E_N_plain_ci95"][0] <= i["N_BN"] for i in cert),
             certified=len(cert), of=len(inst_n))
    ev.negative("a bound 10 % too small (0.9 Σ_{k≤d} e_k(q)) is refuted by the same exact counts where the chain is "
                "tight (d = 1: t interval's lower end > 0.9 bound)",
                len(inst_tight) > 0 and all(i["E_N_plain_ci95"][0] > 0.9 * i["bound_N"] for i in inst_tight),
                instances=inst_tight)
    refuted = [i for i in inst_h if i["exact_E_h_plain"] > 0.95 * i["bound_sum_q"]]
    ev.negative("a bound 5 % too small (0.95 Σ q_i) is refuted by the exact E[h_plain]", len(refuted) == len(inst_h),
                refuted_on=len(refuted), of=len(inst_h))
    ev.says(f"closed-form inequality verified on {len(inst_h)} instances with exact/bound in "
            f"[{min(i['exact_over_bound'] for i in inst_h):.3f}, {max(i['exact_over_bound'] for i in inst_h):.3f}]"
            f"; sufficient condition certified on {len(cert)} of {len(inst_n)} near-boundary instances, "
            "E[N_plain]/N_BN = " + ", ".join(f"{i['E_N_plain_over_N_BN']:.2f}" for i in inst_n))
    ev.numbers = {"h_instances": inst_h, "n_instances": inst_n, "tight_n_instances": inst_tight}
    return ev


# -- C7 ----------------------------------------------------------------------------------------------------
def _exact_cells(rows, direction):
    """max |z| of the Monte Carlo means against the d = 2 box closed forms (n = 32 neurons per network)."""
    from .phase import WEIGHT_SD

    worst, cells = 0.0, 0
    for r in rows:
        n = r["widths"][0]
        for key, p in (("h_bn", cf.box_bn_hit_probability_2d(r["radius"], r["distance"], direction)),
                       ("h_plain", cf.box_plain_hit_probability_2d(r["radius"], r["distance"], r["bias_scale"],
                                                                    WEIGHT_SD, direction))):
            x = np.asarray(r[f"{key}_samples"])
            se = float(np.std(x, ddof=1)) / math.sqrt(len(x))
            if se == 0:
                z = 0.0 if abs(x.mean() - n * p) < 1e-9 else np.inf
            else:
                z = abs(x.mean() - n * p) / se
            worst, cells = worst_of(worst, z), cells + 1
    return worst, cells


def _crossover_table(rows, measure):
    out = {}
    for s in sorted({r["bias_scale"] for r in rows}):
        c = next(r for r in rows if r["bias_scale"] == s).get("crossover", {}).get(measure)
        out[s] = c
    return out


def check_c7(ctx: Context, progress: bool = False) -> Evidence:
    from numerics.stats import crossover

    from .phase import WEIGHT_SD, phase_runs, plot_phase

    ev = Evidence()
    runs = phase_runs(ctx, progress=progress)
    ctx.shared["phase"] = runs
    # exact crossovers (closed forms) per σ_b, for the axis and random directions with x̄ = 0
    exact = {dirn: {s: cf.box_crossover_2d(0.2, s, WEIGHT_SD, dirn) for s in ctx.size["phase_bias_scales"]}
             for dirn in ("axis", "random")}
    fig = ctx.out / "phase_diagram.png"
    plot_phase(runs, [(v, s) for s, v in exact["axis"].items() if v is not None], fig)
    ev.figures.append(fig.name)

    # (1) Monte Carlo E[h] per cell = the d = 2 box closed forms (axis and random directions, x̄ = 0)
    z_axis, n_axis = _exact_cells(runs["h"]["axis-origin"], "axis")
    z_rand, n_rand = _exact_cells(runs["h"]["random-origin"], "random")
    ev.check("E[h_BN], E[h_plain] per cell (JAX kernel, Monte Carlo) = d = 2 box closed forms within 5 s.e.",
             "closed-form", max(z_axis, z_rand) < 5.0, cells=n_axis + n_rand, max_z_axis=z_axis, max_z_random=z_rand)
    # (2) D*_h: the exact root, and the exact curve interpolated on the same grid, inside the bootstrap CI; all m
    # intervals must cover, so each is at Bonferroni's level 1 − 0.05/m (family-wise 95 %)
    table = []
    ok = True
    Dgrid = np.asarray(sorted({r["distance"] for r in runs["h"]["axis-origin"]}))
    settings = (("axis-origin", "axis"), ("random-origin", "random"))
    m = sum(len({r["bias_scale"] for r in runs["h"][st]}) for st, _ in settings)
    level = 1.0 - 0.05 / m
    for setting, dirn in settings:
        cr = {}
        for s in sorted({r["bias_scale"] for r in runs["h"][setting]}):
            sl = sorted((r for r in runs["h"][setting] if r["bias_scale"] == s), key=lambda r: r["distance"])
            if len({(r["radius"], r["batch_size"]) for r in sl}) != 1:
                raise ValueError("C7: one radius and batch size per bias scale expected in the D*_h check")
            cr[s] = crossover([r["distance"] for r in sl],
                              [np.subtract(r["h_bn_samples"], r["h_plain_samples"]) for r in sl],
                              boot=int(40 / (1 - level)), level=level)
        for s, c in cr.items():
            ex = exact[dirn][s]
            ex_grid = crossover(Dgrid, [[cf.box_bn_hit_probability_2d(0.2, D, dirn)
                                         - cf.box_plain_hit_probability_2d(0.2, D, s, WEIGHT_SD, dirn)] for D in Dgrid],
                                boot=1)["D_star"]
            lo, hi = c["ci"]
            inside = (c["D_star"] is not None and ex_grid is not None and lo is not None and lo <= ex_grid
                      and (hi is None or ex_grid <= hi))
            ok &= inside if ex is not None and ex < Dgrid[-1] else c["D_star"] is None
            table.append({"setting": setting, "sigma_b": s, "D_star_h": c["D_star"], "ci95": c["ci95"],
                          "ci_bonferroni": c["ci"], "level": level, "exact_D_star_h": ex, "exact_on_grid": ex_grid})
    ev.check(f"crossover D*_h (bootstrap CI over networks at level 1 − 0.05/{m}, Bonferroni: all {m} must cover) "
             "contains the exact D*_h of the closed forms (interpolated on the same grid)", "closed-form", ok,
             crossovers=table, family_level=0.95)
    # (3) both phases for h, Holm-corrected
    rows_h = [r for rows in runs["h"].values() for r in rows]
    at0 = [r for r in rows_h if r["distance"] == 0.0]
    plain_h = [(r["bias_scale"], r["distance"]) for r in runs["h"]["random-random"] if r["phase"] == "plain"]
    ev.check("h: at D = 0 BN refines more in every setting and bias scale; far from x̄ no-BN refines more "
             "(Holm-corrected t-tests over networks)", "monte-carlo",
             all(r["phase"] == "bn" for r in at0) and all(any(r["phase"] == "plain" for r in rows)
                                                          for rows in runs["h"].values()), cells=len(rows_h))
    # (4) N: the Euler count over every network equals the exact certified counter on the counted networks
    counted = runs["counted"] + runs["example"]
    agree = sum(int(r["n_bn_samples"] == r["n_euler_bn_samples"][:len(r["n_bn_samples"])]
                    and r["n_plain_samples"] == r["n_euler_plain_samples"][:len(r["n_plain_samples"])])
                for r in counted)
    ev.check("N: Euler count 1 + h + Σ(m_p − 1) = exact certified count, network by network (BN and no BN)",
             "exact-count", agree == len(counted) > 0, cells=len(counted),
             networks_per_cell=counted[0]["counted_networks"])
    # (4b) N phase diagrams (Euler counts over all networks, Holm): crossover D*_N per σ_b
    n_table = []
    for setting, rows in runs["h"].items():
        crN, crH = _crossover_table(rows, "N_euler"), _crossover_table(rows, "h")
        for s_, c in crN.items():
            r0 = next(r for r in rows if r["bias_scale"] == s_ and r["distance"] == 0.0)
            n_table.append({"setting": setting, "sigma_b": s_, "D_star_N": None if c is None else c["D_star"],
                            "ci95_N": None if c is None else c["ci95"],
                            "D_star_h": None if crH.get(s_) is None else crH[s_]["D_star"],
                            "ci95_h": None if crH.get(s_) is None else crH[s_]["ci95"],
                            "N_BN_at_0": r0["n_euler_bn_mean"], "E_N_plain_at_0": r0["n_euler_plain_mean"],
                            "E_h_plain_at_0": r0["h_plain_mean"], "verdict_N_at_0": r0["phase_N"]})
    rows_N = [r for rows in runs["h"].values() for r in rows]
    ev.check("N: both phases exist (Holm-corrected t-tests over networks): BN refines more by N near x̄ for "
             "large σ_b, no-BN refines more far from x̄", "monte-carlo",
             any(r["phase_N"] == "bn" for r in rows_N) and any(r["phase_N"] == "plain" for r in rows_N),
             cells=len(rows_N), crossovers=n_table)
    # (5) the two measures disagree at THEORY's example point
    ex_row = runs["example"][0]
    disagree = (ex_row["h_bn_mean"] == ex_row["widths"][0] and ex_row["bn_minus_plain_ci95"][0] > 0
                and ex_row["n_euler_bn_minus_plain_ci95"][1] < 0)
    example = {"d": 2, "n": 32, "r": 0.2, "D": 0.0, "sigma_b": 0.1, "B": 16,
               "setting": "random direction, random batch centroid", "networks": ex_row["networks"],
               "E_h_BN": ex_row["h_bn_mean"], "E_h_plain": ex_row["h_plain_mean"],
               "E_h_plain_ci95": ex_row["h_plain_ci95"], "N_BN": ex_row["n_euler_bn_mean"],
               "E_N_plain": ex_row["n_euler_plain_mean"], "E_N_plain_ci95": ex_row["n_euler_plain_ci95"],
               "N_difference_ci95": ex_row["n_euler_bn_minus_plain_ci95"],
               "counted_networks": ex_row["counted_networks"], "counted_E_N_plain": ex_row["n_plain_mean"],
               "counted_N_difference_ci95_t7": ex_row["n_bn_minus_plain_ci95"]}
    ev.check("refinement names its measure: at the centroid with σ_b = 0.1, E[h_BN] > E[h_plain] but "
             "N_BN < E[N_plain] (t intervals)", "exact-count", disagree, example=example)
    # (6) the sweep's hits = textbook hits (ẑ at the box corners) on the counted networks' draws
    tb_ok, tb_total = _kernel_vs_textbook(ctx, runs["counted"], "axis-origin")
    ok2, tot2 = _kernel_vs_textbook(ctx, runs["example"], "random-random")
    tb_ok, tb_total = tb_ok + ok2, tb_total + tot2
    ev.check("sweep kernel hits = textbook hits (forward passes at the 4 box corners), network by network",
             "instances",
             tb_ok == tb_total > 0, windows=tb_total, agreements=tb_ok)
    # (7) ℓ2 closed form vs Monte Carlo through the core's ℓ2 criterion, incl. D ≤ r and D = 0
    l2 = _l2_table(ctx)
    ev.check("ℓ2 ball: P(hit) = I_{(r/D)²}(1/2, (d−1)/2) for D > r and 1 for D ≤ r (Monte Carlo, 4 s.e.)",
             "closed-form", all(row["z"] < 4 for row in l2), table=l2)
    # negative controls, each from its own data
    ev.negative("mutated closed form I_{(r/D)²}(1/2, d/2) rejected by the same Monte Carlo (> 4 s.e.)",
                any(row["z_mutated"] > 4 for row in l2 if row["D"] > row["r"]))
    ev.negative("'BN always refines more (by h)' refuted: Holm-significant no-BN cells (random-random setting)",
                len(plain_h) > 0, cells_sigma_b_D=plain_h)
    at0_N = [(t["setting"], t["sigma_b"]) for t in n_table if t["verdict_N_at_0"] == "plain"]
    ev.negative("'BN refines more at the centroid, hence by N too' refuted (Euler = exact counts, Holm)",
                len(at0_N) > 0, setting_sigma_b=at0_N)
    ax_r = {t["sigma_b"]: t for t in table if t["setting"] == "axis-origin"}
    rd_r = {t["sigma_b"]: t for t in table if t["setting"] == "random-origin"}
    disjoint = [s for s in ax_r if ax_r[s]["ci95"] and rd_r.get(s, {}).get("ci95")
                and (ax_r[s]["ci95"][0] > rd_r[s]["ci95"][1] or rd_r[s]["ci95"][0] > ax_r[s]["ci95"][1])]
    ev.negative("'the crossover does not depend on the window direction' refuted (disjoint CIs, ℓ∞ box not "
                "rotation invariant)", len(disjoint) > 0, sigma_b=disjoint)
    covered = sum(1 for t in table if t["ci95"] and t["exact_on_grid"] is not None
                  and t["ci95"][0] <= t["exact_on_grid"] <= t["ci95"][1])
    ev.says(f"Monte Carlo on {len(rows_h)} cells agrees with the d = 2 closed forms (max |z| "
            f"{max(z_axis, z_rand):.2f}); D*_h in the bootstrap CI of the exact value for {covered}"
            f" of {len(table)} (setting, σ_b); fails outside its conditions: at the centroid with σ_b = 0.1 BN has "
            f"E[h_BN] = {example['E_h_BN']:.0f} > E[h_plain] = {example['E_h_plain']:.1f} but N_BN = "
            f"{example['N_BN']:.0f} < E[N_plain] = {example['E_N_plain']:.1f} (CI of the difference "
            f"[{example['N_difference_ci95'][0]:.1f}, {example['N_difference_ci95'][1]:.1f}])")
    ev.numbers = {"crossovers_h": table, "crossovers_N": n_table, "example": example,
                  "setting": "d = 2, n = 32 ReLU (β = 0, γ = 1), w ~ N(0, I/2), r = 0.2, B = 16"}
    return ev


def _kernel_vs_textbook(ctx, rows, setting):
    """The sweep kernel's per-network hits (``h_*_samples``) against the textbook corner test on the same draws
    (the counted networks of each row: keys re-derived exactly as ``run_point`` derives them)."""
    import jax
    from numerics.ensembles import sample_draws, to_networks

    from .phase import _cfg

    spec = _cfg(ctx, setting).spec
    ok = total = 0
    for r in rows:
        m = r["counted_networks"]
        keys = jax.random.split(jax.random.fold_in(jax.random.key(ctx.seed), r["slice"]), r["networks"])[:m]
        for j, draw in enumerate(sample_draws(keys, spec, r["batch_size"], r["bias_scale"], r["distance"])):
            bn_net, plain_net = to_networks(draw, spec)
            corners = tb.box_corners(draw["centers"][0], r["radius"])
            tb_bn = int(tb.corner_cut(tb.layer_preactivation(bn_net, corners, 0), 0.0).sum())
            tb_pl = int(tb.corner_cut(tb.layer_preactivation(plain_net, corners, 0), 0.0).sum())
            total += 1
            ok += int(tb_bn == r["h_bn_samples"][j] and tb_pl == r["h_plain_samples"][j])
    return ok, total


def _l2_table(ctx):
    from ..windows import dual_norm, window_slack

    rng = ctx.rng("C7-l2")
    N = ctx.size["ball_samples"]
    table = []
    for d, r, D in ((2, 0.5, 1.0), (3, 0.3, 1.0), (5, 0.5, 2.0), (10, 1.0, 1.5), (3, 0.5, 0.3), (4, 0.5, 0.0)):
        w = rng.normal(size=(N, d))
        u = rng.normal(size=d)
        u *= D / np.linalg.norm(u)
        freq = float((window_slack(dual_norm(w, 2), w @ u, r) > 0).mean())
        p, p_mut = cf.l2_ball_hit_probability(r, D, d), cf.l2_ball_hit_probability(r, D, d + 1)
        se = lambda q: math.sqrt(max(q * (1 - q), 1e-12) / N)  # noqa: E731
        table.append({"d": d, "r": r, "D": D, "monte_carlo": freq, "closed_form": p,
                      "z": abs(freq - p) / se(p), "z_mutated": abs(freq - p_mut) / se(p_mut)})
    return table
