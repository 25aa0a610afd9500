"""Counting engine v2 (issue 12): exact on near-degenerate arrangements, complete, equal to the previous engine.

The reference for single-layer arrangements is an independent brute-force exact enumerator written here
(deletion–restriction in rationals with brute-force vertex enumeration), sharing no code with the engine.
"""

import sys
from fractions import Fraction
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from cpa_theory import BatchNorm, Layer, Network, identity, relu
from cpa_theory.errors import CPAInputError, CPAInternalError, NonFiniteError, ShapeError
from cpa_theory.regions import count_regions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _engine_v1 import count_regions_v1  # noqa: E402  (the frozen previous engine)


# -- an independent exact enumerator: regions of a hyperplane arrangement inside an open box ----------------------
def _gauss(A, b):
    n = len(A)
    M = [list(r) + [v] for r, v in zip(A, b)]
    for col in range(n):
        piv = next((r for r in range(col, n) if M[r][col] != 0), None)
        if piv is None:
            return None
        M[col], M[piv] = M[piv], M[col]
        M[col] = [v / M[col][col] for v in M[col]]
        for r in range(n):
            if r != col and M[r][col] != 0:
                f = M[r][col]
                M[r] = [x - f * y for x, y in zip(M[r], M[col])]
    return [M[r][n] for r in range(n)]


def _vertices(cons, k):
    """Vertices of {u ∈ Q^k : g·u ≤ h for (g, h) in cons} by brute force over k-subsets."""
    if k == 0:
        return [()]
    out = set()
    for sub in combinations(cons, k):
        u = _gauss([g for g, _ in sub], [h for _, h in sub])
        if u is not None and all(sum(a * x for a, x in zip(g, u)) <= h for g, h in cons):
            out.add(tuple(u))
    return list(out)


def _restrict(a, beta, items):
    """Parametrise {a·u = β} by w (drop a pivot coordinate) and pull ``items`` (g, h) back to w."""
    p = next(i for i, v in enumerate(a) if v != 0)
    k = len(a)
    u0 = [Fraction(0)] * k
    u0[p] = beta / a[p]
    cols = [q for q in range(k) if q != p]

    def pull(g, h):
        gw = [g[q] - g[p] * a[q] / a[p] for q in cols]
        return gw, h - sum(gi * ui for gi, ui in zip(g, u0))

    return [pull(g, h) for g, h in items]


def brute_regions(hyps, cons, k):
    """Number of regions of the arrangement ``hyps`` (a·u = β) inside the open polytope ``cons`` in Q^k
    (assumed non-empty): deletion–restriction, r(A ∪ H) = r(A) + r(A restricted to H ∩ R)."""
    if k == 0:
        return 1
    verts = _vertices(cons, k)
    total = 1
    seen = []
    for i, (a, b) in enumerate(hyps):
        if all(v == 0 for v in a):
            continue
        vals = [sum(x * y for x, y in zip(a, v)) - b for v in verts]
        if not (any(x > 0 for x in vals) and any(x < 0 for x in vals)):
            continue  # misses the open region
        if any(_same_hyperplane(a, b, a2, b2) for a2, b2 in seen):
            continue
        seen.append((a, b))
        sub = [(g, h) for g, h in _restrict(a, b, [h2 for h2 in hyps[:i]]) if any(v != 0 for v in g)]
        total += brute_regions(sub, _restrict(a, b, cons), k - 1)
    return total


def _same_hyperplane(a, b, a2, b2):
    p = next(i for i, v in enumerate(a) if v != 0)
    if a2[p] == 0:
        return False
    f = a2[p] / a[p]
    return all(y == f * x for x, y in zip(a, a2)) and b2 == f * b


def brute_single_layer(W, b, center, r):
    """Exact region count of {W x + b = 0} in the box W(center, r), from the float64 data taken exactly."""
    d = W.shape[1]
    F = Fraction
    hyps = [([F(float(v)) for v in row], -F(float(bi))) for row, bi in zip(W, b)]
    cons = []
    for l in range(d):
        e = [F(int(i == l)) for i in range(d)]
        cons.append((e, F(float(center[l])) + F(float(r))))
        cons.append(([-v for v in e], -(F(float(center[l])) - F(float(r)))))
    return brute_regions(hyps, cons, d)


