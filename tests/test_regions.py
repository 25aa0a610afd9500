"""Exact region counts: closed-form oracles O1–O4, degenerate arrangements, independent geometry, certificates."""

from concurrent.futures import ThreadPoolExecutor
from math import comb

import numpy as np
import pytest

from cpa_theory import BatchNorm, Layer, Network, hardtanh, identity, relu, spline
from cpa_theory.density import count_many, default_executor, density_functional
from cpa_theory.regions import count_regions

from helpers import random_bn_net


def single_layer(W, b, act=relu, bn=None, batch=None):
    W = np.asarray(W, float)
    n, d = W.shape
    return Network(d, (Layer(W, b, act(), bn), Layer(np.ones((1, n)), [0.0], identity())), batch)


def concurrent_bn_layer(rng, n, d, act=relu):
    batch = rng.normal(size=(9, d)) * 2 + 5
    net = single_layer(rng.normal(size=(n, d)), rng.normal(size=n), act, BatchNorm(n, "train"), batch)
    return net, batch.mean(0)


# -- O3 / C5: BN with β = 0 makes every first-layer hyperplane pass through the centroid ---------
@pytest.mark.parametrize("n, d, expected", [(10, 2, 20), (10, 3, 92), (20, 3, 382), (32, 2, 64)])
def test_O3_concurrent_hyperplanes_through_the_centroid(rng, n, d, expected):
    net, xbar = concurrent_bn_layer(rng, n, d)
    assert expected == 2 * sum(comb(n - 1, k) for k in range(d))
    res = count_regions(net, xbar + 0.01, 0.3)
    assert (res.regions, res.hits, res.certified) == (expected, n, True), res.as_json()


def test_O3_neg_general_position_formula_overcounts_the_concurrent_case(rng):
    net, xbar = concurrent_bn_layer(rng, 32, 2)
    general_position = sum(comb(32, k) for k in range(3))
    assert general_position == 529
    assert count_regions(net, xbar, 0.3).regions != general_position


# -- O2: general position, all vertices inside the window ------------------------------------
@pytest.mark.parametrize("n, d, expected", [(10, 2, 56), (20, 2, 211), (10, 3, 176)])
def test_O2_general_position(rng, n, d, expected):
    W, b = rng.normal(size=(n, d)), rng.normal(size=n)
    # every vertex of the arrangement (d hyperplanes meeting) must lie inside the window
    import itertools

    verts = [np.linalg.solve(W[list(s)], -b[list(s)]) for s in itertools.combinations(range(n), d)]
    r = 2 * max(np.abs(v).max() for v in verts) + 1
    res = count_regions(single_layer(W, b), np.zeros(d), r)
    assert res.regions == expected == sum(comb(n, k) for k in range(d + 1))


# -- O1: any single layer -----------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_O1_single_layer_bounds(seed):
    rng = np.random.default_rng(seed)
    d, n = rng.integers(1, 4), rng.integers(2, 12)
    net = single_layer(rng.normal(size=(n, d)), rng.normal(size=n))
    res = count_regions(net, rng.normal(size=d) * 0.5, float(rng.uniform(0.2, 2)))
    h = res.hits
    assert 1 + h <= res.regions <= sum(comb(h, k) for k in range(d + 1)), res.as_json()


# -- O4: d = 1 -------------------------------------------------------------------------------
def test_O4_one_dimension_with_duplicates_and_two_breakpoints():
    W = np.array([[1.0], [2.0], [-1.0], [1.0]])
    b = np.array([0.0, -1.0, 0.25, 0.0])  # breakpoints of hardtanh at wx + b = ±1
    net = single_layer(W, b, hardtanh)
    pts = set()
    for w, bi in zip(W[:, 0], b):
        for t in (-1.0, 1.0):
            x = (t - bi) / w
            if -0.8 < x < 0.8:
                pts.add(x)
    res = count_regions(net, [0.0], 0.8)
    assert res.regions == 1 + len(pts)


