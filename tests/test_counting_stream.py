"""Streaming certification with bounded memory (issue 12, item 3's d = 4–6 part).

``count_regions(..., engine="cells")`` (the cell engine; d = 2, 3 default to the flat engines) certifies regions
in chunks as they leave the depth-first refinement and keeps only compact
codes, neighbour deltas and output maps. The reference here is the previous design, written out in the test:
all leaves in a list, certified at once, facets matched through a dict of code keys, N_lin by a Python
union-find over the adjacent pairs, and the facet-measure balance over the kept cells.
"""

import gc
import math
import re
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import cpa_theory.regions as R
from cpa_theory import Layer, Network, identity, relu
from cpa_theory.polytope import Polygon, Polytope, cell_volumes, facet_measures
from cpa_theory.tolerances import AFFINE_MAP_RTOL, FACET_BALANCE_RTOL, VOLUME_SUM_RTOL

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_counting_exact import _activations, _random_net  # noqa: E402


# -- the in-memory reference -------------------------------------------------------------------------------------
def _key(code) -> bytes:
    return b"|".join(np.asarray(c, dtype=np.int64).tobytes() for c in code)


def reference_count(net, center, radius):
    """Every field of the result the streaming path must reproduce, from all leaves held at once."""
    cond = R._conditioned(net)
    win, p, root, vol_w = R._setup(cond, np.asarray(center, float), radius, None)
    stats = {}
    leaves = list(R._leaves(cond, win, p, root, stats))
    n = len(leaves)
    cys = np.array([lf.P.interior_point() for lf in leaves])
    errs = np.array([lf.P.err.max() for lf in leaves]) + R.U * np.abs(cys).max(axis=1) * 4
    wit = cys + p
    rad = R._inradii(leaves, cys, errs) - 2 * R.U * np.abs(wit).max(axis=1)
    ok = R._certify_batch(cond, wit, rad, [lf.code for lf in leaves], win.radius, False, [lf.flat for lf in leaves])
    p_exact = [Fraction(float(v)) for v in p]
    n_exact = 0
    for i in np.flatnonzero(~ok):
        got = R._exact_witness(cond, leaves[i], p_exact)
        if got is not None:
            rad[i], ok[i] = float(got[1]), True
            n_exact += 1
    vol_ok = abs(cell_volumes([lf.P for lf in leaves]).sum() - vol_w) <= VOLUME_SUM_RTOL * vol_w
    # adjacency through a dict of code keys
    index = {_key(lf.code): i for i, lf in enumerate(leaves)}
    pairs, unmatched = [], []
    for i, lf in enumerate(leaves):
        for fi, (H, _) in enumerate(lf.P.facet_list()):
            if isinstance(H.key[0], str):
                continue
            layer, j, k = H.key[:3]
            piece = int(lf.code[layer][j])
            other = k if piece == k + 1 else (k + 1 if piece == k else None)
            nb = None
            if other is not None:
                code = [np.asarray(c).copy() for c in lf.code]
                code[layer][j] = other
                nb = index.get(_key(code))
            if nb is None:
                unmatched.append((i, fi))
            elif nb > i:
                pairs.append((i, nb))
    balanced = True
    if unmatched:
        keys = {}
        for i, fi in unmatched:
            H = leaves[i].P.facet_list()[fi][0]
            keys[(*H.key[:3], _key(H.key[3]))] = [0.0, 0.0]
        for lf in leaves:
            meas = None
            for fi, (H, s) in enumerate(lf.P.facet_list()):
                if not isinstance(H.key[0], str) and (*H.key[:3], _key(H.key[3])) in keys:
                    meas = facet_measures(lf.P) if meas is None else meas
                    keys[(*H.key[:3], _key(H.key[3]))][s > 0] += float(meas[fi])
        balanced = all(abs(a - b) <= FACET_BALANCE_RTOL * max(a, b, 1e-300) and a > 0 for a, b in keys.values())
    complete = bool(vol_ok and balanced)
    # N_lin: union-find over adjacent regions with the same output map
    parent = list(range(n))

    def find(u):
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    maps = [(lf.A, lf.c - lf.A @ p) for lf in leaves]
    for u, v in pairs:
        same = all(np.all(np.abs(a - b) <= AFFINE_MAP_RTOL * (1.0 + max(np.abs(a).max(), np.abs(b).max())))
                   for a, b in zip(maps[u], maps[v]))
        if same:
            parent[find(u)] = find(v)
    n_lin = len({find(i) for i in range(n)})
    return {"regions": n, "linear_regions": n_lin, "certified": bool(ok.all()) and complete, "complete": complete,
            "uncertified": int((~ok).sum()), "min_witness_radius": float(rad[ok].min()),
            "exact_fallbacks": int(stats.get("exact_fallbacks", 0)), "exact_witnesses": n_exact,
            "unmatched_facets": len(unmatched)}


