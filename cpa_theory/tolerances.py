"""The one tolerance table of the project.

Decisions that *certify* (does a hyperplane cut a window, is a witness inside a
region) are made exactly or in float64 with the margins below; nothing else in
the code base may invent a tolerance. Each number says where it comes from.
"""

from __future__ import annotations

import numpy as np

#: dtype of everything that certifies (window decisions, witnesses, LPs).
CERTIFY_DTYPE = np.float64

#: numpy vs JAX forward passes in float64: both evaluate the same expression
#: tree, differences are a few ulps of values of order 1-100 (2.2e-16 * 100 * depth).
FORWARD_AGREEMENT_ATOL = 1e-12

#: Direct batch computation (z = Wx + b, then mean / biased variance) vs our
#: centred form W(x - x̄): rounding of b and of the mean, relative to |z| ~ 1e2.
BATCH_FORMULA_RTOL = 1e-10

#: Torch float64 BatchNorm1d vs ours (issue: cross-check to 1e-10).
TORCH_AGREEMENT_ATOL = 1e-10

#: An imported network vs the framework's own forward pass, both float64 (the Flax import check): the two
#: evaluate the same function in different orders (Flax's batch variance is E[x²] − E[x]²), so they differ by
#: rounding, relative to max(1, max |output|); a wrong layer order, activation or BatchNorm mode differs by O(1).
IMPORT_AGREEMENT_RTOL = 1e-9

#: The same when a layer of the framework's model computes in float32 (u = 6e-8, sums over widths ≲ 10^3):
#: a wrong activation or layer order still differs by O(1).
IMPORT_AGREEMENT_RTOL_FLOAT32 = 1e-4

#: float32 window decisions are trusted only when the float64 slack exceeds this
#: relative margin (float32 eps = 1.2e-7, times a dot product of length d <= 1e3).
FLOAT32_DECISION_RTOL = 1e-4

#: Relative margin under which a float64 slack is "too close to call" and the
#: decision is re-made in exact rational arithmetic (float64 eps 2.2e-16 times
#: d <= 1e4 terms, with headroom).
FLOAT64_DECISION_RTOL = 1e-11

#: LP feasibility tolerance handed to HiGHS / Clarabel, and accepted primal
#: residual when a solver's answer is re-checked (HiGHS default is 1e-7).
LP_FEASIBILITY_TOL = 1e-9

#: Pull-back x*_P of a layer centroid through A_P (C9): accepted when the
#: least-squares residual ‖A x* − (h̄ − c)‖ is below this times the problem scale
#: (lstsq in float64 is backward stable to ~1e-15 relative; headroom for cond(A)).
PULLBACK_RTOL = 1e-9

#: Interior-point (Clarabel) answers: default primal feasibility 1e-8, and the
#: issue's measurement shows disagreement from about 1e-8 relative near
#: tangency; accept residuals up to 1e-7 and confirm decisions with witnesses.
CONIC_FEASIBILITY_TOL = 1e-7

#: Side of a polytope vertex relative to a hyperplane: float64 decides when
#: |aᵀv − β| exceeds this times (|a|·|v| + |β|); inside the band the vertex is
#: recomputed exactly (rationals). Vertices are solutions of d×d systems, so their
#: float error is about cond · 1e-16; the band leaves room for cond up to 1e4.
VERTEX_SIGN_RTOL = 1e-12

#: A certified region needs a witness ball of at least this radius, relative to
#: the window radius (a ball far below float64 resolution certifies nothing).
WITNESS_MIN_RELATIVE_RADIUS = 1e-12

#: Two regions carry "the same affine map" (for maximal linear regions) when
#: their output maps agree to this relative tolerance (maps computed along
#: different paths through the network differ by a few ulps).
AFFINE_MAP_RTOL = 1e-9

#: The counter's C4 screen drops a switching set only when its window slack is below −this·(1 + |offset|):
#: a generous margin, since the screen only saves work and the exact vertex test decides.
SCREEN_MARGIN_RTOL = 1e-9