# -- degenerate arrangements built by hand -------------------------------------------------------
def test_duplicate_neurons_add_no_region(rng):
    W, b = rng.normal(size=(5, 2)), rng.normal(size=5) * 0.3
    base = count_regions(single_layer(W, b), np.zeros(2), 1.0).regions
    dup = count_regions(single_layer(np.vstack([W, W[:2]]), np.r_[b, b[:2]]), np.zeros(2), 1.0)
    assert dup.regions == base and dup.hits == count_regions(single_layer(W, b), np.zeros(2), 1.0).hits + 2


def test_three_lines_through_one_point_give_six_cells():
    W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert count_regions(single_layer(W, np.zeros(3)), np.zeros(2), 1.0).regions == 6


def test_line_through_a_corner_does_not_cut():
    W = np.array([[1.0, 1.0]])
    res = count_regions(single_layer(W, [-2.0]), np.zeros(2), 1.0)  # x + y = 2 touches (1, 1)
    assert (res.regions, res.hits) == (1, 0)


def test_line_along_an_edge_does_not_cut():
    res = count_regions(single_layer([[1.0, 0.0]], [-1.0]), np.zeros(2), 1.0)  # x = 1 is the right side
    assert (res.regions, res.hits) == (1, 0)


def test_coincident_parallel_families_hardtanh():
    # neuron 2 is neuron 1 scaled by -1: the same two lines, counted once
    W = np.array([[1.0, 0.5], [-1.0, -0.5]])
    res = count_regions(single_layer(W, np.zeros(2), hardtanh), np.zeros(2), 3.0)
    assert res.regions == 3


def test_dead_and_constant_neurons(rng):
    W = np.array([[1.0, 0.0], [0.0, 0.0], [0.3, 1.0]])
    b = np.array([-100.0, 1.0, 0.0])  # neuron 0's line misses the window, neuron 1 is constant
    res = count_regions(single_layer(W, b), np.zeros(2), 1.0)
    assert (res.regions, res.hits) == (2, 1)
    gamma0 = BatchNorm(3, "train", gamma=[0.0, 1.0, 1.0])
    net = single_layer(W, b, bn=gamma0, batch=rng.normal(size=(6, 2)))
    assert count_regions(net, net.batch.mean(0), 1.0).certified


def test_linear_regions_merge_when_an_output_weight_is_zero():
    W = np.array([[1.0, 0.0], [0.0, 1.0]])
    net = Network(2, (Layer(W, np.zeros(2), relu()), Layer(np.array([[1.0, 0.0]]), [0.0], identity())))
    res = count_regions(net, np.zeros(2), 1.0)
    assert (res.regions, res.linear_regions) == (4, 2)


# -- independent geometry: shapely clipping, area, grid sampling ------------------------------------------
def shapely_count(net, center, r):
    """Independent count: shapely splits polygons layer by layer, reading each layer's map at a point."""
    from shapely.geometry import LineString, box
    from shapely.ops import split

    cond = net.condition()
    cells = [box(center[0] - r, center[1] - r, center[0] + r, center[1] + r)]
    for li, layer in enumerate(cond.layers):
        out = []
        for cell in cells:
            p = np.array(cell.representative_point().coords[0])
            A, c = cond.affine_map(p, li)
            pieces = [cell]
            for i in range(layer.weight.shape[0]):
                a = layer.bn.gain[i] * layer.weight[i] @ A
                z0 = layer.bn.gain[i] * layer.weight[i] @ (c - layer.bn.anchor) + layer.bn.shift[i]
                for t in layer.activation.breakpoints:
                    if np.allclose(a, 0):
                        continue
                    # a·x = t − z0; a long segment across the window
                    u = np.array([-a[1], a[0]]) / np.linalg.norm(a)
                    x0 = a * (t - z0) / (a @ a)
                    line = LineString([x0 - 100 * r * u, x0 + 100 * r * u])
                    new = []
                    for piece in pieces:
                        new += [g for g in split(piece, line).geoms if g.area > 1e-12]
                    pieces = new
            out += pieces
        cells = out
    return len(cells)


