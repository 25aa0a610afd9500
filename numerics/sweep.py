"""Monte Carlo sweeps, BN vs no BN (THEORY C5–C7): hitting numbers with JAX, region counts with the counter.

A sweep is a grid over (batch size B, bias scale σ_b, window radius r, distance D of the window centre from
the batch centroid) on top of one random ensemble (:class:`numerics.ensembles.EnsembleSpec`: widths and
depth, activation, weight scale, γ/β distributions, batch source — Gaussian clusters, scikit-learn's moons or
digits — and window placement — distance, centroid, batch points, held-out points, grid). At each grid point
``networks`` networks are drawn from explicit PRNG keys (seed → grid index → network index), and the
first-layer hitting numbers of the BN network and of the same network without BN are computed with the
core's C4 criterion (``cpa_theory.windows``) at every window of the draw:

    h_BN    = #{(i, k) : |w_iᵀ(x0 − x̄) − s_i τ_ik| < r‖w_i‖₁},   τ_ik = (t_k − β_i)/γ_i
    h_plain = #{(i, k) : |w_iᵀx0 + b_i − t_k|      < r‖w_i‖₁}

Each network contributes the mean over its windows; rows report means over networks with Student-t 95 %
confidence intervals and t-test p-values (networks are the independent units; ``numerics.stats``), the
per-network values (for the crossover bootstrap), and the C6 bounds Σ_i K·q_i on E[h_plain] and
Σ_{k≤d} e_k(K·q) on E[N_plain] (one hidden layer; ``cpa_theory.closed_forms``). Every distance of a
(B, σ_b, r) slice uses the same networks (common random numbers), and ``run_sweep`` adds to each row of a
slice its ``crossover``: D*_h (and D*_N with counts) with a bootstrap CI over networks.
With ``count_networks > 0`` the first that many networks of every point are
also counted exactly (certified regions, ``cpa_theory.regions``; always float64) at every window, BN and
plain, giving E[N_BN] and E[N_plain] with confidence intervals.

The network axis is sharded over all visible devices (``jax.sharding``). A run directory holds a header
(versions, backend, dtype, seed, git revision, configuration hash) and one atomically written file per
finished grid point, each carrying the configuration hash; a rerun with the same configuration skips
finished points whose hash matches, so a killed run loses and duplicates nothing. The directory is
claimed, locked and listed in a manifest by ``cpa_theory.rundir``: a sweep writes only into a new, empty
or own run directory and never touches a file it did not write.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import numbers
import subprocess
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from cpa_theory import closed_forms as cf
from cpa_theory.bn import BatchNorm, bn_scale, offset_formula
from cpa_theory.errors import CPAInputError, CPAInternalError
from cpa_theory.outputs import write_output
from cpa_theory.rundir import claim_run_dir
from cpa_theory.windows import Window
from cpa_theory.progress import interrupts_deferred, track

from .ensembles import Distribution, EnsembleSpec, draw_network, sample_draws, to_networks
from .kernels import TRACE_COUNT, ensure_x64, euler_regions_2d, window_hits_dense
from .stats import attach_crossovers, mean_ci95, t_test_p, wilson_ci95

__all__ = ["SweepConfig", "validate_config", "grid_points", "run_point", "run_sweep", "mean_ci95"]

_ENSEMBLE_FIELDS = ("d", "widths", "activation", "weight_scale", "gamma", "beta", "eps", "batch_source",
                    "batch_offset", "batch_clusters", "batch_separation", "windows", "heldout", "grid_size",
                    "window_direction", "batch_centroid")


@dataclass(frozen=True)
class SweepConfig:
    seed: int = 0
    d: int = 2
    widths: tuple = (64,)
    networks: int = 256
    batch_sizes: tuple = (16,)
    bias_scales: tuple = (0.1, 1.0)
    radii: tuple = (0.1,)
    distances: tuple = (0.0, 0.5, 1.0, 2.0, 4.0)
    dtype: str = "float64"
    activation: object = "relu"
    weight_scale: float = 1.0
    gamma: object = 1.0
    beta: object = 0.0
    eps: float = 1e-5
    batch_source: str = "gaussian"
    batch_offset: float = 0.0
    batch_clusters: int = 1
    batch_separation: float = 0.0
    windows: str = "distance"
    heldout: int = 8
    grid_size: int = 5
    window_direction: object = "random"
    batch_centroid: str = "random"
    count_networks: int = 0

    @classmethod
    def from_dict(cls, doc: dict) -> "SweepConfig":
        from cpa_theory.inputs import check_sweep_doc

        check_sweep_doc(doc)  # lists where lists belong, numbers (not "1.0" or true) where numbers belong
        doc = dict(doc)
        if "width" in doc:  # one hidden layer of this width (the first configuration format)
            if "widths" in doc:
                raise CPAInputError("give either 'width' or 'widths', not both.")
            doc["widths"] = [doc.pop("width")]
        known = {f.name for f in fields(cls)}
        unknown = set(doc) - known
        if unknown:
            raise CPAInputError(f"unknown sweep settings {sorted(unknown)}; allowed: {sorted(known)}.")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()}
        try:
            cfg = cls(**kw)
        except TypeError as exc:
            raise CPAInputError(f"bad sweep configuration: {exc}.") from None
        validate_config(cfg)
        if cfg.dtype not in ("float32", "float64"):
            raise CPAInputError(f"dtype {cfg.dtype!r}: use 'float32' or 'float64'.")
        if cfg.networks < 2 or cfg.count_networks < 0 or cfg.count_networks > cfg.networks or cfg.count_networks == 1:
            raise CPAInputError("networks must be >= 2 and count_networks 0 (no exact counts) or 2 <= count_networks <= "
                                "networks: one counted network has no spread, so no interval and no test.")
        if cfg.count_networks and cfg.d > 4:
            raise CPAInputError(f"exact counting (count_networks > 0) is for small inputs (d <= 4), d = {cfg.d}; "
                                "set count_networks to 0 and use the hitting numbers.")
        if any(b < 2 for b in cfg.batch_sizes):
            raise CPAInputError("batch sizes must be >= 2 (train-mode BN).")
        if any(not r > 0 for r in cfg.radii) or any(s < 0 for s in cfg.bias_scales) or any(x < 0 for x in cfg.distances):
            raise CPAInputError("radii must be > 0, bias scales and distances >= 0.")
        _ = cfg.spec  # building it validates the ensemble settings
        return cfg

    @property
    def spec(self) -> EnsembleSpec:
        kw = {k: getattr(self, k) for k in _ENSEMBLE_FIELDS}
        kw["widths"] = tuple(int(w) for w in kw["widths"])
        kw["gamma"] = Distribution.parse(self.gamma, "gamma")
        kw["beta"] = Distribution.parse(self.beta, "beta")
        return EnsembleSpec(**kw)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


_GRID_LISTS = {  # name: (whole numbers?, check of one value); the checks are the network-file rules
    "batch_sizes": (True, lambda v: v >= 2 or "must be >= 2 (train-mode BN needs a batch of two)"),
    "widths": (True, lambda v: v >= 1 or "must be >= 1"),
    "radii": (False, lambda v: Window(np.zeros(1), v) and True),  # the window's own rule: finite, > 0
    "bias_scales": (False, lambda v: v >= 0 or "must be >= 0"),
    "distances": (False, lambda v: v >= 0 or "must be >= 0"),
}
_SCALARS = {"seed": True, "d": True, "networks": True, "count_networks": True, "heldout": True, "grid_size": True,
            "batch_clusters": True, "weight_scale": False, "eps": False, "batch_offset": False,
            "batch_separation": False}


def _is_number(v, whole: bool) -> bool:
    if isinstance(v, bool) or not isinstance(v, (numbers.Integral if whole else numbers.Real)):
        return False
    return whole or math.isfinite(v)


def validate_config(cfg: SweepConfig) -> None:
    """Refuse a configuration the network-file rules would refuse (CPAInputError, exit 2), before any run
    directory exists: lists where lists belong, non-empty, finite numbers of the right sign, eps >= 0."""
    for name, (whole, check) in _GRID_LISTS.items():
        value = getattr(cfg, name)
        if not isinstance(value, (list, tuple)):
            raise CPAInputError(f"sweep setting {name!r} must be a list of numbers, e.g. \"{name}\": [1, 2]; "
                                f"got {value!r}.")
        if not value:
            raise CPAInputError(f"sweep setting {name!r} is empty; give at least one value.")
        for v in value:
            if not _is_number(v, whole):
                kind = "whole numbers" if whole else "finite numbers"
                raise CPAInputError(f"sweep setting {name!r} must hold {kind}; {v!r} is not one.")
            try:
                verdict = check(v)
            except CPAInputError as exc:
                raise type(exc)(f"sweep setting {name!r}: {exc}") from None
            if isinstance(verdict, str):  # a check returns True (numpy bools too) or the reason
                raise CPAInputError(f"sweep setting {name!r}: {v!r} {verdict}.")
    for name, whole in _SCALARS.items():
        v = getattr(cfg, name)
        if not _is_number(v, whole):
            raise CPAInputError(f"sweep setting {name!r} must be a {'whole' if whole else 'finite'} number; got "
                                f"{v!r}.")
    if cfg.seed < 0:
        raise CPAInputError(f"sweep setting 'seed' must be >= 0; got {cfg.seed}.")
    try:
        BatchNorm(1, "train", eps=cfg.eps)  # the network files' rule for eps (finite, >= 0)
    except CPAInputError as exc:
        raise type(exc)(f"sweep setting 'eps': {exc}") from None


def grid_points(cfg: SweepConfig) -> list[dict]:
    """The grid in a fixed order; windows not placed by distance have no distance axis (``distance: None``).

    ``slice`` numbers the (B, σ_b, r) combinations: every distance of a slice draws the SAME networks, batches
    and window directions (common random numbers), so E[BN] − E[plain] along D is a per-network curve and the
    crossover distance D* has a bootstrap over networks (``numerics.stats.crossover``)."""
    distances = cfg.distances if cfg.windows == "distance" else (None,)
    out = []
    for i, (B, sb, r, D) in enumerate(itertools.product(cfg.batch_sizes, cfg.bias_scales, cfg.radii, distances)):
        out.append({"index": i, "slice": i // len(distances), "batch_size": B, "bias_scale": sb, "radius": r,
                    "distance": D})
    return out


def _one_network(key, spec: EnsembleSpec, B, sigma_b, r, D, dtype):
    """One network of a grid point: (h_BN, h_plain, Σ K·q_i, Σ_{k≤d} e_k(K·q), distance of the window from x̄).

    Hits are THE C4 kernel (``numerics.kernels.window_hits_dense``), averaged over the draw's windows; the
    C6 bounds come from ``cpa_theory.closed_forms``."""
    import jax.numpy as jnp

    draw = draw_network(key, spec, B, sigma_b, D, dtype)
    W, b, g, beta = draw["W"][0], draw["b"][0], draw["gamma"][0], draw["beta"][0]
    batch, X = draw["batch"], draw["centers"]
    xbar = batch.mean(axis=0)
    s = bn_scale(jnp.mean(((batch - xbar) @ W.T) ** 2, axis=0), spec.eps, xp=jnp)
    t = jnp.asarray(spec.breakpoints, dtype)
    # τ = (t − β)/γ (the core's formula); a γ = 0 neuron is constant (no switching set): offset +inf never cuts
    tau = jnp.where(g[:, None] != 0, offset_formula(t[None, :], beta[:, None], jnp.where(g == 0, 1.0, g)[:, None]),
                    jnp.inf)
    h_bn = jnp.mean(window_hits_dense(W, xbar, s[:, None] * tau, X, r, xp=jnp))
    h_bn = jnp.where(jnp.all(jnp.isfinite(s)), h_bn, jnp.nan)  # overflowed statistics: refused by run_point
    h_plain = jnp.mean(window_hits_dense(W, jnp.zeros_like(xbar), t[None, :] - b[:, None], X, r, xp=jnp))
    density = 1.0 / (jnp.maximum(sigma_b, jnp.finfo(dtype).tiny) * jnp.sqrt(2.0 * jnp.pi))
    K = len(spec.breakpoints)
    q = jnp.where(sigma_b > 0, cf.c6_q(jnp.sum(jnp.abs(W), axis=1), r, density, K, xp=jnp), float(K))
    dist = jnp.mean(jnp.linalg.norm(X - xbar, axis=1))
    if _euler_applies(spec):  # d = 2, one hidden layer, one breakpoint: E[N] for every network by Euler's formula
        off = (s[:, None] * tau)[:, 0]
        live = jnp.isfinite(off)
        n_bn = jnp.mean(euler_regions_2d(jnp.where(live[:, None], W, 0.0), jnp.where(live, W @ xbar + off, 1.0),
                                         (xbar, live & (off == 0)), X, r, xp=jnp))
        n_plain = jnp.mean(euler_regions_2d(W, t[0] - b, (xbar, jnp.zeros(W.shape[0], bool)), X, r, xp=jnp))
    else:
        n_bn = n_plain = jnp.asarray(jnp.nan, dtype)
    return h_bn, h_plain, cf.c6_bound_h(q, xp=jnp), cf.c6_bound_n(q, spec.d, xp=jnp), dist, n_bn, n_plain


def _euler_applies(spec: EnsembleSpec) -> bool:
    return spec.d == 2 and len(spec.widths) == 1 and len(spec.breakpoints) == 1


_KERNELS: dict = {}


def _point_kernel(spec: EnsembleSpec, B, dtype):
    """The jitted, vmapped kernel for one (ensemble, B, dtype): compiled once, reused for every (σ_b, r, D)
    (``TRACE_COUNT["sweep_point"]`` counts its traces; tests assert it does not recompile)."""
    import jax

    key = (repr(spec), B, dtype)  # repr: the activation may be a (unhashable) spline dict

    def one(k, sb, r, D):
        return _one_network(k, spec, B, sb, r, D, dtype)

    def traced(keys, sb, r, D):
        TRACE_COUNT["sweep_point"] += 1  # Python side effect: runs once per trace
        return jax.vmap(one, in_axes=(0, None, None, None))(keys, sb, r, D)

    if key not in _KERNELS:
        _KERNELS[key] = jax.jit(traced)
    return _KERNELS[key]


def _samples(x) -> list:
    return [round(float(v), 6) for v in x]


def _count_point(cfg: SweepConfig, keys, point: dict, client=None) -> dict:
    """E[N] by the exact counter for the first ``count_networks`` networks (float64 draws of the same keys),
    in this process or, with a Dask ``client``, on its cluster (one task per network × chunk of windows)."""
    from cpa_theory.regions import count_regions

    spec = cfg.spec
    D = 0.0 if point["distance"] is None else point["distance"]
    draws = sample_draws(keys[: cfg.count_networks], spec, point["batch_size"], point["bias_scale"], D)
    nets, centers = [], []  # BN and plain network of every counted draw, conditioned once each
    for j in range(cfg.count_networks):
        bn_net, plain_net = to_networks(draws[j], spec)
        nets += [bn_net.condition(), plain_net.condition()]
        centers += [draws[j]["centers"]] * 2
    if client is not None:
        from cpa_theory.distributed import count_windows_on

        counts = count_windows_on(client, nets, centers, point["radius"])
    else:
        counts = [[count_regions(net, x0, point["radius"]).as_json() for x0 in c] for net, c in zip(nets, centers)]
    n_bn, n_plain, lin_bn, lin_plain = [], [], [], []
    for j in range(cfg.count_networks):
        c_bn, c_pl = counts[2 * j], counts[2 * j + 1]
        if not all(c["certified"] for c in c_bn + c_pl):
            raise CPAInternalError(f"uncertified count at grid point {point['index']}, network {j}")
        n_bn.append(np.mean([c["regions"] for c in c_bn]))
        n_plain.append(np.mean([c["regions"] for c in c_pl]))
        lin_bn.append(np.mean([c["linear_regions"] for c in c_bn]))
        lin_plain.append(np.mean([c["linear_regions"] for c in c_pl]))
    row = {"counted_networks": cfg.count_networks}
    for name, x in (("n_bn", n_bn), ("n_plain", n_plain), ("n_lin_bn", lin_bn), ("n_lin_plain", lin_plain)):
        row[f"{name}_mean"], row[f"{name}_ci95"] = mean_ci95(x)
    diff = np.asarray(n_bn) - np.asarray(n_plain)
    row["n_bn_minus_plain_mean"], row["n_bn_minus_plain_ci95"] = mean_ci95(diff)
    row["n_bn_minus_plain_p"] = t_test_p(diff)
    row["p_n_bn_ge_plain"] = float(np.mean(diff >= 0))
    row["p_n_bn_ge_plain_ci95"] = wilson_ci95(int(np.sum(diff >= 0)), len(diff))
    row["n_bn_samples"], row["n_plain_samples"] = _samples(n_bn), _samples(n_plain)
    return row


def _global_keys(keys, sharding):
    """The PRNG keys as one global array laid out by ``sharding``. Every process holds the same ``keys`` and
    supplies the shards of its own devices, so this works when the mesh spans several JAX processes (where
    ``jax.device_put`` of a host array onto non-addressable devices is refused)."""
    import jax

    data = np.asarray(jax.random.key_data(keys))
    arr = jax.make_array_from_callback(data.shape, sharding, lambda idx: data[idx])
    return jax.random.wrap_key_data(arr, impl=jax.random.key_impl(keys))


def _to_host(x) -> np.ndarray:
    """A (possibly multi-process) global array as one numpy array on every process."""
    import jax

    if jax.process_count() == 1:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def run_point(cfg: SweepConfig, point: dict, devices=None, client=None) -> dict:
    """All networks of one grid point, the network axis sharded over ``devices`` (default: all, of every JAX
    process); the exact counts (``count_networks``) on the Dask cluster of ``client`` when given.

    Confidence intervals are Student-t (``numerics.stats.mean_ci95``); ``*_p`` is the two-sided t-test
    p-value of "no difference" (Holm-adjust a family of them with ``numerics.stats.holm``); the per-network
    values are kept (``*_samples``) for the crossover bootstrap."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    dtype = jnp.float64 if cfg.dtype == "float64" else jnp.float32
    if dtype == jnp.float64 or cfg.count_networks:
        ensure_x64()
    devices = list(jax.devices()) if devices is None else list(devices)
    n_dev = len(devices)
    total = math.ceil(cfg.networks / n_dev) * n_dev  # pad to a multiple of the device count
    # common random numbers: the key depends on the (B, σ_b, r) slice, not on the distance
    key = jax.random.fold_in(jax.random.key(cfg.seed), point.get("slice", point["index"]))
    keys = jax.random.split(key, total)
    mesh = Mesh(np.array(devices), ("nets",))
    sharded = _global_keys(keys, NamedSharding(mesh, PartitionSpec("nets")))
    spec = cfg.spec
    fn = _point_kernel(spec, point["batch_size"], dtype)
    D = 0.0 if point["distance"] is None else point["distance"]
    args = (jnp.asarray(point["bias_scale"], dtype), jnp.asarray(point["radius"], dtype), jnp.asarray(D, dtype))
    with interrupts_deferred():  # Ctrl-C during an XLA compile crashes the interpreter at exit: let it finish
        h_bn, h_plain, q, e, dist, nb, npl = (_to_host(v)[: cfg.networks].astype(np.float64)
                                              for v in fn(sharded, *args))

    if not (np.all(np.isfinite(h_bn)) and np.all(np.isfinite(h_plain))):
        raise CPAInputError(f"the batch statistics overflow {cfg.dtype} at grid point {point['index']} (batch "
                            "variance of a neuron is inf): weight_scale or the batch values are too large; "
                            "rescale them.")
    row = dict(point)
    row["seed"] = cfg.seed
    row["config_hash"] = cfg.digest()
    for name, x in (("h_bn", h_bn), ("h_plain", h_plain), ("bn_minus_plain", h_bn - h_plain)):
        row[f"{name}_mean"], row[f"{name}_ci95"] = mean_ci95(x)
    row["bn_minus_plain_p"] = t_test_p(h_bn - h_plain)
    row["c6_bound_h_plain"] = float(q.mean())
    row["c6_bound_n_plain"] = float(e.mean()) if len(spec.widths) == 1 else None
    row["p_bn_refines_more"] = float(np.mean(h_bn > h_plain))
    row["p_bn_refines_more_ci95"] = wilson_ci95(int(np.sum(h_bn > h_plain)), int(np.size(h_bn)))
    row["mean_distance_to_centroid"] = float(dist.mean())
    row["window_direction"] = spec.window_direction if isinstance(spec.window_direction, str) \
        else list(spec.window_direction)
    row["batch_centroid"] = spec.batch_centroid
    row["networks"] = cfg.networks
    row["widths"] = list(spec.widths)
    row["breakpoints_per_neuron"] = len(spec.breakpoints)
    row["h_bn_samples"], row["h_plain_samples"] = _samples(h_bn), _samples(h_plain)
    if _euler_applies(spec):  # E[N] over all networks (Euler's formula, generic lines; certified on the counted)
        for name, x in (("n_euler_bn", nb), ("n_euler_plain", npl), ("n_euler_bn_minus_plain", nb - npl)):
            row[f"{name}_mean"], row[f"{name}_ci95"] = mean_ci95(x)
        row["n_euler_bn_minus_plain_p"] = t_test_p(nb - npl)
        row["n_euler_bn_samples"], row["n_euler_plain_samples"] = _samples(nb), _samples(npl)
    if cfg.count_networks:
        row.update(_count_point(cfg, keys, point, client=client))
    return row


