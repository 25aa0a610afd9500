"""Random ensembles (numerics.ensembles) and the sweep's ensemble kernel against the core criterion and counter."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cpa_theory import switching_hyperplanes, window_hits
from cpa_theory.errors import CPAInputError
from numerics.ensembles import Distribution, EnsembleSpec, dataset, draw_network, num_windows, to_networks
from numerics.sweep import SweepConfig, _one_network, grid_points, run_point

KEY = jax.random.key(7)


def o3(n, d):
    return 2 * sum(math.comb(n - 1, k) for k in range(d))


@pytest.mark.parametrize("windows", ["distance", "centroid", "batch", "heldout", "grid"])
@pytest.mark.parametrize("source,d", [("gaussian", 3), ("moons", 2)])
def test_sweep_ensemble_draws_are_deterministic_and_shaped(windows, source, d):
    spec = EnsembleSpec(d=d, widths=(5, 4), batch_source=source, windows=windows, heldout=3, grid_size=3)
    a = draw_network(KEY, spec, 6, 0.5, 1.0, jnp.float64)
    b = draw_network(KEY, spec, 6, 0.5, 1.0, jnp.float64)
    assert [w.shape for w in a["W"]] == [(5, d), (4, 5), (1, 4)]
    assert a["batch"].shape == (6, d)
    assert a["centers"].shape == (num_windows(spec, 6), d)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(x, y)
    c = draw_network(jax.random.key(8), spec, 6, 0.5, 1.0, jnp.float64)
    assert not np.array_equal(a["W"][0], c["W"][0])  # another key, another network
    if windows == "distance":
        np.testing.assert_allclose(np.linalg.norm(a["centers"][0] - a["batch"].mean(0)), 1.0, rtol=1e-12)
    if windows == "heldout" and source == "moons":  # held-out dataset points are not batch points
        assert not any(np.any(np.all(a["batch"] == h, axis=1)) for h in a["centers"])


def test_sweep_ensemble_datasets_are_sklearn_bundled_and_standardised():
    for name, d in (("moons", 2), ("digits", 64)):
        X = dataset(name)
        assert X.shape[1] == d and np.all(np.isfinite(X))
        assert np.allclose(X.mean(0), 0, atol=1e-12)
    spec = EnsembleSpec(d=64, widths=(8,), batch_source="digits", windows="batch")
    draw = draw_network(KEY, spec, 10, 1.0, 0.0, jnp.float64)
    rows = {tuple(r) for r in np.asarray(dataset("digits"))}
    assert all(tuple(x) in rows for x in np.asarray(draw["batch"]))


def test_sweep_ensemble_bad_settings_are_typed_errors():
    with pytest.raises(CPAInputError, match="set d = 64"):
        EnsembleSpec(d=2, batch_source="digits")
    with pytest.raises(CPAInputError, match="batch_source"):
        EnsembleSpec(batch_source="mnist")
    with pytest.raises(CPAInputError, match="too large"):
        EnsembleSpec(d=8, windows="grid", grid_size=5)
    with pytest.raises(CPAInputError, match="not a distribution"):
        Distribution.parse({"dist": "cauchy"}, "gamma")
    with pytest.raises(CPAInputError, match="low <= high"):
        Distribution.parse({"dist": "uniform", "low": 2, "high": 1}, "gamma")
    with pytest.raises(CPAInputError):
        SweepConfig.from_dict({"activation": {"name": "cpa", "breakpoints": [0, 1], "values": [0, 1],
                                              "left_slope": 1, "right_slope": 1}})  # not a breakpoint at 1? slopes
    with pytest.raises(CPAInputError, match="d <= 4"):
        SweepConfig.from_dict({"d": 8, "count_networks": 2})


@pytest.mark.parametrize("activation", ["relu", "hardtanh", {"name": "leaky_relu", "negative_slope": 0.2},
                                        {"name": "cpa", "breakpoints": [-1, 0.5, 2], "values": [0, 1, 0.5],
                                         "left_slope": 0.0, "right_slope": 1.0}])
def test_sweep_kernel_matches_core_criterion_on_the_same_networks(activation):
    # the kernel's h_BN / h_plain vs switching_hyperplanes + window_hits on the core Network of the same draw
    spec = EnsembleSpec(d=3, widths=(20, 6), activation=activation, windows="batch",
                        gamma=Distribution("signed_uniform", 0.5, 2.0), beta=Distribution("normal", 0.0, 1.0))
    for i in range(4):
        key = jax.random.fold_in(KEY, i)
        h_bn, h_plain, *_ = _one_network(key, spec, 8, 0.7, 0.4, 0.0, jnp.float64)
        draw = draw_network(key, spec, 8, 0.7, 0.0, jnp.float64)
        bn_net, plain_net = to_networks(jax.tree_util.tree_map(np.asarray, draw), spec)
        X = np.asarray(draw["centers"])
        ref_bn = window_hits(switching_hyperplanes(bn_net), X, 0.4).mean()
        ref_plain = window_hits(switching_hyperplanes(plain_net), X, 0.4).mean()
        assert float(h_bn) == ref_bn and float(h_plain) == ref_plain


def test_sweep_counts_E_N_exactly_C5_at_the_centroid_and_not_far_from_it():
    cfg = SweepConfig(seed=4, d=2, widths=(7,), networks=16, count_networks=6, distances=(0.0, 4.0),
                      bias_scales=(1.0,), radii=(0.2,))
    near, far = (run_point(cfg, p) for p in grid_points(cfg))
    # C5 + O3: ReLU, γ = 1, β = 0, x̄ ∈ int W ⇒ every network has exactly 2·Σ_{k<d} C(n−1, k) regions
    assert near["n_bn_ci95"] == [o3(7, 2), o3(7, 2)] and near["h_bn_mean"] == 7
    assert near["p_n_bn_ge_plain"] == 1.0
    assert near["n_plain_mean"] <= near["c6_bound_n_plain"]  # C6's expectation bound on this sample
    # negative control (C7): 4 units away, BN's central arrangement misses the window
    assert far["n_bn_mean"] < o3(7, 2) and far["h_bn_mean"] < 7


def test_sweep_counted_regions_match_hits_on_a_single_layer():
    # one layer, d = 1 (O4): N = 1 + number of hyperplanes cutting the window, for BN and plain alike
    cfg = SweepConfig(seed=5, d=1, widths=(9,), networks=8, count_networks=8, distances=(0.0, 0.5),
                      bias_scales=(0.3,), radii=(0.25,), activation="hardtanh", gamma={"dist": "uniform",
                                                                                      "low": 0.5, "high": 2})
    for p in grid_points(cfg):
        row = run_point(cfg, p)
        assert row["n_bn_mean"] == pytest.approx(1 + row["h_bn_mean"])
        assert row["n_plain_mean"] == pytest.approx(1 + row["h_plain_mean"])


def test_fixed_window_direction_and_origin_centroid():
    spec = EnsembleSpec(d=3, widths=(4,), window_direction=(0.0, 2.0, 0.0), batch_centroid="origin",
                        batch_offset=0.0)
    draw = draw_network(KEY, spec, 8, 0.5, 1.5, jnp.float64)
    xbar = np.asarray(draw["batch"]).mean(0)
    assert np.max(np.abs(xbar)) < 1e-14  # the drawn batch recentred: x̄ = 0 up to rounding
    np.testing.assert_allclose(np.asarray(draw["centers"][0]) - xbar, [0.0, 1.5, 0.0], atol=1e-14)
    free = draw_network(KEY, EnsembleSpec(d=3, widths=(4,)), 8, 0.5, 1.5, jnp.float64)
    assert np.max(np.abs(np.asarray(free["batch"]).mean(0))) > 1e-3  # the default keeps the random centroid
    with pytest.raises(CPAInputError):
        EnsembleSpec(d=3, window_direction=(1.0, 0.0))
