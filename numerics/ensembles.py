"""Random ensembles from explicit PRNG keys: networks, batches and windows (THEORY §2–§5).

Everything here is a pure function of a ``jax.random`` key and static settings, so a sweep's draws are
reproducible from (seed, grid index, network index) and identical on any number of devices.

* **Networks** (:func:`draw_network`): hidden widths, W ~ N(0, weight_scale²/fan_in), raw biases
  b ~ N(0, σ_b²), γ and β from a :class:`Distribution`; one activation for every hidden layer; a final
  1-output identity layer. BN (train mode) sits on every hidden layer of the BN network; the plain network
  has the same weights and biases and no BN.
* **Batches** (:func:`draw_batch`): Gaussian clusters at chosen offsets, or points of scikit-learn's bundled
  datasets (``moons``, ``digits``, standardised once), sampled without replacement; ``batch_centroid="origin"``
  recentres the drawn batch so that x̄ = 0 (the no-BN biases are centred at the origin, so this separates
  the window's distance from the centroid from its distance from the origin).
* **Windows** (:func:`draw_windows`): at the centroid, at a distance D from it (``window_direction``: a uniformly
  random direction per network, or one fixed direction u — an ℓ∞ box is not rotation invariant), at every
  batch point, at held-out points (fresh draws of the same source, or dataset points outside the batch),
  or on a regular grid spanning the batch's bounding box.

:func:`to_networks` turns one draw into the core's ``Network`` objects (BN and plain), so the exact counter
and the JAX kernels see the very same parameters.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from cpa_theory.activations import activation_from_spec, identity
from cpa_theory.bn import DEFAULT_EPS, BatchNorm
from cpa_theory.errors import CPAInputError
from cpa_theory.network import Layer, Network

__all__ = ["Distribution", "EnsembleSpec", "BATCH_SOURCES", "WINDOW_PLACEMENTS", "dataset", "draw_batch",
           "draw_network", "draw_windows", "num_windows", "to_networks", "sample_draws"]

BATCH_SOURCES = ("gaussian", "moons", "digits")
WINDOW_PLACEMENTS = ("distance", "centroid", "batch", "heldout", "grid")
_DATASET_DIM = {"moons": 2, "digits": 64}


@dataclass(frozen=True)
class Distribution:
    """A scalar distribution: ``const`` (a), ``uniform`` on [a, b], ``normal`` with mean a and sd b,
    or ``signed_uniform``: ±U[a, b] with a random sign (γ < 0 flips pieces, C3)."""

    kind: str = "const"
    a: float = 1.0
    b: float = 0.0

    @classmethod
    def parse(cls, spec, what: str) -> "Distribution":
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            return cls("const", float(spec))
        if isinstance(spec, dict):
            kind = spec.get("dist", "const")
            table = {"const": ("value",), "uniform": ("low", "high"), "signed_uniform": ("low", "high"),
                     "normal": ("mean", "std")}
            if kind not in table or set(spec) - {"dist", *table[kind]}:
                raise CPAInputError(f"{what}: {spec!r} is not a distribution; use a number, {{'dist': 'uniform', "
                                    "'low': a, 'high': b}, {'dist': 'signed_uniform', 'low': a, 'high': b} or "
                                    "{'dist': 'normal', 'mean': m, 'std': s}.")
            vals = [float(spec.get(k, 0.0)) for k in table[kind]]
            if not all(np.isfinite(vals)) or (kind != "const" and kind != "normal" and vals[1] < vals[0]) \
                    or (kind == "normal" and vals[1] < 0):
                raise CPAInputError(f"{what}: bad parameters {spec!r} (finite, low <= high, std >= 0).")
            return cls(kind, vals[0], vals[1] if len(vals) > 1 else 0.0)
        raise CPAInputError(f"{what}: expected a number or a distribution object, got {spec!r}.")

    def to_json(self):
        names = {"const": ("value",), "uniform": ("low", "high"), "signed_uniform": ("low", "high"),
                 "normal": ("mean", "std")}[self.kind]
        return {"dist": self.kind, **dict(zip(names, (self.a, self.b)))}

    def sample(self, key, shape, dtype):
        import jax
        import jax.numpy as jnp

        if self.kind == "const":
            return jnp.full(shape, self.a, dtype)
        if self.kind == "normal":
            return self.a + self.b * jax.random.normal(key, shape, dtype)
        k1, k2 = jax.random.split(key)
        u = jax.random.uniform(k1, shape, dtype, self.a, self.b)
        if self.kind == "signed_uniform":
            u = u * jax.random.rademacher(k2, shape, dtype)
        return u


@dataclass(frozen=True)
class EnsembleSpec:
    """Static settings of one ensemble (shapes and distributions; the numbers that vary live in the sweep grid)."""

    d: int = 2
    widths: tuple = (64,)
    activation: object = "relu"
    weight_scale: float = 1.0
    gamma: Distribution = Distribution("const", 1.0)
    beta: Distribution = Distribution("const", 0.0)
    eps: float = DEFAULT_EPS
    batch_source: str = "gaussian"
    batch_offset: float = 0.0  # every coordinate of the batch mean is shifted by this (data far from 0)
    batch_clusters: int = 1  # Gaussian clusters placed at ±separation along random directions
    batch_separation: float = 0.0
    windows: str = "distance"
    heldout: int = 8
    grid_size: int = 5
    window_direction: object = "random"  # "random" (uniform) or a fixed (d,) direction [u_1, …, u_d]
    batch_centroid: str = "random"  # "random" (as drawn) or "origin" (the drawn batch recentred exactly)

    def __post_init__(self):
        if self.batch_centroid not in ("random", "origin"):
            raise CPAInputError(f"batch_centroid {self.batch_centroid!r}: use 'random' (the drawn batch) or "
                                "'origin' (the drawn batch recentred so that its centroid is the origin).")
        if self.batch_centroid == "origin" and self.batch_offset != 0:
            raise CPAInputError("batch_centroid 'origin' recentres the batch, so batch_offset must be 0.")
        if not (isinstance(self.window_direction, str) and self.window_direction == "random"):
            try:
                u = np.asarray(self.window_direction, np.float64)
            except (TypeError, ValueError):
                u = np.zeros(0)
            if isinstance(self.window_direction, str) or u.shape != (self.d,) or not np.all(np.isfinite(u)) \
                    or not np.any(u != 0):
                raise CPAInputError(f"window_direction {self.window_direction!r}: use 'random' or a list of "
                                    f"{self.d} finite numbers, not all 0 (e.g. [1, 0] for the first axis).")
            object.__setattr__(self, "window_direction", tuple(float(v) for v in u))
        if self.batch_source not in BATCH_SOURCES:
            raise CPAInputError(f"batch_source {self.batch_source!r}: use one of {list(BATCH_SOURCES)}.")
        if self.batch_source in _DATASET_DIM and self.d != _DATASET_DIM[self.batch_source]:
            raise CPAInputError(f"batch_source {self.batch_source!r} has input dimension "
                                f"{_DATASET_DIM[self.batch_source]}; set d = {_DATASET_DIM[self.batch_source]}.")
        if self.windows not in WINDOW_PLACEMENTS:
            raise CPAInputError(f"windows {self.windows!r}: use one of {list(WINDOW_PLACEMENTS)}.")
        if self.windows == "grid" and self.grid_size ** self.d > 4096:
            raise CPAInputError(f"a {self.grid_size}^{self.d} grid of windows is too large; lower grid_size or "
                                "use windows 'batch' / 'heldout' in high dimension.")
        if self.d < 1 or not self.widths or min(self.widths) < 1 or self.batch_clusters < 1 or self.heldout < 1 \
                or self.grid_size < 1:
            raise CPAInputError("d, widths, batch_clusters, heldout and grid_size must be >= 1.")
        if not (np.isfinite(self.weight_scale) and self.weight_scale > 0):
            raise CPAInputError("weight_scale must be finite and > 0.")
        activation_from_spec(self.activation)  # raises a typed error for a bad activation

    @functools.cached_property
    def breakpoints(self) -> np.ndarray:
        return activation_from_spec(self.activation).breakpoints_array


@functools.lru_cache(maxsize=None)
def dataset(name: str) -> np.ndarray:
    """A scikit-learn bundled dataset as float64 points, standardised per feature (zero-variance kept as 0)."""
    if name == "moons":
        from sklearn.datasets import make_moons

        X, _ = make_moons(n_samples=1000, noise=0.1, random_state=0)
    elif name == "digits":
        from sklearn.datasets import load_digits

        X = load_digits().data
    else:
        raise CPAInputError(f"unknown dataset {name!r}; use one of {sorted(_DATASET_DIM)}.")
    X = np.asarray(X, np.float64)
    sd = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _gaussian(key, spec: EnsembleSpec, count: int, dtype):
    import jax
    import jax.numpy as jnp

    kc, kx, ka = jax.random.split(key, 3)
    dirs = jax.random.normal(kc, (spec.batch_clusters, spec.d), dtype)
    dirs = dirs / jnp.linalg.norm(dirs, axis=1, keepdims=True)
    centres = spec.batch_separation * dirs + spec.batch_offset
    which = jax.random.randint(ka, (count,), 0, spec.batch_clusters)
    return centres[which] + jax.random.normal(kx, (count, spec.d), dtype)


def draw_batch(key, spec: EnsembleSpec, B: int, dtype, extra: int = 0):
    """(B + extra, d) points: the batch, then ``extra`` held-out points from the same source."""
    import jax
    import jax.numpy as jnp

    if spec.batch_source == "gaussian":
        return _gaussian(key, spec, B + extra, dtype)
    data = jnp.asarray(dataset(spec.batch_source), dtype)
    if B + extra > data.shape[0]:
        raise CPAInputError(f"{spec.batch_source} has {data.shape[0]} points; batch + held-out = {B + extra}.")
    idx = jax.random.choice(key, data.shape[0], (B + extra,), replace=False)
    return data[idx] + spec.batch_offset


def num_windows(spec: EnsembleSpec, B: int) -> int:
    return {"distance": 1, "centroid": 1, "batch": B, "heldout": spec.heldout,
            "grid": spec.grid_size ** spec.d}[spec.windows]


def draw_windows(key, spec: EnsembleSpec, batch, heldout, distance, dtype):
    """(M, d) window centres for one network's batch (see :func:`num_windows` for M)."""
    import jax
    import jax.numpy as jnp

    xbar = batch.mean(axis=0)
    if spec.windows == "centroid":
        return xbar[None]
    if spec.windows == "distance":
        if spec.window_direction == "random":
            u = jax.random.normal(key, (spec.d,), dtype)
        else:
            u = jnp.asarray(spec.window_direction, dtype)
        return (xbar + distance * u / jnp.linalg.norm(u))[None]
    if spec.windows == "batch":
        return batch
    if spec.windows == "heldout":
        return heldout
    lo, hi = batch.min(axis=0), batch.max(axis=0)
    t = jnp.linspace(0.0, 1.0, spec.grid_size, dtype=dtype)
    mesh = jnp.stack(jnp.meshgrid(*([t] * spec.d), indexing="ij"), axis=-1).reshape(-1, spec.d)
    return lo + mesh * (hi - lo)