def _git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _header(cfg: SweepConfig) -> dict:
    import jax

    import cpa_theory

    return {"config": cfg.to_dict(), "config_hash": cfg.digest(), "seed": cfg.seed, "dtype": cfg.dtype,
            "backend": jax.default_backend(), "devices": len(jax.devices()),
            "versions": {"cpa_theory": cpa_theory.__version__, "jax": jax.__version__, "numpy": np.__version__},
            "git_revision": _git_revision()}


def _from_process_0(data: np.ndarray) -> np.ndarray:
    """``data`` as JAX process 0 holds it, on every process (identity with one process)."""
    import jax

    if jax.process_count() == 1:
        return data
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.broadcast_one_to_all(data))


def _text_from_process_0(text: str) -> str:
    """Process 0's ``text`` on every JAX process (length first, then the UTF-8 bytes)."""
    raw = np.frombuffer(text.encode(), dtype=np.uint8)
    n = int(_from_process_0(np.array([raw.size], dtype=np.int64))[0])
    return _from_process_0(raw if raw.size == n else np.zeros(n, dtype=np.uint8)).tobytes().decode()


def _share_todo(points: list[dict], todo: list[dict]) -> list[dict]:
    """Process 0's list of unfinished grid points, on every process: all must run the same points, in the
    same order, because each point's kernel is one computation over the global mesh."""
    mask = np.zeros(len(points), dtype=bool)
    mask[[p["index"] for p in todo]] = True
    mask = _from_process_0(mask)
    return [p for p in points if mask[p["index"]]]


