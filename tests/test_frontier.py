"""The flat engines (cpa_theory.frontier: the plane and space engines split every cell of a layer at once) against
the cell-by-cell engine, and their completeness checks (volume sum, facet matching, Euler characteristic) against injected faults."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cpa_theory.frontier as FF
import cpa_theory.frontier2d as F2
from cpa_theory import BatchNorm, Layer, Network, identity, relu
from cpa_theory.regions import count_regions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_counting_exact import _activations, _random_net, brute_single_layer, near_concurrent, one_layer  # noqa: E402


def _fingerprint(res):
    """What two runs of one certified count must share exactly: counts, N_lin, exact fallbacks, the smallest
    witness radius, and the regions' codes with their witness radii (sorted by code)."""
    assert res.certified
    codes = [tuple(np.concatenate(r.code).tolist()) for r in res.region_list]
    order = sorted(range(res.regions), key=codes.__getitem__)
    return (res.regions, res.linear_regions, res.exact_fallbacks, res.min_witness_radius,
            [codes[i] for i in order], [res.region_list[i].radius for i in order])


def _same(a, b):
    assert a.regions == b.regions, (a.as_json(), b.as_json())
    assert a.linear_regions == b.linear_regions
    assert a.hits == b.hits
    assert a.certified == b.certified and a.complete == b.complete
    assert a.uncertified == b.uncertified
    # (certified lower bounds from float charts summed in other orders: equal to ~1e-11 of the window)
    assert np.isclose(a.min_witness_radius, b.min_witness_radius, rtol=1e-9, atol=1e-11 * a.radius)


@pytest.mark.parametrize("mode", ["train", "eval", None])
@pytest.mark.parametrize("widths", [(7, 6), (5, 5, 4)])
def test_plane_engine_equals_the_cell_engine(mode, widths):
    rng = np.random.default_rng(len(widths) * 7 + (0 if mode is None else len(mode)))
    for act in _activations():
        net = _random_net(rng, 2, widths, mode, act)
        center = rng.normal(size=2) * 0.2
        fast = count_regions(net, center, 0.9)
        ref = count_regions(net, center, 0.9, engine="cells")
        _same(fast, ref)
        assert fast.certified and fast.euler_characteristic == 1


def test_plane_engine_on_bn_concurrent_lines_and_polytope_domains():
    # train-mode BN with β = 0: every first-layer line passes through the batch centroid (massive concurrency)
    rng = np.random.default_rng(4)
    X = rng.normal(size=(16, 2))
    net = Network(2, (Layer(rng.normal(size=(12, 2)), np.zeros(12), relu(), BatchNorm(12, "train", beta=np.zeros(12))),
                      Layer(rng.normal(size=(6, 12)) / 3, rng.normal(size=6) * 0.1, relu()),
                      Layer(np.ones((1, 6)), [0.0], identity())), X)
    xbar = X.mean(axis=0)
    fast = count_regions(net, xbar, 0.7)
    _same(fast, count_regions(net, xbar, 0.7, engine="cells"))
    assert fast.certified and fast.euler_characteristic == 1
    # a triangle domain instead of a window
    G = np.array([[-1.0, 0.0], [0.0, -1.0], [1.0, 1.0]])
    h = np.array([0.5, 0.5, 0.8]) + G @ xbar
    _same(count_regions(net, polytope=(G, h)), count_regions(net, polytope=(G, h), engine="cells"))


@pytest.mark.parametrize("k", [3, 8, 25])
def test_rounded_concurrent_lines_equal_exact_enumeration(k):
    rng = np.random.default_rng(k)
    W, b = near_concurrent(rng, k, 2, rng.uniform(-0.3, 0.3, size=2))
    res = count_regions(one_layer(W, b), np.zeros(2), 0.5)
    assert res.regions == brute_single_layer(W, b, np.zeros(2), 0.5)
    assert res.certified and res.euler_characteristic == 1


def _net(seed=11):
    rng = np.random.default_rng(seed)
    return Network(2, (Layer(rng.normal(size=(8, 2)), rng.normal(size=8) * 0.3, relu()),
                       Layer(rng.normal(size=(6, 8)), rng.normal(size=6) * 0.3, relu()),
                       Layer(np.ones((1, 6)), [0.0], identity())))


def _tamper(monkeypatch, edit):
    orig = F2.refine

    def refine(*args, **kw):
        fr = orig(*args, **kw)
        edit(fr)
        return fr

    monkeypatch.setattr(F2, "refine", refine)


def _keep(fr, idx):
    fr.start, fr.count = fr.start[idx], fr.count[idx]
    fr.codes = tuple(k[idx] for k in fr.codes)
    fr.flats = tuple(k[idx] for k in fr.flats)
    fr.A, fr.c, fr.mA, fr.mc = fr.A[idx], fr.c[idx], fr.mA[idx], fr.mc[idx]
    fr.compact(fr.start, fr.count)


@pytest.mark.parametrize("d", [2, 3])
def test_pools_are_rewritten_only_after_splits(monkeypatch, d):
    """``compact`` rewrites the pools once per layer that split a cell — not after the output layer (identity: no
    switching set) nor again before the certificates — and the count is unchanged."""
    import cpa_theory.frontier3d as F3

    cls = F2.Frontier2D if d == 2 else F3.Frontier3D
    calls = []
    orig = cls._compact
    monkeypatch.setattr(cls, "_compact", lambda self, *a: (calls.append(1), orig(self, *a))[1])
    net = _random_net(np.random.default_rng(7), d, (6, 5), None, _activations()[0])
    res = count_regions(net, np.zeros(d), 1.0)
    assert res.certified and len(calls) == 2  # the two hidden layers


def test_a_dropped_region_is_caught(monkeypatch):
    full = count_regions(_net(), np.zeros(2), 1.0)
    assert full.complete and full.certified and full.regions > 20 and full.euler_characteristic == 1
    _tamper(monkeypatch, lambda fr: _keep(fr, np.delete(np.arange(len(fr.count)), 5)))
    res = count_regions(_net(), np.zeros(2), 1.0)
    assert res.regions == full.regions - 1
    assert res.complete is False and res.certified is False and res.as_json()["complete"] is False


def test_a_duplicated_region_is_caught(monkeypatch):
    _tamper(monkeypatch, lambda fr: _keep(fr, np.r_[np.arange(len(fr.count)), 5]))
    res = count_regions(_net(), np.zeros(2), 1.0)
    assert res.complete is False and res.certified is False


def test_euler_check_alone_sees_a_hole(monkeypatch):
    """Volume and facet matching switched off: the Euler / angle check by itself rejects a missing region."""
    net = _net()
    fr = F2.refine(net.condition(), *_root(net))
    from cpa_theory.tolerances import EULER_ANGLE_TOL

    assert F2.euler_check(fr, EULER_ANGLE_TOL) == (1, True)
    _keep(fr, np.delete(np.arange(len(fr.count)), 7))
    chi, ok = F2.euler_check(fr, EULER_ANGLE_TOL)
    assert not ok


def _root(net):
    from cpa_theory.regions import _setup

    cond = net.condition()
    win, p, root, _ = _setup(cond, np.zeros(2), 1.0, None)
    return root, p, win.center - p, win.radius, {}


def test_euler_degree_rules_on_a_t_junction():
    """[-1, 1]² = left half ∪ right-bottom ∪ right-top: the vertex (0, 0) is a T-junction (corner of two
    regions, angle sum π, degree 3). χ = 8 − 10 + 3 = 1 needs the T-junction's extra edge and the boundary
    vertices' k + 1 degree; each rule mutated gives χ ≠ 1."""
    verts = {(-1, -1): 0, (0, -1): 1, (1, -1): 2, (1, 0): 3, (1, 1): 4, (0, 1): 5, (-1, 1): 6, (0, 0): 7}
    regions = [[(-1, -1), (0, -1), (0, 1), (-1, 1)], [(0, -1), (1, -1), (1, 0), (0, 0)],
               [(0, 0), (1, 0), (1, 1), (0, 1)]]
    labels = np.array([verts[v] for r in regions for v in r])
    theta = np.full(len(labels), np.pi / 2)
    on_w = np.array([v != (0, 0) for r in regions for v in r])
    fake = type("Fake", (), {"count": np.array([4, 4, 4])})()
    ok, chi = F2._euler_pass(fake, labels, 8, theta, on_w, 1e-6)
    assert ok and chi == 1
    # without the T-junction rule: (0, 0) would count degree 2
    k = np.bincount(labels, minlength=8)
    assert 8 - (k + on_w_by_vertex(labels, on_w, 8)).sum() / 2 + 3 != 1
    # without the boundary rule: boundary vertices would count degree k
    deg_no_boundary = k + np.where(on_w_by_vertex(labels, on_w, 8), 0, 1)
    assert 8 - deg_no_boundary.sum() / 2 + 3 != 1
    # a region missing (right-top): the T-junction's angles no longer close up
    ok, chi = F2._euler_pass(type("Fake", (), {"count": np.array([4, 4])})(), labels[:8], 8, theta[:8], on_w[:8],
                             1e-6)
    assert not ok or chi != 1


def on_w_by_vertex(labels, on_w, nv):
    return (np.bincount(labels, weights=on_w.astype(float), minlength=nv) > 0).astype(int)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-2, 2), min_size=4, max_size=4), st.lists(st.floats(-3, 3), min_size=3, max_size=3),
       st.lists(st.floats(0, 1), min_size=2, max_size=2))
def test_box_filter_never_contradicts_exact_signs(box, line, where):
    lo = np.minimum(box[:2], box[2:])
    hi = np.maximum(box[:2], box[2:])
    a, beta = np.array(line[:2]), line[2]
    T = FF._sign_table(a[None], np.array([beta]), np.zeros((1, 2)), np.zeros(1))
    side = int(FF._box_sides(np.r_[lo, hi][None], T)[0])
    if side == 0:
        return
    # every corner and a random point of the box, in exact arithmetic, lies strictly on that side
    pts = [(lo[0], lo[1]), (lo[0], hi[1]), (hi[0], lo[1]), (hi[0], hi[1]),
           (lo[0] + where[0] * (hi[0] - lo[0]), lo[1] + where[1] * (hi[1] - lo[1]))]
    for x, y in pts:
        x, y = min(max(x, lo[0]), hi[0]), min(max(y, lo[1]), hi[1])
        val = Fraction(a[0]) * Fraction(x) + Fraction(a[1]) * Fraction(y) - Fraction(beta)
        assert (val > 0) - (val < 0) == side


@pytest.mark.parametrize("d", [2, 3])
def test_box_filter_on_a_cells_lines_at_once_equals_it_pair_by_pair(d):
    """The parent test's form of the box filter — each cell's box against all its lines, ``box (C, 1, 2d)``
    broadcast against ``T (C, nK, 2d + 3)`` — gives the pair-by-pair filter's side for every (cell, line),
    including overflowing rows (undecided) and boxes the lines cross."""
    rng = np.random.default_rng(d)
    C, nK = 37, 11
    lo = rng.normal(size=(C, d))
    box = np.concatenate([lo, lo + rng.uniform(0, 0.5, size=(C, d))], axis=1)
    a, b = rng.normal(size=(C * nK, d)), rng.normal(size=C * nK)
    a[5] = 1e308  # overflows: undecided
    with np.errstate(over="ignore", invalid="ignore"):
        T = FF._sign_table(a, b, 1e-12 * np.abs(a), 1e-12 * np.abs(b))
        dense = FF._box_sides(box[:, None, :], T.reshape(C, nK, -1))
        pairs = FF._box_sides(np.repeat(box, nK, axis=0), T).reshape(C, nK)
    assert dense.shape == (C, nK) and np.array_equal(dense, pairs)
    assert dense.flat[5] == 0 and {-1, 0, 1} <= set(np.unique(dense).tolist())


@pytest.mark.parametrize("d, widths, mode, act", [(2, (40, 12), "train", 0), (2, (9, 9), None, 2), (3, (12, 8), "eval", 0),
                                                  (3, (7, 6), "train", 6)])
def test_waves_of_several_lines_make_the_same_regions_as_one_line_per_wave(monkeypatch, d, widths, mode, act):
    """A cell that tests several of its lines per wave and is split by the first that cuts it sees its lines in
    the same order as with one line per wave: the same regions (codes), witnesses' radii, N_lin and fallbacks,
    whatever the number of lines per wave (and more than a parent has)."""
    import cpa_theory.frontier3d as F3

    rng = np.random.default_rng(d * 100 + widths[0])
    net = _random_net(rng, d, widths, mode, _activations()[act])
    cls = F2.Frontier2D if d == 2 else F3.Frontier3D
    runs = []
    for lines in (1, 3, 8, 64):
        monkeypatch.setattr(cls, "_WAVE_LINES", lines)
        runs.append(_fingerprint(count_regions(net, np.zeros(d), 1.0, keep_regions=True)))
    assert all(r == runs[0] for r in runs[1:])