def _fields(res):
    return {k: getattr(res, k) for k in ("regions", "linear_regions", "certified", "complete", "uncertified",
                                         "min_witness_radius", "exact_fallbacks", "exact_witnesses",
                                         "unmatched_facets")}


def _small_chunks(monkeypatch):
    """Many chunks and frontier batches even on small nets (every boundary of the streaming path is crossed)."""
    monkeypatch.setattr(R, "_BATCH", 7)
    monkeypatch.setattr(R, "_STREAM_CHUNK", 13)
    monkeypatch.setattr(R, "_LOOKUP_CHUNK", 50)


# -- equality with the in-memory reference ----------------------------------------------------------------------
@pytest.mark.parametrize("d, widths, r", [(2, (8, 6), 1.0), (3, (6, 5), 0.8), (4, (5, 4), 0.8), (5, (6, 4), 0.7)])
@pytest.mark.parametrize("mode", ["train", "eval", None])
def test_streaming_equals_the_in_memory_reference(monkeypatch, d, widths, r, mode):
    _small_chunks(monkeypatch)
    rng = np.random.default_rng(100 + d * 10 + (0 if mode is None else len(mode)))
    acts = _activations()
    total = 0
    # relu (codes as bits), hardtanh (a uint8 per neuron), |x|; in d = 5 hardtanh only (fewer, larger nets)
    for i in (0, 2, 5) if d <= 3 else ((0, 2) if d == 4 else (2,)):
        net = _random_net(rng, d, widths, mode, acts[i])
        center = rng.normal(size=d) * 0.2
        got = R.count_regions(net, center, r, engine="cells")
        want = reference_count(net, center, r)
        assert _fields(got) == want, (d, mode, i)
        assert got.certified, (d, mode, i)
        total += got.regions
        kept = R.count_regions(net, center, r, keep_regions=True, engine="cells")
        assert _fields(kept) == want and len(kept.region_list) == want["regions"]
        assert len({R._code_key(reg.code) for reg in kept.region_list}) == want["regions"]
    assert total > 10  # enough regions to cross chunk boundaries (chunks of 13)


def _coincident_net(d):
    """Neurons 0 and 1 share one switching set (w and 2w, offsets 0 and 0): facets on it match no single-neuron
    neighbour, so completeness needs the facet-measure balance (a second enumeration in the streaming path)."""
    rng = np.random.default_rng(7 + d)
    W = rng.normal(size=(5, d))
    W[1] = 2 * W[0]
    b = rng.normal(size=5) * 0.2
    b[0] = b[1] = 0.0
    return Network(d, (Layer(W, b, relu()), Layer(rng.normal(size=(3, 5)), rng.normal(size=3) * 0.2, relu()),
                       Layer(np.ones((1, 3)), [0.0], identity())))