def _share_rows(rows: list[dict]) -> list[dict]:
    """Process 0's final rows (read from its run directory), on every process."""
    import jax

    if jax.process_count() == 1:
        return rows
    text = "".join(json.dumps(r) + "\n" for r in rows)
    return [json.loads(line) for line in _text_from_process_0(text).splitlines()]


def _run_sweep_follower(cfg: SweepConfig, *, devices=None, client=None) -> list[dict]:
    """``run_sweep`` on JAX processes other than 0: compute the points process 0 names, write nothing."""
    points = grid_points(cfg)
    for p in _share_todo(points, []):
        run_point(cfg, p, devices=devices, client=client)
    return _share_rows([])


def run_sweep(cfg: SweepConfig, out, *, progress: bool = False, devices=None, fresh: bool = False,
              client=None) -> list[dict]:
    """Run (or resume) a sweep into directory ``out``; returns the rows in grid order.

    ``out`` is a run directory (``cpa_theory.rundir``): new, empty, or one an earlier sweep of this
    configuration made (resumed); ``fresh`` replaces an earlier sweep's files (only those). The
    configuration is validated before anything is created; every chunk carries the configuration hash
    and is reused only if it matches.

    ``client``: a Dask client for the exact counts (``count_networks``). Under several JAX processes
    (``jax.distributed.initialize``) every process calls this with the same arguments: all compute every
    grid point (the network axis sharded over the global mesh), only process 0 touches ``out``, and it
    tells the others which points are left and what the final rows are."""
    import jax

    SweepConfig.from_dict(cfg.to_dict())  # every rule of a config file, before any directory exists
    if jax.process_index() != 0:
        return _run_sweep_follower(cfg, devices=devices, client=client)
    with claim_run_dir(out, "sweep", cfg.digest(), fresh=fresh) as run:
        return _sweep_into(run, cfg, Path(out), progress, devices, client)


