"""Closed forms (cpa_theory.closed_forms): the THEORY values, domains and typed errors, Monte Carlo agreement."""

import math

import numpy as np
import pytest

from cpa_theory import closed_forms as cf
from cpa_theory.errors import CPAInputError


def test_oracle_values_from_theory():
    assert [cf.o2_all_vertices_inside(10, 2), cf.o2_all_vertices_inside(20, 2), cf.o2_all_vertices_inside(10, 3)] \
        == [56, 211, 176]
    assert [cf.o3(10, 2), cf.o3(10, 3), cf.o3(20, 3)] == [20, 92, 382]
    assert cf.o4(3) == 4 and cf.o1_bounds(3, 2) == (4, 7) and cf.o1_bounds(0, 2) == (1, 1)


def test_O1_counts_distinct_hyperplanes():
    w = np.array([1.0, -2.0])
    normals = np.stack([w, 2 * w, -w])  # BN at β = 0: all three are the same hyperplane through the anchor
    assert cf.distinct_hyperplanes(normals, np.zeros((3, 1))) == 1
    assert cf.distinct_hyperplanes(normals, np.array([[0.0], [0.0], [0.5]])) == 2
    assert cf.o1_bounds(cf.distinct_hyperplanes(normals, np.zeros((3, 1))), 2) == (2, 2)


def test_elementary_symmetric_numpy_and_jax_agree():
    import jax.numpy as jnp

    q = np.array([0.1, 0.5, 0.25, 1.0])
    e = cf.elementary_symmetric(q, 3)
    assert e[0] == 1 and e[1] == pytest.approx(q.sum()) and e[3] == pytest.approx(
        sum(q[i] * q[j] * q[k] for i in range(4) for j in range(i + 1, 4) for k in range(j + 1, 4)))
    np.testing.assert_allclose(np.asarray(cf.elementary_symmetric(jnp.asarray(q), 3, xp=jnp)), e)


def test_exact_gaussian_hits_match_monte_carlo_and_stay_below_the_c6_bound():
    rng = np.random.default_rng(0)
    W, x0, r, sb = rng.normal(size=(12, 3)), rng.normal(size=3) * 0.3, 0.2, 0.8
    exact = cf.expected_plain_hits_gaussian(W, 0.0, x0, r, [-1.0, 1.0], sb)
    b = rng.normal(size=(100_000, 12)) * sb
    resid = (W @ x0)[None, :, None] + b[:, :, None] - np.array([-1.0, 1.0])
    m = np.abs(resid) < r * np.abs(W).sum(1)[None, :, None]
    hits = m.sum(axis=(1, 2))
    assert abs(hits.mean() - exact) < 4 * hits.std() / math.sqrt(len(hits))
    q = cf.c6_q(np.abs(W).sum(1), r, cf.gaussian_density_bound(sb), breakpoints=2)
    assert exact <= cf.c6_bound_h(q)
    at_zero = float(np.sum(np.abs(W @ x0) < r * np.abs(W).sum(1)))
    assert cf.expected_plain_hits_gaussian(W, 0.0, x0, r, [0.0], 0.0) == at_zero


def test_l2_probability_domain():
    assert cf.l2_ball_hit_probability(0.5, 0.0, 3) == 1.0  # was ZeroDivisionError
    assert cf.l2_ball_hit_probability(0.5, 0.3, 3) == 1.0  # was NaN
    assert cf.l2_ball_hit_probability(0.5, 0.5, 2) == 1.0
    assert cf.l2_ball_hit_probability(0.5, 2.0, 1) == 0.0
    assert 0 < cf.l2_ball_hit_probability(0.5, 2.0, 4) < 1
    for bad in ((0.0, 1.0, 2), (0.5, -1.0, 2), (0.5, 1.0, 0), (0.5, float("nan"), 2)):
        with pytest.raises(CPAInputError):
            cf.l2_ball_hit_probability(*bad)


@pytest.mark.parametrize("direction", ["axis", "random"])
def test_box_probabilities_match_monte_carlo(direction):
    rng = np.random.default_rng(1)
    M, r, sw = 200_000, 0.2, math.sqrt(0.5)
    for D, sb in ((0.0, 0.1), (0.5, 0.3), (1.0, 1.0)):
        w = rng.normal(size=(M, 2)) * sw
        b = rng.normal(size=M) * sb
        if direction == "axis":
            u = np.tile([1.0, 0.0], (M, 1))
        else:
            a = rng.uniform(0, 2 * np.pi, M)
            u = np.c_[np.cos(a), np.sin(a)]
        proj, l1 = (w * D * u).sum(1), np.abs(w).sum(1)
        for got, p in ((np.abs(proj) < r * l1, cf.box_bn_hit_probability_2d(r, D, direction)),
                       (np.abs(proj + b) < r * l1, cf.box_plain_hit_probability_2d(r, D, sb, sw, direction))):
            assert abs(got.mean() - p) < 4.5 * math.sqrt(max(p * (1 - p), 1e-12) / M) + 1e-12


def test_box_crossover_is_a_root_and_depends_on_the_direction():
    sw = math.sqrt(0.5)
    for direction in ("axis", "random"):
        D = cf.box_crossover_2d(0.2, 0.3, sw, direction)
        assert abs(cf.box_bn_hit_probability_2d(0.2, D, direction)
                   - cf.box_plain_hit_probability_2d(0.2, D, 0.3, sw, direction)) < 1e-8
    assert abs(cf.box_crossover_2d(0.2, 1.0, sw, "axis") - cf.box_crossover_2d(0.2, 1.0, sw, "random")) > 0.3
    with pytest.raises(CPAInputError):
        cf.box_bn_hit_probability_2d(0.2, 1.0, "diagonal")
    with pytest.raises(CPAInputError):
        cf.box_plain_hit_probability_2d(0.2, 1.0, 0.0, sw)