@pytest.mark.parametrize("seed", range(4))
def test_counts_equal_independent_shapely_count(seed):
    rng = np.random.default_rng(100 + seed)
    net = random_bn_net(rng, widths=(2, 6, 5, 1), mode=None, bias_scale=0.3)
    res = count_regions(net, np.zeros(2), 1.0)
    assert res.regions == shapely_count(net, np.zeros(2), 1.0)


@pytest.mark.parametrize("mode", ["train", None])
def test_regions_tile_the_window_and_grid_finds_no_missing_code(rng, mode):
    from shapely.geometry import Polygon

    from cpa_theory.plotting import _ordered

    net = random_bn_net(rng, widths=(2, 8, 6, 1), mode=mode, gamma="random", beta="random")
    center, r = net.batch.mean(0) + 0.1, 0.8
    res = count_regions(net, center, r, keep_regions=True)
    polys = [Polygon(_ordered(reg.vertices)) for reg in res.region_list]
    assert sum(p.area for p in polys) == pytest.approx((2 * r) ** 2, rel=1e-9)
    codes = {tuple(np.concatenate(reg.code)) for reg in res.region_list}
    assert len(codes) == res.regions  # one region per code
    g = np.linspace(-r, r, 121)
    grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2) + center
    found = net.condition().activation_code(grid)
    for row in zip(*found):
        assert tuple(np.concatenate(row)) in codes


def test_witnesses_recheck_in_exact_arithmetic_and_with_an_lp(rng):
    from numerics.certificates import chebyshev_ball

    net = random_bn_net(rng, widths=(2, 5, 4, 1), gamma="random", beta="random")
    res = count_regions(net, net.batch.mean(0), 0.5, keep_regions=True, exact_recheck=True)
    assert res.certified
    for reg in res.region_list[:10]:
        G, h = reg.facets
        ball = chebyshev_ball(G, h)
        assert ball.radius >= reg.radius * (1 - 1e-9)  # ours is a valid, not necessarily the largest, ball
        assert np.all(G @ reg.witness + np.linalg.norm(G, axis=1) * reg.radius <= h + 1e-12)


def test_certification_rejects_a_wrong_code(rng):
    from cpa_theory.regions import _certify_batch

    net = random_bn_net(rng, widths=(2, 5, 1))
    cond = net.condition()
    res = count_regions(net, np.zeros(2), 1.0, keep_regions=True)
    reg = res.region_list[0]
    bad = tuple(c.copy() for c in reg.code)
    bad[0][0] = 1 - bad[0][0]
    ok = _certify_batch(cond, reg.witness[None], np.array([reg.radius]), [bad], 1.0, exact=False)
    assert not ok[0]


def test_general_spline_and_deep_eval_mode(rng):
    act = lambda: spline([-1.0, 0.0, 1.5], [0.0, -0.5, 1.0], 0.2, 2.0)  # noqa: E731
    for mode in ("train", "eval"):
        net = random_bn_net(rng, widths=(3, 5, 4, 1), mode=mode, act=act, gamma="random", beta="random")
        res = count_regions(net, net.batch.mean(0), 0.5)
        assert res.certified and res.regions >= 1 + res.hits


# -- many windows, executors, density ----------------------------------------------------------------
def test_count_many_on_executors_matches_serial(rng):
    net = random_bn_net(rng, widths=(2, 6, 1))
    centers = net.batch[:3]
    serial = count_many(net, centers, 0.4)
    with ThreadPoolExecutor(2) as ex:
        threaded = count_many(net, centers, 0.4, executor=ex)
    with default_executor(2) as ex:
        processes = count_many(net, centers, 0.4, executor=ex)
    key = lambda rows: [(r["regions"], r["linear_regions"], r["hits"]) for r in rows]  # noqa: E731
    assert key(serial) == key(threaded) == key(processes)