def draw_network(key, spec: EnsembleSpec, B: int, bias_scale, distance, dtype):
    """One draw: a dict of arrays (weights, biases, gammas, betas per layer; batch; windows). Jittable."""
    import jax
    import jax.numpy as jnp

    k_par, k_batch, k_win = jax.random.split(key, 3)
    dims = (spec.d, *spec.widths, 1)
    Ws, bs, gs, betas = [], [], [], []
    for i, (m, n) in enumerate(zip(dims[:-1], dims[1:])):
        kw, kb, kg, kbe = jax.random.split(jax.random.fold_in(k_par, i), 4)
        Ws.append(spec.weight_scale * jax.random.normal(kw, (n, m), dtype) / jnp.sqrt(jnp.asarray(m, dtype)))
        bs.append(bias_scale * jax.random.normal(kb, (n,), dtype))
        gs.append(spec.gamma.sample(kg, (n,), dtype))
        betas.append(spec.beta.sample(kbe, (n,), dtype))
    extra = spec.heldout if spec.windows == "heldout" else 0
    points = draw_batch(k_batch, spec, B, dtype, extra)
    batch, held = points[:B], points[B:]
    if spec.batch_centroid == "origin":  # exact recentring of the drawn batch (held-out points move with it)
        shift = batch.mean(axis=0)
        batch, held = batch - shift, held - shift
    centers = draw_windows(k_win, spec, batch, held, distance, dtype)
    return {"W": Ws, "b": bs, "gamma": gs, "beta": betas, "batch": batch, "centers": centers}


