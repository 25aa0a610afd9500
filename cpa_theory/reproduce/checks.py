"""The numeric check of every claim C1–C9, each with its negative control.

A check returns :class:`Evidence`: ``checks`` (each must pass for the claim to pass) and ``negatives``
(each must be *refuted*: the same computation applied to a mutated statement, or to a case outside the
claim's conditions, must reject it). The symbolic obligations of ``proofs/`` enter as checks and
negatives too (see :func:`symbolic`). Random objects come from explicit seeds (``ctx.rng(tag)``,
``ctx.key(tag)``), so a report is reproducible.
"""

from __future__ import annotations

import itertools
import math
import zlib
from dataclasses import dataclass, field

import numpy as np

from ..bn import BatchNorm, bn_transform, offset_formula
from ..hyperplanes import switching_hyperplanes
from ..network import Layer, Network
from ..regions import count_regions
from ..tolerances import BATCH_FORMULA_RTOL, FORWARD_AGREEMENT_ATOL, LP_FEASIBILITY_TOL, PULLBACK_RTOL
from ..windows import dual_norm, hyperplane_residual, window_hits, window_slack

__all__ = ["Context", "Evidence", "SCALES", "o3"]

#: problem sizes per scale; "full" is meant for a GPU or a long CPU run
SCALES = {
    "small": {"nets": 6, "mc_biases": 200, "phase_networks": 1024, "phase_counted": 8, "phase_distances":
              (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0), "phase_bias_scales": (0.1, 0.3, 1.0, 3.0),
              "phase_radii": (0.2,), "phase_batch_sizes": (16,), "ball_samples": 100_000, "train_steps": 300,
              "digits_steps": 200, "queries": 12},
    "full": {"nets": 24, "mc_biases": 2000, "phase_networks": 8192, "phase_counted": 8, "phase_distances":
             tuple(float(v) for v in np.linspace(0.0, 4.0, 9)), "phase_bias_scales": (0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
             "phase_radii": (0.1, 0.2, 0.4), "phase_batch_sizes": (8, 32, 128), "ball_samples": 2_000_000,
             "train_steps": 1000, "digits_steps": 600, "queries": 48},
}


def o3(n: int, d: int) -> int:
    """O3: n generic hyperplanes through one interior point of a d-dimensional window."""
    return 2 * sum(math.comb(n - 1, k) for k in range(d))


@dataclass
class Context:
    scale: str
    seed: int
    out: object  # pathlib.Path of the report directory (figures go here)
    proofs: dict = field(default_factory=dict)  # obligation name -> ProofResult
    shared: dict = field(default_factory=dict)  # results one check hands to another (e.g. the phase diagram)

    @property
    def size(self) -> dict:
        return SCALES[self.scale]

    def rng(self, tag: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(tag.encode())])

    def key(self, tag: str):
        import jax

        return jax.random.fold_in(jax.random.key(self.seed), zlib.crc32(tag.encode()))


@dataclass
class Evidence:
    checks: list = field(default_factory=list)
    negatives: list = field(default_factory=list)
    numbers: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)

    def check(self, name: str, kind: str, passed: bool, **detail):
        self.checks.append({"name": name, "kind": kind, "passed": bool(passed), **_plain(detail)})

    def negative(self, name: str, refuted: bool, **detail):
        self.negatives.append({"name": name, "refuted": bool(refuted), **_plain(detail)})