def one_layer(W, b):
    W = np.asarray(W, float)
    n, d = W.shape
    return Network(d, (Layer(W, b, relu()), Layer(np.ones((1, n)), [0.0], identity())))


def near_concurrent(rng, k, d, point):
    """k random unit normals through ``point``, offsets rounded to float64 (what folding BN produces)."""
    W = rng.normal(size=(k, d))
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    return W, -W @ point


def test_brute_force_enumerator_reproduces_the_closed_forms():
    # O2 (general position, all vertices inside) and O3 (concurrent) for the reference itself
    rng = np.random.default_rng(0)
    W = rng.normal(size=(6, 2))
    assert brute_single_layer(W, rng.normal(size=6) * 0.01, np.zeros(2), 100.0) == 22  # Σ_{k≤2} C(6,k)
    W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, -1.0]])
    assert brute_single_layer(W, np.zeros(4), np.zeros(2), 1.0) == 8  # 4 lines through a point: 2·4
    assert brute_single_layer(W, np.zeros(4), np.array([5.0, 8.0]), 1.0) == 1  # none meets the box


# -- item 1: exact predicates ---------------------------------------------------------------------------------
def test_issue_reproducer_ten_rounded_concurrent_lines():
    """The issue's crash: 10 lines through (0.1, −0.2) with float-rounded offsets (v1: division by zero)."""
    rng = np.random.default_rng(1)
    th = rng.uniform(0, 2 * np.pi, 10)
    W = np.c_[np.cos(th), np.sin(th)]
    b = -W @ np.array([0.1, -0.2])
    res = count_regions(one_layer(W, b), [0.0, 0.0], 0.5)
    assert res.regions == brute_single_layer(W, b, np.zeros(2), 0.5)
    assert res.certified and res.complete
    # slivers below float64 resolution exist here, are counted, and are certified by exact witnesses
    assert res.min_witness_radius < 1e-12 < res.radius
    assert res.exact_fallbacks > 0 and res.exact_witnesses > 0
    js = res.as_json()
    assert {"complete", "min_witness_radius", "exact_fallbacks"} <= js.keys()


@pytest.mark.parametrize("d, ks", [(2, (3, 6, 10, 20, 50)), (3, (3, 6, 10)), (4, (3, 5))])
def test_near_concurrent_hyperplanes_equal_exact_enumeration(d, ks):
    rng = np.random.default_rng(7 + d)
    for k in ks:
        for trial in range(2 if k < 30 else 1):
            point = rng.uniform(-0.3, 0.3, size=d)
            W, b = near_concurrent(rng, k, d, point)
            res = count_regions(one_layer(W, b), np.zeros(d), 0.5)
            exact = brute_single_layer(W, b, np.zeros(d), 0.5)
            assert res.regions == exact, (d, k, trial, res.as_json())
            assert res.certified and res.complete, res.as_json()


def test_near_concurrent_lines_through_a_box_corner():
    rng = np.random.default_rng(3)
    W, b = near_concurrent(rng, 8, 2, np.array([0.5, -0.5]))  # through the corner of [-0.5, 0.5]^2
    res = count_regions(one_layer(W, b), np.zeros(2), 0.5)
    assert res.regions == brute_single_layer(W, b, np.zeros(2), 0.5) and res.certified


