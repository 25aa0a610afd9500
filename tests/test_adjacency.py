"""Adjacency across facets, and with it maximal linear regions (N_lin), on degenerate arrangements.

Facet matching predicts the code across a facet of {ẑ_j = t_k}: the same code with neuron j moved across t_k.
Two things break the prediction in degenerate arrangements, and both are tested here against an oracle that
shares nothing with the engines' adjacency: region pairs whose closures share a (d−1)-dimensional disc, found by
one LP per (region pair, facet) on the certified regions' inequalities (scipy's HiGHS), then connected
components of the pairs with equal output maps.

* a facet crossed by two switching sets at once (twin neurons; a later neuron exactly at a breakpoint along the
  facet) — the region across has a code that differs in two entries (:mod:`cpa_theory.facet_probe` finds it);
* a hyperplane that only touches a cell in a lower-dimensional face with ≥ d vertices (a split no longer keeps
  it, :func:`cpa_theory.polytope._live_facets`; before, it paired regions that only touch).
"""

import numpy as np
import pytest
from scipy.optimize import linprog
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from cpa_theory import Layer, Network, absolute, hardtanh, identity, relu
from cpa_theory.regions import count_regions


def _share_a_facet(Gi, hi, Gj, hj) -> bool:
    """Do {Gi x ≤ hi} and {Gj x ≤ hj} share a (d−1)-disc on one of region i's facet hyperplanes? One LP per
    facet: the largest in-plane radius s of a disc on {g·x = b} inside both closures."""
    d = Gi.shape[1]
    G = np.vstack([Gi, Gj])
    h = np.concatenate([hi, hj])
    norms = np.linalg.norm(G, axis=1)
    for g, b in zip(Gi, hi):
        u = g / np.linalg.norm(g)
        along = G @ u
        par = np.abs(np.abs(along) - norms) <= 1e-12 * norms  # constant on the plane: no margin
        margin = np.where(par, 0.0, np.sqrt(np.maximum(norms ** 2 - along ** 2, 0.0)))
        rhs = h + np.where(par, 1e-12 * (1 + np.abs(h)), 0.0)
        res = linprog(np.r_[np.zeros(d), -1.0], A_ub=np.c_[G, margin], b_ub=rhs, A_eq=np.r_[g, 0.0][None],
                      b_eq=[b], bounds=[(None, None)] * d + [(None, 1.0)], method="highs")
        if res.status == 0 and -res.fun > 1e-9:
            return True
    return False


def nlin_oracle(regions) -> int:
    n = len(regions)
    maps = [np.c_[r.out_A, r.out_c] for r in regions]
    lo = np.array([r.vertices.min(axis=0) for r in regions]) - 1e-9
    hi = np.array([r.vertices.max(axis=0) for r in regions]) + 1e-9
    u, v = [], []
    for i in range(n):
        for j in range(i + 1, n):
            if np.any(lo[i] > hi[j]) or np.any(lo[j] > hi[i]):  # closures apart: no LP needed
                continue
            if np.array_equal(maps[i], maps[j]) and _share_a_facet(*regions[i].facets, *regions[j].facets):
                u.append(i)
                v.append(j)
    g = coo_matrix((np.ones(len(u)), (u, v)), shape=(n, n))
    return int(connected_components(g, directed=False)[0])


def _engines(d):
    return ("auto", "cells") if d in (2, 3) else ("cells",)


@pytest.mark.parametrize("d", [2, 3, 4])
def test_twin_neurons_merge_across_their_shared_facet(d):
    """f = relu(x₁) − relu(x₁) + relu(x₂) = relu(x₂): four regions, two linear regions (crossing x₁ = 0 flips
    both twins, so the predicted neighbour code does not exist)."""
    e = np.eye(d)
    net = Network(d, (Layer(np.stack([e[0], e[0], e[1]]), np.zeros(3), relu()),
                      Layer(np.array([[1.0, -1.0, 1.0]]), [0.0], identity())))
    for engine in _engines(d):
        res = count_regions(net, np.zeros(d), 1.0, engine=engine)
        assert (res.regions, res.linear_regions, res.certified) == (4, 2, True), engine


