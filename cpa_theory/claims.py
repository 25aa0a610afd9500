"""The claims registry: one object per THEORY claim C1–C10, linking every kind of evidence.

Each :class:`Claim` names its statement and assumptions, the symbolic obligations that prove it
(``proofs/``) and those that must be refuted (its symbolic negative controls), WHERE the numeric check that
``cpa-theory reproduce`` runs lives (a dotted name, ``module:function``: the registry imports nothing from
``reproduce/``; ``cpa_theory.reproduce.check_function`` resolves it), what that check's negative control is,
the mutation of the implementation that makes the check fail, and the tests that exercise it. The README's
claim table is generated from here (:func:`markdown_table`; ``python -m cpa_theory.claims``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import CPAInputError

__all__ = ["Claim", "CLAIMS", "get", "select", "markdown_table"]


@dataclass(frozen=True)
class Claim:
    id: str
    title: str
    statement: str
    assumptions: tuple[str, ...]
    proofs: tuple[str, ...]  # obligations that must be proved
    negative_proofs: tuple[str, ...]  # obligations that must be refuted
    evidence: str  # what the numeric check measures (certificates, Monte Carlo, exact counts)
    negative_control: str  # what the same check must reject
    tests: tuple[str, ...]
    check_ref: str = ""  # "module:function" of the numeric check (resolved by cpa_theory.reproduce)
    mutation: str = ""  # a mutation of the implementation that makes the check fail (tests/test_reproduce.py)


CLAIMS: tuple[Claim, ...] = (
    Claim("C1", "bias independence",
          "ẑ(x) = γ u(x) + β with u(x) = wᵀ(x − x̄)/s: the raw bias b cancels, ∂ẑ/∂b ≡ 0.",
          ("train-mode BN conditioned on a batch, B ≥ 2",),
          ("C1", "C1-unbiased"), ("C1-neg",),
          "textbook batch forward (z = Wx + b over the batch, μ, biased σ², raw b included) = core forward on "
          "random deep networks; redrawing every raw bias leaves both unchanged",
          "eval-mode BN (running statistics): the same bias redraw changes the textbook outputs",
          ("tests/test_bn.py", "tests/test_proofs.py", "tests/test_reproduce.py"),
          "cpa_theory.reproduce.checks_bn:check_c1", "σ² with the unbiased divisor in the core (B − 1)"),
    Claim("C2", "reference hyperplane through the centroid",
          "H_ref = {x : wᵀ(x − x̄) = 0} passes through x̄ (ẑ(x̄) = β).",
          ("train-mode BN", "γ ≠ 0, w ≠ 0"),
          ("C2", "C2-unbiased"), ("C2-neg", "C2-neg-running-mean"),
          "textbook and core: ẑ(x̄) = β for every neuron (batch far from 0); the core's H_ref contains x̄",
          "eval-mode BN with a running mean other than the batch's: ẑ(x̄) ≠ β",
          ("tests/test_bn.py", "tests/test_proofs.py", "tests/test_reproduce.py"),
          "cpa_theory.reproduce.checks_bn:check_c2", "the core's BN anchor at the origin instead of x̄"),
    Claim("C3", "parallel translates at standardised offsets",
          "{ẑ = t_k} = {u = τ_k}, τ_k = (t_k − β)/γ, at signed distance sτ_k/‖w‖₂ from x̄; τ_k independent of "
          "b, w and the batch; γ < 0 flips the pieces.",
          ("train-mode BN", "γ ≠ 0"),
          ("C3",), ("C3-neg", "C3-unbiased-neg"),
          "points on the core's switching hyperplanes have textbook ẑ = t_k; τ unchanged under new b, w, batch; "
          "off the hyperplanes the core's piece = the textbook ẑ's piece (γ of both signs)",
          "the mutated offset τ = t − β (no division by γ) misplaces the switching sets; the piece read from the "
          "sign of aᵀx − c disagrees where γ < 0",
          ("tests/test_bn.py", "tests/test_windows.py", "tests/test_reproduce.py"),
          "cpa_theory.reproduce.checks_bn:check_c3",
          "τ without /γ in the core's offset formula; the core's pieces flipped where γ < 0"),
    Claim("C4", "exact ℓ∞ window criterion",
          "aᵀx = c meets W(x0, r) iff |aᵀx0 − c| ≤ r‖a‖₁, cuts int W iff strict; BN: |u(x0) − τ| ≤ r‖w‖₁/s.",
          ("a ≠ 0", "r > 0"),
          ("C4", "C4-holder"), ("C4-neg",),
          "core criterion vs LP/conic ranges of aᵀx over the box (HiGHS) and the ℓ2 ball (Clarabel) on random "
          "hyperplanes of BN layers; windows built to be touched exactly (a corner or a face, data mean 100) vs a "
          "rational corner enumeration; sympy derives the box maximum coordinate-wise and the ℓp form by Hölder",
          "the mutated criterion with ‖a‖₂ in place of ‖a‖₁ disagrees with the LP; 'cuts iff ≤' (non-strict) "
          "disagrees on the touching windows",
          ("tests/test_windows.py", "tests/test_proofs.py", "tests/test_reproduce.py"),
          "cpa_theory.reproduce.checks_window:check_c4",
          "the core's window criterion with ‖·‖₂; the core counting a touch as a cut"),
    Claim("C5", "centroid in the window: maximal hitting",
          "single breakpoint, β = t, γ ≠ 0, w ≠ 0, x̄ ∈ int W ⇒ h_BN = n; generic normals ⇒ N_BN = "
          "2 Σ_{k<d} C(n−1, k) (O3).",
          ("single-breakpoint activation", "β = t", "x̄ ∈ int W (certified)", "generic normals (certified)"),
          (), (),
          "certificates (x̄ ∈ int W exactly, every d-subset of normals of full rank exactly), then exact "
          "certified counts N_BN = O3 and textbook h_BN = n (γ = 1, t = 0, and γ of both signs with β = t ≠ 0); "
          "O1 counts distinct hyperplanes (w, 2w, −w: N = 2)",
          "windows outside the hypothesis (x̄ ∉ W, or β ≠ t): the same check finds N_BN ≠ O3",
          ("tests/test_regions.py", "tests/test_sweep.py", "tests/test_reproduce.py"),
          "cpa_theory.reproduce.checks_refinement:check_c5", "O3 off by one (closed_forms.o3)"),
    Claim("C6", "expected refinement (sufficient condition)",
          "E[h_plain] ≤ Σ q_i, E[N_plain] ≤ Σ_{k≤d} e_k(q), q_i = min(1, 2r‖w_i‖₁ p_i); where "
          "Σ e_k(q) ≤ O3, E[N_plain] ≤ N_BN.",
          ("independent raw biases with densities ≤ p_i", "C5's hypotheses for the N_BN side"),
          (), (),
          "exact Gaussian E[h_plain] (closed form, confirmed by Monte Carlo) ≤ Σq on instances where the bound is "
          "within a few % of it; E[N_plain] by exact counts (t interval) ≤ Σ e_k(q) and ≤ N_BN where Σ e_k(q) is "
          "just below O3; every sampled no-BN count = the textbook line-arrangement count 1 + h + #crossings "
          "(rationals) and ≤ Σ_{k≤d} C(h, k)",
          "a bound 5 % too small is refuted by the exact E[h_plain]",
          ("tests/test_sweep.py", "tests/test_closed_forms.py", "tests/test_reproduce.py"),
          "cpa_theory.reproduce.checks_refinement:check_c6",
          "the C6 bound 5 % too small (closed_forms.c6_q); a counter that adds regions to no-BN networks"),
    Claim("C7", "where refinement fails: the phase diagram",
          "far from the centroid BN's hyperplanes miss the window; there is a crossover distance beyond which "
          "the network without BN refines more — by hits h and by regions N, which can disagree; ℓ2 ball at "
          "distance D > r: P(hit) = I_{(r/D)²}(1/2, (d−1)/2), 1 for D ≤ r.",
          ("w uniform in direction, β = 0 for the closed form",),
          (), (),
          "phase diagrams for h and N (3 settings; N by Euler counts over every network, certified network by "
          "network by the exact counter), Holm-corrected cell verdicts, "
          "crossover D*_h and D*_N with bootstrap CIs (D*_h against the exact crossovers with Bonferroni-level "
          "intervals: all must cover); every cell against the d = 2 box closed forms; "
          "sweep hits against textbook corner tests; the N-vs-h disagreement at the centroid",
          "the mutated closed form I_{(r/D)²}(1/2, d/2) is rejected; 'BN always refines more' (h), 'BN refines "
          "more at the centroid, hence by N' and 'D* does not depend on the direction' are refuted",
          ("tests/test_sweep.py", "tests/test_closed_forms.py", "tests/test_reproduce.py"),
          "cpa_theory.reproduce.checks_refinement:check_c7", "the sweep kernel with the ℓ2 dual norm"),
    Claim("C8", "general CPA activations",
          "K breakpoints give K parallel hyperplanes at τ_k = (t_k − β)/γ spaced s(t_{k+1} − t_k)/(|γ|‖w‖₂); "
          "each obeys C4; C5–C7 carry over with K per neuron.",
          ("continuous piecewise-affine φ", "γ ≠ 0"),
          ("C8",), ("C8-neg", "C8-neg-scale"),
          "spacing MEASURED by locating ẑ = t_k along w (textbook forward passes + brentq) vs the formula and the "
          "core's hyperplanes, and their order (reversed for γ < 0); exact d = 1 counts = 1 + measured breakpoints "
          "(O4); exact E[h_plain] ≤ Σ K·q_i; C6's N with K = 2: exact counts = textbook line counts, ≤ Σ_S Π h_i "
          "over distinct neurons, mean ≤ Σ e_k(K·q)",
          "the mutated spacing with ‖w‖₁ for ‖w‖₂, and the order 'H_{k+1} always on the + side', do not match",
          ("tests/test_activations.py", "tests/test_proofs.py", "tests/test_reproduce.py"),
          "cpa_theory.reproduce.checks_window:check_c8", "τ without /γ in the core's offset formula"),
    Claim("C9", "transfer inside parent regions (depth)",
          "on a parent region P (h = A_P x + c_P) a layer-ℓ switching set has normal A_Pᵀw; for W ⊆ P it meets W "
          "iff |wᵀ(A_P x0 + c_P − h̄) − sτ| ≤ r‖A_Pᵀw‖₁; in general it is a translate through the least-squares "
          "pull-back x*_P at offset τ + δ_w, δ_w = wᵀy⊥/s (exact transfer iff δ_w = 0).",
          ("W ⊆ P (certified)", "general case: least-squares pull-back x*_P, effective offset τ + δ_w",
           "exact transfer (δ_w = 0) only where h̄ − c_P ∈ range A_P is certified"),
          ("C9", "C9-general"), ("C9-neg", "C9-neg-range"),
          "width-8 deep networks, W ⊆ P certified: general criterion = textbook corner hits = core deep hits; exact "
          "counts = Euler count of the general-case lines (crossings inside W required); δ_w distribution on random "
          "and trained networks; A_Pᵀw = 0 reported as a neuron constant on P (textbook: one value of ẑ₂ on W); "
          "exact "
          "transfer (N = O3 at x*_P) only on square first layers where it is certified",
          "'transfer is exact' on wide layers is refuted (δ_w ≠ 0); dropping δ_w mispredicts the hits",
          ("tests/test_network.py", "tests/test_sweep.py", "tests/test_proofs.py", "tests/test_reproduce.py"),
          "cpa_theory.reproduce.checks_depth:check_c9",
          "the pull-back with Aᵀ in place of A's pseudo-inverse; a core that calls a neuron with A_Pᵀw = 0 regular"),
    Claim("C10", "BatchNorm2d recentres at the mean patch, not at the centroid (convolutions)",
          "after a conv, train-mode BatchNorm2d gives ẑ_{c,p} = γ_c w_cᵀ(P_p x − m̄)/s_c + β_c (m̄: mean patch over "
          "batch × positions): the raw bias cancels per channel (C10a); the reference set of (c, p) passes through "
          "x̄ iff w_cᵀ(P_p x̄ − m̄) = 0, i.e. not in general (C10b); C4 holds per neuron with a = γ_c P_pᵀw_c/s_c "
          "(C10c).",
          ("train-mode BatchNorm2d conditioned on a batch, B ≥ 2", "γ_c ≠ 0", "zero padding (border patches)"),
          ("C10a", "C10b", "C10b-stationary", "C10c"), ("C10a-neg", "C10b-neg", "C10c-neg"),
          "textbook loops over positions (conv with raw b, statistics over batch × positions) and torch "
          "BatchNorm2d vs the core's conv network on scikit-learn digits: outputs, bias redraw, offsets "
          "w_cᵀ(P_p x̄ − m̄) (also with zero padding 1), the foot of the perpendicular from x̄ has ẑ = β, normals "
          "γ_c P_pᵀw_c/s_c; "
          "distances of the reference sets from x̄; a constant centroid image puts every reference through x̄",
          "'every reference set passes through x̄' (C2 verbatim) is refuted on digits; eval mode moves with the "
          "bias; s from one position's batch (BatchNorm1d per position) mismatches the normals",
          ("tests/test_proofs_c10.py", "tests/test_conv_geometry.py", "tests/test_convnets.py",
           "tests/test_reproduce.py"),
          "cpa_theory.reproduce.checks_conv:check_c10",
          "σ² of BatchNorm2d with the unbiased divisor in the core; conv padding by edge values instead of zeros"),
)

_BY_ID = {c.id: c for c in CLAIMS}


def get(claim_id: str) -> Claim:
    try:
        return _BY_ID[claim_id.upper()]
    except KeyError:
        raise CPAInputError(f"unknown claim {claim_id!r}; choose from {', '.join(_BY_ID)}.") from None


def select(ids=None) -> list[Claim]:
    """Claims by id (``None``: all), in registry order."""
    if not ids:
        return list(CLAIMS)
    wanted = {get(i).id for i in ids}
    return [c for c in CLAIMS if c.id in wanted]


def markdown_table() -> str:
    """The README's claim table."""
    rows = ["| claim | statement | proof (sympy) | numeric evidence | negative control | mutation that fails it |",
            "|---|---|---|---|---|---|"]
    for c in CLAIMS:
        proof = ", ".join(c.proofs) + (f"; refuted: {', '.join(c.negative_proofs)}" if c.negative_proofs else "") \
            if c.proofs else "—"
        cells = [f"**{c.id}** {c.title}", c.statement, proof, c.evidence, c.negative_control, c.mutation]
        rows.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")  # |x| must not end a cell
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # python -m cpa_theory.claims > table.md  (the README's claim table)
    print(markdown_table(), end="")