def test_box_filter_leaves_touching_lines_undecided():
    # a line through the box corner (1, 1): x + y = 2 touches the box [0, 1]^2 at one point
    T = FF._sign_table(np.array([[1.0, 1.0]]), np.array([2.0]), np.zeros((1, 2)), np.zeros(1))
    assert FF._box_sides(np.array([[0.0, 0.0, 1.0, 1.0]]), T)[0] == 0
    T = FF._sign_table(np.array([[1.0, 1.0]]), np.array([2.0 + 1e-9]), np.zeros((1, 2)), np.zeros(1))
    assert FF._box_sides(np.array([[0.0, 0.0, 1.0, 1.0]]), T)[0] == -1


# -- the 3-D engine (cpa_theory.frontier3d) ------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["train", "eval", None])
def test_space_engine_equals_the_cell_engine(mode):
    rng = np.random.default_rng(31 + (0 if mode is None else len(mode)))
    for i, act in enumerate(_activations()):
        net = _random_net(rng, 3, (6, 5), mode, act)
        center = rng.normal(size=3) * 0.2
        fast = count_regions(net, center, 0.8)
        ref = count_regions(net, center, 0.8, engine="cells")
        _same(fast, ref)
        assert fast.certified


def test_space_engine_on_bn_concurrent_planes():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(16, 3))
    net = Network(3, (Layer(rng.normal(size=(9, 3)), np.zeros(9), relu(), BatchNorm(9, "train", beta=np.zeros(9))),
                      Layer(rng.normal(size=(5, 9)) / 3, rng.normal(size=5) * 0.1, relu()),
                      Layer(np.ones((1, 5)), [0.0], identity())), X)
    xbar = X.mean(axis=0)
    fast = count_regions(net, xbar, 0.6)
    _same(fast, count_regions(net, xbar, 0.6, engine="cells"))
    assert fast.certified


def test_space_engine_certifies_across_a_hardsigmoid_saturation():
    """A referee's 3-D case (hardsigmoid then hardtanh, radius 37): the space engine said certified false with
    χ = −21 while the cell engine certified. Cause: the exact pieces were built from *rounded* breakpoint values,
    so the exact function jumped by ~1e-17 at z = 3 (6·fl(1/6) ≠ 1) and the switching sets of layer 2 missed
    each other across layer 1's saturation planes (a non-conforming complex). With the exact continuous spline
    both engines certify the same count, one sliver of radius < 1e-15 included."""
    from cpa_theory import hardsigmoid, hardtanh

    W1 = [[-2.171875, -1.984375, 2.9375], [3.71875, 1.921875, 1.484375], [0.1875, 5.609375, -2.078125],
          [-0.515625, 3.015625, -0.53125]]
    W2 = [[-0.453125, 0.546875, -1.546875, 0.34375], [-2.171875, 0.828125, 0.78125, -0.25]]
    net = Network(3, (Layer(np.array(W1), [0.5625, -0.546875, -0.6875, -0.921875], hardsigmoid()),
                      Layer(np.array(W2), [-0.0, -0.125], hardtanh()),
                      Layer(np.array([[-0.671875, 0.609375]]), [0.0], identity())))
    c = np.array([0.0625, 0.265625, -0.265625])
    fast = count_regions(net, c, 37.0)
    ref = count_regions(net, c, 37.0, engine="cells")
    _same(fast, ref)
    assert fast.certified and fast.complete and fast.euler_characteristic == 1 and ref.certified
    assert fast.unmatched_facets == 0 and fast.min_witness_radius < 1e-15


@pytest.mark.parametrize("edit", ["drop", "duplicate"])
def test_space_engine_completeness_catches_injected_faults(monkeypatch, edit):
    import cpa_theory.frontier3d as F3

    rng = np.random.default_rng(12)
    net = Network(3, (Layer(rng.normal(size=(6, 3)), rng.normal(size=6) * 0.3, relu()),
                      Layer(rng.normal(size=(4, 6)), rng.normal(size=4) * 0.3, relu()),
                      Layer(np.ones((1, 4)), [0.0], identity())))
    full = count_regions(net, np.zeros(3), 1.0)
    assert full.complete and full.certified and full.regions > 20
    orig = F3.refine

    def refine(*args, **kw):
        fr = orig(*args, **kw)
        n = len(fr.count)
        idx = np.delete(np.arange(n), 4) if edit == "drop" else np.r_[np.arange(n), 4]
        _keep(fr, idx)
        return fr

    monkeypatch.setattr(F3, "refine", refine)
    res = count_regions(net, np.zeros(3), 1.0)
    assert res.complete is False and res.certified is False


def test_cap_chaining_rejects_an_open_cap():
    from cpa_theory.frontier_loops import ERRORS, chain_cap

    def chain(a, b):
        out, used = np.full(len(a), -1, dtype=np.int64), np.zeros(len(a), dtype=bool)
        code = chain_cap(np.array(a, dtype=np.int64), np.array(b, dtype=np.int64), len(a), out, 0, used)
        return code, out.tolist()

    assert chain([3, 1, 4, 2], [4, 2, 1, 3]) == (0, [1, 2, 3, 4])  # from the smallest start, along the segments
    assert ERRORS[chain([1, 2, 3, 4], [2, 3, 4, 5])[0]] == "a cap's segments do not close up"  # 4 → 5 leaves
    assert ERRORS[chain([1, 2, 3, 4], [2, 1, 4, 3])[0]].endswith("more than one cycle")  # two digons
    assert ERRORS[chain([1, 2, 2, 3], [2, 3, 1, 1])[0]].startswith("a cap vertex starts two segments")
    assert ERRORS[chain([1, 2], [2, 1])[0]].endswith("fewer than 3 vertices")


def test_crossings_need_each_cut_edge_on_exactly_two_faces():
    """A tetrahedron 0123 cut between vertex 0 (−) and the rest (+): three crossings, one per edge at 0; a face
    list that names an edge once (a face dropped) or three times is refused."""
    from cpa_theory.frontier_loops import crossings

    faces = [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]
    s = {0: -1, 1: 1, 2: 1, 3: 1}

    def run(fl):
        vid = np.array([v for f in fl for v in f], dtype=np.int64)
        sides = np.array([s[v] for v in vid.tolist()], dtype=np.int8)
        fe = np.concatenate([[0], np.cumsum([len(f) for f in fl])])
        return crossings(np.array([0, len(fl)]), fe, vid, sides)

    xid, e1, e2, cell, code = run(faces)
    assert code == 0 and len(e1) == 3 and cell.tolist() == [0, 0, 0]
    assert sorted(xid[xid >= 0].tolist()) == [0, 0, 1, 1, 2, 2]
    assert run(faces[:3])[-1] == 0  # face 123 has no cut edge
    assert run(faces[1:])[-1] == 1  # face 021 dropped: edges 01 and 02 are named once
    assert run(faces + [faces[0]])[-1] == 1  # face 021 twice: edges 01 and 02 three times


def _t_cube(shift, err):
    """A unit cube (shifted) whose edge 0–1 carries a collinear vertex 8 at its middle, listed by both faces of
    that edge; faces counter-clockwise seen from outside. Returns ``(VE, faces)``."""
    P = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1],
                  [0.5, 0, 0]], dtype=float) + shift
    faces = [[0, 3, 2, 1, 8], [4, 5, 6, 7], [0, 8, 1, 5, 4], [3, 7, 6, 2], [0, 4, 7, 3], [1, 2, 6, 5]]
    return np.column_stack([P, np.full(len(P), err)]), faces


def test_a_cut_through_a_run_of_collinear_vertices_gives_closed_halves_with_safe_boxes():
    """The plane z = y through edge 0–1 (and its middle vertex 8) and edge 6–7 of the cube: no edge crossed,
    each side keeps the faces with area on it. The face with the three collinear cut vertices 0, 8, 1 and
    nothing strictly on a side is no face of that side (taking it put a second segment at vertex 1 or 8 into the
    cap: a refused cap). Each half is a closed, consistently oriented polyhedron of volume ½, and its box holds
    every vertex's error ball in exact arithmetic (a box widened inwards, by 2u|·| the wrong way, does not)."""
    from collections import Counter

    from cpa_theory.frontier import _Grow
    from cpa_theory.frontier3d import Frontier3D
    from cpa_theory.frontier_loops import clip_side, face_areas

    VE, faces = _t_cube(np.array([0.3, -0.7, 1.1]), 1e-12)
    side = {0: 0, 1: 0, 2: -1, 3: -1, 4: 1, 5: 1, 6: 0, 7: 0, 8: 0}  # sign of z − y on the unshifted cube
    vid = np.array([v for f in faces for v in f], dtype=np.int64)
    s = np.array([side[v] for v in vid.tolist()], dtype=np.int8)
    fe = np.concatenate([[0], np.cumsum([len(f) for f in faces])])
    cf = np.array([0, len(faces)])
    xid = np.full(len(vid), -1, dtype=np.int64)
    caps = {}
    for keep in (1, -1):
        pv, fcnt, fsrc, nf, box, code = clip_side(cf, fe, vid, s, xid, keep, np.zeros(0, np.int64), VE)
        assert code == 0 and nf.tolist() == [len(fcnt)] and fsrc[-1] == -1
        fst = np.concatenate([[0], np.cumsum(fcnt)[:-1]])
        cyc = [pv[a:a + n].tolist() for a, n in zip(fst, fcnt)]
        caps[keep] = cyc[-1]
        directed = Counter((f[i], f[(i + 1) % len(f)]) for f in cyc for i in range(len(f)))
        assert all(n == 1 and directed[(b, a)] == 1 for (a, b), n in directed.items()), cyc  # closed, oriented
        area, cen = face_areas(fst, fcnt, pv, VE, np.arange(len(fcnt)))
        assert np.isclose(np.einsum("fd,fd->", cen, area) / 3.0, 0.5, rtol=1e-12, atol=0)
        used = np.unique(pv)
        for q in range(3):
            lo = min(Fraction(VE[v, q]) - Fraction(VE[v, 3]) for v in used.tolist())
            hi = max(Fraction(VE[v, q]) + Fraction(VE[v, 3]) for v in used.tolist())
            assert Fraction(box[0, q]) <= lo and Fraction(box[0, 3 + q]) >= hi
        # the space engine's own boxes (of its parent cells) are the same numbers
        fr = Frontier3D.__new__(Frontier3D)
        fr.fpool, fr.fstart, fr.fcount = _Grow((), np.int64), _Grow((), np.intp), _Grow((), np.intp)
        fr.pv, fr.VE = _Grow((), np.int64), _Grow((4,), np.float64)
        fr.fpool.extend(np.arange(len(fcnt)))
        fr.fstart.extend(fst)
        fr.fcount.extend(fcnt)
        fr.pv.extend(pv)
        fr.VE.extend(VE)
        assert np.array_equal(fr._boxes(np.array([0]), np.array([len(fcnt)])), box)
    assert caps[1] == [0, 7, 6, 1, 8] and caps[-1] == [0, 8, 1, 6, 7]


@pytest.mark.slow
@pytest.mark.parametrize("d", [2, 3])
def test_adversarial_sweep_equals_the_cell_engine(d):
    """BN with β = 0 (every first-layer hyperplane through the centroid) and a duplicated neuron; eval BN folded
    from the batch's statistics; float-rounded concurrency at a window corner; coincident parallel families under
    hard-tanh, |·| and leaky ReLU: the flat engines give the cell engine's counts, all certified."""
    from cpa_theory.activations import absolute, hardtanh, leaky_relu

    rng = np.random.default_rng(2026 + d)
    n1 = 8 if d == 2 else 6
    for trial in range(12):
        X = rng.normal(size=(16, d))
        W = rng.normal(size=(n1, d))
        W[1] = W[0]
        nets = [(Network(d, (Layer(W, np.zeros(n1), relu(), BatchNorm(n1, "train", beta=np.zeros(n1))),
                             Layer(rng.normal(size=(5, n1)) / 3, rng.normal(size=5) * 0.1, relu()),
                             Layer(np.ones((1, 5)), [0.0], identity())), X), X.mean(axis=0), 0.5)]
        Z = X @ W.T
        nets.append((Network(d, (Layer(W, np.zeros(n1), relu(), BatchNorm(n1, "eval", beta=np.zeros(n1),
                                                                         running_mean=Z.mean(axis=0),
                                                                         running_var=Z.var(axis=0))),
                                 Layer(np.ones((1, n1)), [0.0], identity()))), X.mean(axis=0), 0.5))
        pt = np.full(d, 0.5) + rng.normal(size=d) * 1e-12
        V = rng.normal(size=(n1, d))
        nets.append((Network(d, (Layer(V, -V @ pt, relu()), Layer(np.ones((1, n1)), [0.0], identity()))),
                     np.zeros(d), 0.5))
        F_ = rng.normal(size=(4, d))
        F_ = np.vstack([F_, 2.0 * F_])
        b = rng.normal(size=8) * 0.2
        b[4:] = 2 * b[:4]
        for act in (hardtanh, absolute, lambda: leaky_relu(0.1)):
            nets.append((Network(d, (Layer(F_, b, act()), Layer(rng.normal(size=(4, 8)), rng.normal(size=4) * 0.1,
                                                                 act()),
                                     Layer(np.ones((1, 4)), [0.0], identity()))), rng.normal(size=d) * 0.1, 0.8))
        for net, c, r in nets:
            fast = count_regions(net, c, r)
            _same(fast, count_regions(net, c, r, engine="cells"))
            assert fast.certified



