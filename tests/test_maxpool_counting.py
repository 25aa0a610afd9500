"""Exact counting through max-pooling (issue #14 items 1, 3, 6): the max-group layer's regions are its argmax
patterns, checked against a brute-force enumeration, a grid, the ReLU rewrite of max (negative control), and a
PyTorch CNN with MaxPool2d sliced through data."""

import copy
import itertools

import numpy as np
import pytest

from cpa_theory.activations import identity, relu
from cpa_theory.errors import CPAInputError, NetworkFormatError
from cpa_theory.maxgroups import MaxGroups, MaxGroupsUnsupportedError, pool_groups
from cpa_theory.network import Layer, Network
from cpa_theory.regions import count_regions

BOX = 1.5


# -- brute force: enumerate every (ReLU pattern, argmax pattern) and clip the window in float64 -------------------
def _clip(poly, a, b):
    """Sutherland–Hodgman: the part of the polygon (list of (x, y)) with a·p <= b."""
    out = []
    for i in range(len(poly)):
        p, q = np.asarray(poly[i]), np.asarray(poly[(i + 1) % len(poly)])
        fp, fq = a @ p - b, a @ q - b
        if fp <= 0:
            out.append(p)
        if (fp < 0 < fq) or (fq < 0 < fp):
            out.append(p + fp / (fp - fq) * (q - p))
    return out


def _area(poly):
    if len(poly) < 3:
        return 0.0
    P = np.asarray(poly)
    return 0.5 * abs(np.dot(P[:, 0], np.roll(P[:, 1], -1)) - np.dot(P[:, 1], np.roll(P[:, 0], -1)))


def _brute_force(W1, b1, relu_first, W2, b2, groups):
    """Number of (ReLU pattern, argmax-per-group) combinations whose polygon in [−BOX, BOX]² has positive area.
    ``relu_first``: a ReLU layer h = relu(W1 x + b1) precedes z = W2 h + b2; else z = W1 x + b1 directly."""
    box = [np.array(v, dtype=float) for v in ((-BOX, -BOX), (BOX, -BOX), (BOX, BOX), (-BOX, BOX))]
    n1 = len(b1)
    patterns = itertools.product((0, 1), repeat=n1) if relu_first else [None]
    count = 0
    for s in patterns:
        poly = box
        if s is None:
            Z, z0 = W1, b1
        else:
            for j in range(n1):  # active: W1_j x + b1_j >= 0, i.e. −W1_j x <= b1_j
                poly = _clip(poly, -W1[j], b1[j]) if s[j] else _clip(poly, W1[j], -b1[j])
            S = np.diag(np.asarray(s, dtype=float))
            Z, z0 = W2 @ S @ W1, W2 @ S @ b1 + b2
        for win in itertools.product(*[range(len(g)) for g in groups]):
            q = poly
            for g, w in zip(groups, win):
                a = g[w]
                for b in g:
                    if b != a:  # z_a >= z_b: (Z_b − Z_a) x <= z0_a − z0_b
                        q = _clip(q, Z[b] - Z[a], z0[a] - z0[b])
            if _area(q) > 1e-9:
                count += 1
    return count


def _grid_patterns(net, m=601):
    g = np.linspace(-BOX, BOX, m)
    X = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    code = net.condition().activation_code(X)
    return len({row.tobytes() for row in np.concatenate(code, axis=1).astype(np.int64)})


GROUPS = [[[0, 1, 2], [3, 4], [5]], [[0, 1, 2, 3]], [[0, 1], [1, 2], [2, 3, 0]], [[4, 2, 0], [1, 3, 5]]]


@pytest.mark.parametrize("case", range(4))
def test_max_layer_count_equals_brute_force_and_bounds_the_grid(case):
    rng = np.random.default_rng(100 + case)
    groups = GROUPS[case]
    n = 1 + max(max(g) for g in groups)
    W, b = rng.normal(size=(n, 2)), rng.normal(size=n) * 0.6
    net = Network(2, (Layer(W, b, MaxGroups(groups, n)),
                      Layer(rng.normal(size=(1, len(groups))), [0.0], identity())))
    res = count_regions(net, np.zeros(2), BOX)
    assert res.certified and res.complete and res.unmatched_facets == 0
    assert res.regions == _brute_force(W, b, False, None, None, groups)
    assert _grid_patterns(net) <= res.regions
    assert res.regions > len(groups)  # the cases are not trivial


