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

Each network contributes the mean over its windows; rows report means over networks with 95 % confidence
intervals (normal approximation, networks are the independent units), the C6 bounds Σ_i K·q_i on E[h_plain]
and Σ_{k≤d} e_k(K·q) on E[N_plain] (one hidden layer), and for D > r the exact ℓ2-ball probability
I_{(r/D)²}(1/2, (d−1)/2) of C7. With ``count_networks > 0`` the first that many networks of every point are
also counted exactly (certified regions, ``cpa_theory.regions``; always float64) at every window, BN and
plain, giving E[N_BN] and E[N_plain] with confidence intervals.

The network axis is sharded over all visible devices (``jax.sharding``). A run directory holds a header
(versions, backend, dtype, seed, git revision, configuration hash) and one atomically written file per
finished grid point; a rerun with the same configuration skips finished points, so a killed run loses
and duplicates nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import subprocess
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from cpa_theory.bn import bn_scale, offset_formula
from cpa_theory.errors import CPAInputError
from cpa_theory.fileformat import atomic_write_text
from cpa_theory.inputs import read_json
from cpa_theory.progress import interrupts_deferred, track
from cpa_theory.windows import dual_norm, hyperplane_residual, window_slack

from .ensembles import Distribution, EnsembleSpec, draw_network, sample_draws, to_networks

__all__ = ["SweepConfig", "grid_points", "run_point", "run_sweep", "l2_ball_hit_probability", "mean_ci95"]

_ENSEMBLE_FIELDS = ("d", "widths", "activation", "weight_scale", "gamma", "beta", "eps", "batch_source",
                    "batch_offset", "batch_clusters", "batch_separation", "windows", "heldout", "grid_size")


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
        if cfg.dtype not in ("float32", "float64"):
            raise CPAInputError(f"dtype {cfg.dtype!r}: use 'float32' or 'float64'.")
        if cfg.networks < 2 or cfg.count_networks < 0 or cfg.count_networks > cfg.networks:
            raise CPAInputError("networks must be >= 2 and 0 <= count_networks <= networks.")
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


def grid_points(cfg: SweepConfig) -> list[dict]:
    """The grid in a fixed order; windows not placed by distance have no distance axis (``distance: None``)."""
    distances = cfg.distances if cfg.windows == "distance" else (None,)
    return [{"index": i, "batch_size": B, "bias_scale": sb, "radius": r, "distance": D}
            for i, (B, sb, r, D) in enumerate(itertools.product(cfg.batch_sizes, cfg.bias_scales, cfg.radii,
                                                                 distances))]


def l2_ball_hit_probability(r: float, D: float, d: int) -> float:
    """C7: P(a hyperplane through x̄ with uniform normal meets the ℓ2 ball of radius r at distance D > r)."""
    from scipy.special import betainc

    if d == 1:
        return 0.0
    return float(betainc(0.5, (d - 1) / 2.0, (r / D) ** 2))


def mean_ci95(x) -> tuple[float, list[float]]:
    """Mean and a normal-approximation 95 % confidence interval of independent samples."""
    x = np.asarray(x, np.float64)
    mean = float(x.mean())
    half = 1.96 * float(x.std(ddof=1)) / math.sqrt(len(x)) if len(x) > 1 else float("inf")
    return mean, [mean - half, mean + half]


def _elementary_symmetric(q, order: int):
    """e_0 … e_order of the entries of q (jnp), by the product Π(1 + q_i t) truncated at t^order."""
    import jax
    import jax.numpy as jnp

    def step(e, qi):
        return e.at[1:].add(qi * e[:-1]), None

    e0 = jnp.zeros(order + 1, q.dtype).at[0].set(1.0)
    return jax.lax.scan(step, e0, q)[0]