def test_deep_nearly_coincident_pulled_back_hyperplanes_do_not_overcount():
    """Layer 1 is active on the whole window (an affine embedding); two layer-2 neurons differ by 1e-13, so
    their pulled-back lines are distinct but nearly coincident; the exact count is the brute force's."""
    rng = np.random.default_rng(5)
    W1 = np.array([[1.0, 0.3], [-0.2, 1.0], [0.5, 0.5]])
    b1 = np.array([5.0, 5.0, 5.0])  # all active on W(0, 1)
    w = rng.normal(size=3)
    W2 = np.vstack([w, w * (1 + 1e-13), rng.normal(size=3)])
    b2 = np.array([-(w @ b1), -(w @ b1) * (1 + 1e-13) + 1e-13, 0.1 - rng.normal(size=3) @ b1 * 0])
    b2[2] = -(W2[2] @ b1) + 0.05
    net = Network(2, (Layer(W1, b1, relu()), Layer(W2, b2, relu()), Layer(np.ones((1, 3)), [0.0], identity())))
    res = count_regions(net, np.zeros(2), 1.0)
    # exact composition: layer 2's switching sets in x are (W2 W1) x + (W2 b1 + b2) = 0, in rationals
    F = Fraction
    W1f = [[F(float(v)) for v in r] for r in W1]
    b1f = [F(float(v)) for v in b1]
    hyps = []
    for row, bb in zip(W2, b2):
        rf = [F(float(v)) for v in row]
        a = [sum(rf[i] * W1f[i][j] for i in range(3)) for j in range(2)]
        hyps.append((a, -(sum(rf[i] * b1f[i] for i in range(3)) + F(float(bb)))))
    cons = [([F(1), F(0)], F(1)), ([F(-1), F(0)], F(1)), ([F(0), F(1)], F(1)), ([F(0), F(-1)], F(1))]
    assert res.regions == brute_regions(hyps, cons, 2)
    assert res.certified and res.complete


# -- overflow and depth -------------------------------------------------------------------------------------
def test_overflowing_batch_statistics_are_refused_as_bad_input():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(4, 2)) * 1e160
    net = Network(2, (Layer(W, np.zeros(4), relu(), BatchNorm(4, "train")), Layer(np.ones((1, 4)), [0.0], identity())),
                  rng.normal(size=(8, 2)))
    with pytest.raises(NonFiniteError, match="overflow"):
        count_regions(net, [0.0, 0.0], 1.0)


def test_overflow_inside_the_charts_is_an_internal_error_not_a_result():
    W = np.array([[1e200, 1.0], [1.0, 1e200]])
    W2 = np.array([[1e150, 1.0], [1.0, 1e150]])  # the layer-2 chart W2 W is ~1e350: beyond float64
    net = Network(2, (Layer(W, [1.0, 1.0], relu()), Layer(W2, [0.0, 0.0], relu()),
                      Layer(np.ones((1, 2)), [0.0], identity())))
    with pytest.raises(CPAInternalError):
        count_regions(net, [0.5, 0.5], 0.25)


def test_very_deep_networks_are_refused_quickly():
    rng = np.random.default_rng(0)
    layers = tuple(Layer(rng.normal(size=(2, 2)), rng.normal(size=2) * 0.1, relu()) for _ in range(1200))
    net = Network(2, layers + (Layer(np.ones((1, 2)), [0.0], identity()),))
    with pytest.raises(ShapeError, match="at most"):
        count_regions(net, [0.0, 0.0], 1.0)
    assert issubclass(ShapeError, CPAInputError)


# -- item 2: completeness ------------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [2, 3])
def test_a_dropped_region_is_caught_by_completeness(monkeypatch, d):
    import cpa_theory.regions as R

    rng = np.random.default_rng(11)
    net = Network(d, (Layer(rng.normal(size=(6, d)), rng.normal(size=6) * 0.3, relu()),
                      Layer(rng.normal(size=(4, 6)), rng.normal(size=4) * 0.3, relu()),
                      Layer(np.ones((1, 4)), [0.0], identity())))
    full = count_regions(net, np.zeros(d), 1.0)
    assert full.complete and full.certified and full.regions > 5  # negative control
    orig = R._leaves

    def drop_one(*args, **kw):
        for i, leaf in enumerate(orig(*args, **kw)):
            if i != 3:
                yield leaf

    monkeypatch.setattr(R, "_leaves", drop_one)
    res = count_regions(net, np.zeros(d), 1.0, engine="cells")  # the cell engine (plane/space: test_frontier)
    assert res.regions == full.regions - 1
    assert res.complete is False and res.certified is False
    assert res.as_json()["complete"] is False


