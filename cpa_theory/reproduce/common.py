"""Shared parts of the claim checks: problem sizes, the context (seeds, output directory), the evidence record.

A check returns :class:`Evidence`: ``checks`` (each must pass for the claim to pass) and ``negatives``
(each must be *refuted*: the same computation applied to a mutated statement, or to a case outside the
claim's conditions, must reject it). Each check records what KIND of evidence it is (``symbolic``,
``instances``, ``certificate``, ``exact-count``, ``monte-carlo``, ``closed-form``); ``Evidence.verdict``
turns them into the report's one-line summary. Random objects come from explicit seeds (``ctx.rng(tag)``,
``ctx.key(tag)``), so a report is reproducible.
"""

from __future__ import annotations

import math

import zlib
from dataclasses import dataclass, field

import numpy as np

from ..bn import BatchNorm
from ..network import Layer, Network

__all__ = ["Context", "Evidence", "SCALES", "symbolic", "random_mlp", "with_biases", "plain"]

#: problem sizes per scale; "full" is meant for a GPU or a long CPU run
# step 0.05 up to D = 1 (where most crossovers are: linear interpolation between grid points is then within a
# few thousandths of the root), 0.1 up to 2, 0.25 up to 6
_D_SMALL = tuple(float(v) for v in np.round(np.r_[np.arange(0.0, 1.0, 0.05), np.arange(1.0, 2.0, 0.1),
                                                  np.arange(2.0, 6.01, 0.25)], 4))
# D = r = 0.2 is left out of the counted grids: along e_1 it puts x̄ on ∂W in exact arithmetic, but the float64
# anchor lands an ulp inside or outside W. The exact counter counts the float64 function (measured: 64 certified
# regions — the 32 lines cross inside W, slivers below float64 resolution — on 2 of 8 networks; 33 on the others),
# which the float Euler count of the sweep cannot resolve: the oracle, not the counter, is undefined there.
_D_COUNTED = (0.0, 0.25, 0.6)

#: problem sizes per scale; "full" is meant for a GPU or a long CPU run
SCALES = {
    "small": {"nets": 6, "mc_biases": 4000, "mc_counts": 150, "c9_train_steps": 100, "phase_networks": 1024,
              "phase_counted": 8,
              "phase_distances": _D_SMALL, "phase_bias_scales": (0.1, 0.3, 1.0, 3.0),
              "counted_bias_scales": (0.1, 1.0), "counted_distances": _D_COUNTED, "example_counted": 8,
              "ball_samples": 100_000, "train_steps": 300, "digits_steps": 200, "queries": 12,
              # the trained-CNN study (reproduce.cnn_study): a tiny version (planes through three test digits
              # hold ~10³ regions even for 2 channels; ~4 × more with 4 channels and 16 hidden units)
              "cnn_seeds": 3, "cnn_steps": 200, "cnn_checkpoints": (0, 200), "cnn_channels": 2, "cnn_hidden": 8,
              "cnn_slices": 3, "cnn_centres": 8, "cnn_radii": (0.05,), "cnn_test": 300},
    "full": {"nets": 24, "mc_biases": 20000, "mc_counts": 1000, "c9_train_steps": 600, "phase_networks": 16384,
             "phase_counted": 32,
             "phase_distances": tuple(float(v) for v in np.round(np.arange(0.0, 6.01, 0.05), 4)),
             "phase_bias_scales": (0.03, 0.1, 0.3, 1.0, 3.0, 10.0), "counted_bias_scales": (0.1, 0.3, 1.0, 3.0),
             "counted_distances": (0.0, 0.1, 0.25, 0.4, 0.6, 1.0, 1.5),
             "example_counted": 96, "ball_samples": 2_000_000, "train_steps": 1000, "digits_steps": 600,
             "queries": 48,
             "cnn_seeds": 5, "cnn_steps": 600, "cnn_checkpoints": (0, 30, 150, 600), "cnn_channels": 4,
             "cnn_hidden": 16, "cnn_slices": 6, "cnn_centres": 32, "cnn_radii": (0.025, 0.05, 0.1), "cnn_test": 300},
}


@dataclass
class Context:
    scale: str
    seed: int
    out: object  # pathlib.Path of the report directory (figures go here)
    proofs: dict = field(default_factory=dict)  # obligation name -> ProofResult
    shared: dict = field(default_factory=dict)  # results one check hands to another (e.g. the phase diagram)

    @property
    def size(self) -> dict:
        return SCALES[self.scale]

    def rng(self, tag: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(tag.encode())])

    def key(self, tag: str):
        import jax

        return jax.random.fold_in(jax.random.key(self.seed), zlib.crc32(tag.encode()))