@pytest.mark.parametrize("d", [2, 3])
def test_coincident_switching_sets_balance_in_the_streaming_path(monkeypatch, d):
    _small_chunks(monkeypatch)
    net = _coincident_net(d)
    got = R.count_regions(net, np.zeros(d), 1.0, engine="cells")
    want = reference_count(net, np.zeros(d), 1.0)
    assert _fields(got) == want
    assert got.unmatched_facets > 0 and got.complete and got.certified  # the balance ran and holds


@pytest.mark.parametrize("d", [2, 3])
def test_a_dropped_region_next_to_coincident_sets_is_caught(monkeypatch, d):
    """The balance's second enumeration must see the same regions as the first: drop one next to the coincident
    switching set and the count is incomplete (negative control: without the drop it is complete)."""
    _small_chunks(monkeypatch)
    net = _coincident_net(d)
    full = R.count_regions(net, np.zeros(d), 1.0, engine="cells")
    assert full.complete
    orig = R._leaves

    def drop(*args, **kw):  # every enumeration drops the first region with a facet on neuron (0, 0)
        done = False
        for leaf in orig(*args, **kw):
            if done or not any(H.key[:2] == (0, 0) for H, _ in leaf.P.facet_list()):
                yield leaf
            else:
                done = True

    monkeypatch.setattr(R, "_leaves", drop)
    res = R.count_regions(net, np.zeros(d), 1.0, engine="cells")
    assert res.regions == full.regions - 1
    assert res.complete is False and res.certified is False


# -- a 5-D cell Qhull's precision check refuses ----------------------------------------------------------------
#: the vertices of one region of a 5-D hardtanh net (seed 155 in the test above at r = 0.8): plain Qhull raises
#: QH6297 on this well-shaped cell (volume 6.3e-4), and the counter then reported the window incomplete
_REFUSED_CELL = np.array([
    (0.4909360672980515, -0.5647200195444464, 0.78893098970551, 1.0007370447575483, -0.8752131815088044),
    (0.36507372902283186, -0.526624342938826, 0.78893098970551, 1.0007370447575483, -0.8752131815088044),
    (0.43603152320239247, -0.5721058265756374, 0.78893098970551, 0.9039546339050626, -0.8752131815088044),
    (0.505083393266896, -0.33310962357227897, 0.78893098970551, 1.0007370447575483, -0.8752131815088044),
    (0.38112291075738197, -0.35100681884266144, 0.78893098970551, 0.7823596581945622, -0.8752131815088044),
    (0.6270754493994066, -0.3995295480884421, 0.78893098970551, 1.0007370447575483, -0.5149985708884317),
    (0.422525389677985, -0.42832834142808385, 0.78893098970551, 0.6422640769723742, -0.5181439953526301),
    (0.5572818045330821, -0.6058929984258408, 0.7074684377370761, 1.0007370447575483, -0.8752131815088044),
    (0.38089453705416054, -0.536163469205305, 0.7705829516535319, 1.0007370447575483, -0.8752131815088044),
    (0.5729415117448655, -0.6544874208535263, 0.6250251800591761, 0.9099828428691015, -0.8752131815088044),
    (0.32550669758449846, -0.4502027101420216, 0.78893098970551, 1.0007370447575483, -0.8752131815088044),
    (0.31250443824672347, -0.24240157121262917, 0.78893098970551, 1.0007370447575483, -0.8752131815088044),
    (0.22132066330977684, -0.2128057270374908, 0.78893098970551, 0.9625110516470543, -0.8752131815088044),
    (0.18097590172450806, -0.18113916673120334, 0.78893098970551, 1.0007370447575483, -0.8474786675980572),
    (0.5857671583364712, -0.3617443835451598, 0.6914124972010793, 1.0007370447575483, -0.8752131815088044),
    (0.63276571275963, -0.44710989330827955, 0.46833404522076805, 0.7583848704175807, -0.8752131815088044),
    (0.0994338946283414, -0.18158359819919623, 0.78893098970551, 1.0007370447575483, -0.4133536132736507),
    (0.6397508165029124, -0.40431351553297545, 0.7754310493436504, 1.0007370447575483, -0.5105518846568163),
    (0.4869860601904654, -0.3345261152264707, 0.7889309897055099, 1.0007370447575483, -0.47555314521969694),
    (0.17286399910999617, -0.2255506707056666, 0.78893098970551, 0.8941579899125478, -0.40516400142471876),
    (0.5050396836234008, -0.46549948524218887, 0.6886590601275748, 0.6218772158109392, -0.4852947483257978),
    (0.7942813709599322, -0.6866927225111888, 0.4608419582211112, 1.0007370447575483, -0.779592135064222),
    (0.5599134211066246, -0.5880573334972578, 0.46957370608404725, 1.0007370447575483, -0.7351985343591777),
    (0.7635996616317793, -0.7411913370188842, 0.3934333677738425, 0.8644474010362881, -0.8014593737255566),
    (0.07817973644993725, -0.14373739296949173, 0.78893098970551, 1.0007370447575483, -0.40454382232769015),
    (0.8464618520908611, -0.46104787605066705, 0.41957042977674597, 1.0007370447575483, -0.7695599944491762),
    (0.7954345928734892, -0.5200559959163518, 0.2703720013983063, 0.718931653580831, -0.8123882367259256),
    (0.3109727084137299, -0.22438545173887348, 0.5763004585289497, 1.0007370447575483, -0.7492526045748721),
    (0.41145603274499154, -0.28046159794714737, 0.43617258266998854, 1.0007370447575483, -0.6873620896469212),
    (0.24888341056607377, -0.20223372177719856, 0.5993404164841554, 1.0007370447575483, -0.553056459837924),
    (0.4424345323828649, -0.2738662930669128, 0.4319001245789624, 1.0007370447575483, -0.6916508254835552),
    (0.4453219720345232, -0.2849651846137767, 0.41400707170832607, 0.9674545243272776, -0.6984279375143246),
])