def to_networks(draw: dict, spec: EnsembleSpec) -> tuple[Network, Network]:
    """The core's (BN network, plain network) for one draw (arrays converted to float64 numpy)."""
    act = activation_from_spec(spec.activation)
    last = len(draw["W"]) - 1
    layers = []
    for i, (W, b, g, be) in enumerate(zip(draw["W"], draw["b"], draw["gamma"], draw["beta"])):
        W, b = np.asarray(W, np.float64), np.asarray(b, np.float64)
        bn = None if i == last else BatchNorm(W.shape[0], "train", np.asarray(g, np.float64),
                                              np.asarray(be, np.float64), spec.eps)
        layers.append(Layer(W, b, identity() if i == last else act, bn))
    bn_net = Network(spec.d, tuple(layers), np.asarray(draw["batch"], np.float64))
    return bn_net, bn_net.without_batchnorm()


_SAMPLERS: dict = {}


def sample_draws(keys, spec: EnsembleSpec, B: int, bias_scale: float, distance: float = 0.0) -> list[dict]:
    """Float64 draws for each key (one jitted, vmapped call; compiled once per (spec, B)), as numpy dicts."""
    import jax
    import jax.numpy as jnp

    from .kernels import ensure_x64

    ensure_x64()
    cache = (repr(spec), int(B))
    if cache not in _SAMPLERS:
        _SAMPLERS[cache] = jax.jit(jax.vmap(lambda k, sb, dist: draw_network(k, spec, B, sb, dist, jnp.float64),
                                            in_axes=(0, None, None)))
    out = _SAMPLERS[cache](keys, jnp.float64(bias_scale), jnp.float64(distance))
    out = jax.tree_util.tree_map(np.asarray, out)
    return [jax.tree_util.tree_map(lambda a, j=j: a[j], out) for j in range(len(keys))]