def _owned_row(run, path: Path, cfg: SweepConfig) -> dict | None:
    """A finished chunk of this configuration, or None (absent, or a result of another configuration)."""
    raw = run.read_owned(path)  # a file the toolkit did not write here is refused, never read or replaced
    if raw is None:
        return None
    try:
        row = json.loads(raw)
    except ValueError:
        raise CPAInputError(f"chunk {str(path)!r} is not valid JSON; delete it to recompute that grid point.") \
            from None
    return row if isinstance(row, dict) and row.get("config_hash") == cfg.digest() else None


def _json_line(row: dict, what: str) -> str:
    try:
        return json.dumps(row, allow_nan=False) + "\n"
    except ValueError:  # NaN/inf inside a computation is a bug, never written as bare NaN
        raise CPAInternalError(f"{what} contains NaN or inf: {row}") from None


def _sweep_into(run, cfg: SweepConfig, out: Path, progress: bool, devices, client) -> list[dict]:
    chunks = run.mkdir("chunks")
    if run.read_owned(out / "header.json") is None:
        write_output(out / "header.json", json.dumps(_header(cfg), indent=1) + "\n")
    points = grid_points(cfg)
    rows = {p["index"]: _owned_row(run, chunks / f"{p['index']:06d}.json", cfg) for p in points}
    todo = _share_todo(points, [p for p in points if rows[p["index"]] is None])
    # stderr only, only on a terminal; the label counts finished grid points
    for p in track(todo, "sweep", total=len(points), done=len(points) - len(todo), unit="points done",
                   requested=progress):
        row = run_point(cfg, p, devices=devices, client=client)
        write_output(chunks / f"{p['index']:06d}.json", _json_line(row, f"grid point {p['index']}"))
        rows[p["index"]] = row
    rows = [rows[p["index"]] for p in points]
    rows = attach_crossovers(rows)  # D*_h and D*_N with bootstrap CIs per slice (needs the distance axis)
    write_output(out / "results.jsonl", "".join(_json_line(r, "a result row") for r in rows))
    return _share_rows(rows)

