"""The flat engines' kernels on JAX (numerics.frontier_jax): same counts and certificates as numpy, sound
filters on a backend that flushes subnormals, no recompilation for repeated shapes (issue #12, item 4)."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import cpa_theory.frontier as FF
import cpa_theory.frontier_kernels as FK
import numerics.frontier_jax as FJ
from cpa_theory.errors import ConfigError
from cpa_theory.regions import count_regions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_counting_exact import _activations, _random_net  # noqa: E402


def _jax():
    return FJ.JaxKernels.shared()


@pytest.mark.parametrize("d, widths", [(2, (6, 5)), (3, (5, 4))])
@pytest.mark.parametrize("mode", ["train", "eval", None])
def test_jax_kernels_give_the_numpy_counts_and_certificates(d, widths, mode):
    rng = np.random.default_rng(d * 10 + len(str(mode)))
    for act in _activations()[::2]:
        net = _random_net(rng, d, widths, mode, act)
        c = rng.normal(size=d) * 0.2
        a = count_regions(net, c, 0.9, kernels="numpy")
        b = count_regions(net, c, 0.9, kernels="jax")
        assert (a.regions, a.linear_regions, a.certified, a.complete, a.euler_characteristic) == \
               (b.regions, b.linear_regions, b.certified, b.complete, b.euler_characteristic)
        assert a.certified and np.isclose(a.min_witness_radius, b.min_witness_radius, rtol=1e-9, atol=0)


def test_jax_kernels_on_concurrent_lines_send_the_same_ties_to_rationals():
    """Ten lines through one point (float-rounded offsets): the undecided signs go to the exact host path on
    both backends and the counts agree with numpy's."""
    from cpa_theory import Layer, Network, identity, relu

    th = np.random.default_rng(3).uniform(0, np.pi, 10)
    W = np.stack([np.cos(th), np.sin(th)], axis=1)
    net = Network(2, (Layer(W, -W @ np.array([0.1, -0.2]), relu()), Layer(np.ones((1, 10)), [0.0], identity())))
    a = count_regions(net, np.zeros(2), 0.5, kernels="numpy")
    b = count_regions(net, np.zeros(2), 0.5, kernels="jax")
    assert (a.regions, a.certified) == (b.regions, b.certified) and a.certified
    assert b.exact_fallbacks > 0


def _flushed_vertex_case():
    """a = (1, 1), v = (−0.9, −0.9)·2^-1022 (subnormal), β = −1.5·2^-1022: a·v − β = −0.3·2^-1022 < 0 exactly;
    a backend that flushes subnormals computes 0 + 0 + 1.5·2^-1022 > 0."""
    tiny = FK.TINY
    a, beta = np.array([[1.0, 1.0]]), np.array([-1.5 * tiny])
    V = np.array([[-0.9 * tiny, -0.9 * tiny, 0.0]])
    T = FF._sign_table(a, beta, np.zeros((1, 2)), np.zeros(1))
    exact = sum(Fraction(float(x)) for x in V[0, :2]) - Fraction(float(beta[0]))
    return V, T, int((exact > 0) - (exact < 0))


def _without_underflow_term(monkeypatch, kernel):
    """``kernel`` (FK.vertex_sides or FK.box_sides) jitted on this backend with the filters' absolute underflow
    term removed (TINY = 0; a new function, so no trace of the real kernels is reused)."""
    import jax
    import jax.numpy as jnp

    monkeypatch.setattr(FK, "TINY", 0.0)
    fn = jax.jit(lambda *a: kernel(*a, xp=jnp))
    return lambda *a: tuple(np.asarray(x) for x in fn(*a)) if kernel is FK.vertex_sides else np.asarray(fn(*a))


def test_filters_stay_sound_where_the_backend_flushes_subnormals(monkeypatch):
    V, T, truth = _flushed_vertex_case()
    assert truth == -1
    s, und, bad = FK.NUMPY.vertex_sides(V, T)  # numpy keeps subnormals
    assert not bad[0] and (und[0] or s[0] == truth)
    k = _jax()
    s, und, bad = k.vertex_sides(V, T)
    assert not bad[0] and (und[0] or s[0] == truth)
    # negative control: the same kernel without the underflow term, on the same backend
    s0, und0, _ = _without_underflow_term(monkeypatch, FK.vertex_sides)(V, T)
    if k.flush:  # XLA on CPU: the flushed sum decides the wrong side
        assert not und0[0] and s0[0] == -truth
    else:  # a backend that keeps subnormals decides right without it
        assert und0[0] or s0[0] == truth


def test_box_filter_stays_sound_where_the_backend_flushes_subnormals(monkeypatch):
    tiny = FK.TINY
    T = FF._sign_table(np.array([[1.0, 1.0]]), np.array([-1.5 * tiny]), np.zeros((1, 2)), np.zeros(1))
    box = np.array([[-0.95 * tiny, -0.95 * tiny, -0.9 * tiny, -0.9 * tiny]])  # every point: a·y − β < 0
    k = _jax()
    assert k.box_sides(box, T)[0] in (0, -1)
    if k.flush:  # negative control: wrong without the term
        assert int(_without_underflow_term(monkeypatch, FK.box_sides)(box, T)[0]) == 1