def test_a_cell_qhull_refuses_still_gets_its_volume():
    import math
    from types import SimpleNamespace

    from scipy.spatial import ConvexHull, Delaunay, QhullError

    from cpa_theory.polytope import cell_volume

    with pytest.raises(QhullError):  # the fixture still exercises the refused case
        ConvexHull(_REFUSED_CELL)
    S = _REFUSED_CELL[Delaunay(_REFUSED_CELL).simplices]  # independent: a triangulation's simplex volumes
    want = np.abs(np.linalg.det(S[:, 1:] - S[:, :1])).sum() / math.factorial(5)
    assert cell_volume(SimpleNamespace(V=_REFUSED_CELL)) == pytest.approx(want, rel=1e-7)


# -- bounded memory ------------------------------------------------------------------------------------------------
def _live_cells() -> int:
    return sum(1 for o in gc.get_objects() if type(o) in (Polytope, Polygon))


def test_cells_are_dropped_once_certified(monkeypatch):
    """Live cells stay O(depth × batch + chunk) while thousands of regions stream past (the old counter held every
    cell until the end, and its frontier held a whole layer's children)."""
    _small_chunks(monkeypatch)
    rng = np.random.default_rng(3)
    net = Network(3, (Layer(rng.normal(size=(14, 3)), rng.normal(size=14) * 0.3, relu()),
                      Layer(rng.normal(size=(8, 14)) / 3, rng.normal(size=8) * 0.3, relu()),
                      Layer(np.ones((1, 8)), [0.0], identity())))
    orig = R._leaves
    peak = [0]

    def watched(*args, **kw):
        for i, leaf in enumerate(orig(*args, **kw)):
            if i % 97 == 0:
                peak[0] = max(peak[0], _live_cells())
            yield leaf

    monkeypatch.setattr(R, "_leaves", watched)
    gc.collect()
    base = _live_cells()
    res = R.count_regions(net, np.zeros(3), 1.0, engine="cells")
    assert res.certified and res.regions > 1000
    # per layer: a parent batch (7), the split stack of one cell (≤ 2 × 14 + 1), ≤ 7 children; plus a chunk (13)
    assert peak[0] - base <= 3 * (7 + 2 * 14 + 1 + 7) + 13 + 10, (peak[0] - base, res.regions)


