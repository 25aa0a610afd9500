"""The claims registry: one object per THEORY claim C1–C9, linking every kind of evidence.

Each :class:`Claim` names its statement and assumptions, the symbolic obligations that prove it
(``proofs/``) and those that must be refuted (its symbolic negative controls), the numeric check that
``cpa-theory reproduce`` runs (``cpa_theory.reproduce.checks``), what that check's negative control is, and
the tests that exercise it. The README's claim table is generated from here (:func:`markdown_table`).
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

    @property
    def check(self):
        """The numeric check: ``check(ctx) -> Evidence`` (imported lazily: it needs JAX and cvxpy)."""
        from .reproduce import checks

        return getattr(checks, f"check_{self.id.lower()}")


CLAIMS: tuple[Claim, ...] = (
    Claim("C1", "bias independence",
          "ẑ(x) = γ u(x) + β with u(x) = wᵀ(x − x̄)/s: the raw bias b cancels, ∂ẑ/∂b ≡ 0.",
          ("train-mode BN conditioned on a batch, B ≥ 2",),
          ("C1", "C1-unbiased"), ("C1-neg",),
          "random deep networks: outputs at random points unchanged when every raw bias is redrawn",
          "eval-mode BN (running statistics): the same bias redraw changes the outputs",
          ("tests/test_bn.py", "tests/test_proofs.py", "tests/test_reproduce.py")),
    Claim("C2", "reference hyperplane through the centroid",
          "H_ref = {x : wᵀ(x − x̄) = 0} passes through x̄ (ẑ(x̄) = β).",
          ("train-mode BN", "γ ≠ 0, w ≠ 0"),
          ("C2", "C2-unbiased"), ("C2-neg", "C2-neg-running-mean"),
          "direct batch formula z = Wx + b, μ, σ² at x̄ gives ẑ = β for every neuron (batch far from 0)",
          "eval-mode BN with a running mean other than the batch's: ẑ(x̄) ≠ β",
          ("tests/test_bn.py", "tests/test_proofs.py", "tests/test_reproduce.py")),
    Claim("C3", "parallel translates at standardised offsets",
          "{ẑ = t_k} = {u = τ_k}, τ_k = (t_k − β)/γ, at signed distance sτ_k/‖w‖₂ from x̄; τ_k independent of "
          "b, w and the batch; γ < 0 flips the pieces.",
          ("train-mode BN", "γ ≠ 0"),
          ("C3",), ("C3-neg", "C3-unbiased-neg"),
          "points placed at distance sτ_k/‖w‖₂ along w have ẑ = t_k (direct batch formula); τ unchanged under "
          "new b, w, batch",
          "the mutated offset τ = t − β (no division by γ) misplaces the switching sets",
          ("tests/test_bn.py", "tests/test_windows.py", "tests/test_reproduce.py")),
    Claim("C4", "exact ℓ∞ window criterion",
          "aᵀx = c meets W(x0, r) iff |aᵀx0 − c| ≤ r‖a‖₁, cuts int W iff strict; BN: |u(x0) − τ| ≤ r‖w‖₁/s.",
          ("a ≠ 0", "r > 0"),
          ("C4",), ("C4-neg",),
          "criterion vs LP ranges of aᵀx over the window (cvxpy + HiGHS) on random hyperplanes of a BN layer",
          "the mutated criterion with ‖a‖₂ in place of ‖a‖₁ disagrees with the LP",
          ("tests/test_windows.py", "tests/test_proofs.py", "tests/test_reproduce.py")),
    Claim("C5", "centroid in the window: maximal hitting",
          "single breakpoint, β = t, γ ≠ 0, w ≠ 0, x̄ ∈ int W ⇒ h_BN = n; generic normals ⇒ N_BN = "
          "2 Σ_{k<d} C(n−1, k) (O3).",
          ("single-breakpoint activation", "β = t", "x̄ ∈ int W (certified)", "generic normals (certified)"),
          (), (),
          "certificates (x̄ ∈ int W exactly, every d-subset of normals of full rank exactly), then exact "
          "certified counts N_BN = O3 and h_BN = n",
          "windows outside the hypothesis (x̄ ∉ W, or β ≠ t): the same check finds N_BN ≠ O3",
          ("tests/test_regions.py", "tests/test_sweep.py", "tests/test_reproduce.py")),
    Claim("C6", "expected refinement (sufficient condition)",
          "E[h_plain] ≤ Σ q_i, E[N_plain] ≤ Σ_{k≤d} e_k(q), q_i = min(1, 2r‖w_i‖₁ p_i); where "
          "Σ e_k(q) ≤ O3, E[N_plain] ≤ N_BN.",
          ("independent raw biases with densities ≤ p_i", "C5's hypotheses for the N_BN side"),
          (), (),
          "2r‖w‖₁ certified by LP ranges; Monte Carlo over biases with exact counts: E[N_plain] (95 % CI) ≤ "
          "bound ≤ N_BN",
          "the mutated bound q_i = r‖w_i‖₁ p_i (factor 2 dropped) is violated by the Monte Carlo mean",
          ("tests/test_sweep.py", "tests/test_reproduce.py")),
    Claim("C7", "where refinement fails: the phase diagram",
          "far from the centroid BN's hyperplanes miss the window; there is a crossover distance beyond which "
          "the network without BN refines more; ℓ2 ball at distance D > r: P(hit) = I_{(r/D)²}(1/2, (d−1)/2).",
          ("w uniform in direction, β = 0 for the closed form",),
          (), (),
          "phase diagram over distance × bias scale (× radius × batch size): Monte Carlo hits with CIs, exact "
          "counts on a slice; closed form vs Monte Carlo",
          "the mutated closed form I_{(r/D)²}(1/2, d/2) is rejected by the Monte Carlo; 'BN always refines "
          "more' is refuted by the far points (negative control of C5/C6)",
          ("tests/test_sweep.py", "tests/test_reproduce.py")),
    Claim("C8", "general CPA activations",
          "K breakpoints give K parallel hyperplanes at τ_k = (t_k − β)/γ spaced s(t_{k+1} − t_k)/(|γ|‖w‖₂); "
          "each obeys C4; C5–C7 carry over with K per neuron.",
          ("continuous piecewise-affine φ", "γ ≠ 0"),
          ("C8",), ("C8-neg", "C8-neg-scale"),
          "hard-tanh, leaky ReLU, a spline: spacing formula vs the computed hyperplanes; exact counts in d = 1 "
          "equal 1 + hits (O4); Monte Carlo E[h_plain] ≤ Σ K·q_i",
          "the mutated spacing with γ in place of |γ| (or ‖w‖₁ for ‖w‖₂) does not match",
          ("tests/test_activations.py", "tests/test_proofs.py", "tests/test_reproduce.py")),
    Claim("C9", "transfer inside parent regions (depth)",
          "on a parent region P (h = A_P x + c_P) a layer-ℓ switching set has normal A_Pᵀw; for W ⊆ P it meets W "
          "iff |wᵀ(A_P x0 + c_P − h̄) − sτ| ≤ r‖A_Pᵀw‖₁; the reference passes through the pull-back x*_P.",
          ("W ⊆ P (certified)", "A_P injective, h̄ − c_P ∈ range A_P for the pull-back"),
          ("C9",), ("C9-neg", "C9-neg-range"),
          "deep networks: W ⊆ P certified, A_P injective certified; deep hitting numbers (JAX) = exact counter; "
          "C5 inside P: N = O3 at the pull-back x*_P",
          "the mutated layer anchor h(x̄) in place of the batch mean h̄ mispredicts the exact counts",
          ("tests/test_network.py", "tests/test_sweep.py", "tests/test_proofs.py", "tests/test_reproduce.py")),
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
    rows = ["| claim | statement | proof (sympy) | numeric evidence | negative control |",
            "|---|---|---|---|---|"]
    for c in CLAIMS:
        proof = ", ".join(c.proofs) + (f"; refuted: {', '.join(c.negative_proofs)}" if c.negative_proofs else "") \
            if c.proofs else "—"
        rows.append(f"| **{c.id}** {c.title} | {c.statement} | {proof} | {c.evidence} | {c.negative_control} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # python -m cpa_theory.claims > table.md  (the README's claim table)
    print(markdown_table(), end="")
