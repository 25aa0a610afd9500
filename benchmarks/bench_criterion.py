"""C4 criterion kernel benchmark: ratios against baselines measured in the same process.

1. fused criterion (N neurons × M windows, d inputs, float32) / a same-shape float32 matmul;
2. exact layer-1 hitting numbers / the local-complexity proxy of Humayun et al. (forward the 2P frame
   vertices x ± r·v_p of every point, P = 20, count neurons whose sign changes), same network and points.

    python benchmarks/bench_criterion.py [--n 4096 --m 4096 --d 784]

Ends with one JSON line: criterion_over_matmul, exact_hits_over_lc_proxy, pairs_per_second, device.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from numerics.kernels import hit_counts, normalize_hyperplanes


def bench(fn, *args, repeat=5):
    jax.block_until_ready(fn(*args))  # compile + warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--m", type=int, default=4096)
    ap.add_argument("--d", type=int, default=784)
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--frames", type=int, default=20)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    N, M, d = args.n, args.m, args.d
    W = rng.normal(size=(N, d)).astype(np.float32) / np.sqrt(d)
    b = (0.1 * rng.normal(size=N)).astype(np.float32)
    X = rng.normal(size=(M, d)).astype(np.float32)
    r = np.float32(0.05)
    anchor = np.zeros(d, np.float32)
    unit, off = normalize_hyperplanes(W, -b[:, None])  # no-BN layer: wᵀx + b = 0
    unit, off = jnp.asarray(unit, jnp.float32), jnp.asarray(off, jnp.float32)
    Xj, Wj = jnp.asarray(X), jnp.asarray(W)

    matmul = jax.jit(lambda x, w: x @ w.T)
    t_mm = bench(matmul, Xj, Wj)
    crit = lambda x: hit_counts(unit, off, jnp.asarray(anchor), x, r, chunk=args.chunk)  # noqa: E731
    t_crit = bench(crit, Xj)
    print(f"device {jax.devices()[0].device_kind}: matmul {M}x{d}x{N} float32 {t_mm * 1e3:.1f} ms; "
          f"fused criterion {t_crit * 1e3:.1f} ms -> ratio {t_crit / t_mm:.3f}; "
          f"{N * M / t_crit:.3g} (neuron, window) pairs/s")

    P = args.frames
    V = np.linalg.qr(rng.normal(size=(d, P)))[0].T.astype(np.float32)  # P orthonormal directions
    Vj = jnp.asarray(V)

    @jax.jit
    def lc_proxy(x):
        def one_block(xb):
            frame = jnp.concatenate([xb[:, None, :] + r * Vj[None], xb[:, None, :] - r * Vj[None]], axis=1)
            z = frame @ Wj.T + b  # (chunk, 2P, N)
            pos = jnp.any(z > 0, axis=1) & jnp.any(z < 0, axis=1)
            return jnp.sum(pos, axis=1)
        blocks = x.reshape(-1, 64, d)
        return jax.lax.map(one_block, blocks).reshape(-1)

    t_lc = bench(lc_proxy, Xj, repeat=3)
    exact = np.asarray(crit(Xj))
    approx = np.asarray(lc_proxy(Xj))
    print(f"LC proxy (P = {P}) {t_lc * 1e3:.1f} ms; exact hits {t_crit * 1e3:.1f} ms -> ratio {t_crit / t_lc:.3f}; "
          f"proxy undercounts the exact hitting number at {np.mean(approx < exact):.0%} of the points "
          f"(mean exact {exact.mean():.1f}, mean proxy {approx.mean():.1f})")
    print(json.dumps({"criterion_over_matmul": round(t_crit / t_mm, 3), "exact_hits_over_lc_proxy": round(t_crit / t_lc, 4),
                      "pairs_per_second": float(f"{N * M / t_crit:.4g}"), "device": jax.devices()[0].device_kind,
                      "shape": [N, M, d]}))


if __name__ == "__main__":
    main()