def test_region_table_memory_is_a_few_hundred_bytes_per_region():
    rng = np.random.default_rng(4)
    net = Network(4, (Layer(rng.normal(size=(10, 4)), rng.normal(size=10) * 0.2, relu()),
                      Layer(rng.normal(size=(8, 10)) / 3, rng.normal(size=8) * 0.2, relu()),
                      Layer(np.ones((1, 8)), [0.0], identity())))
    cond = R._conditioned(net)
    win, p, root, _ = R._setup(cond, np.zeros(4), 0.6, None)
    table = R._RegionTable(cond, linear=True)
    leaves = list(R._leaves(cond, win, p, root, {}))
    table.add(leaves, p)
    assert table.book.bits and table.book.width == 3  # 19 neurons in 3 bytes
    per_region = table.nbytes() / table.n
    facets = np.mean([sum(not isinstance(H.key[0], str) for H, _ in lf.P.facet_list()) for lf in leaves])
    assert per_region == pytest.approx(3 + 4 + 3 * facets + 8 * 5 + 16, rel=1e-9)  # the bound in the docstring


# -- progress ------------------------------------------------------------------------------------------------------
def test_a_slow_window_shows_regions_and_fraction_of_w_in_the_cli(monkeypatch, capsys, tmp_path):
    """`cpa-theory count` on one window (progress=None): past the threshold, on a terminal, the bar appears on
    stderr with the regions so far and the fraction of vol(W); stdout stays the JSON."""
    import json

    from cpa_theory import save
    from cpa_theory.cli import main

    rng = np.random.default_rng(2)
    net = Network(4, (Layer(rng.normal(size=(12, 4)), rng.normal(size=12) * 0.3, relu()),  # d = 4: cell engine
                      Layer(np.ones((1, 12)), [0.0], identity())))
    save(net, tmp_path / "n.json")
    monkeypatch.setattr(R, "_STREAM_CHUNK", 5)
    monkeypatch.setattr(R, "_PROGRESS_AFTER_S", 0.0)
    monkeypatch.setattr(R, "_is_terminal", lambda stream: True)
    args = ["count", str(tmp_path / "n.json"), "--center", "0,0,0,0", "--radius", "1", "--json"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["certified"] is True
    assert "counting regions" in err and "% of W" in err
    assert re.search(r"\b\d+ regions\b", err)  # the regions counted so far
    # the plane engine (d = 2) shows layers and cells under the same rule
    net2 = Network(2, (Layer(rng.normal(size=(12, 2)), rng.normal(size=12) * 0.3, relu()),
                       Layer(rng.normal(size=(6, 12)), rng.normal(size=6) * 0.3, relu()),
                       Layer(np.ones((1, 6)), [0.0], identity())))
    save(net2, tmp_path / "m.json")
    args2 = ["count", str(tmp_path / "m.json"), "--center", "0,0", "--radius", "1", "--json"]
    assert main(args2) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["certified"] is True
    assert "counting regions" in err and re.search(r"layer \d/3, \d+ cells", err)
    # negative control: not a terminal → no bar, for either engine
    monkeypatch.setattr(R, "_is_terminal", lambda stream: False)
    assert main(args) == 0 and main(args2) == 0
    assert "counting regions" not in capsys.readouterr().err


def _window_cells(d, seed, width):
    """The cells (y-coordinates) of a random ReLU net d → width → 4 → 1 on W(0, 1), and vol(W)."""
    rng = np.random.default_rng(seed)
    net = Network(d, (Layer(rng.normal(size=(width, d)), rng.normal(size=width) * 0.3, relu()),
                      Layer(rng.normal(size=(4, width)) / 2, rng.normal(size=4) * 0.3, relu()),
                      Layer(np.ones((1, 4)), [0.0], identity())))
    cond = R._conditioned(net)
    win, p, root, vol_w = R._setup(cond, np.zeros(d), 1.0, None)
    return [lf.P for lf in R._leaves(cond, win, p, root, {})], vol_w


@pytest.mark.parametrize("d", [4, 5])
def test_simple_cell_volumes_in_high_dimension_equal_qhull(monkeypatch, d):
    """cell_volumes' face-lattice pass (simple polytopes, d ≥ 4) equals Qhull's hull volume cell by cell; a wrong
    factor or distance in the cone decomposition breaks the per-cell equality."""
    from scipy.spatial import ConvexHull

    import cpa_theory.polytope as PT
    from cpa_theory.polytope import _is_simple, _volumes_simple

    cells, vol_w = _window_cells(d, seed=20 + d, width=7)
    assert len(cells) > 30 and all(_is_simple(P) for P in cells)
    got = _volumes_simple(cells)
    want = np.array([ConvexHull(P.V).volume for P in cells])
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-15 * vol_w)
    assert abs(cell_volumes(cells).sum() - vol_w) <= 1e-9 * vol_w
    # no Lawrence direction: cell_volumes takes every cell through the face lattice, in many groups of a few
    # cells: the same volumes in place
    monkeypatch.setattr(PT, "_lawrence_directions", lambda k: np.zeros((1, k)))
    monkeypatch.setattr(PT, "_SIMPLE_ROWS", 700)
    np.testing.assert_allclose(cell_volumes(cells), want, rtol=1e-8, atol=1e-15 * vol_w)