@pytest.mark.parametrize("d", [2, 3])
def test_a_neuron_exactly_at_its_breakpoint_along_a_facet(d):
    """f = relu(−relu(x₁)) + relu(x₂) = relu(x₂): the layer-2 neuron's pre-activation is exactly 0 where layer 1
    is dead (piece 1 there) and −x₁ beyond, so crossing x₁ = 0 moves two neurons of two layers at once."""
    e = np.eye(d)
    net = Network(d, (Layer(e[:2], [0.0, 0.0], relu()),
                      Layer(np.array([[-1.0, 0.0], [0.0, 1.0]]), [0.0, 0.0], relu()),
                      Layer(np.array([[1.0, 1.0]]), [0.0], identity())))
    for engine in _engines(d):
        res = count_regions(net, np.zeros(d), 1.0, engine=engine)
        assert (res.regions, res.linear_regions, res.certified) == (4, 2, True), engine


def _degenerate_net(d, seed):
    """Small integer weights, zero or half-integer biases, a duplicated row per layer half the time, and
    relu / hardtanh / abs: arrangements full of concurrent, coincident and touching hyperplanes."""
    rng = np.random.default_rng([d, seed])
    acts = (relu, hardtanh, absolute)
    layers, n = [], d
    for w in (4, 3):
        W = rng.integers(-2, 3, size=(w, n)).astype(float)
        if rng.random() < 0.5:
            W[-1] = W[0]
        b = rng.integers(-1, 2, size=w).astype(float) * (0 if rng.random() < 0.5 else 0.5)
        layers.append(Layer(W, b, acts[rng.integers(3)]()))
        n = w
    layers.append(Layer(rng.integers(-2, 3, size=(1, n)).astype(float), [0.0], identity()))
    return Network(d, tuple(layers)), rng.integers(-2, 3, size=d) * 0.25


@pytest.mark.parametrize("d, seeds", [(2, range(4)), (3, range(3)), (4, (0, 14))])
def test_linear_regions_of_degenerate_nets_equal_the_lp_oracle(d, seeds):
    """N_lin of both engines equals the LP oracle on degenerate nets. 4-D seed 14: 54 listed 'facets' touch
    their cell only in a 2-face with 4 vertices; matching them paired regions that merely touch and gave
    N_lin 147 instead of 161. 4-D seed 0: an edge on more than d − 1 facets (the split picked its independent
    facets by the wrong index and crashed)."""
    for seed in seeds:
        net, c = _degenerate_net(d, seed)
        for engine in _engines(d):
            res = count_regions(net, c, 1.0, engine=engine, keep_regions=True)
            assert res.certified and res.complete, (seed, engine)
            assert res.linear_regions == _oracle_of(d, seed, res.region_list), (seed, engine)


_ORACLE: dict = {}


def _oracle_of(d, seed, regions=None) -> int:
    """The oracle's N_lin of ``_degenerate_net(d, seed)`` (regions: certified ones; computed once)."""
    if (d, seed) not in _ORACLE:
        if regions is None:
            net, c = _degenerate_net(d, seed)
            regions = count_regions(net, c, 1.0, engine="cells", keep_regions=True).region_list
        _ORACLE[(d, seed)] = nlin_oracle(regions)
    return _ORACLE[(d, seed)]