#: Two region facets are "the same hyperplane, opposite sides" (adjacency for N_lin) when their unit
#: normals and offsets agree to this; their shared (d−1)-ball must be at least this wide too.
FACET_MATCH_TOL = 1e-9

#: Slice bases (issue #14): directions are "dependent" (collinear points) when a diagonal entry of R in the QR
#: factorisation is below this times max |R| (float64 QR is backward stable to ~1e-16 · d; headroom for d <= 1e4).
SLICE_BASIS_RTOL = 1e-12

#: C10 distances on images: a reference set "passes through x̄" when its distance is below this times
#: max(1, ‖x̄‖₂) (the distance is a ratio of float64 dot products of length <= 1e3: rounding ~1e-13 relative).
C10_ZERO_DISTANCE_RTOL = 1e-9

#: Window radii accepted (``inputs.check_radius``), relative to s = max(1, ‖x0‖∞): lo·s ≤ r ≤ hi·s. Below lo
#: the box x0 ± r is a few thousand float64 ulps (eps 2.2e-16) wide around its centre: measured on the example
#: network, witnesses stop certifying below ~1e-15·s. Above hi the network's O(1)-scale hyperplanes are resolved
#: to less than 1e-12 of the window (and r = 1e300 overflowed the vertex arithmetic).
WINDOW_RADIUS_RELATIVE_RANGE = (1e-12, 1e12)

# -- exact-predicate filters of the counting engine (polytope.py, regions.py) ---------------------------------
#: unit roundoff of float64: every basic operation returns the exact result times (1 + δ), |δ| ≤ u.
UNIT_ROUNDOFF = 2.0 ** -53

#: A dot product of n terms evaluated in float64 has |fl(aᵀx) − aᵀx| ≤ γ_n Σ|a_i x_i| with
#: γ_n = n u / (1 − n u) (Higham, Accuracy and Stability, Lemma 3.1). The filters use (n + DOT_EXTRA_TERMS)·u
#: to cover the subtraction of the offset and the conversions around it, and multiply every propagated bound
#: by FILTER_SAFETY (the (1 − n u)⁻¹ factor and second-order terms are below 1 % for n ≤ 1e6).
DOT_EXTRA_TERMS = 3
FILTER_SAFETY = 2.0

#: A vertex made by float interpolation carries an error bound (see polytope.split); when that bound exceeds
#: this fraction of the problem scale the vertex is recomputed exactly instead (keeps bounds from growing).
VERTEX_ERR_MAX_RTOL = 1e-9

#: Completeness (THEORY §6): the counted regions' float volumes must add up to vol(W) within this relative
#: error. Each region volume (shoelace / Qhull) is accurate to ~d·u relative; the sum of N of them to
#: ~N·d·u·vol(W); with N ≤ 1e7 that is ≤ 7e-9. Slivers far below float resolution are caught by the exact
#: combinatorial facet matching, not by this sum.
VOLUME_SUM_RTOL = 1e-7

#: Lawrence's vertex formula for the volume of a simple polytope (d ≥ 4) sums terms that can be far larger than
#: the volume; its result is used only when its first-order error estimate (each term's rounding and vertex
#: error, amplified by the vertex's normal-matrix condition number, summed in absolute value) is below this times
#: the volume — so the sum over all cells errs by at most this relative, 10× inside VOLUME_SUM_RTOL — otherwise
#: the cell's volume comes from the face-lattice decomposition.
VOLUME_FORMULA_RTOL = 1e-8

#: Facet balance (completeness fallback for coincident switching sets): on one switching set, the (d−1)-measure
#: of the facets seen from its two sides must agree within this relative error (same reasoning as above).
FACET_BALANCE_RTOL = 1e-7

#: Euler check of the plane engine (completeness, THEORY §6): the interior angles of the regions' corners at one
#: vertex must add up to 2π (π at a T-junction) within this many radians. Each angle comes from one atan2 of
#: two float64 normals (error ~1e-15 rad); k ≤ 1e6 corners at a vertex keep the sum within 1e-9.
EULER_ANGLE_TOL = 1e-6