@pytest.mark.parametrize("case", range(3))
def test_relu_then_max_count_equals_brute_force(case):
    rng = np.random.default_rng(200 + case)
    groups = [[[0, 1], [2, 3, 4]], [[0, 1, 2, 3]], [[0, 2], [1, 3], [4, 0]]][case]
    W1, b1 = rng.normal(size=(5, 2)), rng.normal(size=5) * 0.5
    W2, b2 = rng.normal(size=(5, 5)), rng.normal(size=5) * 0.3
    net = Network(2, (Layer(W1, b1, relu()), Layer(W2, b2, MaxGroups(groups, 5)),
                      Layer(rng.normal(size=(1, len(groups))), [0.0], identity())))
    res = count_regions(net, np.zeros(2), BOX)
    assert res.certified and res.complete
    assert res.regions == _brute_force(W1, b1, True, W2, b2, groups)
    assert _grid_patterns(net) <= res.regions


def test_three_way_tie_point_counts_argmax_not_orderings():
    """Three affine functions whose pairwise switching lines meet in one point inside W: their orderings make 6
    sectors, the argmax only 3 regions (a counter that splits by the losers' pair would report 6)."""
    W = np.array([[1.0, 0.0], [-0.5, 0.8], [-0.5, -0.8]])
    net = Network(2, (Layer(W, np.zeros(3), MaxGroups([[0, 1, 2]], 3)), Layer([[1.0]], [0.0], identity())))
    res = count_regions(net, np.array([0.1, -0.05]), 1.0, keep_regions=True, exact_recheck=True)
    assert res.certified and res.regions == 3 and res.hits == 3 and res.unmatched_facets == 0
    assert sorted(int(r.code[0][0]) for r in res.region_list) == [0, 1, 2]
    assert res.linear_regions == 3
    # with a zero read-out all three argmax regions carry one affine map: the facet adjacency across z_a = z_b
    # (argmax a ↔ b) must merge them into one maximal linear region
    flat = Network(2, (net.layers[0], Layer([[0.0]], [0.0], identity())))
    assert count_regions(flat, np.array([0.1, -0.05]), 1.0).linear_regions == 1
    # first-layer switching sets (C4 screen, hits) are the pairwise differences: normals w_a − w_b, offsets 0
    from cpa_theory.hyperplanes import switching_hyperplanes
    from cpa_theory.windows import window_hits

    hp = switching_hyperplanes(net)
    np.testing.assert_array_equal(hp.normals, [W[0] - W[1], W[0] - W[2], W[1] - W[2]])
    assert int(np.sum(window_hits(hp, np.array([5.0, 5.0]), 0.5))) == 0  # far away: no tie cuts the window
    G = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [1.0, 1.0]])
    dom = count_regions(net, polytope=(G, np.array([1.0, 1.0, 1.0, 1.0, 1.5])))
    assert dom.regions == 3 and dom.hits == 3 and dom.certified


def test_certifier_rejects_a_witness_on_a_tie():
    """The independent forward pass must refuse a witness where the maximum is attained twice (a switching set),
    unless the tie holds on the whole region (flat)."""
    from cpa_theory.regions import _certify_batch

    net = Network(2, (Layer(np.eye(2), np.zeros(2), MaxGroups([[0, 1]], 2)), Layer([[1.0]], [0.0], identity())))
    cond = net.condition()
    wit = np.array([[0.5, 0.5], [0.5, 0.25]])
    codes = [(np.array([0]), np.array([0])), (np.array([0]), np.array([0]))]
    ok = _certify_batch(cond, wit, np.array([0.1, 0.1]), codes, 1.0, False)
    assert ok.tolist() == [False, True]
    flats = [(np.array([True]), np.array([False]))] * 2
    assert _certify_batch(cond, wit, np.array([0.1, 0.1]), codes, 1.0, False, flats).tolist() == [True, True]
    wrong = [(np.array([1]), np.array([0]))] * 2  # argmax 1 where z_0 > z_1: refused
    assert not _certify_batch(cond, wit[1:], np.array([0.1]), wrong[:1], 1.0, False).any()


