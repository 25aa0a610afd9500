from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cpa_theory import (ActivationError, absolute, activation_from_spec, hardsigmoid, hardtanh, identity, leaky_relu,
                        relu, relu6, spline)

Z = np.linspace(-9, 9, 3601)

REFERENCE = {  # independent closed forms (PyTorch's definitions)
    "relu": (relu, lambda z: np.maximum(z, 0), [0.0]),
    "leaky_relu": (lambda: leaky_relu(0.1), lambda z: np.where(z > 0, z, 0.1 * z), [0.0]),
    "hardtanh": (hardtanh, lambda z: np.clip(z, -1, 1), [-1.0, 1.0]),
    "relu6": (relu6, lambda z: np.clip(z, 0, 6), [0.0, 6.0]),
    "hardsigmoid": (hardsigmoid, lambda z: np.clip(z / 6 + 0.5, 0, 1), [-3.0, 3.0]),
    "abs": (absolute, np.abs, [0.0]),
    "identity": (identity, lambda z: z, []),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_builtin_matches_reference_and_breakpoints(name):
    make, ref, bps = REFERENCE[name]
    act = make()
    np.testing.assert_allclose(act(Z), ref(Z), atol=1e-12, err_msg=name)
    assert list(act.breakpoints) == bps
    assert len(act.slopes) == len(bps) + 1
    # slopes: finite differences inside every piece agree with the declared slope
    edges = [-9.0, *bps, 9.0]
    for k in range(len(edges) - 1):
        lo, hi = edges[k] + 0.25, edges[k + 1] - 0.25
        assert act.slopes[k] == pytest.approx((act(hi) - act(lo)) / (hi - lo), abs=1e-12), (name, k)
    # spec round-trip
    again = activation_from_spec(act.to_spec())
    np.testing.assert_allclose(again(Z), act(Z), atol=1e-12)


def test_piece_index_counts_breakpoints_below():
    act = hardtanh()
    assert act.piece_index(np.array([-2.0, -1.0, 0.0, 1.0, 2.0])).tolist() == [0, 1, 1, 2, 2]


@given(st.lists(st.floats(-5, 5), min_size=1, max_size=12, unique=True),
       st.lists(st.one_of(st.floats(-6, 6), st.sampled_from([0.0, -0.0, np.inf, -np.inf, np.nan])), max_size=30))
def test_piece_index_equals_a_sorted_search(ts, zs):
    """The comparison count (up to 8 breakpoints) and the binary search above give searchsorted's index, at the
    breakpoints themselves, ±0, ±inf and NaN (counted above every breakpoint) included."""
    ts = sorted(ts)
    if any(b - a < 1e-3 for a, b in zip(ts, ts[1:])):
        return
    vs = [0.0]
    for k in range(1, len(ts)):  # slopes −1 | 0 | 1 | … | K − 1: every breakpoint a kink
        vs.append(vs[-1] + (k - 1) * (ts[k] - ts[k - 1]))
    act = spline(ts, vs, -1.0, float(len(ts) - 1))
    z = np.array(zs + ts + [-t for t in ts], dtype=np.float64)
    want = np.searchsorted(np.array(ts), z, side="right")
    got = act.piece_index(z)
    assert got.dtype.kind == "i" and np.array_equal(got, want)
    assert np.array_equal(act.piece_index(z.reshape(1, -1)), want.reshape(1, -1))


def test_intercepts_reproduce_function_on_each_piece():
    act = spline([-1.0, 0.5, 2.0], [0.0, 1.0, -1.0], 0.3, 2.0)
    z = np.array([-3.0, 0.0, 1.0, 5.0])
    k = act.piece_index(z)
    np.testing.assert_allclose(np.asarray(act.slopes)[k] * z + np.asarray(act.intercepts())[k], act(z), atol=1e-12)


@given(st.lists(st.floats(-5, 5), min_size=1, max_size=5, unique=True),
       st.lists(st.floats(-5, 5), min_size=5, max_size=5), st.floats(-3, 3), st.floats(-3, 3))
def test_spline_is_continuous_and_interpolates(ts, vs, a0, aK):
    ts = sorted(ts)
    if any(b - a < 1e-3 for a, b in zip(ts, ts[1:])):
        return
    vs = vs[: len(ts)]
    try:
        act = spline(ts, vs, a0, aK)
    except ActivationError:
        return  # equal adjacent slopes: rejected by design (tested below)
    np.testing.assert_allclose(act(np.array(ts)), vs, atol=1e-9)
    assert _pieces_meet_exactly(act)  # the exact pieces (rational breakpoint values) meet exactly
    h = 1e-9
    bound = 2 * h * max(abs(a) for a in act.slopes) + 1e-9 * (1 + max(abs(v) for v in vs))
    for t in ts:  # continuity: one-sided values differ by no more than the slope allows
        assert abs(act(t - h) - act(t + h)) <= bound


def test_spline_rejects_non_increasing_breakpoints():
    with pytest.raises(ActivationError, match="strictly increasing"):
        spline([0.0, 0.0], [0.0, 1.0], 0.0, 1.0)


def test_spline_rejects_equal_adjacent_slopes():
    with pytest.raises(ActivationError, match="not a breakpoint"):
        spline([0.0, 1.0], [0.0, 1.0], 1.0, 0.0)  # interior slope 1 equals left slope 1


def test_unknown_activation_names_the_choices():
    with pytest.raises(ActivationError, match="relu"):
        activation_from_spec("gelu")


def test_leaky_relu_slope_one_is_rejected():
    with pytest.raises(ActivationError, match="identity"):
        leaky_relu(1.0)


def test_nan_in_spline_is_rejected():
    with pytest.raises(ActivationError, match="NaN"):
        spline([0.0, float("nan")], [0.0, 1.0], 0.0, 1.0)


def test_jax_evaluation_matches_numpy():
    import jax.numpy as jnp

    act = spline([-1.0, 0.5, 2.0], [0.0, 1.0, -1.0], 0.3, 2.0)
    np.testing.assert_allclose(np.asarray(act(jnp.asarray(Z), xp=jnp)), act(Z), atol=1e-12)


def _pieces_meet_exactly(act) -> bool:
    from cpa_theory.exact import exact_piece_maps

    maps = exact_piece_maps(act)
    return all(maps[k][0] * Fraction(t) + maps[k][1] == maps[k + 1][0] * Fraction(t) + maps[k + 1][1]
               for k, t in enumerate(act.breakpoints))


@pytest.mark.parametrize("make", [hardsigmoid, hardtanh, relu6, absolute, lambda: leaky_relu(0.1),
                                  lambda: spline([-1.0, 0.3, 0.7], [0.1, 1.0 / 3.0, -0.2], 0.3, -1.0 / 7.0)])
def test_exact_pieces_meet_at_every_breakpoint(make):
    """The exact function of the float data is the continuous spline the forward pass evaluates: the exact
    pieces meet exactly, and the float intercepts are the nearest floats to the exact ones. Negative control:
    pieces built from the *rounded* breakpoint values (hardsigmoid: 6·fl(1/6) ≠ 1) leave a jump."""
    act = make()
    assert _pieces_meet_exactly(act)
    assert act.intercepts() == tuple(float(v) for v in act.exact_intercepts())
    z = np.linspace(-8, 8, 33)
    k = act.piece_index(z)
    np.testing.assert_allclose(np.asarray(act.slopes)[k] * z + np.asarray(act.intercepts())[k], act(z),
                               rtol=0, atol=1e-14)


def test_rounded_breakpoint_values_would_leave_a_jump():
    act = hardsigmoid()
    a = [Fraction(v) for v in act.slopes]
    t = [Fraction(v) for v in act.breakpoints]
    rounded = [Fraction(v) for v in act.values_at_breakpoints()]  # 0 and fl(6·fl(1/6)) = 1
    assert rounded[1] == 1 and act.exact_values_at_breakpoints()[1] != 1
    # piece 1 through (t_1, φ(t_1)) and piece 2 through the rounded (t_2, 1): they miss at t_2
    assert a[1] * t[1] + (rounded[0] - a[1] * t[0]) != a[2] * t[1] + (rounded[1] - a[2] * t[1])
