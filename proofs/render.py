"""Markdown (with LaTeX) for derivations, used by ``cpa-theory prove --markdown`` and the reproduce report."""

from __future__ import annotations

import sympy as sp

from .obligation import ProofResult, Status

__all__ = ["result_markdown", "results_markdown"]


def _latex(expr) -> str:
    try:
        return sp.latex(expr)
    except Exception:  # a step whose expression has no LaTeX form is shown as text
        return sp.sstr(expr)


def result_markdown(r: ProofResult) -> str:
    verdict = {Status.PROVED: "proved", Status.REFUTED: "refuted", Status.UNKNOWN: "unknown"}[r.status]
    expected = "refuted" if r.negative else "proved"
    lines = [f"### {r.claim} — {verdict} ({'as expected' if r.ok else 'NOT ' + expected}, {r.seconds:.2f} s)", "",
             f"**Statement.** {r.statement}", "", "**Assumptions.** " + "; ".join(r.assumptions), ""]
    for i, step in enumerate(r.steps, 1):
        lines.append(f"{i}. {step.text}")
        if step.expr is not None:
            lines += ["", f"   $$ {_latex(step.expr)} $$", ""]
    lines.append("")
    lines.append("**Goals (each must vanish identically):**")
    lines.append("")
    for name, res in r.residuals.items():
        lines.append(f"- `{name}` → $ {_latex(res)} $")
    if r.counterexample:
        cex = r.counterexample
        lines += ["", f"**Counterexample** for `{cex['goal']}`: sizes {cex['sizes']}, values "
                  + ", ".join(f"${k} = {v}$" for k, v in cex["values"].items()) + f" give ${cex['value']} \\neq 0$."]
    return "\n".join(lines) + "\n"


def results_markdown(results: list[ProofResult]) -> str:
    head = ["# Symbolic derivations", "", "| claim | status | expected | seconds |", "|---|---|---|---|"]
    for r in results:
        head.append(f"| {r.claim} | {r.status.value} | {'refuted' if r.negative else 'proved'} | {r.seconds:.2f} |")
    return "\n".join(head) + "\n\n" + "\n".join(result_markdown(r) for r in results)
