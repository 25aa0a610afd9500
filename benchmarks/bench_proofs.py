"""Time every proof obligation (sympy import included) against a concrete-size baseline.

Baseline, measured in the same process: the C2 identity ẑ − (γu + β) expanded at
concrete d = B = 3 and handed to ``sympy.simplify`` — the approach whose cost
grows like B³d² (the symbolic-size derivations do not grow at all).

    python benchmarks/bench_proofs.py
"""

from __future__ import annotations

import json
import time

t0 = time.perf_counter()
import sympy as sp  # noqa: E402

from proofs.registry import all_obligations  # noqa: E402

import_seconds = time.perf_counter() - t0


def concrete_baseline(n: int) -> float:
    X = sp.Matrix(n, n, lambda i, j: sp.Symbol(f"X{i}{j}", real=True))
    w = sp.Matrix(n, 1, lambda i, j: sp.Symbol(f"w{i}", real=True))
    x = sp.Matrix(n, 1, lambda i, j: sp.Symbol(f"x{i}", real=True))
    b, g, be, e = sp.symbols("b gamma beta epsilon", real=True)
    z = [(w.T * X[j, :].T)[0] + b for j in range(n)]
    mu = sum(z) / n
    var = sum((zj - mu) ** 2 for zj in z) / n
    xbar = sp.Matrix([sum(X[j, i] for j in range(n)) / n for i in range(n)])
    zhat = g * ((w.T * x)[0] + b - mu) / sp.sqrt(var + e) + be
    closed = g * (w.T * (x - xbar))[0] / sp.sqrt(var + e) + be
    start = time.perf_counter()
    assert sp.simplify(zhat - closed) == 0
    return time.perf_counter() - start


def main() -> None:
    rows = []
    start = time.perf_counter()
    for ob in all_obligations():
        res = ob.check()
        rows.append((res.claim, res.status.value, res.seconds, res.ok))
        print(f"{res.claim:<22} {res.status.value:<8} {res.seconds:7.3f} s  {'ok' if res.ok else 'NOT OK'}")
    total = time.perf_counter() - start + import_seconds
    base = concrete_baseline(3)
    c2 = next(r[2] for r in rows if r[0] == "C2")
    print(f"sympy + proofs import {import_seconds:.2f} s; all obligations incl. import {total:.2f} s (budget 15 s)")
    print(f"baseline: concrete d = B = 3 simplify of the C2 identity {base:.2f} s; "
          f"symbolic C2 / baseline = {c2 / base:.4f}")
    print(json.dumps({"total_seconds": round(total, 3), "import_seconds": round(import_seconds, 3),
                      "total_over_budget": round(total / 15.0, 4), "symbolic_c2_over_concrete_d3": round(c2 / base, 5),
                      "all_as_expected": all(r[3] for r in rows),
                      "per_obligation_seconds": {r[0]: round(r[2], 3) for r in rows}}))


if __name__ == "__main__":
    main()