def test_the_oracle_sees_a_wrong_merge():
    """Negative control for the oracle: regions that only touch at a corner, with one map, stay two."""
    from types import SimpleNamespace as NS

    A, c = np.array([[1.0, 0.0]]), np.array([0.0])
    box = lambda lo, hi: (np.r_[np.eye(2), -np.eye(2)], np.r_[hi, -np.asarray(lo)])  # noqa: E731
    reg = lambda lo, hi: NS(out_A=A, out_c=c, facets=box(lo, hi),  # noqa: E731
                            vertices=np.array([[lo[0], lo[1]], [hi[0], hi[1]]], dtype=float))
    touching = [reg([0, 0], [1, 1]), reg([1, 1], [2, 2])]
    sharing = [reg([0, 0], [1, 1]), reg([1, 0], [2, 1])]
    assert nlin_oracle(touching) == 2 and nlin_oracle(sharing) == 1


def test_mutations_of_the_adjacency_are_caught(monkeypatch):
    """The checks above fail when either fix is removed from the implementation: no exact probe across
    unmatched facets (twins stay apart: N_lin 4), or a split that keeps every hyperplane with d vertices on it
    as a facet (4-D seed 14: regions that only touch are merged, N_lin below the oracle)."""
    import cpa_theory.facet_probe as FP
    import cpa_theory.polytope as P

    e = np.eye(2)
    twins = Network(2, (Layer(np.stack([e[0], e[0], e[1]]), np.zeros(3), relu()),
                        Layer(np.array([[1.0, -1.0, 1.0]]), [0.0], identity())))
    with monkeypatch.context() as m:
        m.setattr(FP.FacetProber, "probe", lambda self, *a, **kw: None)
        assert count_regions(twins, np.zeros(2), 1.0).linear_regions == 4
        assert count_regions(twins, np.zeros(2), 1.0, engine="cells").linear_regions == 4
    net, c = _degenerate_net(4, 14)
    expected = _oracle_of(4, 14)
    with monkeypatch.context() as m:  # the old rule: any hyperplane with d vertices on it stays a facet
        m.setattr(P, "_live_facets", lambda inc_strict, inc, d, on_cut: inc.sum(axis=0) >= d)
        assert count_regions(net, c, 1.0, engine="cells").linear_regions < expected


def test_the_probe_decides_a_neuron_float64_misplaces_in_rationals(monkeypatch):
    """ẑ = −3·relu(x) + relu(x) + 2·relu(x) is exactly 0 for x > 0 (flat: piece 1), but float64 gives −1.1e-16
    at x = fl(1/3). The probe's float pass leaves it to the exact chart (its error bound exceeds 1.1e-16); with
    the bound removed (mutant) the float value would place it on piece 0, a code no region has."""
    from fractions import Fraction

    import cpa_theory.facet_probe as FP
    from cpa_theory.exact import ExactCharts, exact_code

    W0 = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    net = Network(2, (Layer(W0, np.zeros(4), relu()), Layer(np.array([[-3.0, 1.0, 2.0, 0.0]]), [0.0], relu()),
                      Layer(np.ones((1, 1)), [0.0], identity())))
    cond = net.condition()
    x = 1 / 3
    assert cond.layers[1].preactivation(cond.layers[0].forward(np.array([[x, 0.0]])))[0, 0] < 0  # float64's view
    charts = ExactCharts(cond, np.zeros(2))
    c, a = [Fraction(x), Fraction(0)], (Fraction(0), Fraction(1))  # on the facet y = 0 of the region x, y > 0
    truth = exact_code(cond, [Fraction(x), Fraction(1, 10)])
    assert truth[1][0] == 1
    got = FP.half_ball_code(cond, charts, c, a, 1)
    assert all(np.array_equal(u, v) for u, v in zip(got, truth))
    real = FP._float_layer
    monkeypatch.setattr(FP, "_float_layer", lambda *args: (real(*args)[0], np.zeros(len(real(*args)[0]))))
    assert FP.half_ball_code(cond, charts, c, a, 1)[1][0] == 0  # the mutant misplaces it