def _one_network(key, spec: EnsembleSpec, B, sigma_b, r, D, dtype):
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
    norms = dual_norm(W, np.inf, xp=jnp)[None, :, None]
    slack_bn = window_slack(norms, hyperplane_residual(W, xbar, s[:, None] * tau, X, xp=jnp), r, xp=jnp)
    slack_plain = window_slack(norms, hyperplane_residual(W, jnp.zeros_like(xbar), t[None, :] - b[:, None], X,
                                                          xp=jnp), r, xp=jnp)
    h_bn = jnp.mean(jnp.sum(slack_bn > 0, axis=(1, 2)))
    h_plain = jnp.mean(jnp.sum(slack_plain > 0, axis=(1, 2)))
    density = 1.0 / (jnp.maximum(sigma_b, jnp.finfo(dtype).tiny) * jnp.sqrt(2.0 * jnp.pi))
    q = len(spec.breakpoints) * jnp.where(sigma_b > 0, jnp.minimum(1.0, 2.0 * r * norms[0, :, 0] * density), 1.0)
    e = _elementary_symmetric(q, spec.d)
    dist = jnp.mean(jnp.linalg.norm(X - xbar, axis=1))
    return h_bn, h_plain, jnp.sum(q), jnp.sum(e), dist


_KERNELS: dict = {}


def _point_kernel(spec: EnsembleSpec, B, dtype):
    """The jitted, vmapped kernel for one (ensemble, B, dtype): compiled once, reused for every (σ_b, r, D)."""
    import jax

    key = (repr(spec), B, dtype)  # repr: the activation may be a (unhashable) spline dict
    if key not in _KERNELS:
        one = lambda k, sb, r, D: _one_network(k, spec, B, sb, r, D, dtype)  # noqa: E731
        _KERNELS[key] = jax.jit(jax.vmap(one, in_axes=(0, None, None, None)))
    return _KERNELS[key]


def _count_point(cfg: SweepConfig, keys, point: dict) -> dict:
    """E[N] by the exact counter for the first ``count_networks`` networks (float64 draws of the same keys)."""
    from cpa_theory.regions import count_regions

    spec = cfg.spec
    D = 0.0 if point["distance"] is None else point["distance"]
    draws = sample_draws(keys[: cfg.count_networks], spec, point["batch_size"], point["bias_scale"], D)
    n_bn, n_plain, lin_bn, lin_plain = [], [], [], []
    for j in range(cfg.count_networks):
        one = draws[j]
        bn_net, plain_net = to_networks(one, spec)
        per = {"bn": [], "plain": [], "lbn": [], "lplain": []}
        for x0 in one["centers"]:
            c_bn = count_regions(bn_net, x0, point["radius"])
            c_pl = count_regions(plain_net, x0, point["radius"])
            if not (c_bn.certified and c_pl.certified):
                raise RuntimeError(f"uncertified count at grid point {point['index']}, network {j}")
            per["bn"].append(c_bn.regions)
            per["plain"].append(c_pl.regions)
            per["lbn"].append(c_bn.linear_regions)
            per["lplain"].append(c_pl.linear_regions)
        n_bn.append(np.mean(per["bn"]))
        n_plain.append(np.mean(per["plain"]))
        lin_bn.append(np.mean(per["lbn"]))
        lin_plain.append(np.mean(per["lplain"]))
    row = {"counted_networks": cfg.count_networks}
    for name, x in (("n_bn", n_bn), ("n_plain", n_plain), ("n_lin_bn", lin_bn), ("n_lin_plain", lin_plain)):
        row[f"{name}_mean"], row[f"{name}_ci95"] = mean_ci95(x)
    row["n_bn_minus_plain_mean"], row["n_bn_minus_plain_ci95"] = mean_ci95(np.asarray(n_bn) - np.asarray(n_plain))
    row["p_n_bn_ge_plain"] = float(np.mean(np.asarray(n_bn) >= np.asarray(n_plain)))
    return row