def test_batched_3d_volumes_equal_qhull():
    """cell_volumes (facet-structure formula, all 3-D cells at once) equals Qhull's hull volume per cell, on the
    cells of a random 3-D net; a wrong formula (e.g. one facet's area lost) breaks the per-cell equality."""
    from scipy.spatial import ConvexHull

    import cpa_theory.regions as R
    from cpa_theory.polytope import cell_volumes

    rng = np.random.default_rng(5)
    net = Network(3, (Layer(rng.normal(size=(7, 3)), rng.normal(size=7) * 0.3, relu()),
                      Layer(rng.normal(size=(5, 7)), rng.normal(size=5) * 0.3, relu()),
                      Layer(np.ones((1, 5)), [0.0], identity())))
    cond = R._conditioned(net)
    win, p, root, vol_w = R._setup(cond, np.zeros(3), 1.0, None)
    cells = [lf.P for lf in R._leaves(cond, win, p, root, {})]
    assert len(cells) > 20
    got = cell_volumes(cells)
    want = np.array([ConvexHull(P.V).volume for P in cells])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-14)
    assert abs(got.sum() - vol_w) <= 1e-9 * vol_w
    assert np.all(got > 0)


def _exact_solution(M, b):
    """M⁻¹ b in rationals (Gauss–Jordan on Fractions)."""
    d = len(b)
    A = [[Fraction(M[i][j]) for j in range(d)] + [Fraction(b[i])] for i in range(d)]
    for c in range(d):
        piv = next(r for r in range(c, d) if A[r][c] != 0)
        A[c], A[piv] = A[piv], A[c]
        A[c] = [x / A[c][c] for x in A[c]]
        for r in range(d):
            if r != c and A[r][c] != 0:
                A[r] = [x - A[r][c] * y for x, y in zip(A[r], A[c])]
    return [A[i][d] for i in range(d)]