def test_the_probe_bound_covers_underflow_that_a_huge_gain_amplifies():
    """Referee: w = 1e-300 then an eval-BN gain 1e300. w·x underflows (subnormal, error up to 2^-1075) and the
    gain multiplies that error to ~1e-24, more than the float pass's bound once allowed: it decided the wrong
    piece on both sides of the facet. The bound now carries the gain on its underflow term."""
    from fractions import Fraction

    import cpa_theory.facet_probe as FP
    from cpa_theory.bn import BatchNorm
    from cpa_theory.exact import ExactCharts, exact_code

    w, g = 1e-300, 1e300
    xs = [float(v) for v in np.linspace(1e-10, 2e-10, 2001)]
    errs = [Fraction(float(g * (w * x))) - Fraction(g) * Fraction(w) * Fraction(x) for x in xs]
    k = int(np.argmax([abs(float(e)) for e in errs]))
    x0, err = xs[k], errs[k]
    s = 1 if err > 0 else -1
    e = -(float(g * (w * x0)) - s * 1e-24)  # float ẑ ≈ s·1e-24, exact ẑ on the other side of 0
    bn = BatchNorm(2, "eval", gamma=np.array([1.0, g]), beta=np.array([0.0, e]), running_mean=np.zeros(2),
                   running_var=np.ones(2), eps=0.0)
    cond = Network(2, (Layer(np.array([[0.0, 1.0], [w, 0.0]]), np.zeros(2), relu(), bn),
                       Layer(np.ones((1, 2)), [0.0], identity()))).condition()
    zf = cond.layers[0].preactivation(np.array([[x0, 0.0]]))[0, 1]
    zx = Fraction(g) * Fraction(w) * Fraction(x0) + Fraction(e)
    assert (zf > 0) != (zx > 0)  # float64 puts the neuron on the wrong piece
    charts = ExactCharts(cond, np.zeros(2))
    for side in (1, -1):
        got = FP.half_ball_code(cond, charts, [Fraction(x0), Fraction(0)], (Fraction(0), Fraction(1)), side)
        truth = exact_code(cond, [Fraction(x0), Fraction(side, 10**30)])
        assert all(np.array_equal(u, v) for u, v in zip(got, truth))


@pytest.mark.parametrize("engine", ["auto", "cells"])
def test_output_maps_whose_bounds_overflow_are_compared_in_rationals(engine):
    """Referee: two identical neurons relu(1e21·x), output 1e300·(h1 − h2) ≡ 0. The output maps' magnitude bound
    overflows (1e300 · 2e21); the error bound of a map came out inf·0 = NaN and the two maps read as different:
    N_lin = 3, certified. Non-finite bounds now send the pair to the exact comparison: N_lin = 1."""
    from cpa_theory.bn import BatchNorm

    W0 = np.array([[1e21, 0.0], [1e21, 0.0], [0.0, 1.0]])
    bn = BatchNorm(1, "eval", gamma=np.array([1e300]), beta=np.zeros(1), running_mean=np.zeros(1),
                   running_var=np.ones(1), eps=0.0)
    net = Network(2, (Layer(W0, np.zeros(3), relu()), Layer(np.array([[1.0, -1.0, 0.0]]), [0.0], identity(), bn)))
    res = count_regions(net, np.zeros(2), 1.0, engine=engine)
    assert (res.regions, res.linear_regions, res.certified) == (4, 1, True)