@pytest.mark.parametrize("d", [4, 5, pytest.param(6, marks=pytest.mark.slow)])  # d = 6: 16 s
def test_lawrence_volumes_equal_qhull_and_fall_back_where_their_error_estimate_is_large(monkeypatch, d):
    """cell_volumes takes simple d ≥ 4 cells' volumes from Lawrence's vertex formula where its error estimate is
    small: those equal the face-lattice cone decomposition's (checked against Qhull above) cell by cell, and sum
    to vol(W); a formula with a wrong factorial is caught by the same comparison; with a useless direction
    (c = 0) every cell falls back to the face lattice and the volumes are unchanged."""
    import cpa_theory.polytope as PT
    from cpa_theory.polytope import _is_simple, _volumes_lawrence, _volumes_simple

    cells, vol_w = _window_cells(d, seed=40 + d, width=8)
    cells = [P for P in cells if _is_simple(P)]
    want = _volumes_simple(cells)
    vol, ok = _volumes_lawrence(cells)
    assert len(cells) > 30 and ok.mean() > 0.7
    np.testing.assert_allclose(vol[ok], want[ok], rtol=1e-8)
    got = cell_volumes(cells)
    np.testing.assert_allclose(got, want, rtol=1e-8)
    assert abs(got.sum() - vol_w) <= 1e-9 * vol_w
    with monkeypatch.context() as m:  # many groups of a few cells: the same volumes in place
        m.setattr(PT, "_LAWRENCE_ENTRIES", 40 * d * d)
        np.testing.assert_array_equal(cell_volumes(cells), got)
    # negative control: a mutated formula (d!/d instead of d!) fails the same comparison
    factorial = math.factorial
    with monkeypatch.context() as m:
        m.setattr(PT.math, "factorial", lambda k: factorial(k) // k)
        bad, bad_ok = _volumes_lawrence(cells)
    assert bad_ok.any() and not np.allclose(bad[bad_ok], want[bad_ok], rtol=1e-8)
    # no usable direction: nothing passes the estimate, the face lattice gives the same volumes
    monkeypatch.setattr(PT, "_lawrence_directions", lambda k: np.zeros((1, k)))
    assert not _volumes_lawrence(cells)[1].any()
    np.testing.assert_allclose(cell_volumes(cells), got, rtol=1e-8)