def test_relu_rewrite_of_max_counts_more_negative_control():
    """max(a, b) = b + relu(a − b): the same function as a ReLU network needs b carried through the ReLU layer
    (relu(b) − relu(−b)), which adds the switching set b = 0. The max-group layer must not count it."""
    rng = np.random.default_rng(7)
    A = rng.normal(size=(2, 2))
    c = np.array([0.05, -0.03])
    assert np.abs(np.linalg.solve(A, -c)).max() < 0.5  # a = b = 0 (both lines) meets inside W: 4 cells there
    mx = Network(2, (Layer(A, c, MaxGroups([[0, 1]], 2)), Layer([[1.0]], [0.0], identity())))
    rows = np.stack([A[0] - A[1], A[1], -A[1]])
    rw = Network(2, (Layer(rows, [c[0] - c[1], c[1], -c[1]], relu()), Layer([[1.0, 1.0, -1.0]], [0.0], identity())))
    x = rng.uniform(-1, 1, size=(200, 2))
    np.testing.assert_allclose(mx.forward(x), rw.forward(x), rtol=0, atol=1e-12)
    n_max = count_regions(mx, np.zeros(2), 1.0, keep_regions=True)
    n_rw = count_regions(rw, np.zeros(2), 1.0, keep_regions=True)
    assert n_max.certified and n_rw.certified
    assert n_max.regions == 2 and n_rw.regions == 4  # the b = 0 line is a switching set of the rewrite only
    maps = lambda res: {tuple(np.round(np.r_[r.out_A.ravel(), r.out_c], 9)) for r in res.region_list}  # noqa: E731
    assert maps(n_max) == maps(n_rw) and len(maps(n_max)) == 2  # the same two affine pieces of one function


def test_forward_numpy_jax_pieces_and_ties(rng):
    import jax.numpy as jnp

    mg = MaxGroups([[0, 3], [1, 2, 4], [5]], 6)
    z = rng.normal(size=(20, 6))
    ref = np.stack([z[:, [0, 3]].max(1), z[:, [1, 2, 4]].max(1), z[:, 5]], axis=1)
    np.testing.assert_array_equal(mg(z), ref)
    np.testing.assert_array_equal(np.asarray(mg(jnp.asarray(z), xp=jnp)), ref)
    np.testing.assert_array_equal(mg.piece_index(z)[:, 1], z[:, [1, 2, 4]].argmax(1))
    assert not mg.ties(z).any()
    z[0, 4] = z[0, 2] = 10.0
    assert mg.ties(z)[0].tolist() == [False, True, False] and mg.piece_index(z)[0, 1] == 1
    net = Network(6, (Layer(np.eye(6), np.zeros(6), mg), Layer(rng.normal(size=(2, 3)), np.zeros(2), relu())))
    cond = net.condition()
    np.testing.assert_allclose(np.asarray(cond.forward(jnp.asarray(z), xp=jnp)), cond.forward(z), atol=1e-14)
    A, c = cond.affine_map(z[3], 1)
    np.testing.assert_allclose(A @ z[3] + c, mg(z[3:4])[0], atol=1e-14)


def test_bad_groups_and_unsupported_uses_are_typed_errors(rng):
    for groups, n in (([[0, 5]], 3), ([[]], 3), ([[0, 0]], 3), ("ab", 3), ([[0]], 0)):
        with pytest.raises(CPAInputError):
            MaxGroups(groups, n)
    with pytest.raises(CPAInputError, match="rows"):
        Layer(np.eye(3), np.zeros(3), MaxGroups([[0, 1]], 2))
    net = Network(2, (Layer(rng.normal(size=(3, 2)), np.zeros(3), MaxGroups([[0, 1, 2]], 3)),))
    from numerics.lp_regions import count_regions_lp

    with pytest.raises(MaxGroupsUnsupportedError, match="max"):
        count_regions_lp(net, np.zeros(2), 0.5)