@pytest.mark.parametrize("engine", ["auto", "cells"])
def test_charts_that_overflow_or_underflow_are_internal_errors(engine):
    """Referee: with weights 1e25 the same net's chart bounds overflow (a K = 0 output layer has no lines, whose
    bounds used to be the only ones checked); a weight 2^-1000 puts chart products in the underflow range where
    the relative bounds do not hold. Both are refused, never counted."""
    from cpa_theory.bn import BatchNorm
    from cpa_theory.errors import CPAInternalError

    bn = BatchNorm(1, "eval", gamma=np.array([1e300]), beta=np.zeros(1), running_mean=np.zeros(1),
                   running_var=np.ones(1), eps=0.0)
    big = Network(2, (Layer(np.array([[1e25, 0.0], [1e25, 0.0], [0.0, 1.0]]), np.zeros(3), relu()),
                      Layer(np.array([[1.0, -1.0, 0.0]]), [0.0], identity(), bn)))
    with pytest.raises(CPAInternalError, match="overflow"):
        count_regions(big, np.zeros(2), 1.0, engine=engine)
    tiny = Network(2, (Layer(np.array([[1.0, 0.0], [2.0 ** -1000, 0.0]]), np.array([-0.1, 0.0]), relu()),
                       Layer(np.array([[1.0, -1.0]]), [0.0], identity())))
    with pytest.raises(CPAInternalError, match="underflow"):
        count_regions(tiny, np.zeros(2), 1.0, engine=engine)


def _tiny_weight_net(which):
    """Referee's nets: zero weights beside 1e-17 … 1e-40 ones (slivers far below float64 resolution) and
    coincident switching sets (x − y at breakpoint 2 of one neuron is 2x − 2y − 1 at breakpoint 1 of another)."""
    from cpa_theory.activations import relu6, spline

    cpa = spline([0.0, 1.0, 2.0], [0.0, 2.0, 2.0], 1.0, 1.0)
    assert cpa.slopes == (1.0, 2.0, 0.0, 1.0)
    if which == "tip":
        return Network(2, (
            Layer([[1.0, 1.0], [-1e-17, -1e-40], [1.0, 1.0], [0.0, -1e-40]], [0.0, 1.0, -1.0, 1.0], absolute()),
            Layer([[1.0, 2.0, -1.0, 2.0], [-1.0, -2.0, 1.0, -2.0], [2.0, -2.0, -1e-40, -1.0], [1.0, 2.0, -1.0, 2.0]],
                  [0.0, -1.0, -1.0, 1.0], relu6()),
            Layer([[1.0, -1.0, 2.0 ** -100, 1.0], [1.0, -1.0, 2.0 ** -100, 1.0], [2.0, 2.0, -1e-40, 1e-30]],
                  [-1.0, 1.0, -1.0], cpa),
            Layer([[-1e-40, 0.0, 0.0]], [0.0], identity()))), np.array([-0.25, 0.0]), 2.0
    return Network(2, (Layer([[-1.0, 1.0], [-2.0, 2.0], [1e-20, 1.0]], [1.0, -1.0, 1.0], cpa),
                       Layer([[2.0, -1.0, -1.0], [2.0, -1.0, -1.0], [2.0, 1e-30, 1.0]], [-1.0, 0.0, 1.0], cpa),
                       Layer([[2.0, 1.0, -1.0], [-2.0, 1e-30, 2.0]], [0.0, 0.0], identity()))), \
        np.array([-0.25, 0.25]), 0.5


