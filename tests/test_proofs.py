"""The symbolic layer: every obligation proved, every negative control refuted, and the checker can fail."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sympy as sp

from cpa_theory.bn import bn_transform
from proofs._symbols import B, b, batch_value, batch_variance, beta, d, dot, eps, gamma, k, w, x
from proofs.obligation import Derivation, Obligation, Status, normalize
from proofs.registry import PROVABLE_CLAIMS, all_obligations, select
from proofs.render import results_markdown

OBLIGATIONS = all_obligations()
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("ob", OBLIGATIONS, ids=[o.claim for o in OBLIGATIONS])
def test_obligation(ob):
    res = ob.check()
    expected = Status.REFUTED if ob.negative else Status.PROVED
    assert res.status == expected, (ob.claim, res.status, res.residuals, res.counterexample)
    if ob.negative:
        assert res.counterexample is not None and res.counterexample["value"] != "0"


def test_every_provable_claim_has_a_negative_control():
    for claim in PROVABLE_CLAIMS:
        obs = select([claim])
        assert any(o.negative for o in obs), claim
        assert any(o.claim == claim and not o.negative for o in obs), claim


@pytest.mark.parametrize("claim", ["C1", "C2", "C3"])
def test_bn_derivations_are_for_symbolic_sizes(claim):
    (ob,) = [o for o in OBLIGATIONS if o.claim == claim]
    der = ob.derive()
    syms = set().union(*[sp.sympify(g).free_symbols for g in der.goals.values()])
    assert B in syms and d in syms, f"{claim} must be derived for symbolic B and d"


def test_checker_refutes_a_wrong_batch_mean():
    """Not true by construction: with μ normalised by B + 1 the bias no longer cancels, and C1's machinery says so."""
    def derive():
        z = dot(w, lambda q: x[q]) + b
        wrong_mean = sp.Sum(batch_value(k), (k, 1, B)) / (B + 1)
        zhat = bn_transform(z, wrong_mean, batch_variance(), gamma, beta, eps, sqrt=sp.sqrt)
        return Derivation([], {"dzhat/db": sp.Derivative(zhat, b)}, {B: (2, 3), d: (1, 2)})

    res = Obligation("C1-mutant", "wrong mean", (), derive).check()
    assert res.status == Status.REFUTED


def test_normalizer_does_not_identify_sums_over_different_ranges():
    X = sp.IndexedBase("X")
    l = sp.Symbol("l", integer=True, positive=True)
    goal = sp.Sum(X[k], (k, 1, B)) - sp.Sum(X[l], (l, 1, d))
    assert normalize(goal) != 0


def test_normalizer_exchanges_finite_sums():
    X = sp.IndexedBase("X")
    l = sp.Symbol("l", integer=True, positive=True)
    goal = sp.Sum(w[l] * sp.Sum(X[k, l], (k, 1, B)), (l, 1, d)) - sp.Sum(X[k, l] * w[l], (l, 1, d), (k, 1, B))
    assert normalize(goal) == 0


def test_markdown_has_latex_and_counterexamples():
    md = results_markdown([o.check() for o in select(["C4"])])
    assert "$$" in md and "Counterexample" in md and "C4-neg" in md


def test_cli_prove_json_contract():
    res = subprocess.run([sys.executable, "-m", "cpa_theory", "prove", "--claim", "C1", "--json"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    by_claim = {r["claim"]: r for r in rows}
    assert by_claim["C1"]["status"] == "proved" and isinstance(by_claim["C1"]["seconds"], float)
    assert by_claim["C1-neg"]["status"] == "refuted"


def test_cli_prove_exits_1_when_an_obligation_fails(monkeypatch, capsys):
    from cpa_theory import cli
    from proofs import registry

    real = registry.run

    def flipped(claims=None, seed=0):
        out = real(claims, seed)
        out[0].status = Status.UNKNOWN
        return out

    monkeypatch.setattr(registry, "run", flipped)
    assert cli.main(["prove", "--claim", "C2"]) == 1


def test_cli_prove_unknown_claim_is_bad_input():
    res = subprocess.run([sys.executable, "-m", "cpa_theory", "prove", "--claim", "C42"], capture_output=True,
                         text=True, cwd=ROOT)
    assert res.returncode == 2 and "choose from" in res.stderr
