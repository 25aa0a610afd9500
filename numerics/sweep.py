"""Monte Carlo sweeps of first-layer hitting numbers, BN vs no BN (THEORY C5–C7), sharded and resumable.

A sweep is a grid over (batch size B, bias scale σ_b, window radius r, distance D of the window centre
from the batch centroid). At each grid point, ``networks`` random first layers are drawn from an
explicit PRNG key (W ~ N(0, 1/d), b ~ N(0, σ_b²), batch ~ N(0, I), direction uniform on the sphere,
x0 = x̄ + D·u) and both hitting numbers are computed with the core C4 criterion:

    h_BN    = #{i : |w_iᵀ(x0 − x̄) − s_i τ| < r‖w_i‖₁}   (ReLU, γ = 1, β = 0 ⇒ τ = 0)
    h_plain = #{i : |w_iᵀx0 + b_i|          < r‖w_i‖₁}

Rows report means with 95 % confidence intervals, the C6 bound Σ_i q_i on E[h_plain], and for D > r the
exact ℓ2-ball hit probability I_{(r/D)²}(1/2, (d−1)/2) of C7 as a reference.

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

from cpa_theory.errors import CPAInputError
from cpa_theory.fileformat import atomic_write_text
from cpa_theory.windows import dual_norm, window_slack

__all__ = ["SweepConfig", "grid_points", "run_point", "run_sweep", "l2_ball_hit_probability"]


@dataclass(frozen=True)
class SweepConfig:
    seed: int = 0
    d: int = 2
    width: int = 64
    networks: int = 256
    batch_sizes: tuple = (16,)
    bias_scales: tuple = (0.1, 1.0)
    radii: tuple = (0.1,)
    distances: tuple = (0.0, 0.5, 1.0, 2.0, 4.0)
    dtype: str = "float64"

    @classmethod
    def from_dict(cls, doc: dict) -> "SweepConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(doc) - known
        if unknown:
            raise CPAInputError(f"unknown sweep settings {sorted(unknown)}; allowed: {sorted(known)}.")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()}
        cfg = cls(**kw)
        if cfg.dtype not in ("float32", "float64"):
            raise CPAInputError(f"dtype {cfg.dtype!r}: use 'float32' or 'float64'.")
        if cfg.d < 1 or cfg.width < 1 or cfg.networks < 2:
            raise CPAInputError("d and width must be >= 1 and networks >= 2.")
        if any(b < 2 for b in cfg.batch_sizes):
            raise CPAInputError("batch sizes must be >= 2 (train-mode BN).")
        if any(not r > 0 for r in cfg.radii) or any(s < 0 for s in cfg.bias_scales) or any(x < 0 for x in cfg.distances):
            raise CPAInputError("radii must be > 0, bias scales and distances >= 0.")
        return cfg

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def grid_points(cfg: SweepConfig) -> list[dict]:
    return [{"index": i, "batch_size": B, "bias_scale": sb, "radius": r, "distance": D}
            for i, (B, sb, r, D) in enumerate(itertools.product(cfg.batch_sizes, cfg.bias_scales, cfg.radii,
                                                                 cfg.distances))]


def l2_ball_hit_probability(r: float, D: float, d: int) -> float:
    """C7: P(a hyperplane through x̄ with uniform normal meets the ℓ2 ball of radius r at distance D > r)."""
    from scipy.special import betainc

    if d == 1:
        return 0.0
    return float(betainc(0.5, (d - 1) / 2.0, (r / D) ** 2))


def _one_network(key, d, n, B, sigma_b, r, D, dtype):
    import jax
    import jax.numpy as jnp

    kw, kb, kx, ku = jax.random.split(key, 4)
    W = jax.random.normal(kw, (n, d), dtype) / jnp.sqrt(jnp.asarray(d, dtype))
    b = sigma_b * jax.random.normal(kb, (n,), dtype)
    batch = jax.random.normal(kx, (B, d), dtype)
    u = jax.random.normal(ku, (d,), dtype)
    u = u / jnp.linalg.norm(u)
    xbar = batch.mean(axis=0)
    x0 = xbar + D * u
    norms = dual_norm(W, np.inf, xp=jnp)
    h_bn = jnp.sum(window_slack(norms, W @ (x0 - xbar), r, xp=jnp) > 0)
    h_plain = jnp.sum(window_slack(norms, W @ x0 + b, r, xp=jnp) > 0)
    density = 1.0 / (jnp.maximum(sigma_b, jnp.finfo(dtype).tiny) * jnp.sqrt(2.0 * jnp.pi))
    q = jnp.where(sigma_b > 0, jnp.minimum(1.0, 2.0 * r * norms * density), 1.0)
    return h_bn, h_plain, jnp.sum(q)


_KERNELS: dict = {}


def _point_kernel(d, n, B, dtype):
    """The jitted, vmapped kernel for one (d, n, B, dtype): compiled once, reused for every (σ_b, r, D)."""
    import jax

    key = (d, n, B, dtype)
    if key not in _KERNELS:
        one = lambda k, sb, r, D: _one_network(k, d, n, B, sb, r, D, dtype)  # noqa: E731
        _KERNELS[key] = jax.jit(jax.vmap(one, in_axes=(0, None, None, None)))
    return _KERNELS[key]


def run_point(cfg: SweepConfig, point: dict, devices=None) -> dict:
    """All networks of one grid point, the network axis sharded over ``devices`` (default: all)."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    dtype = jnp.float64 if cfg.dtype == "float64" else jnp.float32
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    devices = list(jax.devices()) if devices is None else list(devices)
    n_dev = len(devices)
    total = math.ceil(cfg.networks / n_dev) * n_dev  # pad to a multiple of the device count
    key = jax.random.fold_in(jax.random.key(cfg.seed), point["index"])
    keys = jax.random.split(key, total)
    mesh = Mesh(np.array(devices), ("nets",))
    keys = jax.device_put(keys, NamedSharding(mesh, PartitionSpec("nets")))
    fn = _point_kernel(cfg.d, cfg.width, point["batch_size"], dtype)
    args = (jnp.asarray(point["bias_scale"], dtype), jnp.asarray(point["radius"], dtype),
            jnp.asarray(point["distance"], dtype))
    h_bn, h_plain, q = (np.asarray(v)[: cfg.networks].astype(np.float64) for v in fn(keys, *args))

    def stats(x):
        mean, sd = float(x.mean()), float(x.std(ddof=1))
        half = 1.96 * sd / math.sqrt(len(x))
        return mean, [mean - half, mean + half]

    row = dict(point)
    for name, x in (("h_bn", h_bn), ("h_plain", h_plain), ("bn_minus_plain", h_bn - h_plain)):
        row[f"{name}_mean"], row[f"{name}_ci95"] = stats(x)
    row["c6_bound_h_plain"] = float(q.mean())
    row["p_bn_refines_more"] = float(np.mean(h_bn > h_plain))
    D, r = point["distance"], point["radius"]
    row["l2_ball_exact_p"] = l2_ball_hit_probability(r, D, cfg.d) if D > r else None
    row["networks"] = cfg.networks
    row["width"] = cfg.width
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
        old = json.loads(header_path.read_text())
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
    it = todo
    if progress:
        from rich.progress import track

        it = track(todo, description=f"sweep ({len(points) - len(todo)}/{len(points)} done)")
    for p in it:
        row = run_point(cfg, p, devices=devices)
        atomic_write_text(chunks / f"{p['index']:06d}.json", json.dumps(row) + "\n")
    rows = [json.loads((chunks / f"{p['index']:06d}.json").read_text()) for p in points]
    atomic_write_text(out / "results.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return rows