def _plain(obj):
    """JSON-ready copy (numpy scalars and arrays to Python)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def symbolic(ev: Evidence, ctx: Context, proofs, negatives) -> None:
    """Symbolic obligations: each of ``proofs`` must be proved, each of ``negatives`` refuted."""
    for name in proofs:
        res = ctx.proofs[name]
        ev.check(f"sympy: {name}", "symbolic", res.status.value == "proved", status=res.status.value,
                 seconds=round(res.seconds, 3))
    for name in negatives:
        res = ctx.proofs[name]
        ev.negative(f"sympy: {name}", res.status.value == "refuted", status=res.status.value,
                    counterexample=None if res.counterexample is None else {k: str(v) for k, v in
                                                                            res.counterexample.items()})


# -- building blocks ---------------------------------------------------------------------------------------
def _mlp(rng, widths, act, *, mode="train", gamma=None, beta=None, batch_size=16, offset=0.0, bias_scale=1.0,
         batch=None):
    """A random MLP (BN in ``mode`` on every hidden layer, identity output) with its batch."""
    from ..activations import identity

    layers = []
    for i, (m, n) in enumerate(zip(widths[:-1], widths[1:])):
        last = i == len(widths) - 2
        bn = None
        if not last and mode is not None:
            g = rng.uniform(0.5, 2.0, n) * rng.choice([-1.0, 1.0], n) if gamma == "random" else gamma
            b = rng.normal(size=n) * 0.5 if beta == "random" else beta
            kw = {"running_mean": rng.normal(size=n) * 2, "running_var": rng.uniform(0.5, 2.0, n)} \
                if mode == "eval" else {}
            bn = BatchNorm(n, mode, g, b, **kw)
        layers.append(Layer(rng.normal(size=(n, m)) / np.sqrt(m), rng.normal(size=n) * bias_scale,
                            identity() if last else act, bn))
    if batch is None:
        batch = rng.normal(size=(batch_size, widths[0])) + offset
    return Network(widths[0], tuple(layers), batch if mode == "train" else None)


def _with_biases(net: Network, rng, scale: float, only_bn: bool = False) -> Network:
    """New raw biases N(0, scale²) on every layer (``only_bn``: on the layers with BN)."""
    layers = tuple(Layer(l.weight, l.bias if only_bn and l.batchnorm is None else
                         rng.normal(size=l.bias.shape) * scale, l.activation, l.batchnorm) for l in net.layers)
    return Network(net.input_dim, layers, net.batch)


def _direct_first_layer(W, b, X, gamma, beta, eps, x):
    """ẑ at points x by the textbook batch computation (z = Wx + b over the batch, then μ, σ²)."""
    Z = X @ W.T + b
    return bn_transform(x @ W.T + b, Z.mean(0), Z.var(0), gamma, beta, eps)


# -- C1 ----------------------------------------------------------------------------------------------------
def check_c1(ctx: Context) -> Evidence:
    from ..activations import hardtanh, relu

    ev = Evidence()
    symbolic(ev, ctx, ("C1", "C1-unbiased"), ("C1-neg",))
    rng = ctx.rng("C1")
    worst_train, worst_eval = 0.0, np.inf
    for j in range(ctx.size["nets"]):
        act = relu() if j % 2 else hardtanh()
        X = rng.normal(size=(200, 3)) * 2
        net = _mlp(rng, (3, 8, 8, 1), act, gamma="random", beta="random", offset=5.0)
        y0 = net.forward(X)
        y1 = _with_biases(net, rng, 10.0, only_bn=True).forward(X)
        worst_train = max(worst_train, float(np.max(np.abs(y1 - y0)) / max(1.0, np.max(np.abs(y0)))))
        ev_net = _mlp(rng, (3, 8, 8, 1), act, mode="eval", gamma="random", beta="random")
        e0, e1 = ev_net.forward(X), _with_biases(ev_net, rng, 10.0, only_bn=True).forward(X)
        worst_eval = min(worst_eval, float(np.max(np.abs(e1 - e0))))
    ev.check("raw biases of the BN layers redrawn (σ = 10): train-mode outputs unchanged", "numeric",
             worst_train <= BATCH_FORMULA_RTOL, max_relative_change=worst_train, tolerance=BATCH_FORMULA_RTOL)
    ev.negative("eval-mode BN: the same redraw changes the outputs", worst_eval > BATCH_FORMULA_RTOL,
                min_over_networks_max_change=worst_eval)
    ev.numbers = {"train_max_relative_change": worst_train, "eval_min_max_change": worst_eval}
    return ev


# -- C2 ----------------------------------------------------------------------------------------------------
def check_c2(ctx: Context) -> Evidence:
    from ..activations import relu

    ev = Evidence()
    symbolic(ev, ctx, ("C2", "C2-unbiased"), ("C2-neg", "C2-neg-running-mean"))
    rng = ctx.rng("C2")
    worst, eval_gap = 0.0, np.inf
    for _ in range(ctx.size["nets"]):
        d, n = int(rng.integers(2, 6)), 32
        X = rng.normal(size=(16, d)) + 100.0 * rng.normal(size=d)  # data far from the origin
        W, b = rng.normal(size=(n, d)), rng.normal(size=n) * 50
        gamma, beta = rng.uniform(0.5, 2, n) * rng.choice([-1.0, 1.0], n), rng.normal(size=n)
        xbar = X.mean(0)
        zhat = _direct_first_layer(W, b, X, gamma, beta, 1e-5, xbar[None])[0]
        worst = max(worst, float(np.max(np.abs(zhat - beta))))
        # the core's switching set {ẑ = β} must contain x̄: offsets sτ = 0 at t = β
        net = Network(d, (Layer(W, b, relu(), BatchNorm(n, "train", gamma, gamma * 0)),), X)
        hp = switching_hyperplanes(net)
        worst = max(worst, float(np.max(np.abs(hyperplane_residual(hp.normals, hp.anchor, hp.offsets, xbar[None])))))
        run_mean = W @ (xbar + rng.normal(size=d)) + b  # a running mean that is not this batch's mean
        z_eval = bn_transform(W @ xbar + b, run_mean, np.ones(n), gamma, beta, 1e-5)
        eval_gap = min(eval_gap, float(np.max(np.abs(z_eval - beta))))
    tol = BATCH_FORMULA_RTOL * 100.0 * 50.0  # relative tolerance times the scale of |z| (data at 100, b ~ 50)
    ev.check("ẑ(x̄) = β for every neuron (direct batch formula, data at 100) and x̄ on H_ref", "numeric",
             worst <= tol, max_abs_deviation=worst, tolerance=tol)
    ev.negative("eval mode with a foreign running mean: ẑ(x̄) ≠ β", eval_gap > tol, min_max_deviation=eval_gap)
    return ev


# -- C3 ----------------------------------------------------------------------------------------------------
def check_c3(ctx: Context) -> Evidence:
    from ..activations import hardtanh

    ev = Evidence()
    symbolic(ev, ctx, ("C3",), ("C3-neg", "C3-unbiased-neg"))
    rng = ctx.rng("C3")
    t = hardtanh().breakpoints_array
    worst_on, worst_tau, worst_mut = 0.0, 0.0, np.inf
    for _ in range(ctx.size["nets"]):
        d, n = 3, 16
        X = rng.normal(size=(12, d)) * 2 + 20
        W, b = rng.normal(size=(n, d)), rng.normal(size=n) * 3
        gamma = rng.uniform(0.5, 2, n) * rng.choice([-1.0, 1.0], n)
        beta = rng.normal(size=n) * 0.3
        eps = 1e-5
        xbar = X.mean(0)
        s = np.sqrt(np.var((X - xbar) @ W.T, axis=0) + eps)  # textbook s, independent of the core's bn_scale
        tau = offset_formula(t[None], beta[:, None], gamma[:, None])
        wn = np.linalg.norm(W, axis=1)
        for k in range(t.size):
            # a point of H_k: x̄ + (s τ_k/‖w‖₂) ŵ + a random vector orthogonal to w
            v = rng.normal(size=(n, d))
            v -= (np.sum(v * W, 1) / wn**2)[:, None] * W
            pts = xbar + (s * tau[:, k] / wn)[:, None] * (W / wn[:, None]) + v
            z = np.array([_direct_first_layer(W[i:i + 1], b[i:i + 1], X, gamma[i:i + 1], beta[i:i + 1], eps,
                                              pts[i:i + 1])[0, 0] for i in range(n)])
            worst_on = max(worst_on, float(np.max(np.abs(z - t[k]))))
            mut = (t[k] - beta)  # mutated offset: no division by γ
            pts_m = xbar + (s * mut / wn)[:, None] * (W / wn[:, None])
            zm = np.array([_direct_first_layer(W[i:i + 1], b[i:i + 1], X, gamma[i:i + 1], beta[i:i + 1], eps,
                                               pts_m[i:i + 1])[0, 0] for i in range(n)])
            worst_mut = min(worst_mut, float(np.max(np.abs(zm - t[k]))))
        # τ from the core does not depend on b, on a rescaled w, or on the batch
        nets = [Network(d, (Layer(W, b, hardtanh(), BatchNorm(n, "train", gamma, beta)),), X),
                Network(d, (Layer(W * 3.0, b + 7, hardtanh(), BatchNorm(n, "train", gamma, beta)),), X * 0.5 - 4),
                Network(d, (Layer(rng.normal(size=(n, d)), -b, hardtanh(), BatchNorm(n, "train", gamma, beta)),),
                        rng.normal(size=(9, d)))]
        taus = [switching_hyperplanes(nt).tau for nt in nets]
        worst_tau = max(worst_tau, max(float(np.max(np.abs(tt - tau))) for tt in taus))
    tol = BATCH_FORMULA_RTOL * 1e3
    ev.check("points at signed distance sτ_k/‖w‖₂ from x̄ have ẑ = t_k (hard-tanh, γ of both signs)", "numeric",
             worst_on <= tol, max_abs_deviation=worst_on, tolerance=tol)
    ev.check("τ_k unchanged under new b, rescaled w, another batch", "numeric", worst_tau <= FORWARD_AGREEMENT_ATOL,
             max_abs_change=worst_tau)
    ev.negative("mutated τ = t − β (no /γ): the placed points miss ẑ = t_k", worst_mut > tol,
                min_max_deviation=worst_mut)
    return ev


# -- C4 ----------------------------------------------------------------------------------------------------
def check_c4(ctx: Context) -> Evidence:
    from numerics.certificates import affine_range_over_window

    from ..activations import hardtanh

    ev = Evidence()
    symbolic(ev, ctx, ("C4",), ("C4-neg",))
    rng = ctx.rng("C4")
    agree = disagree_l2 = total = 0
    for j in range(ctx.size["nets"]):
        d = 2 + j % 4
        net = _mlp(rng, (d, 12, 1), hardtanh(), gamma="random", beta="random")
        hp = switching_hyperplanes(net)
        x0 = net.batch.mean(0) + rng.normal(size=d) * 0.7
        r = float(rng.uniform(0.1, 0.8))
        resid = hyperplane_residual(hp.normals, hp.anchor, hp.offsets, x0[None])[0]
        crit = window_slack(dual_norm(hp.normals)[:, None], resid, r) > 0
        crit_l2 = window_slack(dual_norm(hp.normals, 2)[:, None], resid, r) > 0
        for i in range(hp.normals.shape[0]):
            rng_lp = affine_range_over_window(hp.normals[i], x0, r)
            for k in range(hp.offsets.shape[1]):
                c = hp.normals[i] @ hp.anchor + hp.offsets[i, k]
                margin = LP_FEASIBILITY_TOL * (1 + abs(c))
                lp_cut = rng_lp.minimum + margin < c < rng_lp.maximum - margin
                lp_miss = c < rng_lp.minimum - margin or c > rng_lp.maximum + margin
                if not (lp_cut or lp_miss):
                    continue  # within the LP's own tolerance of a touch: the LP cannot decide
                total += 1
                agree += int(crit[i, k] == lp_cut)
                disagree_l2 += int(crit_l2[i, k] != lp_cut)
    ev.check("criterion = LP (cvxpy/HiGHS) on every decidable (hyperplane, window) pair", "certificate",
             agree == total and total > 0, pairs=total, agreements=agree)
    ev.negative("‖a‖₂ in place of ‖a‖₁ disagrees with the LP", disagree_l2 > 0, disagreements=disagree_l2,
                pairs=total)
    return ev


# -- C5 ----------------------------------------------------------------------------------------------------
def generic_normals(W) -> bool:
    """Certificate: every d-subset of the rows of W is linearly independent (exact rank, rationals)."""
    from numerics.certificates import injective

    n, d = W.shape
    return all(injective(W[list(S)].T) for S in itertools.combinations(range(n), d))


def check_c5(ctx: Context) -> Evidence:
    from numerics.certificates import centroid_in_window

    from ..activations import leaky_relu, relu

    ev = Evidence()
    rng = ctx.rng("C5")
    rows, outside = [], []
    for j in range(ctx.size["nets"]):
        d, n = (2, 10) if j % 2 == 0 else (3, 8)
        act = relu() if j % 3 else leaky_relu(0.1)
        net = _mlp(rng, (d, n, 1), act)  # γ = 1, β = 0 = t
        xbar = net.batch.mean(0)
        r = float(rng.uniform(0.2, 1.0))
        x0 = xbar + rng.uniform(-0.9, 0.9, d) * r  # x̄ ∈ int W by construction, certified below
        cert = centroid_in_window(net.batch, x0, r) and generic_normals(net.layers[0].weight)
        res = count_regions(net, x0, r)
        rows.append({"d": d, "n": n, "certified_hypotheses": cert, "N_BN": res.regions, "O3": o3(n, d),
                     "h_BN": res.hits, "certified_count": res.certified})
        far = xbar + 2.5 * r * rng.choice([-1.0, 1.0], d)  # x̄ ∉ W: outside the hypothesis
        res_far = count_regions(net, far, r)
        shifted = Network(d, (Layer(net.layers[0].weight, net.layers[0].bias, act,
                                    BatchNorm(n, "train", None, rng.choice([-1.0, 1.0], n) * rng.uniform(2, 4, n))),
                                net.layers[1]), net.batch)
        res_beta = count_regions(shifted, x0, r)  # β ≠ t: outside the hypothesis
        outside.append({"N_far": res_far.regions, "N_beta_ne_t": res_beta.regions, "O3": o3(n, d),
                        "x_bar_in_far_window": centroid_in_window(net.batch, far, r)})
    ev.check("hypotheses certified (x̄ ∈ int W exactly; every d-subset of normals full rank)", "certificate",
             all(r_["certified_hypotheses"] for r_ in rows), instances=len(rows))
    ev.check("h_BN = n and N_BN = O3 = 2 Σ_{k<d} C(n−1, k) (exact certified counts)", "exact-count",
             all(r_["N_BN"] == r_["O3"] and r_["h_BN"] == r_["n"] and r_["certified_count"] for r_ in rows),
             instances=rows)
    ev.negative("x̄ ∉ W or β ≠ t: the same check finds N_BN ≠ O3",
                all(o["N_far"] != o["O3"] and o["N_beta_ne_t"] != o["O3"] and not o["x_bar_in_far_window"]
                    for o in outside), instances=outside)
    return ev


# -- C6 ----------------------------------------------------------------------------------------------------
def elementary_symmetric(q, order: int) -> np.ndarray:
    e = np.zeros(order + 1)
    e[0] = 1.0
    for qi in q:
        e[1:] = e[1:] + qi * e[:-1]
    return e


def check_c6(ctx: Context) -> Evidence:
    from numerics.certificates import affine_range_over_window, centroid_in_window
    from numerics.sweep import mean_ci95

    from ..activations import identity, relu

    ev = Evidence()
    rng = ctx.rng("C6")
    n_mc = ctx.size["mc_biases"]
    instances, mutated = [], []
    for d, n, r, sigma_b in ((2, 8, 0.15, 1.0), (2, 10, 0.1, 2.0), (3, 6, 0.1, 1.5)):
        W = rng.normal(size=(n, d)) / np.sqrt(d)
        X = rng.normal(size=(16, d))
        x0 = X.mean(0) + rng.uniform(-0.5, 0.5, d) * r
        # 2r‖w‖₁ certified as the LP range of wᵀx over W (cvxpy + HiGHS), not by the closed form
        widths = np.array([(lambda a: a.maximum - a.minimum)(affine_range_over_window(w, x0, r)) for w in W])
        p = 1.0 / (sigma_b * math.sqrt(2 * math.pi))
        q = np.minimum(1.0, widths * p)
        bound_h, bound_n = float(q.sum()), float(elementary_symmetric(q, d).sum())
        bn_net = Network(d, (Layer(W, np.zeros(n), relu(), BatchNorm(n, "train")),
                             Layer(np.ones((1, n)), np.zeros(1), identity(), None)), X)
        n_bn = count_regions(bn_net, x0, r)
        plain = bn_net.without_batchnorm()
        hs, Ns = [], []
        for _ in range(n_mc):
            res = count_regions(_with_biases(plain, rng, sigma_b), x0, r)
            hs.append(res.hits)
            Ns.append(res.regions)
        (mh, ci_h), (mN, ci_N) = mean_ci95(hs), mean_ci95(Ns)
        sufficient = centroid_in_window(X, x0, r) and bound_n <= o3(n, d)
        instances.append({"d": d, "n": n, "r": r, "sigma_b": sigma_b, "E_h_plain": mh, "E_h_plain_ci95": ci_h,
                          "bound_h": bound_h, "E_N_plain": mN, "E_N_plain_ci95": ci_N, "bound_N": bound_n,
                          "N_BN": n_bn.regions, "O3": o3(n, d), "sufficient_condition_certified": sufficient})
        mutated.append({"E_h_plain_ci95": ci_h, "mutated_bound_h": float(np.minimum(1.0, widths * p / 2).sum())})
    ok = all(i_["E_h_plain_ci95"][0] <= i_["bound_h"] and i_["E_N_plain_ci95"][0] <= i_["bound_N"]
             and (not i_["sufficient_condition_certified"] or i_["bound_N"] <= i_["N_BN"]) for i_ in instances)
    ev.check("E[h_plain] ≤ Σq and E[N_plain] ≤ Σ e_k(q) (Monte Carlo, exact counts, 95 % CI)", "monte-carlo", ok,
             instances=instances)
    certified = [i_ for i_ in instances if i_["sufficient_condition_certified"]]
    ev.check("where the sufficient condition is certified (x̄ ∈ int W, Σ e_k(q) ≤ O3): E[N_plain] ≤ N_BN = O3",
             "certificate", len(certified) > 0 and all(i_["E_N_plain"] <= i_["N_BN"] == i_["O3"] for i_ in certified),
             certified_instances=len(certified))
    ev.negative("mutated bound q = r‖w‖₁p (factor 2 dropped) is violated by the Monte Carlo",
                any(m["E_h_plain_ci95"][0] > m["mutated_bound_h"] for m in mutated), instances=mutated)
    ev.numbers = {"instances": instances}
    return ev


# -- C7 ----------------------------------------------------------------------------------------------------
def check_c7(ctx: Context, progress: bool = False) -> Evidence:
    from numerics.sweep import l2_ball_hit_probability

    from .phase import phase_rows, plot_phase, plot_phase_slices

    ev = Evidence()
    rows = phase_rows(ctx, progress=progress)
    ctx.shared["phase"] = rows
    fig = ctx.out / "phase_diagram.png"
    plot_phase(rows, fig)
    ev.figures.append(fig.name)
    if plot_phase_slices(rows, ctx.out / "phase_diagram_slices.png"):
        ev.figures.append("phase_diagram_slices.png")
    at_centroid = [r for r in rows if r["distance"] == 0.0]
    ev.check("D = 0 (C5): E[h_BN] = n and BN refines more at every bias scale", "monte-carlo",
             all(r["h_bn_mean"] == r["widths"][0] and r["phase"] == "bn" for r in at_centroid),
             points=len(at_centroid))
    plain_points = [(r["bias_scale"], r["distance"], r["radius"], r["batch_size"]) for r in rows
                    if r["phase"] == "plain"]
    inside = [r for r in rows if r["inside_sufficient_condition"]]
    ev.check("inside C5/C6's sufficient condition BN refines more: h (CI) and exact N (every counted network)",
             "exact-count", len(inside) > 0 and all(r["phase"] == "bn" and r["p_n_bn_ge_plain"] == 1.0
                                                    for r in inside), points=len(inside))
    n_fail = [(r["bias_scale"], r["distance"]) for r in rows if r.get("phase_N") == "plain"]
    outside_fail = [p for p in n_fail if p not in {(r["bias_scale"], r["distance"]) for r in inside}]
    ev.check("the diagram has both phases: BN refines more near x̄, no-BN refines more at some distance",
             "monte-carlo", any(r["phase"] == "bn" for r in rows) and len(plain_points) > 0,
             plain_phase_points=plain_points)
    # closed form vs Monte Carlo, through the core's ℓ2 criterion (dual norm 2)
    rng = ctx.rng("C7")
    N = ctx.size["ball_samples"]
    worst_z, worst_mut_z, table = 0.0, np.inf, []
    for d, r, D in ((2, 0.5, 1.0), (3, 0.3, 1.0), (5, 0.5, 2.0), (10, 1.0, 1.5)):
        w = rng.normal(size=(N, d))
        u = rng.normal(size=d)
        u *= D / np.linalg.norm(u)
        hit = window_slack(dual_norm(w, 2), w @ u, r) >= 0
        freq = float(hit.mean())
        p, p_mut = l2_ball_hit_probability(r, D, d), l2_ball_hit_probability(r, D, d + 1)
        z = abs(freq - p) / math.sqrt(p * (1 - p) / N)
        z_mut = abs(freq - p_mut) / math.sqrt(p_mut * (1 - p_mut) / N)
        worst_z, worst_mut_z = max(worst_z, z), min(worst_mut_z, z_mut)
        table.append({"d": d, "r": r, "D": D, "monte_carlo": freq, "closed_form": p, "mutated": p_mut})
    ev.check("ℓ2 ball at D > r: Monte Carlo = I_{(r/D)²}(1/2, (d−1)/2) within 4σ", "monte-carlo", worst_z < 4.0,
             worst_z=worst_z, table=table)
    ev.negative("mutated closed form I_{(r/D)²}(1/2, d/2) rejected by the same Monte Carlo (> 4σ)",
                worst_mut_z > 4.0, min_z=worst_mut_z)
    ev.negative("'BN always refines more' (C5/C6 without their conditions) refuted by CI-separated points",
                len(plain_points) > 0, counterexamples=plain_points)
    ev.negative("'BN refines more in N' outside the sufficient condition: refuted by exact counts (CI below 0)",
                len(outside_fail) > 0, counterexamples_sigma_b_D=outside_fail)
    ev.numbers = {"grid_points": len(rows), "plain_phase_points": len(plain_points),
                  "plain_phase_points_exact_N": n_fail}
    return ev


# -- C8 ----------------------------------------------------------------------------------------------------
def _c8_activations():
    from ..activations import hardtanh, leaky_relu, relu6, spline

    return {"hardtanh": hardtanh(), "relu6": relu6(), "leaky_relu": leaky_relu(0.2),
            "spline": spline([-1.0, 0.5, 2.0], [0.0, 1.0, 0.5], 0.0, 1.0)}


def check_c8(ctx: Context) -> Evidence:
    from numerics.sweep import SweepConfig, grid_points, run_point

    ev = Evidence()
    symbolic(ev, ctx, ("C8",), ("C8-neg", "C8-neg-scale"))
    rng = ctx.rng("C8")
    worst, mutated_gamma, mutated_l1, o4 = 0.0, np.inf, np.inf, []
    for name, act in _c8_activations().items():
        t = act.breakpoints_array
        for _ in range(ctx.size["nets"]):
            net = _mlp(rng, (3, 10, 1), act, gamma="random", beta="random")
            hp = switching_hyperplanes(net)
            g, wn = net.layers[0].batchnorm.gamma, np.linalg.norm(net.layers[0].weight, axis=1)
            w1 = np.abs(net.layers[0].weight).sum(1)
            for k in range(t.size - 1):
                got = np.abs(hp.offsets[:, k + 1] - hp.offsets[:, k]) / wn
                want = hp.scale * (t[k + 1] - t[k]) / (np.abs(g) * wn)
                worst = max(worst, float(np.max(np.abs(got - want) / want)))
                mutated_gamma = min(mutated_gamma, float(np.max(np.abs(got - hp.scale * (t[k + 1] - t[k]) /
                                                                       (g * wn)) / want)))
                mutated_l1 = min(mutated_l1, float(np.max(np.abs(got - hp.scale * (t[k + 1] - t[k]) /
                                                                 (np.abs(g) * w1)) / want)))
            # O4 in d = 1: every hyperplane obeys C4 separately, N = 1 + distinct breakpoints inside
            net1 = _mlp(rng, (1, 6, 1), act, gamma="random", beta="random")
            x0, r = net1.batch.mean(0) + rng.normal(size=1) * 0.3, float(rng.uniform(0.2, 1.0))
            res = count_regions(net1, x0, r)
            hits = int(window_hits(switching_hyperplanes(net1), x0[None], r)[0])
            o4.append((res.regions, 1 + hits))
    ev.check("spacing s(t_{k+1} − t_k)/(|γ|‖w‖₂) between consecutive parallel hyperplanes", "numeric",
             worst <= BATCH_FORMULA_RTOL, max_relative_error=worst)
    ev.check("d = 1 (O4): exact count = 1 + C4 hits for every activation", "exact-count",
             all(a == b for a, b in o4), instances=len(o4))
    cfg = SweepConfig(seed=ctx.seed, d=3, widths=(24,), networks=256, activation="hardtanh",
                      gamma={"dist": "signed_uniform", "low": 0.5, "high": 2.0}, windows="centroid",
                      bias_scales=(0.5, 2.0), radii=(0.1,))
    rows = [run_point(cfg, p) for p in grid_points(cfg)]
    ev.check("C6 with K = 2 per neuron (hard-tanh): E[h_plain] ≤ Σ K·q_i (Monte Carlo CI)", "monte-carlo",
             all(r["h_plain_ci95"][0] <= r["c6_bound_h_plain"] for r in rows),
             rows=[{k: r[k] for k in ("bias_scale", "h_plain_mean", "c6_bound_h_plain", "h_bn_mean")} for r in rows])
    ev.negative("mutated spacing with γ for |γ|: does not match", mutated_gamma > BATCH_FORMULA_RTOL,
                min_max_relative_error=mutated_gamma)
    ev.negative("mutated spacing with ‖w‖₁ for ‖w‖₂: does not match", mutated_l1 > BATCH_FORMULA_RTOL,
                min_max_relative_error=mutated_l1)
    return ev


# -- C9 ----------------------------------------------------------------------------------------------------
def _direct_layer_range(net: Network, layer: int, center, radius):
    """Independent truth for C9: layer-``layer`` pre-activations as affine functions on the window's parent
    region, with BN statistics from the textbook batch computation; returns per neuron the (min, max) of ẑ
    over W by cvxpy LPs."""
    from numerics.certificates import affine_range_over_window

    cond = net.condition()
    A, c = cond.affine_map(center, layer)  # input of ``layer`` on the parent region
    H = net.batch
    for l in net.layers[:layer]:  # the batch's representations by a plain forward pass
        Z = H @ l.weight.T + l.bias
        Z = bn_transform(Z, Z.mean(0), Z.var(0), l.batchnorm.gamma, l.batchnorm.beta, l.batchnorm.eps)
        H = l.activation(Z)
    L = net.layers[layer]
    Zb = H @ L.weight.T + L.bias
    mu, var = Zb.mean(0), Zb.var(0)
    g = L.batchnorm.gamma / np.sqrt(var + L.batchnorm.eps)
    lin = (g[:, None] * L.weight) @ A
    const = g * (L.weight @ c + L.bias - mu) + L.batchnorm.beta
    out = []
    for i in range(lin.shape[0]):
        rr = affine_range_over_window(lin[i], center, radius)
        out.append((rr.minimum + const[i], rr.maximum + const[i]))
    return out


def pullback_instance(rng, d: int = 3, n2: int = 8) -> tuple[Network, np.ndarray]:
    """A d-d-n2-1 network (leaky ReLU then ReLU, BN γ = 1, β = 0 on layer 2) and the pull-back x*_P of the
    layer-2 centroid h̄ in the parent region that contains it (C9 + C5 inside P: N = O3(n2, d) there)."""
    from ..activations import identity, leaky_relu, relu

    X = rng.normal(size=(16, d))
    l1 = Layer(rng.normal(size=(d, d)), rng.normal(size=d), leaky_relu(0.2),
               BatchNorm(d, "train", rng.uniform(0.5, 2, d), rng.normal(size=d) * 0.3))
    l2 = Layer(rng.normal(size=(n2, d)), rng.normal(size=n2), relu(), BatchNorm(n2, "train"))
    net = Network(d, (l1, l2, Layer(np.ones((1, n2)), np.zeros(1), identity(), None)), X)
    cond = net.condition()
    hbar, b1 = cond.layers[1].bn.anchor, cond.layers[0].bn
    # solve ẑ1(x) = φ⁻¹(h̄): leaky ReLU is invertible, so this x lies in the region whose map it inverts
    z_target = np.where(hbar > 0, hbar, hbar / 0.2)
    return net, b1.anchor + np.linalg.solve(b1.gain[:, None] * l1.weight, z_target - b1.shift)


def check_c9(ctx: Context) -> Evidence:
    import jax.numpy as jnp
    from numerics.certificates import injective, window_inside_parent_region
    from numerics.kernels import deep_hit_counts

    ev = Evidence()
    symbolic(ev, ctx, ("C9",), ("C9-neg", "C9-neg-range"))
    rng = ctx.rng("C9")
    d, n2, r = 3, 8, 0.02
    c5_rows, agree, total, mutated_wrong, o1_ok = [], 0, 0, 0, True
    for _ in range(max(2, ctx.size["nets"] // 2)):
        net, x_star = pullback_instance(rng, d, n2)
        X, cond = net.batch, net.condition()
        hbar = cond.layers[1].bn.anchor
        A, c = cond.affine_map(x_star, 1)
        in_range = bool(np.linalg.norm(A @ x_star + c - hbar) <= PULLBACK_RTOL * (1 + np.linalg.norm(hbar)))
        inside = window_inside_parent_region(cond, x_star, r, 1)
        res = count_regions(net, x_star, r)
        hp2 = switching_hyperplanes(cond, 1, affine=(A, c))
        h2 = int(window_hits(hp2, x_star[None], r)[0])
        c5_rows.append({"injective": injective(A), "pullback_in_range": in_range, "W_inside_P": inside,
                        "N": res.regions, "O3": o3(n2, d), "h2": h2, "anchor_is_pullback": hp2.anchor_is_pullback})
        # windows at random points, kept when W ⊆ P is certified: JAX deep hits vs LP truth
        pts = X[:6] + rng.normal(size=(6, d)) * 0.2
        for x0 in pts:
            if not window_inside_parent_region(cond, x0, r * 5, 1):
                continue
            Ax, cx = cond.affine_map(x0, 1)
            L = cond.layers[1]
            offs, _ = L.bn.switching_offsets(L.activation.breakpoints_array)
            got = int(deep_hit_counts(jnp.asarray(L.weight), jnp.asarray(Ax[None]), jnp.asarray(cx[None]),
                                      jnp.asarray(L.bn.anchor), jnp.asarray(offs), jnp.asarray(x0[None]), r * 5)[0])
            truth = sum(lo < 0.0 < hi for lo, hi in _direct_layer_range(net, 1, x0, r * 5))
            # mutated statement: the layer anchor is h(x̄) (the centroid pushed forward), not the mean h̄
            h_of_xbar = cond.layers[0].forward(X.mean(0)[None])[0]
            mut = int(deep_hit_counts(jnp.asarray(L.weight), jnp.asarray(Ax[None]), jnp.asarray(cx[None]),
                                      jnp.asarray(h_of_xbar), jnp.asarray(offs), jnp.asarray(x0[None]), r * 5)[0])
            total += 1
            agree += int(got == truth)
            mutated_wrong += int(mut != truth)
            cnt = count_regions(net, x0, r * 5)
            o1_ok &= 1 + got <= cnt.regions <= sum(math.comb(got, k) for k in range(d + 1)) and cnt.certified
    ev.check("pull-back certified (A_P injective by exact rank, h̄ − c_P ∈ range A_P, W ⊆ P by the counter)",
             "certificate", all(r_["injective"] and r_["pullback_in_range"] and r_["W_inside_P"]
                                and r_["anchor_is_pullback"] for r_ in c5_rows), instances=c5_rows)
    ev.check("C5 inside P: h_2 = n_2 and N = O3 at W(x*_P, r) (exact certified counts)", "exact-count",
             all(r_["h2"] == n2 and r_["N"] == r_["O3"] for r_ in c5_rows), instances=c5_rows)
    ev.check("deep hitting numbers (JAX, normal A_Pᵀw) = LP truth from the textbook batch computation",
             "certificate", total > 0 and agree == total, windows=total, agreements=agree)
    ev.check("O1 inside P: 1 + h ≤ N ≤ Σ_{k≤d} C(h, k) with the exact counter", "exact-count", o1_ok and total > 0)
    # d = 1, deep hard-tanh layer inside certified parent intervals: O4 makes the count exact, N = 1 + h_2
    from ..activations import hardtanh, identity, leaky_relu

    o4 = []
    for _ in range(ctx.size["nets"]):
        X1 = rng.normal(size=(12, 1))
        net1 = Network(1, (Layer(rng.normal(size=(2, 1)), rng.normal(size=2), leaky_relu(0.2), BatchNorm(2, "train")),
                           Layer(rng.normal(size=(6, 2)), rng.normal(size=6), hardtanh(),
                                 BatchNorm(6, "train", rng.uniform(0.5, 2, 6) * rng.choice([-1.0, 1.0], 6),
                                           rng.normal(size=6) * 0.5)),
                           Layer(np.ones((1, 6)), np.zeros(1), identity(), None)), X1)
        cond1 = net1.condition()
        for x0 in X1[:4]:
            if not window_inside_parent_region(cond1, x0, 0.3, 1):
                continue
            A1, c1 = cond1.affine_map(x0, 1)
            L = cond1.layers[1]
            offs, _ = L.bn.switching_offsets(L.activation.breakpoints_array)
            h_deep = int(deep_hit_counts(jnp.asarray(L.weight), jnp.asarray(A1[None]), jnp.asarray(c1[None]),
                                         jnp.asarray(L.bn.anchor), jnp.asarray(offs), jnp.asarray(x0[None]), 0.3)[0])
            o4.append((count_regions(net1, x0, 0.3).regions, 1 + h_deep))
    ev.check("d = 1 inside certified parent intervals (O4): exact count N = 1 + deep hits (JAX kernel)", "exact-count",
             len(o4) > 0 and all(a == b for a, b in o4), windows=len(o4))
    ev.negative("mutated anchor h(x̄) for the batch mean h̄ mispredicts the hits", mutated_wrong > 0,
                windows=total, wrong=mutated_wrong)
    return ev