# -- the space engine's compiled wave (cpa_theory.frontier_loops.wave_signs) and vertex solve -------------------
def _wave_case(seed, d=3):
    """Random cells as face lists over a vertex table, bounding boxes, and one sign-table row per cell, built to
    sit on the filters' thresholds: the offsets of cells 0–19 put their boxes' nearest corner at ±(1 ± 1 %) of
    the box filter's bound E from the hyperplane, those of cells 20–59 put one vertex at ±(1 ± 1 %) of the vertex
    filter's bound (cells 15–19 and 50–59 with coefficients near 1e-300, where the bounds' underflow terms
    dominate), so a bound changed by more than 1 % flips decisions; plus an overflowing box."""
    from cpa_theory.frontier_kernels import TINY
    from cpa_theory.tolerances import FILTER_SAFETY as FS

    rng = np.random.default_rng(seed)
    nv, nface, n = 300, 120, 60
    VE = np.column_stack([rng.normal(size=(nv, d)), 10.0 ** rng.uniform(-16, -9, size=nv)])
    fcount = rng.integers(3, 7, size=nface)
    fstart = np.concatenate([[0], np.cumsum(fcount)[:-1]])
    pv = rng.integers(0, nv, size=int(fcount.sum()))
    fpool = rng.permutation(np.repeat(np.arange(nface), 3))
    ccount = rng.integers(1, 8, size=n)
    cstart = rng.integers(0, len(fpool) - 8, size=n)
    rows = np.arange(n)
    a = rng.normal(size=(n, d))
    a[15:20] *= 1e-300
    a[50:] *= 1e-300
    b = np.zeros(n)
    lo = rng.normal(size=(n, d)) * 0.5
    box = np.concatenate([lo, lo + rng.uniform(0, 2, size=(n, d))], axis=1)
    box[20:] = [-10] * d + [10] * d  # crossed by their rows: their vertices are tested
    ea = 1e-13 * np.abs(a) * rng.uniform(size=a.shape)
    sgn = rng.choice([-1.0, 1.0], size=n) * (1 + 0.01 * rng.uniform(0.2, 1, size=n) * rng.choice([-1, 1], size=n))
    v = VE[pv[fstart[fpool[cstart]]], :]  # the first vertex of each cell
    for _ in range(3):  # the bounds depend (weakly) on the offsets: settle them
        T = FF._sign_table(a, b, ea, 1e-13 * np.abs(b))
        M = np.maximum(np.abs(box[:, :d]), np.abs(box[:, d:]))
        Ebox = FS * ((M * T[:, d + 1:2 * d + 1]).sum(1) + T[:, 2 * d + 1]
                     + (3 * d + 4) * TINY * (1 + M.sum(1) + T[:, 2 * d + 2]))
        near = np.where((sgn > 0)[:, None] == (a >= 0), box[:, :d], box[:, d:])  # vmin's corner, or vmax's
        Ev = FS * ((np.abs(v[:, :d]) * T[:, d + 1:2 * d + 1]).sum(1) + T[:, 2 * d + 1] + T[:, 2 * d + 2] * v[:, d]
                   + (3 * d + 5) * TINY * (1 + np.abs(v).sum(1) + T[:, 2 * d + 2]))
        b[:20] = (a[:20] * near[:20]).sum(1) - sgn[:20] * Ebox[:20]
        b[20:] = (a[20:] * v[20:, :d]).sum(1) - sgn[20:] * Ev[20:]
    box[7] = 1e300  # overflows: undecided
    T = FF._sign_table(a, b, ea, 1e-13 * np.abs(b))
    return cstart, ccount, box, rows, T, fpool, fstart, fcount, pv, VE


@pytest.mark.parametrize("spread", ["random", "one_slot"])
def test_distinct_vertices_per_cell_in_first_seen_order(spread):
    """:func:`cpa_theory.frontier_loops.distinct_per_cell` against a dictionary per cell: the distinct ids in
    first-seen order, their cell, and each entry's index of its id — with random ids, and with ids that all hash
    to one slot (multiples of 2^60: the table's worst case, every lookup a probe chain)."""
    from cpa_theory.frontier_loops import distinct_per_cell

    rng = np.random.default_rng(7)
    sizes = rng.integers(0, 40, size=60)
    sizes[5] = 130  # one large cell (a larger table)
    pool = rng.integers(0, 2**40, size=25) if spread == "random" else np.arange(1, 8, dtype=np.int64) << 60
    vid = pool[rng.integers(0, len(pool), size=int(sizes.sum()))].astype(np.int64)
    cb = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    du, dcell, emap = distinct_per_cell(cb, vid)
    want_du, want_cell, want_map = [], [], []
    for c in range(len(sizes)):
        seen = {}
        for v in vid[cb[c]:cb[c + 1]].tolist():
            if v not in seen:
                seen[v] = len(want_du)
                want_du.append(v)
                want_cell.append(c)
            want_map.append(seen[v])
    assert du.tolist() == want_du and dcell.tolist() == want_cell and emap.tolist() == want_map