def test_a_line_whose_float_normal_cancelled_to_zero_gets_its_exact_direction(monkeypatch):
    """Referee's net (tiny2 seed 395): a layer-2 line's float coefficients cancel to (0, 0) (weights 1e-40 and
    2^-100 beside 1e-17), so the corner angles taken from float normals read π where the sliver's corner is ~0,
    and the plane engine's vertex check left the window incomplete (χ = 1 but angle sums 3π, 4π). The exact
    line's normal, scaled, gives the direction; the mutant that keeps the float normals is incomplete."""
    import cpa_theory.frontier2d as F2
    from cpa_theory.activations import leaky_relu, spline

    cpa = spline([0.0, 1.0, 2.0], [0.0, 2.0, 2.0], 1.0, 1.0)
    net = Network(2, (
        Layer([[2, 2], [2, 2], [-1, -1], [-2, 1], [-2, 2]], [0, 0, 1, 0, 1], leaky_relu(0.1)),
        Layer([[1, -1, 0, -1, 1], [-1, 1, -1e-40, 1, -1], [0, 0, -2, 1, 0], [-1e-17, 2.0 ** -100, -2, 1, 0]],
              [1, -1, 0, 1], cpa),
        Layer([[-2, -1, 1, 1], [2, 1, -1, -1], [-2, -1, 1, 1], [-2, -1, 2, 0], [-2, -2, -1, 1], [-1, -1e-17, 1, -2],
               [1, -1, 1, 2]], [1, 0, 0, 1, 0, 0, 0], hardtanh()),
        Layer([[1e-20, 0, 0, 0, -1, 0, -2], [-1, -1e-17, -1, -1e-40, -1e-40, 0, 1e-30]], [0, 0], identity())))
    c = np.array([-0.25, 0.0])
    res, cells = count_regions(net, c, 0.5), count_regions(net, c, 0.5, engine="cells")
    assert res.certified and res.complete and res.euler_characteristic == 1
    assert (res.regions, res.linear_regions) == (cells.regions, cells.linear_regions) == (30, 22)
    monkeypatch.setattr(F2, "_line_directions", lambda fr, lid: fr.ha.a[lid])
    assert not count_regions(net, c, 0.5).complete


def test_a_sliver_tip_is_an_angle_of_zero_not_two_pi(monkeypatch):
    """At the tip of a sliver (area 0 in float64) the two edges' outward normals are nearly opposite, and the
    sign of their float cross product is noise: atan2 read a turn of −π, an interior angle of 2π, and the plane
    engine's vertex check left the window incomplete. A convex cell's normals turn counter-clockwise (cross ≥ 0
    exactly), so the engine takes |cross|. In the referee's net below the tip's float normal had also cancelled
    to (0, 0) (now given its exact direction): the mutant that drops both safeguards is incomplete."""
    import cpa_theory.frontier2d as F2

    n1, n2 = np.array([[1.0, 0.0]]), np.array([[-1.0, -1e-300]])  # a tip whose cross came out below zero
    assert F2._turn(n1, n2)[0] == np.pi and np.arctan2(-1e-300, -1.0) == -np.pi
    net, c, r = _tiny_weight_net("tip")
    res = count_regions(net, c, r)
    cells = count_regions(net, c, r, engine="cells")
    assert res.certified and res.complete and res.regions == cells.regions == 7
    monkeypatch.setattr(F2, "_turn", lambda n1, n2: np.arctan2(n1[:, 0] * n2[:, 1] - n1[:, 1] * n2[:, 0],
                                                              np.einsum("ij,ij->i", n1, n2)))
    monkeypatch.setattr(F2, "_line_directions", lambda fr, lid: fr.ha.a[lid])
    assert not count_regions(net, c, r).complete


def test_coincident_sets_beside_a_sliver_facet_are_complete_in_both_engines(monkeypatch):
    """Two switching sets coincide (each side names the shared facet by another neuron, so neither the code
    look-up nor the measure balance per hyperplane can match it) and one facet beside them is 1e-21 long: its
    float corners coincide and miss it. The facet probe proves every such facet's neighbour — from the exact
    centroid where the float points fail — so both engines certify a complete count with equal N and N_lin;
    with the exact retry removed (mutant) neither is complete."""
    import cpa_theory.facet_probe as FP

    net, c, r = _tiny_weight_net("coincident")
    got = [count_regions(net, c, r, engine=e) for e in ("auto", "cells")]
    for res in got:
        assert res.certified and res.complete and res.unmatched_facets > 0 and res.min_witness_radius < 1e-20
    assert got[0].regions == got[1].regions == 12 and got[0].linear_regions == got[1].linear_regions
    real = FP.FacetProber.probe
    monkeypatch.setattr(FP.FacetProber, "probe", lambda self, i, code, hyper, inside, verts, exact_verts=None:
                        real(self, i, code, hyper, inside, verts))
    for e in ("auto", "cells"):
        assert not count_regions(net, c, r, engine=e).complete