def test_jax_chart_composition_agrees_within_the_proven_bounds():
    """The composition kernel itself (forced on this backend with normal-range data): lines and their error
    bounds agree with numpy's; every difference is within the bounds both claim."""
    from cpa_theory import activations as A

    rng = np.random.default_rng(0)
    C, m, n, d = 37, 6, 5, 3
    act = A.hardtanh()
    tables = FK.chart_tables(act)
    args = (rng.normal(size=(C, m, d)), rng.normal(size=(C, m)), np.abs(rng.normal(size=(C, m, d))) + 1,
            np.abs(rng.normal(size=(C, m))) + 1, rng.integers(0, 3, size=(C, m)), tables,
            rng.uniform(0.5, 2, m), rng.normal(size=m), rng.normal(size=(n, m)), rng.normal(size=m),
            rng.uniform(0.5, 2, n), rng.normal(size=n), np.array([-1.0, 1.0]), 1e-15, np.full(n, 1e-15))
    ref = FK.NUMPY.compose(args)
    N, z0, ml, mg, pc, (st, it, mt), g, e, W2, p2, g2, e2, t2, rel, zerr = args
    got = [np.asarray(x) for x in _jax()._jit("compose", N, z0, ml, mg, pc, st, it, mt, g, e, W2, p2, g2, e2, t2,
                                              np.float64(rel), zerr)]
    fa, fb, EA, EB = ref[:4]
    assert np.all(np.abs(got[0] - fa) <= 2 * EA) and np.all(np.abs(got[1] - fb) <= 2 * EB)
    for x, y in zip(got, ref):
        assert x.shape == y.shape and np.allclose(x, y, rtol=1e-12, atol=1e-300)
    # negative control: a wrong slope table changes the lines far beyond the bounds
    bad = (N, z0, ml, mg, pc, (st * 1.01, it, mt)) + args[6:]
    assert not np.all(np.abs(FK.NUMPY.compose(bad)[0] - fa) <= 2 * EA)


def test_box_filter_broadcast_form_equals_numpy_on_jax():
    """The parent test's broadcast call (one box per cell against its nK lines) on JAX: numpy's sides."""
    k = _jax()
    rng = np.random.default_rng(4)
    C, nK = 300, 7
    T = FF._sign_table(rng.normal(size=(C * nK, 3)), rng.normal(size=C * nK), np.zeros((C * nK, 3)),
                       np.zeros(C * nK)).reshape(C, nK, -1)
    box = np.sort(rng.normal(size=(C, 2, 3)), axis=1).reshape(C, 6)[:, None, :]
    out = k.box_sides(box, T)
    assert out.shape == (C, nK) and np.array_equal(out, FK.NUMPY.box_sides(box, T))


def test_padded_shapes_compile_once_per_capacity():
    k = _jax()
    rng = np.random.default_rng(1)
    T = FF._sign_table(rng.normal(size=(700, 2)), rng.normal(size=700), np.zeros((700, 2)), np.zeros(700))
    box = np.sort(rng.normal(size=(700, 2, 2)), axis=1).reshape(700, 4)[:, [0, 2, 1, 3]]
    k.box_sides(box[:600], T[:600])  # capacity 1024
    before = FJ.TRACE_COUNT["box"]
    for n in (520, 700, 1000 - 300, 513):
        out = k.box_sides(box[:n], T[:n])
        assert np.array_equal(out, FK.NUMPY.box_sides(box[:n], T[:n]))
    assert FJ.TRACE_COUNT["box"] == before
    big, Tb = np.repeat(box, 2, axis=0), np.repeat(T, 2, axis=0)
    k.box_sides(big, Tb)  # 1400 rows: the next capacity, at most one trace
    assert FJ.TRACE_COUNT["box"] <= before + 1
    after = FJ.TRACE_COUNT["box"]
    k.box_sides(big[:1100], Tb[:1100])
    assert FJ.TRACE_COUNT["box"] == after


def test_unknown_kernels_are_a_typed_error():
    with pytest.raises(ConfigError, match="kernels"):
        count_regions(_random_net(np.random.default_rng(0), 2, (3,), None, _activations()[0]), np.zeros(2), 1.0,
                      kernels="cuda")
    assert FK.select_kernels("numpy") is FK.NUMPY


def test_counts_with_chart_composition_on_jax_equal_numpy(monkeypatch):
    """The path a GPU takes (a backend that keeps subnormals composes the charts in JAX too), forced on this
    backend: the chart range check keeps every product clear of the underflow range, so flushing cannot matter
    here. Counts, N_lin and certificates equal numpy's; the compose kernel is traced."""
    k = FJ.JaxKernels()
    monkeypatch.setattr(k, "flush", False)
    monkeypatch.setattr(FJ.JaxKernels, "_instance", k)
    rng = np.random.default_rng(11)
    before = FJ.TRACE_COUNT["compose"]
    for d, widths, mode in [(2, (6, 5, 4), "train"), (3, (5, 4), "eval"), (2, (7, 6), None)]:
        net = _random_net(rng, d, widths, mode, _activations()[1])
        a = count_regions(net, np.zeros(d), 0.8, kernels="numpy")
        b = count_regions(net, np.zeros(d), 0.8, kernels="jax")
        assert (a.regions, a.linear_regions, a.certified, a.complete) == \
               (b.regions, b.linear_regions, b.certified, b.complete) and a.certified
    assert FJ.TRACE_COUNT["compose"] > before
