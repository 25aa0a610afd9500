"""Continuous piecewise-affine (CPA) activations (THEORY §1).

A CPA activation is a continuous linear spline: breakpoints ``t_1 < ... < t_K``,
slopes ``a_0 ... a_K`` with ``a_{k-1} != a_k`` and its value at the first
breakpoint. It is evaluated as

    φ(z) = φ(t_1) + a_0 (z - t_1) + Σ_k (a_k - a_{k-1}) max(z - t_k, 0),

one expression that works for numpy and ``jax.numpy`` alike (``xp=``).
The *piece index* of a pre-activation z is the number of breakpoints ``<= z``
(0 … K); on a breakpoint both neighbouring pieces agree by continuity.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from .errors import ActivationError
from .inputs import check_number, check_numbers, short

__all__ = [
    "CPAActivation",
    "relu",
    "leaky_relu",
    "hardtanh",
    "relu6",
    "hardsigmoid",
    "absolute",
    "identity",
    "spline",
    "activation_from_spec",
]


def _finite_floats(values, what: str) -> tuple[float, ...]:
    """A flat list of finite numbers (a nested list is refused, not flattened)."""
    if not isinstance(values, (list, tuple, np.ndarray)):
        raise ActivationError(f"{what} must be a list of numbers; got {short(values, 30)}.")
    check_numbers(values, what, ActivationError)
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ActivationError(f"{what} must be a flat list of numbers; got {short(values)}.") from None
    if arr.ndim != 1:
        raise ActivationError(f"{what} must be a flat list of numbers; got a nested list of shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ActivationError(f"{what} contains NaN or inf; give finite numbers.")
    return tuple(float(v) for v in arr)


def _finite_scalar(value, what: str) -> float:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    return check_number(value, what + " (one number)", ActivationError)


@dataclass(frozen=True)
class CPAActivation:
    """A continuous piecewise-affine activation.

    Attributes:
        name: ``"relu"``, ``"leaky_relu"``, …, or ``"cpa"`` for a user spline.
        breakpoints: ``(K,)`` strictly increasing.
        slopes: ``(K+1,)``; ``slopes[k]`` is the slope on piece k.
        value_at_first: φ(t_1) (for K = 0: φ(0)).
        params: extra parameters that the JSON form needs (e.g. negative_slope).
    """

    name: str
    breakpoints: tuple[float, ...]
    slopes: tuple[float, ...]
    value_at_first: float = 0.0
    params: tuple[tuple[str, float], ...] = ()

    def __post_init__(self):
        t = _finite_floats(self.breakpoints, f"{self.name}: breakpoints")
        a = _finite_floats(self.slopes, f"{self.name}: slopes")
        v = (_finite_scalar(self.value_at_first, f"{self.name}: value"),)
        if len(a) != len(t) + 1:
            raise ActivationError(
                f"{self.name}: need len(slopes) = len(breakpoints) + 1, got {len(a)} and {len(t)}."
            )
        if any(t[k + 1] <= t[k] for k in range(len(t) - 1)):
            raise ActivationError(
                f"{self.name}: breakpoints {list(t)} are not strictly increasing; sort them "
                "and drop duplicates."
            )
        for k in range(1, len(a)):
            if a[k] == a[k - 1]:
                raise ActivationError(
                    f"{self.name}: slopes on both sides of breakpoint t={t[k - 1]} are equal "
                    f"({a[k]}), so it is not a breakpoint; remove it from the spline."
                )
        object.__setattr__(self, "breakpoints", t)
        object.__setattr__(self, "slopes", a)
        object.__setattr__(self, "value_at_first", v[0])

    # -- structure -------------------------------------------------------
    @property
    def breakpoints_array(self) -> np.ndarray:
        """``(K,)`` float64 array of the breakpoints."""
        return np.asarray(self.breakpoints, dtype=np.float64)

    @property
    def num_breakpoints(self) -> int:
        return len(self.breakpoints)

    def exact_values_at_breakpoints(self) -> tuple[Fraction, ...]:
        """φ(t_k) for every breakpoint in rationals: the spline the float data (t, a, φ(t_1)) define, continuous
        exactly (each value from the previous one along its piece, no rounding)."""
        vals = []
        v = Fraction(self.value_at_first)
        for k, tk in enumerate(self.breakpoints):
            if k:
                v = v + Fraction(self.slopes[k]) * (Fraction(tk) - Fraction(self.breakpoints[k - 1]))
            vals.append(v)
        return tuple(vals)

    def values_at_breakpoints(self) -> tuple[float, ...]:
        """φ(t_k) for every breakpoint, each the float64 nearest to the exact value."""
        return tuple(float(v) for v in self.exact_values_at_breakpoints())

    def exact_intercepts(self) -> tuple[Fraction, ...]:
        """Intercepts β_k with φ(z) = a_k z + β_k on piece k (length K+1), in rationals: piece 0 through
        (t_1, φ(t_1)), piece k ≥ 1 through (t_k, φ(t_k)); the pieces meet exactly at every breakpoint."""
        if not self.breakpoints:
            return (Fraction(self.value_at_first),)
        vals = self.exact_values_at_breakpoints()
        t = [Fraction(v) for v in self.breakpoints]
        a = [Fraction(v) for v in self.slopes]
        return (vals[0] - a[0] * t[0], *(v - ak * tk for v, ak, tk in zip(vals, a[1:], t)))

    def intercepts(self) -> tuple[float, ...]:
        """Intercepts β_k (length K+1), each the float64 nearest to :meth:`exact_intercepts`."""
        return tuple(float(v) for v in self.exact_intercepts())

    # -- evaluation ------------------------------------------------------
    def __call__(self, z, xp=np):
        """φ(z), elementwise; ``xp`` is numpy or jax.numpy."""
        a = self.slopes
        if not self.breakpoints:
            return a[0] * z + self.value_at_first
        t1 = self.breakpoints[0]
        out = self.value_at_first + a[0] * (z - t1)
        for k, tk in enumerate(self.breakpoints, start=1):
            out = out + (a[k] - a[k - 1]) * xp.maximum(z - tk, 0.0)
        return out

    def piece_index(self, z, xp=np):
        """Piece of φ that z lies in: number of breakpoints ``<= z`` (int array; NaN counts as above every
        breakpoint, as in a sorted search). Up to 8 breakpoints it counts the comparisons ``not z < t_k``
        (a ReLU's code on 4096 × 100 values: 0.3 ms against a binary search's 1.1 ms)."""
        if len(self.breakpoints) > 8:
            t = xp.asarray(self.breakpoints, dtype=xp.asarray(z).dtype)
            return xp.searchsorted(t, z, side="right")
        z = xp.asarray(z)
        out = xp.zeros(z.shape, dtype=int)
        for tk in self.breakpoints:
            out = out + ~(z < tk)
        return out

    def slope_of_piece(self, piece, xp=np):
        """Slope a_k for an integer piece index array."""
        return xp.asarray(self.slopes)[piece]

    # -- JSON ------------------------------------------------------------
    def to_spec(self) -> Any:
        """The ``cpa-network/1`` activation entry."""
        if self.name in _SIMPLE:
            return self.name
        if self.name == "leaky_relu":
            return {"name": "leaky_relu", "negative_slope": dict(self.params)["negative_slope"]}
        return {
            "name": "cpa",
            "breakpoints": list(self.breakpoints),
            "values": list(self.values_at_breakpoints()),
            "left_slope": self.slopes[0],
            "right_slope": self.slopes[-1],
        }


def relu() -> CPAActivation:
    return CPAActivation("relu", (0.0,), (0.0, 1.0), 0.0)


def leaky_relu(negative_slope: float = 0.01) -> CPAActivation:
    a = _finite_scalar(negative_slope, "leaky_relu: negative_slope")
    if a == 1.0:
        raise ActivationError(
            "leaky_relu: negative_slope = 1 makes it the identity (no breakpoint); use "
            "'identity' or a slope != 1."
        )
    return CPAActivation("leaky_relu", (0.0,), (a, 1.0), 0.0, (("negative_slope", a),))


def hardtanh() -> CPAActivation:
    return CPAActivation("hardtanh", (-1.0, 1.0), (0.0, 1.0, 0.0), -1.0)


def relu6() -> CPAActivation:
    return CPAActivation("relu6", (0.0, 6.0), (0.0, 1.0, 0.0), 0.0)


def hardsigmoid() -> CPAActivation:
    # PyTorch: relu6(z + 3) / 6.
    return CPAActivation("hardsigmoid", (-3.0, 3.0), (0.0, 1.0 / 6.0, 0.0), 0.0)


def absolute() -> CPAActivation:
    return CPAActivation("abs", (0.0,), (-1.0, 1.0), 0.0)


def identity() -> CPAActivation:
    return CPAActivation("identity", (), (1.0,), 0.0)


def spline(breakpoints, values, left_slope: float, right_slope: float) -> CPAActivation:
    """A continuous linear spline through ``(t_k, values_k)`` with two end slopes."""
    t = _finite_floats(breakpoints, "cpa: breakpoints")
    v = _finite_floats(values, "cpa: values")
    a0 = _finite_scalar(left_slope, "cpa: left_slope")
    aK = _finite_scalar(right_slope, "cpa: right_slope")
    if len(t) == 0:
        raise ActivationError("cpa: give at least one breakpoint (for none use 'identity').")
    if len(v) != len(t):
        raise ActivationError(
            f"cpa: {len(t)} breakpoints but {len(v)} values; give one value per breakpoint."
        )
    if any(t[k + 1] <= t[k] for k in range(len(t) - 1)):
        raise ActivationError(
            f"cpa: breakpoints {list(t)} are not strictly increasing; sort them and drop duplicates."
        )
    interior = [(v[k + 1] - v[k]) / (t[k + 1] - t[k]) for k in range(len(t) - 1)]
    return CPAActivation("cpa", t, (a0, *interior, aK), v[0])


_SIMPLE = {
    "relu": relu,
    "identity": identity,
    "hardtanh": hardtanh,
    "relu6": relu6,
    "hardsigmoid": hardsigmoid,
    "abs": absolute,
}


def activation_from_spec(spec) -> CPAActivation:
    """Build an activation from its ``cpa-network/1`` entry (a name or a dict). A
    :class:`cpa_theory.maxgroups.MaxGroups` object passes through (it has no cpa-network/1 entry)."""
    from .maxgroups import MaxGroups

    if isinstance(spec, (CPAActivation, MaxGroups)):
        return spec
    if isinstance(spec, str):
        if spec in _SIMPLE:
            return _SIMPLE[spec]()
        if spec == "leaky_relu":
            return leaky_relu()
        raise ActivationError(
            f"unknown activation {spec!r}; use one of {sorted(_SIMPLE) + ['leaky_relu']} or "
            "{'name': 'cpa', 'breakpoints': [...], 'values': [...], 'left_slope': a0, "
            "'right_slope': aK}."
        )
    if isinstance(spec, dict):
        name = spec.get("name")
        if not isinstance(name, str):
            raise ActivationError(f"activation 'name' must be a string such as \"relu\" or \"cpa\"; got "
                                  f"{short(name, 30)}.")
        if name == "leaky_relu":
            if "negative_slope" not in spec:
                raise ActivationError("leaky_relu needs its slope: {\"name\": \"leaky_relu\", \"negative_slope\": a} "
                                      "(the bare string \"leaky_relu\" means PyTorch's default a = 0.01).")
            return leaky_relu(spec["negative_slope"])
        if name == "cpa":
            missing = [k for k in ("breakpoints", "values", "left_slope", "right_slope") if k not in spec]
            if missing:
                raise ActivationError(f"cpa activation is missing {missing}; add these keys.")
            return spline(spec["breakpoints"], spec["values"], spec["left_slope"], spec["right_slope"])
        if name in _SIMPLE:
            return _SIMPLE[name]()
        raise ActivationError(
            f"unknown activation name {name!r}; use 'relu', 'identity', 'hardtanh', 'relu6', "
            "'hardsigmoid', 'abs', 'leaky_relu' or 'cpa'."
        )
    raise ActivationError(f"activation must be a name or an object; got {short(spec, 40)}.")