def test_density_functional_variants(rng):
    net = random_bn_net(rng, widths=(2, 6, 1))
    res = density_functional(net, net.batch[:4], 0.3)
    assert res.per_window.shape == (4,)
    assert res.mean == pytest.approx(res.per_window.mean())
    assert res.per_volume == pytest.approx(res.mean / 0.6**2)
    assert res.mean_log == pytest.approx(np.mean(np.log(res.per_window)))


def test_sufficient_condition_certificates(rng):
    from numerics.certificates import centroid_in_window, injective, window_inside_parent_region

    net = random_bn_net(rng, widths=(2, 6, 4, 1))
    xbar = net.batch.mean(0)
    assert centroid_in_window(net.batch, xbar + 0.05, 0.1)
    assert not centroid_in_window(net.batch, xbar + 0.5, 0.1)
    cond = net.condition()
    from cpa_theory import switching_hyperplanes, window_hits

    hp = switching_hyperplanes(cond)
    outside = [xbar + 30.0 * np.array([np.cos(a), np.sin(a)]) for a in np.linspace(0, 2 * np.pi, 24)]
    clear = [c for c in outside if window_hits(hp, c, 0.1)[0] == 0]
    assert clear, "some far window must miss every layer-1 hyperplane"
    assert window_inside_parent_region(cond, clear[0], 0.1, 1)
    assert not window_inside_parent_region(cond, xbar, 1.0, 1)  # β = 0: every layer-1 hyperplane cuts W
    assert injective(np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
    assert not injective(np.array([[1.0, 2.0], [2.0, 4.0]]))


@pytest.mark.parametrize("d", [2, 3])
def test_counting_in_a_general_polytope_matches_its_box_and_its_pieces(rng, d):
    net = random_bn_net(rng, widths=(d, 6, 4, 1), gamma="random", beta="random")
    c, r = net.batch.mean(0), 0.6
    G = np.vstack([np.eye(d), -np.eye(d)])
    h = np.concatenate([c + r, -(c - r)])
    box = count_regions(net, c, r)
    as_poly = count_regions(net, polytope=(G, h))
    assert (as_poly.regions, as_poly.hits, as_poly.certified) == (box.regions, box.hits, True)
    # cut the box in two by x_0 = c_0: the halves' counts add up to at least the box's (regions cut in two)
    a = np.zeros(d)
    a[0] = 1.0
    left = count_regions(net, polytope=(np.vstack([G, a]), np.append(h, c[0])))
    right = count_regions(net, polytope=(np.vstack([G, -a]), np.append(h, -c[0])))
    assert left.certified and right.certified
    assert box.regions <= left.regions + right.regions <= box.regions + box.regions


def test_polytope_must_be_bounded():
    from cpa_theory import WindowError

    net = single_layer([[1.0, 0.0]], [0.0])
    with pytest.raises(WindowError, match="bounded"):
        count_regions(net, polytope=(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1.0, 1.0])))


def test_deep_concurrent_hyperplanes_inside_a_parent_region_stay_concurrent():
    # C9 + C5 inside P: layer 2 (ReLU, γ = 1, β = 0) pulls back to 8 planes through x*_P. In float64 the
    # pulled-back planes are only nearly concurrent; anchoring them at the pull-back keeps them exactly
    # concurrent, so the count is O3(8, 3) = 58 and not the general-position 93.
    from numerics.certificates import window_inside_parent_region

    from cpa_theory.reproduce.checks import pullback_instance

    seen = 0
    for seed in range(4):
        net, x_star = pullback_instance(np.random.default_rng(seed))
        cond = net.condition()
        if not window_inside_parent_region(cond, x_star, 0.02, 1):
            continue
        seen += 1
        res = count_regions(net, x_star, 0.02)
        assert res.certified and res.regions == 58
    assert seen >= 2