def test_file_round_trip_v2_and_v1_refused(tmp_path, rng):
    from cpa_theory.bn import BatchNorm
    from cpa_theory.fileformat import save_network
    from cpa_theory.fileformat_v2 import load_any_network, save_convnet

    bn = BatchNorm(6, "train", rng.normal(1, 0.2, 6), rng.normal(0, 0.2, 6))
    net = Network(2, (Layer(rng.normal(size=(6, 2)), rng.normal(size=6), MaxGroups([[0, 1, 2], [3, 4], [5]], 6), bn),
                      Layer(rng.normal(size=(2, 3)), rng.normal(size=2), relu())), rng.normal(size=(8, 2)))
    for sidecar in (False, True):
        path = tmp_path / f"mg{sidecar}.json"
        save_convnet(net, path, sidecar=sidecar)
        back = load_any_network(path)
        assert isinstance(back, Network) and back.layers[0].activation == net.layers[0].activation
        x = rng.normal(size=(30, 2))
        np.testing.assert_array_equal(back.forward(x), net.forward(x))
        assert count_regions(back, np.zeros(2), 1.0).regions == count_regions(net, np.zeros(2), 1.0).regions
    with pytest.raises(NetworkFormatError, match="cpa-network/2"):
        save_network(net, tmp_path / "v1.json")
    assert not (tmp_path / "v1.json").exists()


def test_pool_groups_match_maxpool_forward(rng):
    from cpa_theory.layers import MaxPool

    for pool, shape in ((MaxPool(2), (2, 4, 4)), (MaxPool(3, 2, 1), (1, 5, 5)), (MaxPool((2, 3), (1, 2), (1, 1), (1, 1)),
                                                                              (2, 4, 6))):
        mg = pool_groups(pool, shape)
        x = rng.normal(size=(5, *shape))
        np.testing.assert_array_equal(mg(x.reshape(5, -1)), pool(x).reshape(5, -1))


# -- a PyTorch CNN with MaxPool2d, sliced through data ---------------------------------------------------------------
def _torch_cnn(bn: bool):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(11)
    layers = [nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2) if bn else nn.Identity(), nn.ReLU(), nn.MaxPool2d(2),
              nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1), nn.Flatten(),
              nn.Linear(8, 3)]
    model = nn.Sequential(*layers).double()
    gen = torch.Generator().manual_seed(12)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.randn(2, generator=gen, dtype=torch.float64) * 0.3 + 1)
                m.bias.copy_(torch.randn(2, generator=gen, dtype=torch.float64) * 0.3)
                m.running_mean.copy_(torch.randn(2, generator=gen, dtype=torch.float64) * 0.2)
                m.running_var.copy_(torch.rand(2, generator=gen, dtype=torch.float64) + 0.5)
    return model