@pytest.mark.parametrize("d", [2, 3, 4])
def test_vertex_error_bounds_hold_against_exact_solutions(d):
    """The vertex bound of polytope._solve_systems (adjugate inverses for d ≤ 3, LAPACK otherwise; ‖M⁻¹‖ bounded
    through R = I − X M) holds against the exact solution of the perturbed exact system M* v* = b*
    (|M* − M| ≤ EM, |b* − b| ≤ Eb), from conditioning 1 to 1e15; well-conditioned systems keep a float vertex
    (a wrong inverse formula gives a wrong v and loses it)."""
    from cpa_theory.polytope import _solve_systems

    rng = np.random.default_rng(d)
    n = 60
    Ms = []
    for i in range(n):
        Q1, _ = np.linalg.qr(rng.normal(size=(d, d)))
        Q2, _ = np.linalg.qr(rng.normal(size=(d, d)))
        Ms.append(Q1 @ np.diag(np.logspace(0, -15 * i / (n - 1), d)) @ Q2)
    M, b = np.array(Ms), rng.normal(size=(n, d))
    EM, Eb = 1e-13 * np.abs(M), 1e-13 * np.abs(b)
    dM = EM * rng.uniform(-1, 1, size=M.shape)  # the exact system: M + dM, b + db (rationals of floats)
    db = Eb * rng.uniform(-1, 1, size=b.shape)
    V, err = _solve_systems(M, b, EM, Eb, 1e6)
    finite = np.isfinite(err)
    assert finite[: n // 4].all() and not finite[-3:].any()
    few = slice(0, n, 7)  # a small batch (the cell engine's splits): the same vertices
    V2, err2 = _solve_systems(M[few], b[few], EM[few], Eb[few], 1e6)
    np.testing.assert_array_equal(V2[np.isfinite(err2)], V[few][np.isfinite(err2)])
    V[few], err[few] = V2, err2
    finite = np.isfinite(err)
    for i in np.flatnonzero(finite).tolist():
        Mx = [[Fraction(float(M[i, r, c])) + Fraction(float(dM[i, r, c])) for c in range(d)] for r in range(d)]
        bx = [Fraction(float(b[i, r])) + Fraction(float(db[i, r])) for r in range(d)]
        exact = _exact_solution(Mx, bx)
        assert max(abs(Fraction(float(V[i, k])) - exact[k]) for k in range(d)) <= Fraction(float(err[i])), (i, d)


# -- equality with the previous engine, N_lin from adjacency ------------------------------------------------
def _random_net(rng, d, widths, mode, act):
    layers = []
    m = d
    for n in widths:
        bn = None
        if mode == "train":
            bn = BatchNorm(n, "train", gamma=rng.uniform(0.5, 1.5, n), beta=rng.normal(size=n) * 0.3)
        elif mode == "eval":
            bn = BatchNorm(n, "eval", gamma=rng.uniform(0.5, 1.5, n), beta=rng.normal(size=n) * 0.3,
                           running_mean=rng.normal(size=n) * 0.2, running_var=rng.uniform(0.5, 2, n))
        layers.append(Layer(rng.normal(size=(n, m)) / np.sqrt(m), rng.normal(size=n) * 0.2, act(), bn))
        m = n
    layers.append(Layer(rng.normal(size=(1, m)), [0.0], identity()))
    return Network(d, tuple(layers), rng.normal(size=(12, d)) * 0.5 if mode == "train" else None)


def _activations():
    from cpa_theory import activations as A

    return [A.relu, lambda: A.leaky_relu(0.1), A.hardtanh, A.relu6, A.hardsigmoid, A.absolute,
            lambda: A.spline([-1.0, 0.0, 1.5], [0.0, -0.5, 1.0], 0.2, 2.0)]


@pytest.mark.parametrize("d, widths, r", [(2, (6, 5), 1.0), (3, (5, 4), 0.8), (4, (4, 4), 0.6), (5, (4, 3), 0.5)])
@pytest.mark.parametrize("mode", ["train", "eval", None])
def test_counts_equal_the_previous_engine(d, widths, r, mode):
    rng = np.random.default_rng(d * 10 + (0 if mode is None else len(mode)))
    for i, act in enumerate(_activations()):
        if d >= 4 and i % 2:  # keep the default run short: every activation is covered in d = 2, 3
            continue
        net = _random_net(rng, d, widths, mode, act)
        center = rng.normal(size=d) * 0.2
        new = count_regions(net, center, r)
        old = count_regions_v1(net, center, r)
        assert new.regions == old.regions, (d, mode, i, new.as_json(), old.as_json())
        assert new.linear_regions == old.linear_regions, (d, mode, i)
        assert new.hits == old.hits and new.certified and new.complete


def test_linear_regions_merge_across_a_dead_neuron_without_lps():
    # output weight 0 on neuron 1: the regions on both sides of its switching set carry the same map
    W = np.array([[1.0, 0.2], [0.3, -1.0], [0.7, 0.7]])
    net = Network(2, (Layer(W, [0.1, -0.05, 0.2], relu()), Layer(np.array([[1.0, 0.0, 2.0]]), [0.0], identity())))
    res = count_regions(net, np.zeros(2), 1.0)
    old = count_regions_v1(net, np.zeros(2), 1.0)
    assert res.regions == old.regions == 7 and res.linear_regions == old.linear_regions == 4



@pytest.mark.parametrize("engine", ["auto", "cells"])
@pytest.mark.parametrize("d", [2, 3])
def test_linear_regions_compare_maps_within_their_error_bounds_at_any_scale(engine, d):
    """Output maps are compared within their proven float error, not a tolerance relative to 1 + the largest
    entry: a kink of 1 beside a slope of 1e10 and a kink of 1e-10 are both kinks (the old tolerance merged
    them), while a kink of 1e-10 cancelled exactly by a twin neuron still merges (maps within their bounds)."""
    e = np.eye(d)
    # f = 1e10·(x₁ + 10) + relu(x₂): x₁ + 10 > 0 on W, so the maps (1e10, 0, …) and (1e10, 1, …) differ
    big = Network(d, (Layer(e[:2], [10.0, 0.0], relu()), Layer(np.array([[1e10, 1.0]]), [0.0], identity())))
    assert count_regions(big, np.zeros(d), 1.0, engine=engine).linear_regions == 2
    tiny = Network(d, (Layer(e[:1], [0.0], relu()), Layer(np.array([[1e-10]]), [0.0], identity())))
    assert count_regions(tiny, np.zeros(d), 1.0, engine=engine).linear_regions == 2
    # 1e-10·(relu(x₁) − relu(x₁ − 1e-3)) + 0·relu(x₂): six regions; across x₂ = 0 the maps are equal (output
    # weight 0: merged), across x₁ = 0 and x₁ = 1e-3 the slope changes by 1e-10 (kinks): three linear regions
    twin = Network(d, (Layer(np.stack([e[0], e[0], e[1]]), [0.0, -1e-3, 0.0], relu()),
                       Layer(np.array([[1e-10, -1e-10, 0.0]]), [0.0], identity())))
    res = count_regions(twin, np.zeros(d), 1.0, engine=engine)
    assert (res.regions, res.linear_regions) == (6, 3)
    # a kink of 2^-54 beside a slope of 2^27: inside the maps' float error bound (one bound per region), so
    # only the rational comparison (confirm_same_maps) sees it
    hidden = Network(d, (Layer(np.stack([e[0] * 2.0**27, e[1] * 2.0**-27]), [10 * 2.0**27, 0.0], relu()),
                         Layer(np.array([[1.0, 2.0**-27]]), [0.0], identity())))
    assert count_regions(hidden, np.zeros(d), 1.0, engine=engine).linear_regions == 2

def test_progress_bar_goes_to_stderr_and_does_not_change_the_result(capsys):
    rng = np.random.default_rng(2)
    net = Network(2, (Layer(rng.normal(size=(8, 2)), rng.normal(size=8) * 0.3, relu()),
                      Layer(np.ones((1, 8)), [0.0], identity())))
    quiet = count_regions(net, np.zeros(2), 1.0)
    shown = count_regions(net, np.zeros(2), 1.0, progress=True)
    assert quiet.as_json() == shown.as_json()
    assert capsys.readouterr().out == ""


def test_one_dimensional_windows_are_complete_and_certified():
    net = Network(1, (Layer(np.array([[1.0], [2.0], [-1.0]]), [0.1, -0.3, 0.2], relu()),
                      Layer(np.ones((1, 3)), [0.0], identity())))
    res = count_regions(net, [0.0], 1.0)
    assert (res.regions, res.complete, res.certified) == (4, True, True)  # O4: breakpoints -0.1, 0.15, 0.2
    one = count_regions(net, [0.9], 0.05)
    assert (one.regions, one.complete, one.certified) == (1, True, True)


# -- exact anchors of deeper train-mode BN layers ------------------------------------------------------------
def _deep_and_folded(seed, width):
    """A 2-layer train-BN net whose first ReLU layer is active on the whole window and batch (an affine
    embedding of R^2 into R^width), and the same function as one layer (W2 W1, W2 b1 + b2)."""
    rng = np.random.default_rng(seed)
    batch = rng.normal(size=(8, 2)) + 0.3
    W1, b1 = rng.normal(size=(width, 2)), np.full(width, 50.0)
    W2, b2, V = rng.normal(size=(5, width)), rng.normal(size=5), rng.normal(size=(1, 5))
    deep = Network(2, (Layer(W1, b1, relu()), Layer(W2, b2, relu(), BatchNorm(5, "train")),
                       Layer(V, [0.0], identity())), batch)
    flat = Network(2, (Layer(W2 @ W1, W2 @ b1 + b2, relu(), BatchNorm(5, "train")), Layer(V, [0.0], identity())),
                   batch)
    return deep, flat, batch.mean(axis=0)


@pytest.mark.parametrize("seed, width", [(5, 3), (6, 8), (7, 3)])
def test_deeper_train_bn_switching_sets_stay_concurrent_at_the_pulled_back_centroid(monkeypatch, seed, width):
    """C9 with A_P injective and h̄ − c_P in its range: every layer-2 set passes exactly through x̄, as in the
    folded one-layer net (5 lines through one point: 10 regions). The float64 mean of the layer-2 inputs is off
    that range by rounding; taken as exact it split the point into slivers ~1e-16 wide, certified (16 regions,
    referee's case). The exact anchor is the exact centroid of the exact representations."""
    import cpa_theory.exact as E

    deep, flat, xbar = _deep_and_folded(seed, width)
    want = count_regions(flat, xbar, 0.5)
    assert want.regions == 10 and want.certified
    for engine in ("auto", "cells"):
        got = count_regions(deep, xbar, 0.5, engine=engine, exact_recheck=True)
        assert (got.regions, got.linear_regions, got.certified) == (10, 10, True), (engine, got.as_json())
        assert got.min_witness_radius > 1e-4
    monkeypatch.setattr(E, "_with_exact_anchors", lambda cond, layers: layers)  # mutant: float anchors as exact
    E._CACHE.clear()
    bad = count_regions(deep, xbar, 0.5)
    assert bad.regions > 10 and bad.min_witness_radius < 1e-12


def test_exact_train_bn_anchors_asked_for_by_two_threads_at_once_are_the_one_thread_anchors():
    """The exact anchors are computed on first use, pushing the batch through the exact layers once for all of
    them. Two threads of one count (the space engine's) may ask for two layers' anchors at the same moment; each
    must still get the exact centroid. Without the lock, one push could skip a layer or apply one to the wrong
    representations: a reviewer saw wrong anchors in 20 of 20 trials."""
    import threading

    import cpa_theory.exact as E
    from helpers import random_bn_net

    for trial in range(4):
        cond = random_bn_net(np.random.default_rng(trial), widths=(3, 8, 8, 8, 8, 1), batch_size=48).condition()
        E._CACHE.clear()
        want = [list(L.p) for L in E.exact_layers(cond)]
        E._CACHE.clear()
        layers = E.exact_layers(cond)
        start = threading.Barrier(2)

        def anchor(i):
            start.wait()
            layers[i].p  # noqa: B018  (computes the anchors up to layer i)

        threads = [threading.Thread(target=anchor, args=(i,)) for i in (2, 3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [list(L.p) for L in layers] == want, trial


@pytest.mark.parametrize("scale", [1e-200, 1e154])
def test_exact_witness_radius_has_no_float_overflow_or_underflow(scale):
    """Referee's case: weights of 1e-200 or 1e154 (finite, statistics fine) crashed the exact witness with a raw
    ZeroDivisionError / OverflowError (exit 3): its radius took math.sqrt(float(‖a‖²)). It is now an integer
    square root, a proven lower bound at any scale; the count is the unscaled one."""
    import numpy as np

    from cpa_theory import Layer, Network, identity, relu
    from cpa_theory.regions import _sqrt_lower, count_regions
    from fractions import Fraction

    for q in (Fraction(2), Fraction(1, 3), Fraction(10 ** 400, 7), Fraction(1, 10 ** 500)):
        r = _sqrt_lower(q)
        assert 0 < r and r * r <= q and r * r >= q * (1 - Fraction(1, 2 ** 58))
    W = np.array([[1.0, 2.0], [2.0, -1.0], [1.0, 1.0]])
    nets = [Network(2, (Layer(W * s, np.zeros(3), relu()), Layer(np.ones((1, 3)), [0.0], identity())))
            for s in (1.0, scale)]
    with np.errstate(all="ignore"):
        counts = [count_regions(net, np.zeros(2), 1.0).regions for net in nets]
    assert counts == [6, 6]