@pytest.mark.parametrize("seed", range(6))
def test_fused_wave_signs_equal_the_numpy_kernels(seed):
    """:func:`cpa_theory.frontier_loops.wave_signs` (the 3-D wave's cell tests, fused and compiled) gives what the
    numpy kernels and the pool gathers give: the box sides, the tested cells' faces and entries, their distinct
    vertices, and the vertex filter's signs, undecided entries and overflow flag; so do the parent test's
    compiled forms (``box_sides_dense``, ``pair_extremes``: extremes over the decided vertices, the undecided
    (pair, vertex) entries)."""
    from cpa_theory.frontier_kernels import NUMPY
    from cpa_theory.frontier_loops import box_sides_dense, cell_vertices, distinct_per_cell, pair_extremes, wave_signs

    cstart, ccount, box, rows, T, fpool, fstart, fcount, pv, VE = case = _wave_case(seed)
    if seed == 5:
        VE[pv[fstart[fpool[cstart[30]]]], 1] = np.nan  # a NaN vertex: the overflow flag
    cells = np.random.default_rng(seed).permutation(len(rows))  # pair i tests cell cells[i]
    side, tested, faces, fcells, fcnt, vid, ecells, du, dcell, emap, sd, und, bad = wave_signs(
        cells, cstart, ccount, box, rows[cells], *case[4:])
    cstart, ccount, box, rows = cstart[cells], ccount[cells], box[cells], rows[cells]  # the pairs' cells
    assert np.array_equal(side, NUMPY.box_sides(box, T[rows]))
    assert np.array_equal(tested, np.flatnonzero(side == 0)) and 0 < len(tested) < len(side)
    ref_faces = fpool[FF._ranges(cstart[tested], ccount[tested])]
    assert np.array_equal(faces, ref_faces) and np.array_equal(fcnt, fcount[ref_faces])
    assert np.array_equal(fcells, np.repeat(np.arange(len(tested)), ccount[tested]))
    assert np.array_equal(vid, pv[FF._ranges(fstart[ref_faces], fcount[ref_faces])])
    assert np.array_equal(ecells, np.repeat(fcells, fcnt))
    cb = np.append(np.concatenate([[0], np.cumsum(np.bincount(ecells, minlength=len(tested)))[:-1]]), len(vid))
    for got, want in zip((du, dcell, emap), distinct_per_cell(cb, vid)):
        assert np.array_equal(got, want)
    s_ref, und_ref, bad_ref = NUMPY.vertex_sides(VE[du], T[rows[tested][dcell]])
    assert bad == bool(bad_ref.any()) == (seed == 5)
    ok = ~bad_ref
    assert np.array_equal(und[ok], und_ref[ok]) and und.any() and not und.all()
    dec = ok & ~und  # the float sign is read only where the filter decides (elsewhere: the exact test)
    assert np.array_equal(sd[dec], s_ref[dec])
    # every cell's distinct vertices at once (the parent test's and the witnesses' list), in first-seen order
    cv, cvn = cell_vertices(cstart, ccount, fpool, fstart, fcount, pv)
    allf = fpool[FF._ranges(cstart, ccount)]
    ent_v = pv[FF._ranges(fstart[allf], fcount[allf])]
    per_cell = np.add.reduceat(fcount[allf], np.concatenate([[0], np.cumsum(ccount)[:-1]]))
    want = [list(dict.fromkeys(g.tolist())) for g in np.split(ent_v, np.cumsum(per_cell)[:-1])]
    assert cvn.tolist() == [len(w) for w in want] and cv.tolist() == [v for w in want for v in w]
    # the parent test's forms: one box per parent against its screened lines; each pair's distinct vertices
    screened = (np.arange(2 * len(box)) % 3 > 0).reshape(-1, 2)  # two lines per parent: rows 2c and 2c + 1
    dense = box_sides_dense(box, T[np.repeat(rows, 2)], screened)
    assert np.array_equal(dense, np.where(screened, side[:, None], 0))
    nt = len(tested)
    dcount = np.bincount(dcell, minlength=nt)
    dstart = np.concatenate([[0], np.cumsum(dcount)[:-1]])
    pairs = np.concatenate([np.arange(nt), np.arange(nt)[::2]])  # some parents against two of the lines
    prow = np.concatenate([rows[tested], rows[tested][::-2][: (nt + 1) // 2]])
    smax, smin, up, uv, pbad = pair_extremes(pairs, prow, du, dstart, dcount, VE, T)
    vids = du[FF._ranges(dstart[pairs], dcount[pairs])]  # the pairs' vertices, pair after pair
    owner = np.repeat(np.arange(len(pairs)), dcount[pairs])
    s_p, und_p, bad_p = NUMPY.vertex_sides(VE[vids], T[prow[owner]])
    assert pbad == bool(bad_p.any())
    assert sorted(zip(up.tolist(), uv.tolist())) == sorted(zip(owner[und_p].tolist(), vids[und_p].tolist()))
    dec = ~bad_p & ~und_p
    want_max, want_min = np.full(len(pairs), -2), np.full(len(pairs), 2)
    np.maximum.at(want_max, owner[dec], s_p[dec])
    np.minimum.at(want_min, owner[dec], s_p[dec])
    assert np.array_equal(smax, want_max) and np.array_equal(smin, want_min)
    assert (smax > smin).any() and len(up)


@pytest.mark.parametrize("d, mode, act", [(3, "train", 0), (3, "eval", 2), (3, None, 6), (2, "train", 0), (2, None, 5)])
def test_compiled_filters_make_the_same_regions_as_the_kernel_path(monkeypatch, d, mode, act):
    """On the CPU (numpy kernels) the parent test of both engines, the 3-D waves and the chart composition run
    compiled (:mod:`cpa_theory.frontier_loops`); the kernel path (the one JAX takes; here numpy kernels with
    ``compiled = False``) must give the same regions, N_lin and number of exact fallbacks, and the same witness
    radii up to the charts' rounding (the compiled composition sums in another order)."""
    import cpa_theory.frontier3d as F3
    from cpa_theory.frontier_kernels import NumpyKernels

    class _Plain(NumpyKernels):
        compiled = False

    rng = np.random.default_rng(77 + act)
    net = _random_net(rng, d, (9, 7) if d == 3 else (14, 10), mode, _activations()[act])
    runs = []
    for compiled in (True, False):
        if not compiled:  # numpy kernels that do not declare the compiled loops: the kernel path
            for mod in (F2, F3):
                monkeypatch.setattr(mod, "_with_kernels", lambda fr, kernels: FF._with_kernels(fr, _Plain()))
        runs.append(_fingerprint(count_regions(net, np.zeros(d), 1.0, keep_regions=True)))
    (a, b), (ra, rb) = ([r[:3] + (r[4],) for r in runs], [np.array([r[3]] + r[5]) for r in runs])
    assert a == b
    np.testing.assert_allclose(ra, rb, rtol=1e-9, atol=1e-11)


def test_compiled_vertex_solve_equals_the_numpy_reference():
    """:func:`cpa_theory.frontier_loops.solve_rows3` (every 3 × 3 vertex solve; here on rows of a hyperplane
    table, as the space engine's crossings call it) gives the points and bounds of the numpy arithmetic of
    :func:`cpa_theory.polytope._solve_systems` (``compiled=False``; the bound itself is checked in rationals by
    ``test_vertex_error_bounds_hold_against_exact_solutions``), bit for bit, from conditioning 1 to singular
    (NaN, inf) and past what float64 can bound (inf)."""
    from cpa_theory.frontier_loops import solve_rows3
    from cpa_theory.polytope import _solve_systems

    rng = np.random.default_rng(5)
    H = 60
    A = rng.normal(size=(H, 3)) * 10.0 ** rng.uniform(-3, 3, size=(H, 1))
    B = rng.normal(size=H)
    A[7] = A[6]  # systems with rows 6 and 7 are singular
    A[9] = A[8] * (1 + 1e-15)  # nearly: no bound
    A[11] = A[10] * (1 + 1e-7)  # ill-conditioned
    EA, EB = 1e-14 * np.abs(A) * rng.uniform(size=A.shape), 1e-14 * np.abs(B)
    EA[12] = np.abs(A[12])  # a row known only to 100 %: the perturbation bound does not apply
    rows = np.setdiff1d(np.arange(H), [7, 9, 11, 12])
    Q = np.array([rng.choice(rows, size=3, replace=False) for _ in range(2000)])
    V, err = solve_rows3(Q, A, B, EA, EB, 10.0)
    # (numpy's own sums depend on the arrays' layout, which the reference changes when a system is singular:
    # bit-for-bit comparisons on batches of invertible systems)
    V2, err2 = _solve_systems(A[Q], B[Q], EA[Q], EB[Q], 10.0, compiled=False)
    assert np.array_equal(err, err2) and np.array_equal(V, V2)
    assert 0.5 < np.isfinite(err).mean() < 1
    V3, err3 = _solve_systems(A[Q], B[Q], EA[Q], EB[Q], 10.0)  # the stacked form runs it too
    assert np.array_equal(err3, err) and np.array_equal(V3, V)
    t = np.flatnonzero(np.isfinite(err))[0]
    Qs = np.array([[6, 7, 1], [8, 9, 2], [10, 11, 3], Q[t], [12, 0, 1]])  # singular (no point), nearly, badly;
    # a good one; one with a row too uncertain
    Vs, errs = solve_rows3(Qs, A, B, EA, EB, 10.0)
    Vs2, errs2 = _solve_systems(A[Qs], B[Qs], EA[Qs], EB[Qs], 10.0, compiled=False)
    for W, e in ((Vs, errs), (Vs2, errs2)):
        assert np.isnan(W[0]).all() and np.isinf(e[[0, 1, 2, 4]]).all() and np.isfinite(W[3:]).all()
    assert errs[3] == err[t] and np.array_equal(Vs[3], V[t])  # one system at a time: the batch does not matter


def test_space_euler_characteristic_sees_a_missing_cell():
    """χ = V − E + F − C = 1 on a 3-D count; an interior cell removed (its faces still present on its
    neighbours) gives χ = 2. The checks read compacted pools only (a cell list edited without rewriting them is
    refused)."""
    import cpa_theory.frontier3d as F3
    from cpa_theory.errors import CPAInternalError
    from cpa_theory.regions import _setup

    rng = np.random.default_rng(21)
    net = Network(3, (Layer(rng.normal(size=(6, 3)), rng.normal(size=6) * 0.3, relu()),
                      Layer(rng.normal(size=(4, 6)), rng.normal(size=4) * 0.3, relu()),
                      Layer(np.ones((1, 4)), [0.0], identity())))
    cond = net.condition()
    win, p, root, _ = _setup(cond, np.zeros(3), 1.0, None)
    fr = F3.refine(cond, root, p, win.center - p, win.radius, {})
    fr.compact(fr.start, fr.count)
    assert F3.euler_check(fr) == (1, True)
    # interior cells: no face on the window's sides
    interior = [i for i in range(len(fr.count))
                if np.all(fr.hmeta.a[fr.fplane.a[fr.fpool.a[fr.start[i]:fr.start[i] + fr.count[i]]], 0] >= 0)]
    assert interior
    keep = np.delete(np.arange(len(fr.count)), interior[0])
    start, count = fr.start, fr.count
    fr.start, fr.count = start[keep], count[keep]  # pools not rewritten: the checks refuse to read them
    with pytest.raises(CPAInternalError, match="pools compacted"):
        F3.euler_check(fr)
    fr.start, fr.count = start, count
    fr.compact(start[keep], count[keep])
    chi, ok = F3.euler_check(fr)
    assert not ok and chi == 2


# -- the referee's findings (both made certified results wrong before the fix) ------------------------------
def test_code_words_are_injective_across_word_boundaries_and_large_pieces():
    """relu(7) then hard-tanh(8): with one bit per ReLU neuron the next layer's fields used to start at bit 63
    and lose their high bits; pieces ≥ 256 used to spill into the next field. Distinct codes must give distinct
    words (and the neighbour's word must be this word with one field replaced)."""
    a = np.array([[0] * 7, [0] * 7, [1] * 7])
    b = np.array([[0] * 7 + [0], [0] * 7 + [2], [1] * 8])
    W, *_ = FF._code_words((a, b), 3, [1, 2])
    assert len({tuple(r) for r in W.tolist()}) == 3
    W, *_ = FF._code_words((np.array([[256, 0], [0, 1]]),), 2, [300])
    assert len({tuple(r) for r in W.tolist()}) == 2


@pytest.mark.parametrize("bad", [-1, 2, 300])
def test_code_words_refuse_a_piece_index_outside_the_activation(bad):
    """A piece index below 0 or above the activation's last piece is an internal error, in any layer and row."""
    from cpa_theory.errors import CPAInternalError

    ok = np.zeros((3, 5), dtype=np.int64)
    wrong = ok.copy()
    wrong[2, 4] = bad
    FF._code_words((ok, ok + 1), 3, [1, 1])
    with pytest.raises(CPAInternalError, match="layer 1: a piece index outside 0 … 1"):
        FF._code_words((ok, wrong), 3, [1, 1])


@given(st.lists(st.tuples(st.integers(0, 140), st.sampled_from([1, 2, 3, 300])), min_size=1, max_size=3),
       st.integers(1, 6), st.integers(0, 2**32 - 1))
@settings(max_examples=80, deadline=None)
def test_code_words_place_every_field_where_match_codes_reads_it(layers, C, seed):
    """Every piece of every neuron sits in word ``woff + j // per_word`` at bit ``(j % per_word)·bits`` — the
    layout :func:`cpa_theory.frontier._match_codes` edits to predict a neighbour — for one-bit codes (packed a
    byte at a time) and wider ones, widths across word boundaries; the words rebuilt from Python integers."""
    rng = np.random.default_rng(seed)
    codes = tuple(rng.integers(0, K + 1, size=(C, n)) for n, K in layers)
    maxp = [K for _, K in layers]
    W, woff, per_word, bits = FF._code_words(codes, C, maxp)
    want = np.zeros_like(W)
    for li, k in enumerate(codes):
        for c in range(C):
            for j in range(k.shape[1]):
                w, sh = int(woff[li] + j // per_word[li]), int((j % per_word[li]) * bits[li])
                want[c, w] = np.uint64(int(want[c, w]) | (int(k[c, j]) << sh))
    assert np.array_equal(W, want)


def _fake_frontier(codes, widths):
    """The fields of a flat frontier that :func:`cpa_theory.frontier._match_codes` reads."""
    from types import SimpleNamespace

    layers = [SimpleNamespace(activation=relu()) for _ in widths]
    return SimpleNamespace(count=np.ones(len(codes[0]), dtype=np.intp), codes=codes,
                           cond=SimpleNamespace(layers=layers))


def _two_layer_codes():
    """Regions 0, 1, 2 of two 64-neuron ReLU layers (one code word each): region 0 differs from region 1 in the
    top bit of both words (neuron 63 of each layer), region 2 from region 1 in neuron 5 of layer 0."""
    c0, c1 = np.zeros((3, 64), dtype=np.int64), np.zeros((3, 64), dtype=np.int64)
    c0[0, 63] = c1[0, 63] = 1
    c0[2, 5] = 1
    return (c0, c1)


def test_code_hash_separates_codes_that_differ_in_the_top_bits_of_two_words():
    """A linear hash Σ W_w·R_w (R odd) maps 2^63 in two words to 2^63 (R_a + R_b) ≡ 0: regions 0 and 1 collided,
    the look-up of region 2's neighbour met region 0 first, and the facet was left unmatched (12 such pairs
    among the 16,752 regions of 2-100-100-1-s0: 49 unmatched facets, each sent to the exact probe, 13 s)."""
    from cpa_theory.frontier_loops import code_hash

    codes = _two_layer_codes()
    W, *_ = FF._code_words(codes, 3, [1, 1])
    salt = np.random.default_rng(12345).integers(0, 2**63, size=W.shape[1], dtype=np.uint64)
    h = code_hash(W, salt)
    assert len(set(h.tolist())) == 3
    pairs, unmatched = FF._match_codes(_fake_frontier(codes, [64, 64]), np.array([2, 1]),
                                       np.array([[0, 0, 5], [0, 0, 5]]))
    assert pairs.tolist() == [[1, 2]] and len(unmatched) == 0


@pytest.mark.parametrize("seed", [1, 2])
def test_generic_nets_leave_no_facet_unmatched(seed):
    """A generic 2-64-64-1 net has no coincident switching sets: every inner facet's neighbour is found by its
    predicted code (the linear hash left 23 and 69 facets unmatched here)."""
    rng = np.random.default_rng(seed)
    w = (2, 64, 64, 1)
    net = Network(2, tuple(Layer(rng.normal(size=(n, m)) / np.sqrt(m), rng.normal(size=n) * 0.1,
                                 identity() if i == 2 else relu()) for i, (m, n) in enumerate(zip(w[:-1], w[1:]))))
    res = count_regions(net, np.zeros(2), 1.0, linear=False)
    assert res.certified and res.unmatched_facets == 0


def test_match_codes_tries_every_region_that_shares_the_predicted_hash():
    """With every hash equal (a worst-case hash: ``hash_mask`` = 0) the look-up must still find the true
    neighbour by walking the run of equal hashes and verifying each candidate's words; an impostor is never
    accepted."""
    codes = _two_layer_codes()
    fr = _fake_frontier(codes, [64, 64])
    for mask in (0, 2**64 - 1):
        pairs, unmatched = FF._match_codes(fr, np.array([2, 1, 0]), np.array([[0, 0, 5], [0, 0, 5], [0, 0, 7]]),
                                           hash_mask=mask)
        assert pairs.tolist() == [[1, 2]] and unmatched.tolist() == [2]


def test_linear_regions_after_a_one_bit_layer_equal_the_cell_engine():
    from cpa_theory import activations as A

    rng = np.random.default_rng(0)
    for _ in range(16):
        net = Network(2, (Layer(rng.normal(size=(7, 2)), rng.normal(size=7) * 0.3, relu()),
                          Layer(rng.normal(size=(8, 7)) * 2, rng.normal(size=8) * 0.3, A.hardtanh()),
                          Layer(rng.integers(0, 2, size=(1, 8)).astype(float), [0.0], identity())))
        _same(count_regions(net, np.zeros(2), 1.0), count_regions(net, np.zeros(2), 1.0, engine="cells"))


def test_linear_regions_of_a_ten_piece_spline_strip():
    """x through a 9-breakpoint spline on [0, 1]: 10 vertical strips. With t = 0.1 k and values 0.7, 0.8, 0.9 at
    t = 0.7000000000000001, 0.8, 0.9 the two strips between them are y = x over the reals but not in the float64
    data (slopes 1 + 1e-15 and 1): N_lin = 10, decided in rationals (a tolerance merged them into 9). The
    colliding code words of an earlier engine matched impostor neighbours here too
    (test_code_words_are_injective_across_word_boundaries_and_large_pieces pins that)."""
    from cpa_theory import activations as A

    t = [0.1 * k for k in range(1, 10)]
    sp = A.spline(t, [0.1, 0.5, 0.0, 0.6, 0.1, 0.9, 0.7, 0.8, 0.9], 1.0, 3.0)
    W2, b2 = np.zeros((8, 5)), np.full(8, 5.0)
    W2[7, 0], b2[7] = 1.0, -10.0
    net = Network(2, (Layer(np.array([[1.0, 0.0]] * 5), np.full(5, 10.0), relu()), Layer(W2, b2, sp),
                      Layer(np.eye(8)[7:8], [0.0], identity())))
    res = count_regions(net, np.array([0.5, 0.5]), 0.5)
    assert (res.regions, res.linear_regions, res.certified) == (10, 10, True)
    assert count_regions(net, np.array([0.5, 0.5]), 0.5, engine="cells").linear_regions == 10


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("engine", ["auto", "cells"])
def test_overflow_in_the_window_screen_is_an_internal_error(engine):
    """γ = 1e308: the screen's slack overflows; NaN used to read as 'misses W' and the count came back 1,
    certified, where the exact codes at (3, −1) and (2, 1) differ."""
    from cpa_theory.errors import CPAInternalError

    X = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    net = Network(2, (Layer(np.array([[1.0, -1.0]]), [0.0], relu(),
                            BatchNorm(1, "train", gamma=[1e308], beta=[-1.5e308])),
                      Layer(np.ones((1, 1)), [0.0], identity())), X)
    with pytest.raises(CPAInternalError, match="overflow"):
        count_regions(net, np.array([3.0, 0.0]), 1.0, engine=engine)


def test_distinct_equals_np_unique_with_its_inverse():
    """The engines' sort-based ``_distinct`` (numpy 2's hash-based np.unique is ~30× slower at their sizes) gives
    np.unique's values and inverse on keys with repeats, negatives, uint64 and empty input."""
    from cpa_theory.frontier import _distinct

    rng = np.random.default_rng(5)
    for x in (rng.integers(-50, 50, 1000), rng.integers(0, 2**63, 500, dtype=np.uint64).repeat(3),
              np.zeros(0, dtype=np.int64), np.array([7])):
        want, inv = np.unique(x, return_inverse=True)
        got, ginv = _distinct(x, return_inverse=True)
        assert np.array_equal(got, want) and np.array_equal(ginv, inv.reshape(-1))
        assert np.array_equal(_distinct(x), want)


@given(st.lists(st.integers(0, 40), max_size=200), st.integers(0, 20))
@settings(max_examples=60, deadline=None)
def test_distinct_of_bounded_ids_equals_np_unique(ids, room):
    """``_distinct(..., bound=n)`` (vertex ids in 0 … n − 1, found with a mask instead of a sort) gives np.unique's
    values and inverse, for any bound at or above the largest id + 1."""
    from cpa_theory.frontier import _distinct

    x = np.array(ids, dtype=np.int64)
    bound = (int(x.max()) + 1 if len(x) else 0) + room
    want, inv = np.unique(x, return_inverse=True)
    got, ginv = _distinct(x, return_inverse=True, bound=bound)
    assert np.array_equal(got, want) and np.array_equal(ginv, inv.reshape(-1))
    assert np.array_equal(_distinct(x, bound=bound), want)


@pytest.mark.parametrize("shape", [(4, 3), (9, 4, 2), (2, 5, 4, 1), (0, 4, 3)])
def test_left_multiply_is_the_stacked_matrix_product(shape):
    """:func:`cpa_theory.frontier_kernels.left_multiply` (one contraction for a stack of charts) equals numpy's
    stacked ``matmul`` within the rounding of a length-m dot product, shapes included; on integers exactly."""
    from cpa_theory.frontier_kernels import left_multiply
    from cpa_theory.tolerances import UNIT_ROUNDOFF

    rng = np.random.default_rng(len(shape))
    W = rng.normal(size=(5, 4))
    A = rng.normal(size=shape)
    got, want = left_multiply(W, A), np.matmul(W, A)
    assert got.shape == want.shape
    assert np.all(np.abs(got - want) <= 2 * 4 * UNIT_ROUNDOFF * np.matmul(np.abs(W), np.abs(A)))
    Wi, Ai = rng.integers(-9, 9, size=(5, 4)).astype(float), rng.integers(-9, 9, size=shape).astype(float)
    assert np.array_equal(left_multiply(Wi, Ai), np.matmul(Wi, Ai))


@pytest.mark.parametrize("d", [2, 3])
def test_vertex_copies_within_their_bounds_are_joined_and_nothing_else(d):
    """The completeness checks' vertex identification (:func:`cpa_theory.frontier._vertex_clusters`): copies of
    one point, each within its own error bound of it (up to 4 copies, bounds spread over four decades), end in
    one group; points further apart than twice their bounds' sum stay apart — including points on one line
    orthogonal to a coordinate axis (many equal coordinates: the sweep must not stop at the first), with other
    points between them in the sweep's order, and pairs just inside the criterion's reach."""
    from types import SimpleNamespace

    from cpa_theory.frontier import _vertex_clusters

    rng = np.random.default_rng(d)
    n = 400
    P = rng.uniform(-1, 1, size=(n, d))
    P[: n // 4, 0] = -1.0  # a side of the box
    pts, errs, truth = [], [], []
    for i in range(n):
        for _ in range(int(rng.integers(1, 5))):
            e = 10.0 ** rng.uniform(-16, -12)
            pts.append(P[i] + rng.uniform(-e, e, size=d))
            errs.append(e)
            truth.append(i)
    # decoys: a point 1e-3 away from each of the first 100 along a direction the sweep's projection does not
    # see — in the sweep's order it sits among that point's copies, which must still be joined
    from cpa_theory.frontier import _SWEEP_PROJECTION

    r = _SWEEP_PROJECTION[:d]
    u = np.roll(r, 1) - (np.roll(r, 1) @ r) / (r @ r) * r
    for i in range(100):
        pts.append(P[i] + 1e-3 * u / np.linalg.norm(u))
        errs.append(1e-16)
        truth.append(n + i)
    # pairs at the edge of the criterion: both with the largest bound e, every coordinate 1.99 × 2e apart in the
    # same direction (the largest gap in the sweep's order that the sweep must still bridge)
    emax = max(errs)
    for i in range(20):
        q = rng.uniform(-1, 1, size=d)
        pts += [q, q + 1.99 * 2 * emax]
        errs += [emax, emax]
        truth += [n + 100 + i] * 2
    VE = np.column_stack([np.array(pts), np.array(errs)])
    fr = SimpleNamespace(d=d, VE=SimpleNamespace(a=VE, n=len(VE)), pv=SimpleNamespace(v=np.arange(len(VE))))
    labels, nv = _vertex_clusters(fr)
    truth = np.array(truth)
    assert nv == n + 120
    for g in range(n + 120):  # each true point is exactly one group
        assert len(np.unique(labels[truth == g])) == 1
    # a copy pushed to 5x its bound away from the rest no longer joins them
    VE2 = VE.copy()
    k = int(np.flatnonzero(np.bincount(truth) > 1)[0])
    j = int(np.flatnonzero(truth == k)[0])
    VE2[j, :d] = P[k] + 5 * (VE2[truth == k, d].sum())
    labels2, nv2 = _vertex_clusters(SimpleNamespace(d=d, VE=SimpleNamespace(a=VE2, n=len(VE2)), pv=fr.pv))
    assert nv2 == n + 121 and len(np.unique(labels2[truth == k])) == 2


def test_importing_the_toolkit_does_not_load_numba():
    """The compiled loops load numba (~0.4 s) on a flat engine's first count, not when the package, the CLI or
    the counting module is imported (``cpa-theory --help`` stays fast)."""
    import subprocess

    code = ("import sys, cpa_theory, cpa_theory.cli, cpa_theory.regions, cpa_theory.polytope; "
            "print('numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _witness_reference(fr, p):
    """The space engine's witnesses in numpy (its arithmetic before the compiled pass): centroids of the distinct
    vertices, :func:`cpa_theory.polytope.facet_clearance` per face, volumes from the face areas."""
    from cpa_theory.frontier import _ranges, _segment_ids
    from cpa_theory.frontier_loops import face_areas
    from cpa_theory.polytope import facet_clearance

    U = 2.0 ** -53
    C = len(fr.count)
    vv, nvert = fr.cell_vertices(fr.start, fr.count)
    vc = _segment_ids(nvert)
    VE = fr.VE.a[vv]
    cys = np.stack([np.bincount(vc, weights=VE[:, k], minlength=C) for k in range(3)], axis=1) / nvert[:, None]
    errs = np.maximum.reduceat(VE[:, 3], np.concatenate([[0], np.cumsum(nvert)[:-1]])) + U * np.abs(cys).max(axis=1) * 4
    faces = fr.fpool.a[_ranges(fr.start, fr.count)]
    fcell = _segment_ids(fr.count)
    q = fr.fplane.a[faces]
    r = facet_clearance(fr.ha.a[q], fr.hb.a[q], fr.hea.a[q], fr.heb.a[q], fr.fsign.a[faces].astype(float), cys[fcell],
                        errs[fcell])
    wit = cys + p
    rad = np.minimum.reduceat(r, fr.start) - 2 * U * np.abs(wit).max(axis=1)
    area, cen = face_areas(fr.fstart.a, fr.fcount.a, fr.pv.a, fr.VE.a, faces)
    vol = np.bincount(fcell, weights=np.einsum("fd,fd->f", cen - cys[fcell], area) / 3.0, minlength=C)
    return wit, rad, cys, vol


def _cube_frontier():
    """Cubes of side 8 as a Frontier3D shell holding just the tables the witnesses read: four at coordinates
    ~2^44 (so that 4u|y| and 2u|y + p| are ~1e-2, not lost beside the radius) whose faces lie on axis planes
    scaled by 1, 3 or 5 with error bounds 2^-54 … 2^-50 on a (~1e-2 at |y| ~ 2^44) and 2^-8 … 2^-6 on β; one
    vertex error of 2^-6; a vertex error NaN in cube 2 (an overflow: its radius must be NaN); a face of cube 3 on a
    zero row (no constraint: +inf); and a fifth cube near the origin with rows known to 50 % (‖ea‖ beside ‖a‖)
    and a ninth vertex in the middle of an edge, listed by two faces (a centroid of the faces' entries is not the
    centroid of the distinct vertices)."""
    from cpa_theory.frontier import _Grow
    from cpa_theory.frontier3d import Frontier3D

    S = 2.0 ** 44
    cyc = [[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [3, 7, 6, 2], [0, 4, 7, 3], [1, 2, 6, 5]]  # outward ccw
    cube = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1],
                     [0.5, 0, 0]]) * 8.0
    # face k lies on x_q = lo or hi, q = [2, 2, 1, 1, 0, 0][k]; inside: −(x_q − lo) ≤ 0 and (x_q − hi) ≤ 0
    axis, upper = [2, 2, 1, 1, 0, 0], [False, True, False, True, False, True]
    T = {k: [] for k in ("VE", "ha", "hb", "hea", "heb", "fplane", "fsign", "fstart", "fcount", "pv", "fpool",
                         "start", "count")}

    def face(a, beta, ea, eb, sign, vids):
        T["ha"].append(a)
        T["hb"].append(beta)
        T["hea"].append(ea)
        T["heb"].append(eb)
        T["fplane"].append(len(T["fplane"]))
        T["fsign"].append(sign)
        T["fstart"].append(len(T["pv"]))
        T["fcount"].append(len(vids))
        T["pv"].extend(vids)
        T["fpool"].append(len(T["fplane"]) - 1)

    for c, (off, shift, mid) in enumerate([((0, 0, 0), S, False), ((16, 0, 0), S, False), ((0, 24, 8), S, False),
                                           ((40, 8, 16), S, False), ((-3, 1, 2), 0.0, True)]):
        base = len(T["VE"])
        for v in cube[: 9 if mid else 8]:
            T["VE"].append(list(np.array(off) + v + shift) + [0.0])
        T["start"].append(len(T["fpool"]))
        for k, (cy, q, up) in enumerate(zip(cyc, axis, upper)):
            scale = [1.0, 3.0, 5.0][(c + k) % 3]
            a = np.zeros(3)
            a[q] = scale * (1 if (c + k) % 2 else -1)
            ea = 0.5 * np.abs(a) if mid else np.full(3, 2.0 ** -(50 + (c + k) % 5))
            if mid and k in (0, 2):  # vertex 8 on edge 0–1, listed by the faces of that edge
                cy = cy[:1] + [8] + cy[1:] if k == 2 else cy + [8]
            # the inside's sign as the engine stores it: sg·(a·y − β) ≤ 0
            face(a, a[q] * (off[q] + shift + (8.0 if up else 0.0)), ea, 2.0 ** -(6 + k % 3),
                 (1 if up else -1) * (1 if a[q] > 0 else -1), base + np.array(cy))
        T["count"].append(6)
    T["VE"][5][3] = 2.0 ** -6  # one vertex's error bound (cube 0)
    T["VE"][8 * 4 + 2][3] = 2.0 ** -4  # (cube 4)
    T["VE"][8 * 2 + 3][3] = np.nan  # cube 2: an overflowed vertex
    face(np.zeros(3), 0.0, np.zeros(3), 0.0, 1, [8 * 3] * 3)  # cube 3: a zero row (three entries of one vertex)
    T["fpool"].insert(T["start"][4], T["fpool"].pop())  # (cube 3's faces come before cube 4's)
    T["start"][4] += 1
    T["count"][3] += 1
    fr = Frontier3D.__new__(Frontier3D)
    for name, dt in (("fpool", np.int64), ("fstart", np.intp), ("fcount", np.intp), ("pv", np.int64),
                     ("fplane", np.int64), ("fsign", np.int8), ("hb", float), ("heb", float), ("VE", float),
                     ("ha", float), ("hea", float)):
        vals = np.array(T[name], dtype=dt)
        g = _Grow(vals.shape[1:], dt)
        g.extend(vals)
        setattr(fr, name, g)
    fr.start, fr.count = np.array(T["start"], dtype=np.intp), np.array(T["count"], dtype=np.intp)
    return fr


def test_compiled_witnesses_equal_the_facet_clearance_reference():
    """The space engine's witnesses, certified ball radii and volumes (one compiled pass,
    :func:`cpa_theory.frontier_loops.witness_balls`) equal the numpy arithmetic on
    :func:`cpa_theory.polytope.facet_clearance` — on cubes where every term of the bound is large enough to see
    (coordinates ~2^44, error terms ~1e-2, a NaN vertex error, a zero row) and on a real window."""
    import cpa_theory.frontier3d as F3
    from cpa_theory.regions import _setup

    fr = _cube_frontier()
    p = np.array([2.0 ** 46, -3.0, 0.5])  # 2u|y + p| ~ 0.03
    got, want = F3._witnesses(fr, p), _witness_reference(fr, p)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[2], want[2])  # centroids: same sums
    np.testing.assert_allclose(got[1], want[1], rtol=1e-13, atol=0)  # radii (NaN where the reference has NaN)
    np.testing.assert_allclose(got[3], want[3], rtol=1e-13, atol=0)  # volumes (512 each)
    rad = want[1]
    assert np.isnan(rad[2]) and (rad[[0, 1, 3]] > 1).all() and -10 < rad[4] < 0  # (cube 4: 50 % rows)
    assert np.allclose(want[3], 512.0) and np.allclose(want[2][4], [1, 1 + 32 / 9, 2 + 32 / 9])
    # a real window (3-16-16-16-1 at radius 1): ~10^4 cells, radii down to slivers
    rng = np.random.default_rng(3)
    net = _random_net(rng, 3, (16, 16), "train", _activations()[0])
    cond = net.condition()
    win, p, root, _ = _setup(cond, np.full(3, 0.1), 1.0, None)
    fr = F3.refine(cond, root, p, win.center - p, win.radius, {})
    fr.compact(fr.start, fr.count)
    got, want = F3._witnesses(fr, p), _witness_reference(fr, p)
    assert np.array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(got[3], want[3], rtol=1e-9, atol=1e-18)
    assert len(fr.count) > 500 and (np.sign(got[1]) == np.sign(want[1])).all()


@given(st.lists(st.integers(0, 2**64 - 1), max_size=300), st.integers(0, 63), st.integers(0, 5))
@settings(max_examples=80, deadline=None)
def test_count_distinct_equals_np_unique(keys, shift, repeats):
    """The hash set behind the Euler counts: as many distinct keys as ``np.unique`` finds — keys repeated, keys
    equal in their low bits (multiples of 2^shift: long probe runs), 0 and 2^64 − 1."""
    from cpa_theory.frontier_loops import count_distinct

    k = np.array(keys + [0, 2**64 - 1] * repeats, dtype=np.uint64)
    k2 = (k << np.uint64(shift)) if shift else k
    for x in (k, k2, np.repeat(k2, 3)):
        assert count_distinct(x) == len(np.unique(x))


def test_compiled_euler_counts_equal_the_numpy_formula():
    """E and F of the space engine's Euler characteristic (one compiled pass with hash sets) equal the numpy
    formula (distinct sorted pairs of consecutive corner groups; distinct face words) on a real window, and on the
    same faces with some corner groups merged (degenerate edges u = w skipped) and a face listed twice."""
    import cpa_theory.frontier3d as F3
    from cpa_theory.frontier import _cyclic_next, _ranges, _vertex_clusters
    from cpa_theory.frontier_loops import euler_counts
    from cpa_theory.regions import _setup

    def reference(labels, fcnt, nv, R):
        u, w = labels, labels[_cyclic_next(fcnt)]
        keep = u != w
        E = len(np.unique(np.minimum(u, w)[keep] * nv + np.maximum(u, w)[keep]))
        starts = np.concatenate([[0], np.cumsum(fcnt)[:-1]])
        with np.errstate(over="ignore"):
            h = np.add.reduceat(R[labels], starts) ^ (fcnt.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        return E, len(np.unique(h))

    rng = np.random.default_rng(4)
    net = _random_net(rng, 3, (10, 8), "train", _activations()[0])
    cond = net.condition()
    win, p, root, _ = _setup(cond, np.zeros(3), 1.0, None)
    fr = F3.refine(cond, root, p, win.center - p, win.radius, {})
    fr.compact(fr.start, fr.count)
    faces = fr.fpool.a[_ranges(fr.start, fr.count)]
    fcnt = fr.fcount.a[faces].astype(np.int64)
    labels, nv = _vertex_clusters(fr, fr.pv.a[_ranges(fr.fstart.a[faces], fcnt)])
    R = np.random.default_rng(2027).integers(1, 2**63, size=nv, dtype=np.uint64)
    got = euler_counts(labels, fcnt, nv, R)
    assert got == reference(labels, fcnt, nv, R) and nv - got[0] + got[1] - len(fr.count) == 1
    merged = np.where(labels % 7 == 3, labels - 1, labels)  # some groups joined: degenerate edges appear
    assert euler_counts(merged, fcnt, nv, R) == reference(merged, fcnt, nv, R)
    first = slice(0, int(fcnt[0]))
    twice_l, twice_c = np.concatenate([labels, labels[first]]), np.append(fcnt, fcnt[0])
    assert euler_counts(twice_l, twice_c, nv, R) == got  # a face listed twice counts once, and so do its edges
    # two faces whose words sum alike (R3 = R1 + R2) but of different sizes: two faces
    R6 = np.array([11, 2**63 + 5, 2**63 + 7, 12, 13, 14], dtype=np.uint64)
    two = (np.array([0, 1, 2, 5, 0, 3, 5], dtype=np.int64), np.array([4, 3], dtype=np.int64))
    assert euler_counts(*two, 6, R6) == reference(*two, 6, R6) == (6, 2)


@pytest.mark.parametrize("mask", [0, 2**64 - 1])
@pytest.mark.parametrize("layers", [((70, 1), (5, 3)), ((3, 300), (64, 1), (129, 1)), ((40, 2),)])
def test_match_codes_finds_exactly_the_region_with_the_predicted_code(layers, mask):
    """Facet look-up against a dictionary of codes: for random regions (codes of one-bit and wider layers, over
    word boundaries) and random facets (layer, neuron j, breakpoint k), the compiled look-up returns the region
    whose code is the facet's region's with neuron j's piece moved between k and k + 1, and −1 when the piece is
    neither or no region has that code — with a good hash and with every hash equal."""
    rng = np.random.default_rng(len(layers) + mask % 7)
    widths = np.cumsum([0] + [n for n, _ in layers])
    rows = {tuple(np.concatenate([rng.integers(0, K + 1, size=n) for n, K in layers]).tolist()) for _ in range(300)}
    rows = sorted(rows)
    F = 3000
    cell = rng.integers(0, len(rows), size=F)
    layer = rng.integers(-1, len(layers), size=F)  # −1: a side of the window (never matched)
    meta = np.zeros((F, 3), dtype=np.int64)
    moved = [None] * F
    for f in range(F):
        li = int(layer[f])
        if li < 0:
            meta[f] = (-1, 0, f)
            continue
        n, K = layers[li]
        j = int(rng.integers(0, n))
        piece = rows[cell[f]][widths[li] + j]
        k = int(rng.choice([piece, piece - 1])) if rng.uniform() < 0.9 else int(rng.integers(0, K))
        k = min(max(k, 0), K - 1)
        meta[f] = (li, 0, j * K + k)
        if piece in (k, k + 1):
            code = list(rows[cell[f]])
            code[widths[li] + j] = k + 1 if piece == k else k
            moved[f] = tuple(code)
            if rng.uniform() < 0.6:  # most neighbours exist
                rows.append(moved[f])
    rows = list(dict.fromkeys(rows))  # distinct codes (the base rows first, in place)
    index = {r: i for i, r in enumerate(rows)}
    want = np.array([index.get(m, -1) if m is not None else -1 for m in moved])
    allc = np.array(rows, dtype=np.int64)
    codes = tuple(allc[:, a:b] for a, b in zip(widths[:-1], widths[1:]))
    fr = _fake_frontier(codes, [n for n, _ in layers])
    fr.cond.layers = [type("L", (), {"activation": type("A", (), {"breakpoints": (0.0,) * K})()})() for _, K in layers]
    pairs, unmatched = FF._match_codes(fr, cell, meta, hash_mask=mask)
    found = {(min(a, b), max(a, b)) for a, b in zip(cell, want) if b >= 0 and a < b}
    assert {tuple(x) for x in pairs.tolist()} == found
    inner = np.flatnonzero(layer >= 0)
    assert set(unmatched.tolist()) == set(inner[want[inner] < 0].tolist())
    assert len(found) > 20 and (want[inner] < 0).sum() > 20


@pytest.mark.parametrize("d", [2, 3, 5])
def test_sign_table_rows_are_the_filter_coefficients(d):
    """:func:`cpa_theory.frontier._sign_table` (compiled, one pass) gives (a, β, ea + k|a|, eβ + k|β|, Σ|a| + Σea)
    with k = (d + DOT_EXTRA_TERMS)·u — the numpy formula of the filters — every entry exactly but the sums, which
    may round in another order (a few ulps); row-major."""
    from cpa_theory.tolerances import DOT_EXTRA_TERMS

    rng = np.random.default_rng(d)
    L = 5000
    a = rng.normal(size=(L, d)) * 10.0 ** rng.uniform(-200, 200, size=(L, 1))
    a[::7, 0] = 0.0
    b = rng.normal(size=L) * 10.0 ** rng.uniform(-200, 200, size=L)
    ea, eb = np.abs(a) * rng.uniform(0, 1e-14, size=a.shape), np.abs(b) * rng.uniform(0, 1e-14, size=L)
    k = (d + DOT_EXTRA_TERMS) * 2.0 ** -53
    want = np.column_stack([a, b, ea + k * np.abs(a), eb + k * np.abs(b), np.abs(a).sum(axis=1) + ea.sum(axis=1)])
    T = FF._sign_table(a, b, ea, eb)
    assert T.flags.c_contiguous and T.shape == (L, 2 * d + 3)
    assert np.array_equal(T[:, :-1], want[:, :-1])
    np.testing.assert_allclose(T[:, -1], want[:, -1], rtol=4 * d * 2.0 ** -53, atol=0)


def test_space_compaction_keeps_every_live_cell_and_drops_the_rest():
    """``_compact`` (one compiled pass) rewrites the face tables with the live cells only: each kept cell has the
    same faces (plane, inside sign, vertex cycle) in the same order, its faces are contiguous, and the tables
    hold nothing else (a cell left out is gone)."""
    import cpa_theory.frontier3d as F3
    from cpa_theory.regions import _setup

    net = _random_net(np.random.default_rng(9), 3, (7, 5), "eval", _activations()[1])
    cond = net.condition()
    win, p, root, _ = _setup(cond, np.zeros(3), 1.0, None)
    fr = F3.refine(cond, root, p, win.center - p, win.radius, {})

    def cells(fr):
        def face(f):
            vids = fr.pv.a[fr.fstart.a[f]:fr.fstart.a[f] + fr.fcount.a[f]]
            return int(fr.fplane.a[f]), int(fr.fsign.a[f]), vids.tolist()

        return [[face(f) for f in fr.fpool.a[s:s + n].tolist()] for s, n in zip(fr.start.tolist(), fr.count.tolist())]

    before = cells(fr)
    keep = np.arange(len(fr.count))[::-1][1::2]  # every other cell, in reverse order
    fr._compact(fr.start[keep], fr.count[keep])
    assert cells(fr) == [before[i] for i in keep.tolist()]
    assert fr.fpool.n == fr.fplane.n == fr.count.sum() and np.array_equal(fr.fpool.v, np.arange(fr.fpool.n))
    assert fr.pv.n == fr.fcount.v.sum() and np.array_equal(fr.fstart.v[1:], np.cumsum(fr.fcount.v)[:-1])
    assert len(fr.count) == len(keep) > 20
    for cell in cells(fr):  # and each face's inside sign holds at the cell's centroid (not only as before)
        y = fr.VE.a[np.unique(np.concatenate([v for _, _, v in cell])), :3].mean(axis=0)
        assert all(sg * (fr.ha.a[h] @ y - fr.hb.a[h]) < 0 for h, sg, _ in cell)


@pytest.mark.parametrize("acts, d", [((0, 2), 3), ((6, 0), 2), ((3, 6), 3), ((1, 4), 4)])
def test_compiled_composition_equals_the_numpy_kernels(acts, d):
    """The next layer's switching sets on every cell in one fused compiled pass
    (:func:`cpa_theory.frontier_loops.compose_lines`) equal the numpy kernels (``charts_after`` then
    ``next_lines``, chunked): lines, their error bounds, charts and magnitudes, for one-breakpoint (lines = neurons)
    and several-breakpoint layers, BN anchors, gains, shifts and z-errors; equal to the last bits (the sums run in
    another order; the error bounds hold for any), and NaN / inf where the numpy kernels overflow."""
    from cpa_theory.frontier_kernels import NUMPY, chart_tables
    from cpa_theory.frontier_loops import compose_lines

    rng = np.random.default_rng(sum(acts) + d)
    act1, act2 = (_activations()[a]() for a in acts)
    n, n2, Cp, C = 7, 5, 40, 300
    N, z0 = rng.normal(size=(Cp, n, d)), rng.normal(size=(Cp, n))
    mlin, mgap = np.abs(N) * 1.5 + 0.1, np.abs(z0) * 2 + 0.3
    par = rng.integers(0, Cp, size=C)
    pieces = rng.integers(0, len(act1.breakpoints) + 1, size=(C, n))
    tables = chart_tables(act1)
    g, e = rng.uniform(0.5, 2, size=n) * rng.choice([-1, 1], size=n), rng.normal(size=n)
    W2, anchor = rng.normal(size=(n2, n)), rng.normal(size=n)
    g2, e2, zerr = rng.uniform(0.5, 2, size=n2), rng.normal(size=n2), rng.uniform(1e-14, 1e-13, size=n2)
    t2, rel = act2.breakpoints_array, 3e-15
    want = NUMPY.compose((N[par], z0[par], mlin[par], mgap[par], pieces, tables, g, e, W2, anchor, g2, e2, t2, rel,
                          zerr))
    got = compose_lines(N, z0, mlin, mgap, par, pieces, *tables, g, e, W2, anchor, g2, e2, t2, rel, zerr)
    names = ("fa", "fb", "EA", "EB", "N", "z0", "mlin", "mgap", "EN", "Ez")
    bounds = {"EA", "EB", "mlin", "mgap", "EN", "Ez"}  # sums of positive terms: compared relative to themselves

    def close(x, y, name):
        np.testing.assert_allclose(x, y, rtol=1e-13, atol=0 if name in bounds else 1e-13 * np.abs(y).max(),
                                   err_msg=name)

    for name, x, y in zip(names, got, want):
        assert x.shape == y.shape, name
        close(x, y, name)
    assert len(t2) > 1 or np.shares_memory(got[0], got[4])  # one breakpoint: the lines are the neurons
    N[par[0]] = np.where(N[par[0]] > 0, 1e308, -1e308)  # an overflowing chart: the same entries not finite
    want = NUMPY.compose((N[par], z0[par], mlin[par], mgap[par], pieces, tables, g, e, W2, anchor, g2, e2, t2, rel,
                          zerr))
    got = compose_lines(N, z0, mlin, mgap, par, pieces, *tables, g, e, W2, anchor, g2, e2, t2, rel, zerr)
    clean = par != par[0]  # (where the partial sums overflow depends on their order; the cells do not)
    for name, x, y in zip(names, got, want):
        assert np.isfinite(x).all() == np.isfinite(y).all(), name
        assert np.isfinite(x[~clean]).all() == np.isfinite(y[~clean]).all(), name
        close(x[clean], y[clean], name)
    assert not np.isfinite(got[0]).all() and np.isfinite(got[0][clean]).all()


def test_witnesses_beside_the_completeness_checks_change_nothing(monkeypatch):
    """The space engine computes witnesses and their recheck on a second thread beside the completeness checks,
    and compacts its pools beside the next layer's chart composition: every field of the result is what the same
    count gives with all of it on one thread (hard-tanh: three pieces; N_lin too, which the witness thread takes
    from the adjacency's pairs — or, where facets were left for the exact probe, the caller after it)."""
    import dataclasses

    import cpa_theory.frontier3d as F3

    import threading

    rng = np.random.default_rng(11)
    nets = [(_random_net(rng, 3, (7, 6), "train", _activations()[2]), np.full(3, 0.1), 0.7),
            (_coincident_layer_net(0), np.zeros(3), 0.8)]  # (facets whose neighbour the exact probe finds)
    assert F3.SPACE.threaded_witnesses
    fields = lambda r: {k: v for k, v in dataclasses.asdict(r).items() if k != "seconds"}  # noqa: E731
    where, seen = [], []
    n_lin = FF._linear_components

    def spy(n, pairs, *a):
        where.append(threading.current_thread() is threading.main_thread())
        seen.append(sorted(map(tuple, np.asarray(pairs).tolist())))
        return n_lin(n, pairs, *a)

    monkeypatch.setattr(FF, "_linear_components", spy)
    both = [fields(count_regions(net, c, r)) for net, c, r in nets]
    # N_lin on the witness thread once the adjacency is in, unless facets were left for the probe
    assert where == [False, True] and both[0]["unmatched_facets"] == 0 < both[1]["unmatched_facets"]
    monkeypatch.setattr(F3, "SPACE", F3.SPACE._replace(threaded_witnesses=False))
    monkeypatch.setattr(F3.Frontier3D, "_COMPACT_NOGIL", False)
    one = [fields(count_regions(net, c, r)) for net, c, r in nets]
    assert seen[:2] == seen[2:] and len(seen[0]) > 20  # N_lin read the same adjacent pairs
    for b, o in zip(both, one):
        assert b["certified"] and b["regions"] > 20
        assert all(np.array_equal(b[k], o[k]) for k in o), [k for k in o if not np.array_equal(b[k], o[k])]


def _coincident_layer_net(seed):
    """A 3-D ReLU net whose second layer has a duplicated neuron and a doubled one: coincident switching sets on
    every parent cell they cut, so the waves of that layer make exact decisions."""
    rng = np.random.default_rng(seed)
    W2, b2 = rng.normal(size=(6, 6)) / 3, rng.normal(size=6) * 0.1
    W2[1], b2[1] = W2[0], b2[0]
    W2[3], b2[3] = 2 * W2[2], 2 * b2[2]
    return Network(3, (Layer(rng.normal(size=(6, 3)), rng.normal(size=6) * 0.3, relu()), Layer(W2, b2, relu()),
                       Layer(np.ones((1, 6)), [0.0], identity())))


@pytest.mark.parametrize("seed", [0, 2])
def test_two_wave_threads_give_the_same_regions(monkeypatch, seed):
    """A layer's waves on two threads (:meth:`cpa_theory.frontier3d.Frontier3D._waves`: the second run of parents
    on a twin frontier whose rows are adopted afterwards) give every field of the one-thread count — regions,
    N_lin, certificates, exact decisions, χ, smallest radius — and the same regions (codes, witnesses, radii,
    vertices, maps), in another order. The twin made exact decisions of its own here."""
    import dataclasses

    import cpa_theory.frontier3d as F3

    net, c, r = _coincident_layer_net(seed), np.zeros(3), 0.8
    twins = []
    adopt = F3.Frontier3D._adopt

    def spy(self, twin, marks, cells):
        twins.append((dict(twin.stats), cells.par.n))
        return adopt(self, twin, marks, cells)

    monkeypatch.setattr(F3.Frontier3D, "_adopt", spy)
    monkeypatch.setattr(F3.Frontier3D, "_TWO_THREADS_WORK", 1)
    two = count_regions(net, c, r, keep_regions=True)
    assert twins and twins[0][0].get("exact_fallbacks", 0) > 0 and twins[0][1] > 10
    monkeypatch.setattr(F3.Frontier3D, "_TWO_THREADS_WORK", 0)
    n_twins = len(twins)
    one = count_regions(net, c, r, keep_regions=True)
    assert len(twins) == n_twins  # (one thread: no twin)
    skip = ("seconds", "region_list")
    fields = lambda x: {k: v for k, v in dataclasses.asdict(x).items() if k not in skip}  # noqa: E731
    f1, f2 = fields(one), fields(two)
    assert all(np.array_equal(f1[k], f2[k]) for k in f1), [k for k in f1 if not np.array_equal(f1[k], f2[k])]
    assert one.certified and one.exact_fallbacks > 0
    key = lambda g: tuple(np.concatenate(g.code).tolist())  # noqa: E731
    by_code = {key(g): g for g in one.region_list}
    assert len(by_code) == len(two.region_list) == one.regions
    order = [key(g) for g in two.region_list]
    assert order != [key(g) for g in one.region_list]  # (another order: the twin's cells come last)
    for g in two.region_list:
        h = by_code[key(g)]
        assert np.array_equal(g.witness, h.witness) and g.radius == h.radius
        assert np.array_equal(np.unique(g.vertices, axis=0), np.unique(h.vertices, axis=0))
        assert np.array_equal(g.out_A, h.out_A) and np.array_equal(g.out_c, h.out_c)


def test_parent_test_on_two_threads_gives_the_same_count(monkeypatch):
    """The parent test of a layer on two threads (:meth:`cpa_theory.frontier.FlatFrontier._parent_test` on two
    runs of parents): every field of the one-thread count. Layer 2 reads two layer-1 units directly (rows of the
    identity, no bias), so its switching sets lie on its parents' faces and both threads decide vertex sides
    exactly."""
    import dataclasses
    import threading

    import cpa_theory.frontier3d as F3

    rng = np.random.default_rng(0)
    W2, b2 = rng.normal(size=(6, 6)) / 3, rng.normal(size=6) * 0.1
    W2[:2], b2[:2] = np.eye(6)[[0, 3]], 0.0
    net = Network(3, (Layer(rng.normal(size=(6, 3)), rng.normal(size=6) * 0.3, relu()), Layer(W2, b2, relu()),
                      Layer(np.ones((1, 6)), [0.0], identity())))
    exact_in = set()
    decide = FF.FlatFrontier._decide

    def spy(self, s, und, *rest):
        if np.any(und):
            exact_in.add(threading.current_thread() is threading.main_thread())
        return decide(self, s, und, *rest)

    monkeypatch.setattr(FF.FlatFrontier, "_decide", spy)
    monkeypatch.setattr(F3.Frontier3D, "_TWO_THREADS_WORK", 0)
    monkeypatch.setattr(F3.Frontier3D, "_TWO_THREADS_PARENT_WORK", 1)
    fields = lambda x: {k: v for k, v in dataclasses.asdict(x).items() if k != "seconds"}  # noqa: E731
    two = fields(count_regions(net, np.zeros(3), 0.8))
    assert exact_in == {True, False}
    monkeypatch.setattr(F3.Frontier3D, "_TWO_THREADS_PARENT_WORK", 0)
    one = fields(count_regions(net, np.zeros(3), 0.8))
    assert all(np.array_equal(one[k], two[k]) for k in one), [k for k in one if not np.array_equal(one[k], two[k])]
    assert one["certified"] and one["exact_fallbacks"] > 0


def test_grow_buffers_append_ids_shifted():
    """:meth:`cpa_theory.frontier._Grow.extend_by` and :func:`cpa_theory.frontier3d._extend_shifted` (a twin's
    rows appended with their new ids moved past this frontier's new ones)."""
    import cpa_theory.frontier3d as F3

    g = FF._Grow((), np.int64, cap=2)
    g.extend([7, 8])
    F3._extend_shifted(g, np.array([1, 5, 9, 4]), 4, 100)
    assert g.n == 6 and g.v.tolist() == [7, 8, 1, 105, 109, 104] and len(g.a) >= 6
    assert g.extend_by(3) == 6 and g.n == 9


def test_beside_returns_both_values_and_raises_either_exception_in_the_caller():
    """:func:`cpa_theory.frontier._beside`: the values in order, threaded or not; an exception of the thread's
    function or of the caller's own is raised in the caller (the caller's first), after the thread is joined."""
    import threading
    import time

    assert FF._beside(lambda: 1, lambda: 2) == (1, 2) == FF._beside(lambda: 1, lambda: 2, threaded=False)
    names = []
    FF._beside(lambda: names.append(threading.current_thread().name), lambda: None)
    assert names and names[0] != threading.main_thread().name  # it ran on another thread

    def boom():
        raise ZeroDivisionError("in the thread")

    def fg_boom():
        raise KeyError("here")

    with pytest.raises(ZeroDivisionError, match="in the thread"):
        FF._beside(boom, lambda: 2)
    with pytest.raises(KeyError):
        FF._beside(boom, fg_boom)
    done = []
    with pytest.raises(KeyError):
        FF._beside(lambda: (time.sleep(0.2), done.append(1)), fg_boom)
    assert done == [1]  # joined before the caller's exception left


@pytest.mark.parametrize("d", [2, 3, 5])
def test_the_window_screen_keeps_every_switching_set_that_may_touch_the_window(d):
    """The C4 screen (``frontier._screen``) drops a switching set only when it misses W for every line within its
    error bounds. Lines are put where W's nearest corner touches them up to the last bits (with and without
    coefficient errors EA, EB), so the float slack lands on both sides of 0: each line whose exact minimal slack
    over its error box, |fa·y0 − fb| − ‖fa‖₁ r − EA·(|y0| + r) − EB (in rationals), is ≤ 0 must be kept. A screen
    without its rounding margin, or without the EA or EB terms, drops some of them."""
    rng = np.random.default_rng(40 + d)
    C, nK = 300, 8
    y0, r = rng.normal(size=d) * 10.0 ** rng.uniform(-1, 2, size=d), float(rng.uniform(0.01, 3))
    fa = rng.normal(size=(C, nK, d)) * 10.0 ** rng.uniform(-3, 3, size=(C, nK, 1))
    EA = np.where(rng.uniform(size=(C, 1, 1)) < 0.5, 0.0, 1e-9 * np.abs(fa) * rng.uniform(size=fa.shape))
    eb_rel = np.where(rng.uniform(size=(C, 1)) < 0.5, 0.0, 1e-9 * rng.uniform(size=(C, nK)))
    F = lambda v: Fraction(float(v))  # noqa: E731
    fb, EB = np.empty((C, nK)), np.empty((C, nK))
    for c in range(C):
        for j in range(nK):
            a, e = fa[c, j], EA[c, j]
            s = rng.choice([-1, 1])
            reach = sum(abs(F(a[i])) * F(r) + F(e[i]) * (abs(F(y0[i])) + F(r)) for i in range(d))
            touch = sum(F(a[i]) * F(y0[i]) for i in range(d)) - s * reach  # on the line: slack 0 (before EB)
            EB[c, j] = float(eb_rel[c, j] * abs(float(touch)))
            fb[c, j] = float(touch - s * F(EB[c, j])) * (1 + rng.choice([-1, 1]) * 2.0 ** -52 * rng.integers(0, 3))
    lines = dict(fa=fa, fb=fb, EA=EA, EB=EB)
    screened, sides = FF._screen(lines, y0, r)
    kept_needed = np.zeros((C, nK), dtype=bool)
    for c in range(C):
        for j in range(nK):
            a, e = fa[c, j], EA[c, j]
            resid = sum(F(a[i]) * F(y0[i]) for i in range(d)) - F(fb[c, j])
            slack = (abs(resid) - sum(abs(F(a[i])) * F(r) + F(e[i]) * (abs(F(y0[i])) + F(r)) for i in range(d))
                     - F(EB[c, j]))
            kept_needed[c, j] = slack <= 0
    assert 0.2 < kept_needed.mean() < 0.95  # lines on both sides of touching
    assert np.all(screened[kept_needed]), f"{int((kept_needed & ~screened).sum())} touching lines dropped"
    # sharp: without the rounding margin the float slack alone drops some of the touching lines
    resid = np.einsum("cjd,d->cj", fa, y0) - fb
    naive = np.abs(resid) - np.abs(fa).sum(axis=2) * r - np.einsum("cjd,d->cj", EA, np.abs(y0) + r) - EB <= 0
    assert np.any(kept_needed & ~naive)
    # and the screen is not vacuous: lines a little further out (by 1e-6 of their reach) are dropped
    far = dict(lines, fb=fb + np.sign(np.einsum("cjd,d->cj", fa, y0) - fb) * -1e-6 * (np.abs(fb) + 1))
    assert not FF._screen(far, y0, r)[0][kept_needed].all()


def _nearly_parallel_net(eps=1e-12):
    """Two first-layer planes at an angle of ``eps`` through W (their crossings with the other planes' edges are
    points float64 cannot bound: the space engine computes them exactly)."""
    W = np.array([[1.0, 0.0, 0.0], [1.0, eps, 0.0], [0.3, 0.5, 1.0], [0.0, 1.0, 0.2]])
    return Network(3, (Layer(W, [0.0, 0.0, 0.1, -0.1], relu()), Layer(np.ones((1, 4)), [0.0], identity())))


def test_compiled_waves_come_back_for_crossing_points_float64_cannot_bound(monkeypatch):
    """The compiled waves (:func:`cpa_theory.frontier_loops.wave_run`) return a split whose crossing points
    float64 cannot bound; they are computed exactly before the split goes on, so no vertex is left with an
    unbounded error (checked at every compaction), and the count is the cell engine's."""
    import cpa_theory.frontier3d as F3

    exact_points, compacted = [], []
    finish, compact = F3.Frontier3D._finish_split, F3.Frontier3D._compact

    def spy_finish(self, prep, new_ids, live):
        exact_points.append(int(np.count_nonzero(~np.isfinite(self.VE.a[new_ids, 3]))))
        return finish(self, prep, new_ids, live)

    def spy_compact(self, start, count):
        compacted.append(bool(np.isfinite(self.VE.v[:, 3]).all()))
        return compact(self, start, count)

    monkeypatch.setattr(F3.Frontier3D, "_finish_split", spy_finish)
    monkeypatch.setattr(F3.Frontier3D, "_compact", spy_compact)
    net = _nearly_parallel_net()
    res = count_regions(net, np.zeros(3), 1.0)
    assert sum(exact_points) > 0 and compacted and all(compacted)
    ref = count_regions(net, np.zeros(3), 1.0, engine="cells")
    assert (res.regions, res.linear_regions, res.certified) == (ref.regions, ref.linear_regions, True)


@pytest.mark.parametrize("case", ["coincident", "parallel", "random"])
def test_compiled_waves_give_the_count_of_one_wave_at_a_time(monkeypatch, case):
    """The compiled waves against the same waves run one at a time from Python (:meth:`Frontier3D._wave`, the
    path a wave that needs exact signs takes): every field of the count and every region (code, witness,
    radius, vertices, map) in the same order — also with a progress callback, which makes the compiled run come
    back every few waves."""
    import dataclasses

    import cpa_theory.frontier3d as F3
    import cpa_theory.frontier_loops as FL

    if case == "coincident":
        net, r = _coincident_layer_net(0), 0.8
    elif case == "parallel":
        net, r = _nearly_parallel_net(), 1.0
    else:
        net, r = _random_net(np.random.default_rng(3), 3, (10, 8, 6), "train", relu), 1.0
    skip = ("seconds", "region_list")
    fields = lambda x: {k: v for k, v in dataclasses.asdict(x).items() if k not in skip}  # noqa: E731

    def regions(x):
        return [(np.concatenate(g.code).tolist(), g.witness.tolist(), g.radius, g.vertices.tolist(),
                 g.out_A.tolist(), g.out_c.tolist()) for g in x.region_list]

    calls = []
    monkeypatch.setattr(F3, "wave_run", lambda *a: (calls.append(1), FL.wave_run(*a))[1])
    compiled = count_regions(net, np.zeros(3), r, keep_regions=True)
    shown = count_regions(net, np.zeros(3), r, keep_regions=True, progress=True)
    assert calls and compiled.certified and compiled.regions > 10
    monkeypatch.setattr(F3, "wave_run", lambda live, pools, *a: (FL.WAVE_EXACT_SIGNS, 0, 0, 0, live, pools, None,
                                                                  None))
    python = count_regions(net, np.zeros(3), r, keep_regions=True)
    for other in (shown, python):
        f1, f2 = fields(compiled), fields(other)
        assert all(np.array_equal(f1[k], f2[k]) for k in f1), [k for k in f1 if not np.array_equal(f1[k], f2[k])]
        assert regions(compiled) == regions(other)


@pytest.mark.parametrize("n_breakpoints", [1, 3, 12])
def test_the_witness_recheck_refuses_a_point_on_a_breakpoint_of_a_neuron_that_is_not_flat(n_breakpoints):
    """The flat engines' forward-pass recheck (``frontier._recheck``) passes a witness only where every neuron is
    on the region's piece and off every breakpoint, unless the region is flat there (the neuron sits on that
    breakpoint on the whole region). Witnesses exactly on a breakpoint (z = t_k) fail for a region not flat in
    that neuron and pass for a flat one; nudged off it onto the coded piece, they pass; on another piece they
    fail. (Up to 8 breakpoints compared one by one, more with a set lookup.)"""
    from cpa_theory.activations import spline

    t = np.linspace(-1.0, 1.0, n_breakpoints) if n_breakpoints > 1 else np.array([0.0])
    vals = np.cumsum(np.arange(n_breakpoints) % 2 + 1.0)  # slopes change at every breakpoint
    act = spline(t, vals, 0.5, 3.0)
    net = Network(2, (Layer(np.array([[1.0, 0.0], [0.0, 1.0]]), [0.0, 0.0], act),
                      Layer(np.ones((1, 2)), [0.0], identity())))
    cond = net.condition()
    k = n_breakpoints // 2
    on = np.array([[t[k], 0.3], [t[k], 0.3], [t[k] + 1e-9, 0.3], [t[k] - 1e-9, 0.3]])
    piece = lambda x: int(np.searchsorted(t, x, side="right"))  # noqa: E731
    code0 = np.array([[piece(x), piece(0.3)] for x in on[:, 0]])
    code0[3, 0] = piece(t[k] + 1e-9)  # the fourth point is on the piece below its code's
    codes = (code0, np.zeros((4, 1), dtype=np.int64))
    flats = (np.array([[False, False], [True, False], [False, False], [False, False]]), np.zeros((4, 1), bool))
    ok = FF._recheck(cond, on, np.full(4, 0.1), codes, flats, 1.0, exact=False)
    assert ok.tolist() == [False, True, True, False]


@pytest.mark.parametrize("two_threads", [False, True])
def test_the_space_engines_progress_reaches_the_end_of_every_layer(monkeypatch, two_threads):
    """With a progress bar the compiled waves come back every few waves to report; each layer's reports end at
    fraction 1 (its last wave), fractions and cell counts never go back within a layer, and the count is the one
    without a bar (one thread, or the twin's cells counted as it goes)."""
    import cpa_theory.frontier3d as F3

    net = _random_net(np.random.default_rng(3), 3, (12, 12), None, relu)
    quiet = count_regions(net, np.zeros(3), 1.0)
    monkeypatch.setattr(F3.Frontier3D, "_TWO_THREADS_WORK", 1 if two_threads else 0)
    seen = []
    monkeypatch.setattr(FF._LayerProgress, "update", lambda self, li, frac, cells: seen.append((li, frac, cells)))
    import threading

    import cpa_theory.frontier_loops as FL

    helper_calls = []  # the second thread's compiled runs come back too (its cells are counted as it goes)
    monkeypatch.setattr(F3, "wave_run", lambda *a: (helper_calls.append(threading.current_thread()
                                                                         is not threading.main_thread()),
                                                    FL.wave_run(*a))[1])
    shown = count_regions(net, np.zeros(3), 1.0, progress=True)
    assert sum(helper_calls) >= (2 if two_threads else 0)
    assert (shown.regions, shown.linear_regions, shown.certified) == (quiet.regions, quiet.linear_regions, True)
    layers = sorted({li for li, _, _ in seen})
    assert layers == [0, 1]
    for layer in layers:
        mine = [(f, c) for li, f, c in seen if li == layer]
        assert mine[-1][0] == 1.0 and len(mine) >= 2
        assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(mine, mine[1:]))
