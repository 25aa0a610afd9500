"""Proof obligations: a claim as sympy goals that must vanish identically.

An :class:`Obligation` builds, for symbolic sizes (dimension d, batch size B,
widths m), a derivation: human-readable steps and *goals* — sympy expressions
that the claim says are identically zero under its assumptions. Checking it:

1. every goal is normalised (``doit``, finite-sum rewriting, ``simplify``);
   all reduce to exactly 0 → **proved**;
2. otherwise the same goals are instantiated at small concrete sizes with
   random exact rationals; a goal that evaluates to a non-zero exact number is
   a counterexample → **refuted** (the counterexample is kept);
3. neither → **unknown**.

Negative controls are obligations of the same kind whose statement is mutated
or whose assumption is dropped; they must come out *refuted*. No float
tolerance appears anywhere: decisions are exact.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable

from sympy.matrices.expressions.matexpr import MatrixElement

import sympy as sp

__all__ = ["Status", "Step", "Derivation", "Obligation", "ProofResult", "normalize", "canonical_sums"]


class Status(str, Enum):
    PROVED = "proved"
    REFUTED = "refuted"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Step:
    """One line of a derivation: what is done, and the expression it yields."""

    text: str
    expr: object = None


@dataclass
class Derivation:
    """Steps for the reader, goals for the checker, and how to draw concrete sizes.

    Attributes:
        steps: the derivation in order.
        goals: ``{name: expr}``; the claim is that each expr ≡ 0 under the assumptions.
        sizes: ``{size symbol: candidate integers}`` for the counterexample search.
    """

    steps: list[Step]
    goals: dict[str, sp.Expr]
    sizes: dict = field(default_factory=dict)


@dataclass
class ProofResult:
    claim: str
    statement: str
    status: Status
    seconds: float
    negative: bool
    assumptions: tuple[str, ...]
    steps: list[Step]
    residuals: dict[str, object]
    counterexample: dict | None = None

    @property
    def ok(self) -> bool:
        """A positive obligation must be proved; a negative control must be refuted."""
        return self.status == (Status.REFUTED if self.negative else Status.PROVED)

    def as_json(self) -> dict:
        out = {"claim": self.claim, "status": self.status.value, "seconds": round(self.seconds, 4),
               "statement": self.statement, "negative_control": self.negative}
        if self.counterexample is not None:
            out["counterexample"] = self.counterexample
        return out


@dataclass(frozen=True)
class Obligation:
    """A claim (or its negative control) with the derivation that checks it."""

    claim: str
    statement: str
    assumptions: tuple[str, ...]
    derive: Callable[[], Derivation]
    negative: bool = False
    family: str = ""

    def check(self, seed: int = 0, draws: int = 12) -> ProofResult:
        start = time.perf_counter()
        der = self.derive()
        residuals = {name: normalize(goal) for name, goal in der.goals.items()}
        if all(_is_zero(r) for r in residuals.values()):
            status, cex = Status.PROVED, None
        else:
            cex = None
            for name, goal in der.goals.items():
                if _is_zero(residuals[name]):
                    continue
                cex = find_counterexample(goal, der.sizes, seed=seed, draws=draws)
                if cex is not None:
                    cex = {"goal": name, **cex}
                    break
            status = Status.REFUTED if cex is not None else Status.UNKNOWN
        return ProofResult(self.claim, self.statement, status, time.perf_counter() - start, self.negative,
                           self.assumptions, der.steps, residuals, cex)


# -- normalisation -------------------------------------------------------------
def _is_zero(expr) -> bool:
    if isinstance(expr, sp.ZeroMatrix):
        return True
    if isinstance(expr, sp.MatrixBase):
        return all(_is_zero(e) for e in expr)
    if isinstance(expr, sp.MatrixExpr):
        return isinstance(expr, sp.ZeroMatrix) or (expr.is_ZeroMatrix is True)
    return expr == 0


def _rectangular(limits) -> bool:
    variables = {lim[0] for lim in limits}
    return all(not (sp.sympify(lim[1]).free_symbols | sp.sympify(lim[2]).free_symbols) & variables for lim in limits)


def _rewrite_sum(s: sp.Sum) -> sp.Expr:
    """Finite-sum rules, each an identity for finite sums:
    (a) Σ_i c·f_i = c·Σ_i f_i when c does not contain i;
    (b) Σ_i (f·Σ_j g) = Σ_{i,j} f·g when f is free of j (distributivity);
    (c) Σ_{i,j} = Σ_{j,i} for rectangular index ranges (Fubini for finite sums);
    (d) Σ_{i=a}^{c} f = (c − a + 1)·f when f does not contain i;
    (e) Σ_i 0 = 0 (a small summand that simplifies to 0)."""
    f, limits = s.function, list(s.limits)
    if f != 0 and len(f.free_symbols) <= 4 and sp.simplify(f) == 0:  # (e) a summand that vanishes identically
        return sp.Integer(0)
    unused = [lim for lim in limits if lim[0] not in f.free_symbols]
    if unused and _rectangular(limits):  # (d) Σ_{i=a}^{c} f = (c − a + 1)·f when f is free of i
        count = sp.Mul(*[lim[2] - lim[1] + 1 for lim in unused])
        kept = [lim for lim in limits if lim not in unused]
        return count * (sp.Sum(f, *kept) if kept else f)
    variables = {lim[0] for lim in limits}
    if isinstance(f, sp.Mul):  # (a) pull out factors free of every summation variable
        const = [a for a in f.args if not (a.free_symbols & variables)]
        if const:
            rest = sp.Mul(*[a for a in f.args if a.free_symbols & variables])
            return sp.Mul(*const) * sp.Sum(rest, *limits)
    inner = None
    if isinstance(f, sp.Sum):
        inner, outer_factor = f, sp.Integer(1)
    elif isinstance(f, sp.Mul):
        sums = [a for a in f.args if isinstance(a, sp.Sum)]
        if len(sums) == 1:
            inner = sums[0]
            outer_factor = sp.Mul(*[a for a in f.args if a is not inner])
    if inner is not None:  # (b)
        inner_vars = {lim[0] for lim in inner.limits}
        if not (outer_factor.free_symbols & inner_vars) and _rectangular(list(inner.limits) + limits):
            return sp.Sum(outer_factor * inner.function, *inner.limits, *limits)
    if len(limits) > 1 and _rectangular(limits):  # (c)
        ordered = sorted(limits, key=lambda lim: str(lim[0]))
        if ordered != limits:
            return sp.Sum(f, *ordered)
    return s


def canonical_sums(expr):
    """Apply the finite-sum rules bottom-up until nothing changes; split sums of sums."""
    for _ in range(20):
        new = sp.expand(expr).replace(lambda e: isinstance(e, sp.Sum), _rewrite_sum)
        new = new.replace(lambda e: isinstance(e, sp.Sum) and isinstance(e.function, sp.Add),
                          lambda e: sp.Add(*[sp.Sum(t, *e.limits) for t in e.function.args]))
        if new == expr:
            return new
        expr = new
    return expr


def _opaque_radicals(expr):
    """Replace each radical √V (V containing a sum) by a positive symbol ξ_V, consistently.

    Sound for proving: an identity that holds for every positive value of ξ holds
    for ξ = √V. It keeps ``expand`` from multiplying out the batch variance.
    """
    mapping = {}

    def is_radical(e):
        return isinstance(e, sp.Pow) and e.exp.is_Rational and e.exp.q == 2 and e.base.has(sp.Sum)

    for e in sorted(expr.atoms(sp.Pow), key=sp.default_sort_key):
        if is_radical(e) and e.base not in mapping:
            mapping[e.base] = sp.Dummy("xi", positive=True)
    if not mapping:
        return expr
    return expr.replace(is_radical, lambda e: mapping[e.base] ** (2 * e.exp))


def _merge_sums(expr):
    """Σ_L f + Σ_L g → Σ_L (f + g) for equal index ranges L (linearity), with the summand simplified."""
    def merge(add):
        groups, rest = {}, []
        for term in add.args:
            coeff, sums = term.as_independent(sp.Sum, as_Add=False)
            if isinstance(sums, sp.Sum):
                groups.setdefault(sums.limits, []).append(coeff * sums.function)
            else:
                rest.append(term)
        merged = [sp.Sum(sp.simplify(sp.Add(*fs)), *lims) for lims, fs in groups.items()]
        return sp.Add(*rest, *[m for m in merged if m.function != 0])
    return expr.replace(lambda e: isinstance(e, sp.Add), merge)


def evaluate_derivatives(expr):
    """Carry out the derivatives only: sums stay unevaluated (sympy's closed-form summation is
    neither needed nor cheap here; the finite-sum rules above do the rest)."""
    return expr.replace(lambda e: isinstance(e, sp.Derivative), lambda e: sp.diff(e.expr, *e.variables))


def normalize(goal):
    """derivatives → opaque radicals → finite-sum rewriting → ``cancel``; ``simplify`` as a last resort."""
    if isinstance(goal, (sp.MatrixExpr, sp.MatrixBase)):
        out = goal.doit()
        if isinstance(out, sp.MatrixBase):
            return out.applyfunc(sp.simplify)
        return sp.simplify(sp.expand(out).doit())
    out = evaluate_derivatives(sp.sympify(goal))
    if out == 0:
        return out
    cheap = sp.cancel(sp.together(canonical_sums(_opaque_radicals(out))))
    if cheap == 0:
        return cheap
    merged = sp.cancel(_merge_sums(cheap))
    if merged == 0:
        return merged
    return sp.simplify(merged)


# -- counterexample search -------------------------------------------------------
def _draw_rational(rng: random.Random, symbol) -> sp.Rational:
    num = rng.randint(1, 9)
    den = rng.randint(1, 4)
    val = sp.Rational(num, den)
    if getattr(symbol, "is_positive", None) or getattr(symbol, "is_nonnegative", None):
        return val
    return val if rng.random() < 0.5 else -val


def _atoms_to_fill(expr):
    atoms = set()
    for a in sp.preorder_traversal(expr):
        if isinstance(a, (sp.Indexed, MatrixElement)):
            atoms.add(a)
    labels = {a.base.label for a in atoms if isinstance(a, sp.Indexed)}
    free = {s for s in expr.free_symbols if isinstance(s, sp.Symbol) and s not in labels}
    return atoms, free


def _is_index(sym, expr) -> bool:
    """True if ``sym`` only appears as a summation index or inside an Indexed label."""
    return any(isinstance(e, sp.Sum) and sym in {lim[0] for lim in e.limits} for e in sp.preorder_traversal(expr))


def _exact_nonzero(val) -> bool:
    val = sp.nsimplify(val) if val.is_Float else val
    val = sp.simplify(val)
    if val.is_Rational:
        return val != 0
    if val.is_zero is not None:
        return not val.is_zero
    x = sp.Dummy("x")
    return sp.minimal_polynomial(val, x) != x


def find_counterexample(goal, sizes: dict, seed: int = 0, draws: int = 12) -> dict | None:
    """Instantiate ``goal`` at concrete sizes and exact random rationals; return the first non-zero case."""
    rng = random.Random(seed)
    names = sorted(sizes, key=str)
    for _ in range(draws):
        concrete = {s: rng.choice(list(sizes[s])) for s in names}
        expr = goal.subs(concrete) if concrete else goal
        if isinstance(expr, sp.MatrixExpr):
            expr = expr.as_explicit()
        expr = expr.doit()
        indexed, free = _atoms_to_fill(expr)
        sizes_left = [f for f in free if f.is_integer and f not in concrete and not _is_index(f, expr)]
        if sizes_left:
            raise ValueError(f"size symbols {sizes_left} have no candidate values in Derivation.sizes")
        values = {a: _draw_rational(rng, a) for a in sorted(indexed, key=str)}
        values.update({s: _draw_rational(rng, s) for s in sorted(free, key=str) if s not in concrete})
        val = expr.xreplace(values).doit()
        vals = list(val) if isinstance(val, sp.MatrixBase) else [val]
        for v in vals:
            if _exact_nonzero(sp.sympify(v)):
                return {"sizes": {str(k): int(v_) for k, v_ in concrete.items()},
                        "values": {str(k): str(v_) for k, v_ in values.items()}, "value": str(sp.simplify(v))}
    return None
