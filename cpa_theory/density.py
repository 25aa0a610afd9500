"""The local region-density functional (THEORY §3): ρ_r(f; x0) and D_r(f; Q).

ρ_r(f; x0) = N(f; W(x0, r)) — exact certified counts from ``regions.count_regions`` — and its mean over a
query set Q, with per-volume (÷(2r)^d) and log variants. Many windows can be counted on any
``concurrent.futures.Executor`` (a process pool by default; Dask's ``Client.get_executor()`` works unchanged):
the network travels as its ``cpa-network/1`` dict, so workers need nothing but this package.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from .fileformat import network_from_dict, network_to_dict
from .network import Network, as_points
from .regions import count_regions

__all__ = ["DensityResult", "local_density", "density_functional", "count_many"]


def _count_one(doc: dict, center, radius: float, linear: bool) -> dict:
    """Worker entry point (module level, so process pools and Dask can pickle it)."""
    return count_regions(network_from_dict(doc), center, radius, linear=linear).as_json()


def count_many(net: Network, centers, radius: float, *, executor: Executor | None = None, linear: bool = True,
               progress: bool = False) -> list[dict]:
    """Count regions in W(c, r) for every centre; results in the order of ``centers``.

    ``executor=None`` counts in this process; pass any ``concurrent.futures.Executor`` to spread the
    windows over workers (e.g. ``ProcessPoolExecutor()`` or a Dask client's executor).
    """
    centers = as_points(centers, net.input_dim, "centers")
    if executor is None:
        rows = []
        it = _progress(centers, progress, "counting windows")
        for c in it:
            rows.append(count_regions(net, c, radius, linear=linear).as_json())
        return rows
    doc = network_to_dict(net)
    futures = [executor.submit(_count_one, doc, c, radius, linear) for c in centers]
    return [f.result() for f in _progress(futures, progress, "counting windows")]


def _progress(seq, on: bool, what: str):
    if not on:
        return seq
    from .progress import track  # stderr only, only on a terminal

    return track(seq, what, unit="windows counted")


@dataclass(frozen=True)
class DensityResult:
    """D_r(f; Q) and its variants; ``per_window`` holds ρ_r at every query point."""

    radius: float
    dim: int
    per_window: np.ndarray

    @property
    def mean(self) -> float:
        """D_r(f; Q) = (1/|Q|) Σ ρ_r(f; x0)."""
        return float(self.per_window.mean())

    @property
    def per_volume(self) -> float:
        """D_r / (2r)^d."""
        return self.mean / (2.0 * self.radius) ** self.dim

    @property
    def mean_log(self) -> float:
        """(1/|Q|) Σ log ρ_r."""
        return float(np.mean(np.log(self.per_window)))

    def as_json(self) -> dict:
        return {"radius": self.radius, "n_windows": int(self.per_window.size), "density": self.mean,
                "per_volume": self.per_volume, "mean_log": self.mean_log, "log_density": math.log(self.mean)}


def local_density(net, center, radius: float) -> int:
    """ρ_r(f; x0) = N(f; W(x0, r))."""
    return count_regions(net, center, radius, linear=False).regions


def density_functional(net: Network, queries, radius: float, *, executor: Executor | None = None) -> DensityResult:
    """D_r(f; Q) over the query points ``queries`` ``(|Q|, d)``."""
    rows = count_many(net, queries, radius, executor=executor, linear=False)
    return DensityResult(float(radius), net.input_dim, np.array([r["regions"] for r in rows], dtype=np.int64))


def default_executor(max_workers: int | None = None) -> Executor:
    """The default parallel executor: a process pool started with ``spawn`` (forking a process that has
    loaded JAX can deadlock)."""
    import multiprocessing

    return ProcessPoolExecutor(max_workers=max_workers, mp_context=multiprocessing.get_context("spawn"))

