"""Numerical engines on top of the cpa_theory core.

- ``numerics.certificates``: cvxpy LPs (HiGHS) that certify or refute geometric
  statements independently of the closed forms (e.g. the range of an affine
  function over a window, used to check the C4 criterion for large d).
"""