def _frozen_train_forward(model, batch, x):
    """PyTorch's train-mode function conditioned on ``batch`` at new points: BN statistics recorded on the batch
    (mean, biased variance) and replayed with F.batch_norm."""
    import torch
    import torch.nn.functional as F

    m = copy.deepcopy(model).train()
    stats = {}
    bns = [mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    hs = [b.register_forward_hook(lambda mod, i, o: stats.__setitem__(
        mod, (i[0].mean(dim=(0, 2, 3)), i[0].var(dim=(0, 2, 3), unbiased=False)))) for b in bns]
    with torch.no_grad():
        m(batch)
    for h in hs:
        h.remove()
    hs = [b.register_forward_hook(lambda mod, i, o: F.batch_norm(i[0], *stats[mod], mod.weight, mod.bias, False, 0.0,
                                                                  mod.eps)) for b in bns]
    with torch.no_grad():
        y = m(x)
    for h in hs:
        h.remove()
    return y.numpy()


@pytest.mark.parametrize("mode", ["train", "eval", "no_bn"])
def test_torch_maxpool_cnn_slice_matches_torch_and_counts_certified(mode):
    torch = pytest.importorskip("torch")
    from cpa_theory.importers_torch_fx import from_torch_convnet
    from cpa_theory.slices import count_on_slice, slice_network, slice_through_points

    model = _torch_cnn(bn=mode != "no_bn")
    gen = torch.Generator().manual_seed(13)
    batch = torch.randn(10, 1, 6, 6, generator=gen, dtype=torch.float64) + 0.5
    if mode == "eval":
        model.eval()
        net = from_torch_convnet(model, input_shape=(1, 6, 6)).network
    else:
        net = from_torch_convnet(model, batch).network
    X = batch.numpy().reshape(10, -1)
    sl = slice_through_points(X[0], X[1], X[2], margin=0.05)
    sn = slice_network(net, sl)
    assert any(isinstance(l.activation, MaxGroups) for l in sn.layers)
    t = np.random.default_rng(14).uniform(-sl.radius, sl.radius, size=(40, 2))
    x = torch.from_numpy(sl.embed(t).reshape(-1, 1, 6, 6))
    if mode == "train":
        ref = _frozen_train_forward(model, batch, x)
    else:
        with torch.no_grad():
            ref = model.eval()(x).numpy()
    np.testing.assert_allclose(sn.forward(t), ref, rtol=0, atol=1e-10)
    res = count_on_slice(net, sl, keep_regions=True)
    assert res.certified and res.complete and res.regions > 20
    # every region's witness has the region's argmax pattern in PyTorch's pools (the independent forward pass)
    cond = sn.condition()
    codes = cond.activation_code(np.array([r.witness for r in res.region_list]))
    for i, r in enumerate(res.region_list):
        assert all(np.array_equal(c[i], k) for c, k in zip(codes, r.code))


def _sparse_max_net(seed):
    """relu → hardtanh (flat pieces) → max groups → identity, with sparse integer weights: many pieces never
    reach the output (dead, saturated, or a group's loser), and some cancel exactly."""
    from cpa_theory.activations import hardtanh

    rng = np.random.default_rng(seed)
    W1 = rng.integers(-2, 3, size=(5, 2)).astype(float)
    W2 = rng.integers(-1, 2, size=(6, 5)).astype(float) * (rng.random((6, 5)) < 0.5)
    W3 = rng.integers(-2, 3, size=(2, 3)).astype(float)
    return Network(2, (Layer(W1, rng.integers(-1, 2, 5).astype(float), relu()),
                       Layer(W2, rng.integers(-1, 2, 6).astype(float), hardtanh()),
                       Layer(np.eye(6), np.zeros(6), MaxGroups([[0, 1], [2, 3, 4], [5]], 6)),
                       Layer(W3, np.zeros(2), identity())))


def _identical_pairs_are_equal(maps_identical, seeds=range(6), pairs=300):
    """Random code pairs (one to three entries changed): where ``maps_identical`` says the output maps are the
    same expression, the exact output maps (ExactCharts, rationals) are equal. Returns (proved, wrong)."""
    from cpa_theory.exact import ExactCharts

    proved = wrong = 0
    for seed in seeds:
        net = _sparse_max_net(seed)
        cond = net.condition()
        rng = np.random.default_rng(100 + seed)
        pieces = [np.full(5, 2), np.full(6, 3), np.array([2, 3, 1])]  # relu, hardtanh, group sizes
        cu = [rng.integers(0, k, (pairs, len(k))) for k in pieces] + [np.zeros((pairs, 2), dtype=np.int64)]
        cv = [c.copy() for c in cu]
        for t in range(pairs):
            for _ in range(rng.integers(1, 4)):
                layer = int(rng.integers(0, 3))
                j = int(rng.integers(0, len(pieces[layer])))
                cv[layer][t, j] = rng.integers(0, pieces[layer][j])
        same = maps_identical(cond, cu, cv)
        charts = ExactCharts(cond, np.zeros(2))
        for t in np.flatnonzero(same).tolist():
            a, b = tuple(c[t] for c in cu), tuple(c[t] for c in cv)
            proved += any(not np.array_equal(x, y) for x, y in zip(a, b))
            wrong += any(charts.output(a, o) != charts.output(b, o) for o in range(2))
    return proved, wrong


def test_maps_proved_identical_without_arithmetic_are_equal_in_rationals(monkeypatch):
    """confirm_same_maps skips the rational comparison for pairs whose differing pieces never reach the output
    (exact.maps_identical). Sound on random code pairs of nets with dead, flat and losing pieces; not vacuous
    (it proves many pairs whose codes differ); and a mutant that lets no change travel through a weight
    (ẑ never differs) claims equal maps that are not."""
    import cpa_theory.exact as EX

    proved, wrong = _identical_pairs_are_equal(EX.maps_identical)
    assert wrong == 0 and proved > 100
    monkeypatch.setattr(EX, "_reaches", lambda W, diff: np.zeros((len(diff), np.shape(W)[0]), dtype=bool))
    assert _identical_pairs_are_equal(EX.maps_identical)[1] > 0


def _banded_max_net(seed):
    """relu (dense) → relu reading two neighbours each → overlapping max pools → sparse read-out: every row's
    dependency cone is a small part of the code, as in a convolutional network's slice."""
    rng = np.random.default_rng(seed)
    W1 = np.zeros((8, 8))
    for j in range(8):
        W1[j, [j, (j + 1) % 8]] = rng.integers(1, 3, 2) * rng.choice([-1.0, 1.0], 2)
    W3 = np.zeros((4, 5))
    for j in range(4):
        W3[j, [j, j + 1]] = rng.integers(-2, 3, 2)
    return Network(2, (Layer(rng.integers(-2, 3, (8, 2)).astype(float), rng.integers(-1, 2, 8) * 0.5, relu()),
                       Layer(W1, rng.integers(-1, 2, 8).astype(float), relu()),
                       Layer(np.eye(8), np.zeros(8), MaxGroups([[0, 1, 2], [2, 3], [3, 4, 5], [5, 6], [6, 7]], 8)),
                       Layer(W3, np.zeros(4), relu()), Layer(np.ones((1, 4)), [0.0], identity())))


def _rows_along_a_walk(seed, steps=120):
    """Rows and outputs of ExactCharts along a walk of codes that change one entry per step, from one shared
    (cached) instance and from a fresh instance per code: ``(mismatches, rows computed by the shared one,
    rows requested)``."""
    from cpa_theory.exact import ExactCharts

    cond = _banded_max_net(seed).condition()
    rng = np.random.default_rng(seed)
    pieces = [np.full(8, 2), np.full(8, 2), np.array([3, 2, 3, 2, 2]), np.full(4, 2)]
    code = [rng.integers(0, k) for k in pieces]
    shared = ExactCharts(cond, np.array([0.25, -0.5]))
    wrong = asked = 0
    for _ in range(steps):
        layer = int(rng.integers(0, 4))
        j = int(rng.integers(0, len(pieces[layer])))
        code[layer] = code[layer].copy()
        code[layer][j] = rng.integers(0, pieces[layer][j])
        fresh = ExactCharts(cond, np.array([0.25, -0.5]))
        for l in range(4):
            prefix = tuple(code[:l])
            for n in range(len(cond.layers[l].weight)):
                asked += 1
                wrong += shared.row(prefix, n) != fresh.row(prefix, n)
        wrong += shared.output(tuple(code), 0) != fresh.output(tuple(code), 0)
    return wrong, len(shared._pre), asked


def test_exact_rows_are_cached_by_their_dependency_cone(monkeypatch):
    """ExactCharts keys a row by the code entries it reads (its dependency cone), so cells that differ elsewhere
    share it. Along walks of codes (one entry changed per step), the shared cache gives the rows and outputs of a
    fresh instance and computes under 1/12 of the rows it is asked for (whole-code keys: 1/9 to 1/5 on these
    walks); a cone that leaves out a dependency (mutant: no code entries in the key) returns rows of other cells."""
    import cpa_theory.exact as EX

    for seed in range(3):
        wrong, computed, asked = _rows_along_a_walk(seed)
        assert wrong == 0 and computed < asked / 12, (seed, computed, asked)  # whole-code keys: 1/9 to 1/5
    monkeypatch.setattr(EX.ExactCharts, "_cone", lambda self, kind, l, i: EX._NONE)
    assert _rows_along_a_walk(0)[0] > 0


def test_the_structural_shortcut_leaves_n_lin_unchanged(monkeypatch):
    """N_lin of max-pooling nets is the same with every float-equal pair compared in rationals (shortcut off)."""
    import cpa_theory.frontier as FR

    for seed in range(3):
        net = _sparse_max_net(seed)
        fast = count_regions(net, np.zeros(2), 1.5)
        with monkeypatch.context() as m:
            m.setattr(FR, "maps_identical", lambda cond, a, b: np.zeros(len(a[0]), dtype=bool))
            slow = count_regions(net, np.zeros(2), 1.5)
        assert fast.certified and (fast.regions, fast.linear_regions) == (slow.regions, slow.linear_regions)
        assert fast.linear_regions < fast.regions  # the nets do have equal maps across facets


def test_the_probe_decides_a_max_group_winner_that_float64_misplaces(monkeypatch):
    """Group {z_a, z_b}: z_a = −3·relu(x) + relu(x) + 2·relu(x) is exactly 0 for x > 0, float64 gives −1.1e-16 at
    x = fl(1/3); z_b = −5e-17. Exactly a wins, float64 says b. The probe's float pass leaves the group to the
    exact rows (its bound exceeds the gap) and finds a, as the exact forward pass does; with the bound removed
    (mutant) the float argmax is taken and the piece is wrong."""
    from fractions import Fraction

    import cpa_theory.facet_probe as FP
    from cpa_theory.exact import ExactCharts, exact_code

    W0 = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    W1 = np.array([[-3.0, 1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    net = Network(2, (Layer(W0, np.zeros(4), relu()), Layer(W1, np.array([0.0, -5e-17, 0.0]),
                                                            MaxGroups([[0, 1], [2]], 3)),
                      Layer(np.ones((1, 2)), [0.0], identity())))
    cond = net.condition()
    x = 1 / 3
    z = cond.layers[1].preactivation(cond.layers[0].forward(np.array([[x, 0.0]])))[0]
    assert z[0] < z[1]  # float64's view: b wins
    charts = ExactCharts(cond, np.zeros(2))
    c, a = [Fraction(x), Fraction(0)], (Fraction(0), Fraction(1))  # on the facet y = 0 of the region x, y > 0
    for side in (1, -1):
        got = FP.half_ball_code(cond, charts, c, a, side)
        truth = exact_code(cond, [Fraction(x), Fraction(side, 10**9)])
        assert truth[1][0] == 0 and all(np.array_equal(u, v) for u, v in zip(got, truth))
    real = FP._float_layer
    monkeypatch.setattr(FP, "_float_layer", lambda *args: (real(*args)[0], np.zeros(len(real(*args)[0]))))
    assert FP.half_ball_code(cond, charts, c, a, 1)[1][0] == 1  # the mutant takes float64's winner


def _pooled_relus(d, seed):
    """relu(integer rows) pooled in overlapping groups, then an integer read-out: many regions where a pool's
    members are all 0 (tied), so crossing one member's ReLU facet moves the argmax too."""
    rng = np.random.default_rng([d, seed])
    W = rng.integers(-2, 3, size=(6, d)).astype(float)
    b = rng.integers(-1, 2, size=6).astype(float) * 0.5
    groups = [[0, 1, 2], [3, 4], [4, 5], [1]]
    return Network(d, (Layer(W, b, relu()), Layer(np.eye(6), np.zeros(6), MaxGroups(groups, 6)),
                       Layer(rng.integers(-2, 3, size=(1, 4)).astype(float), [0.0], identity())))


def test_a_pool_of_dead_relus_merges_across_the_facet_that_moves_its_argmax(monkeypatch):
    """f = max(relu(x), relu(y)) − relu(y): 5 regions, 3 linear regions (0 on x < 0 and on y > x > 0; x; x − y).
    Crossing y = 0 where x < 0 flips relu(y) and the argmax of the tied pool (0 = 0) at once: the facet probe
    orders the tied members on each half-ball by their charts. A probe that gives up on ties (mutant) leaves
    N_lin 4; the LP oracle (tests/test_adjacency.py) agrees with 3, and on random pooled nets with the engine."""
    import cpa_theory.facet_probe as FP
    from test_adjacency import nlin_oracle

    net = Network(2, (Layer(np.eye(2), np.zeros(2), relu()),
                      Layer(np.eye(2), np.zeros(2), MaxGroups([[0, 1], [1]], 2)),
                      Layer(np.array([[1.0, -1.0]]), [0.0], identity())))
    res = count_regions(net, np.zeros(2), 1.0, keep_regions=True)
    assert (res.regions, res.linear_regions, res.certified) == (5, 3, True)
    assert nlin_oracle(res.region_list) == 3
    for d, seeds in ((2, range(10)), (3, (2, 3))):  # the previous probe gave a larger N_lin on 8 of these 12
        for seed in seeds:
            res = count_regions(_pooled_relus(d, seed), np.zeros(d), 1.0, keep_regions=True)
            assert res.certified and res.complete, (d, seed)
            assert res.linear_regions == nlin_oracle(res.region_list), (d, seed)
    monkeypatch.setattr(FP, "_half_ball_winner", lambda N, a, side: None if len(N) > 1 else 0)
    assert count_regions(net, np.zeros(2), 1.0).linear_regions == 4


def test_a_three_way_tie_facet_is_complete_and_a_dropped_neighbour_is_not(monkeypatch):
    """Pool [relu(−2y), relu(2x − 2y), relu(−2x − 2y)]: where all three are active, the argmax moves from
    member 1 (x > 0) to member 2 (x < 0) across x = 0, where all three tie; the two sides record that facet under
    different member pairs (0, 1) and (0, 2), so the facet-measure balance per pair cannot hold (it left this
    window incomplete). The facet probe proves each side's neighbour, so the count is complete; with a region
    beside the tie dropped from every enumeration it is not."""
    import cpa_theory.regions as R

    net = _pooled_relus(2, 8)
    assert np.array_equal(net.layers[0].weight[:3], [[0, -2], [2, -2], [-2, -2]])
    full = count_regions(net, np.zeros(2), 1.0)
    assert full.certified and full.complete and full.unmatched_facets > 0 and full.regions == 22
    orig = R._leaves

    def drop(*args, **kw):  # the first region with a facet on a tie of pool 0
        done = False
        for leaf in orig(*args, **kw):
            if done or not any(H.key[:2] == (1, 0) for H, _ in leaf.P.facet_list()):
                yield leaf
            else:
                done = True

    monkeypatch.setattr(R, "_leaves", drop)
    res = count_regions(net, np.zeros(2), 1.0)
    assert res.regions == 21 and res.complete is False and res.certified is False


def test_a_pool_with_repeated_members_tied_four_ways_is_one_linear_region():
    """Referee's case: max over {0, u, u, −u} (u = −2x + y, a member repeated) read out with weight 0. Two
    regions (argmax −u where u < 0, the first copy of u where u > 0) meet on u = 0 where all four tie; each side
    names that facet by another member pair. Before: N_lin 2, not certified, not complete; the probe orders the
    tied members on each half-ball, so the one linear region and completeness are proven."""
    W = np.array([[2.0, -1.0], [-2.0, 1.0], [0.0, 0.0], [-2.0, 1.0], [-2.0, 1.0]])
    net = Network(2, (Layer(W, np.zeros(5), MaxGroups([[2, 4, 1, 0]], 5)), Layer([[0.0]], [0.0], identity())))
    res = count_regions(net, np.zeros(2), 1.0)
    assert (res.regions, res.linear_regions, res.certified, res.complete) == (2, 1, True, True)


def test_a_pair_constant_on_a_cell_below_float_resolution_is_decided_once_and_exactly(monkeypatch):
    """Group {z_a, z_b}: z_a = −3·relu(x) + relu(x) + 2·relu(x) has float normal exactly 0 where x > 0 but a
    nonzero error bound (its inputs are live), and is exactly 0; z_b = −5e-17. float64 cannot decide z_a − z_b
    = 5e-17 on that cell; refinement decides it once per cell in rationals: a wins everywhere, every witness's
    exact code agrees, one linear region. An exact constant with its sign flipped (mutant) names b the winner
    where x > 0: its witnesses disagree with the exact forward pass (not certified) and N_lin becomes 2."""
    from fractions import Fraction

    import cpa_theory.exact as EX
    from cpa_theory.exact import exact_code

    W0 = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    W1 = np.array([[-3.0, 1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    net = Network(2, (Layer(W0, np.zeros(4), relu()),
                      Layer(W1, np.array([0.0, -5e-17]), MaxGroups([[0, 1]], 2)),
                      Layer(np.array([[1.0]]), [0.0], identity())))
    cond = net.condition()

    def run():
        res = count_regions(net, np.array([0.5, 0.3]), 1.0, keep_regions=True)
        agree = all(all(np.array_equal(u, v) for u, v in
                        zip(r.code, exact_code(cond, [Fraction(float(t)) for t in r.witness])))
                    for r in res.region_list)
        return res, agree

    res, agree = run()
    assert (res.regions, res.linear_regions, res.certified, res.complete, agree) == (4, 1, True, True, True)
    assert sum(r.code[1][0] == 0 for r in res.region_list) == 4
    real = EX.ExactCharts.difference

    def flipped(self, codes, a, b):  # mutant: the exact constant of a pair with zero normal has its sign flipped
        n, beta = real(self, codes, a, b)
        return n, (-beta if not any(n) else beta)

    monkeypatch.setattr(EX.ExactCharts, "difference", flipped)
    res, agree = run()
    assert not agree and not res.certified and res.linear_regions == 2