@dataclass
class Evidence:
    checks: list = field(default_factory=list)
    negatives: list = field(default_factory=list)
    numbers: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)
    summary: list = field(default_factory=list)  # what kind of evidence, with numbers (report's verdict line)

    def says(self, text: str) -> None:
        """One line of the verdict: 'proved symbolically …', 'verified on k instances …', 'sufficient
        condition certified on k of m …', 'fails outside its conditions: …'."""
        self.summary.append(text)

    def check(self, name: str, kind: str, passed: bool, **detail):
        """A check passes only if ``passed`` and none of its reported numbers is NaN (a NaN result is no evidence)."""
        detail = plain(detail)
        self.checks.append({"name": name, "kind": kind, "passed": bool(passed) and not _has_nan(detail), **detail})

    def negative(self, name: str, refuted: bool, **detail):
        """A negative control is refuted only if ``refuted`` and none of its reported numbers is NaN."""
        detail = plain(detail)
        self.negatives.append({"name": name, "refuted": bool(refuted) and not _has_nan(detail), **detail})


def _has_nan(obj) -> bool:
    if isinstance(obj, float):
        return obj != obj
    if isinstance(obj, dict):
        return any(_has_nan(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_has_nan(v) for v in obj)
    return False


def worst(*values) -> float:
    """The largest of ``values`` — NaN if any is NaN (Python's ``max(0.0, nan)`` is 0.0: a NaN result would pass a
    ``worst <= tol`` check)."""
    v = [float(x) for x in values]
    return math.nan if any(x != x for x in v) else max(v)


def least(*values) -> float:
    """The smallest of ``values`` — NaN if any is NaN (``min(inf, nan)`` is inf: a NaN would refute a negative)."""
    v = [float(x) for x in values]
    return math.nan if any(x != x for x in v) else min(v)


def plain(obj):
    """JSON-ready copy (numpy scalars and arrays to Python)."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def symbolic(ev: Evidence, ctx: Context, proofs, negatives) -> None:
    """Symbolic obligations: each of ``proofs`` must be proved, each of ``negatives`` refuted."""
    for name in proofs:
        res = ctx.proofs[name]
        ev.check(f"sympy: {name}", "symbolic", res.status.value == "proved", status=res.status.value,
                 seconds=round(res.seconds, 3))
    for name in negatives:
        res = ctx.proofs[name]
        ev.negative(f"sympy: {name}", res.status.value == "refuted", status=res.status.value,
                    counterexample=None if res.counterexample is None else {k: str(v) for k, v in
                                                                            res.counterexample.items()})
    ok = all(ctx.proofs[n].status.value == "proved" for n in proofs)
    if proofs:
        ev.says(f"{'proved symbolically' if ok else 'NOT proved symbolically'} (sympy: {', '.join(proofs)}"
                + (f"; mutated statements refuted: {', '.join(negatives)}" if negatives else "") + ")")


# -- building blocks ---------------------------------------------------------------------------------------
def _is(value, word: str) -> bool:
    return isinstance(value, str) and value == word


def random_mlp(rng, widths, act, *, mode="train", gamma=None, beta=None, batch_size=16, offset=0.0, bias_scale=1.0,
         batch=None):
    """A random MLP (BN in ``mode`` on every hidden layer, identity output) with its batch."""
    from ..activations import identity

    layers = []
    for i, (m, n) in enumerate(zip(widths[:-1], widths[1:])):
        last = i == len(widths) - 2
        bn = None
        if not last and mode is not None:
            g = rng.uniform(0.5, 2.0, n) * rng.choice([-1.0, 1.0], n) if _is(gamma, "random") else gamma
            b = rng.normal(size=n) * 0.5 if _is(beta, "random") else beta
            kw = {"running_mean": rng.normal(size=n) * 2, "running_var": rng.uniform(0.5, 2.0, n)} \
                if mode == "eval" else {}
            bn = BatchNorm(n, mode, g, b, **kw)
        layers.append(Layer(rng.normal(size=(n, m)) / np.sqrt(m), rng.normal(size=n) * bias_scale,
                            identity() if last else act, bn))
    if batch is None:
        batch = rng.normal(size=(batch_size, widths[0])) + offset
    return Network(widths[0], tuple(layers), batch if mode == "train" else None)


def with_biases(net: Network, rng, scale: float, only_bn: bool = False) -> Network:
    """New raw biases N(0, scale²) on every layer (``only_bn``: on the layers with BN)."""
    layers = tuple(Layer(l.weight, l.bias if only_bn and l.batchnorm is None else
                         rng.normal(size=l.bias.shape) * scale, l.activation, l.batchnorm) for l in net.layers)
    return Network(net.input_dim, layers, net.batch)


