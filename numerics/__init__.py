"""Numerical engines on top of the cpa_theory core.

- ``numerics.kernels``: jitted C4 hitting numbers (neurons × windows × breakpoints) and the deep C9 form.
- ``numerics.ensembles``: random networks, batches and windows from explicit PRNG keys.
- ``numerics.sweep``: BN-vs-no-BN Monte Carlo (E[h], E[N]), sharded over devices, resumable run directories.
- ``numerics.certificates``: cvxpy LPs (HiGHS) that certify or refute geometric statements independently of
  the closed forms (ranges over windows, Chebyshev balls, x̄ ∈ int W, W ⊆ P, injectivity).
- ``numerics.lp_regions``: exact certified region counts by LP splitting, for high input dimension.
- ``numerics.training``: MLP training with and without BN (JAX + optax), checkpoints as core networks.
"""
