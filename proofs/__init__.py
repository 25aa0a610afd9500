"""Symbolic (sympy) derivations of the algebraic claims of THEORY.md."""