def run_point(cfg: SweepConfig, point: dict, devices=None) -> dict:
    """All networks of one grid point, the network axis sharded over ``devices`` (default: all)."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    dtype = jnp.float64 if cfg.dtype == "float64" else jnp.float32
    if (dtype == jnp.float64 or cfg.count_networks) and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    devices = list(jax.devices()) if devices is None else list(devices)
    n_dev = len(devices)
    total = math.ceil(cfg.networks / n_dev) * n_dev  # pad to a multiple of the device count
    key = jax.random.fold_in(jax.random.key(cfg.seed), point["index"])
    keys = jax.random.split(key, total)
    mesh = Mesh(np.array(devices), ("nets",))
    sharded = jax.device_put(keys, NamedSharding(mesh, PartitionSpec("nets")))
    spec = cfg.spec
    fn = _point_kernel(spec, point["batch_size"], dtype)
    D = 0.0 if point["distance"] is None else point["distance"]
    args = (jnp.asarray(point["bias_scale"], dtype), jnp.asarray(point["radius"], dtype), jnp.asarray(D, dtype))
    with interrupts_deferred():  # Ctrl-C during an XLA compile crashes the interpreter at exit: let it finish
        h_bn, h_plain, q, e, dist = (np.asarray(v)[: cfg.networks].astype(np.float64) for v in fn(sharded, *args))

    row = dict(point)
    row["seed"] = cfg.seed
    row["config_hash"] = cfg.digest()
    for name, x in (("h_bn", h_bn), ("h_plain", h_plain), ("bn_minus_plain", h_bn - h_plain)):
        row[f"{name}_mean"], row[f"{name}_ci95"] = mean_ci95(x)
    row["c6_bound_h_plain"] = float(q.mean())
    row["c6_bound_n_plain"] = float(e.mean()) if len(spec.widths) == 1 else None
    row["p_bn_refines_more"] = float(np.mean(h_bn > h_plain))
    row["mean_distance_to_centroid"] = float(dist.mean())
    r = point["radius"]
    row["l2_ball_exact_p"] = (l2_ball_hit_probability(r, D, cfg.d)
                              if cfg.windows == "distance" and D > r else None)
    row["networks"] = cfg.networks
    row["widths"] = list(spec.widths)
    row["breakpoints_per_neuron"] = len(spec.breakpoints)
    if cfg.count_networks:
        row.update(_count_point(cfg, keys, point))
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


def run_sweep(cfg: SweepConfig, out, *, progress: bool = False, devices=None) -> list[dict]:
    """Run (or resume) a sweep into directory ``out``; returns the rows in grid order."""
    out = Path(out)
    chunks = out / "chunks"
    header_path = out / "header.json"
    if header_path.exists():
        old = read_json(header_path, "sweep header", fix="the run directory is damaged: choose a new --out")
        if old.get("config_hash") != cfg.digest():
            raise CPAInputError(f"{str(out)!r} holds a sweep with another configuration; choose a new --out or "
                                "delete the directory.")
    else:
        try:
            chunks.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CPAInputError(f"cannot create the run directory {str(out)!r} ({exc.strerror}); choose another "
                                "--out.") from None
        atomic_write_text(header_path, json.dumps(_header(cfg), indent=1) + "\n")
    chunks.mkdir(exist_ok=True)
    for stale in chunks.glob(".*.tmp"):  # left by a run killed in the middle of a write: never a result
        stale.unlink()
    points = grid_points(cfg)
    todo = [p for p in points if not (chunks / f"{p['index']:06d}.json").exists()]
    # stderr only, only on a terminal; the label counts finished grid points
    for p in track(todo, "sweep", total=len(points), done=len(points) - len(todo), unit="points done",
                   requested=progress):
        row = run_point(cfg, p, devices=devices)
        atomic_write_text(chunks / f"{p['index']:06d}.json", json.dumps(row) + "\n")
    rows = [read_json(chunks / f"{p['index']:06d}.json", "sweep chunk", fix="delete that chunk to recompute its grid "
                      "point") for p in points]
    atomic_write_text(out / "results.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return rows

