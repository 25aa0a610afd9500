"""INDEPENDENT TEXTBOOK ORACLES for the claim checks (kept together, labelled as such).

Nothing here calls the code under test (``bn.condition_bn``, ``hyperplanes``, ``windows``, the counter, the
JAX kernels): each oracle recomputes its quantity the way a textbook would, from the raw parameters of a
:class:`~cpa_theory.network.Network` (weights, RAW biases b, γ, β, ε, the batch):

* :func:`batch_forward` — the PyTorch ``BatchNorm1d`` semantics written out: per layer z = W h + b over the
  batch AND at the query points, μ = mean z, σ² = mean (z − μ)² (biased divisor), ẑ = γ(z − μ)/√(σ² + ε) + β
  (train), or with running statistics (eval), then φ. The raw bias b is used (C1's evidence).
* :func:`corner_cut` — does the affine function v ↦ ẑ(v) take values on both sides of t strictly inside an
  ℓ∞ box? For an affine function the extremes over the box are attained at its 2^d corners, so this is
  decided by forward passes at the corners (no dual norm, no window criterion).
* :func:`locate_level` — the point where ẑ = t along a line, by bracketing and ``brentq`` on forward
  passes (C8's geometric spacing).
* :func:`lstsq_pullback` — x*_P = argmin ‖A x − y‖₂ by ``numpy.linalg.lstsq`` (C9).
* :func:`conv2d_patches`, :func:`batchnorm2d_train`, :func:`conv_reference_offsets` — a 2-D convolution and
  train-mode BatchNorm2d with explicit loops over positions (C10).
* :func:`segment_crossings_2d` — pairwise intersection points of lines inside an open square (the Euler count
  N = 1 + h + #crossings of a generic line arrangement in a convex window, d = 2).
* :func:`box_relation_exact` — a hyperplane against an ℓ∞ box by its 2^d corners in rationals (C4's strictness);
  :func:`line_regions_2d_exact` — that Euler count in rationals, None where the arrangement is not generic (C6).
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["batch_forward", "layer_preactivation", "corner_cut", "box_corners", "locate_level",
           "lstsq_pullback", "segment_crossings_2d", "box_relation_exact", "line_regions_2d_exact",
           "conv2d_patches", "batchnorm2d_train", "conv_reference_offsets"]


def _bn(z, Zb, layer, mode_override=None):
    bn = layer.batchnorm
    if bn is None:
        return z
    mode = mode_override or bn.mode
    if mode == "train":
        mu = Zb.sum(axis=0) / Zb.shape[0]
        var = ((Zb - mu) ** 2).sum(axis=0) / Zb.shape[0]  # biased: divide by B, not B − 1
    else:
        mu, var = bn.running_mean, bn.running_var
    return bn.gamma * (z - mu) / np.sqrt(var + bn.eps) + bn.beta


def layer_preactivation(net, x, layer: int) -> np.ndarray:
    """ẑ of ``layer`` at points ``x`` (M, d) by the textbook batch computation (raw biases included)."""
    h, H = np.atleast_2d(np.asarray(x, np.float64)), net.batch
    for i, L in enumerate(net.layers):
        z = h @ L.weight.T + L.bias
        Zb = None if H is None else H @ L.weight.T + L.bias
        zh = _bn(z, Zb, L)
        if i == layer:
            return zh
        h = L.activation(zh)
        H = None if H is None else L.activation(_bn(Zb, Zb, L))
    raise IndexError(layer)


def batch_forward(net, x) -> np.ndarray:
    """f(x) of the realised function, by the textbook batch computation (raw biases included)."""
    h, H = np.atleast_2d(np.asarray(x, np.float64)), net.batch
    for L in net.layers:
        z = h @ L.weight.T + L.bias
        Zb = None if H is None else H @ L.weight.T + L.bias
        h = L.activation(_bn(z, Zb, L))
        H = None if H is None else L.activation(_bn(Zb, Zb, L))
    return h


def box_corners(x0, r) -> np.ndarray:
    """The 2^d corners of the ℓ∞ box W(x0, r): (2^d, d)."""
    x0 = np.asarray(x0, np.float64)
    return np.array([x0 + r * np.array(s) for s in itertools.product((-1.0, 1.0), repeat=x0.size)])


def corner_cut(values_at_corners, t) -> np.ndarray:
    """Given an AFFINE function's values at the box corners ((2^d, n) array), does the level set {· = t} cut
    the open box? (min < t < max; the extremes of an affine function over a box are at corners.) → (n,) bool."""
    v = np.asarray(values_at_corners)
    return (v.min(axis=0) < t) & (t < v.max(axis=0))


def locate_level(f, t: float, start, direction, span: float = 1e3, xtol: float = 1e-13) -> float:
    """Signed parameter λ with f(start + λ·direction) = t (f affine and non-constant along the line):
    bracket by doubling, then ``scipy.optimize.brentq`` on forward passes."""
    from scipy.optimize import brentq

    start, direction = np.asarray(start, np.float64), np.asarray(direction, np.float64)
    g = lambda lam: float(f(start + lam * direction)) - t  # noqa: E731
    lo, hi = -1.0, 1.0
    while np.sign(g(lo)) == np.sign(g(hi)):
        lo, hi = 2 * lo, 2 * hi
        if hi > span:
            raise ValueError("level not bracketed")
    return float(brentq(g, lo, hi, xtol=xtol, rtol=4 * np.finfo(float).eps, maxiter=500))


def lstsq_pullback(A, y) -> tuple[np.ndarray, np.ndarray]:
    """(x*, y⊥): least-squares x* = argmin ‖A x − y‖₂ and the residual y⊥ = y − A x*."""
    x, *_ = np.linalg.lstsq(np.asarray(A, np.float64), np.asarray(y, np.float64), rcond=None)
    return x, y - A @ x


def segment_crossings_2d(normals, rhs, x0, r) -> int:
    """Number of pairwise intersection points of the lines a_iᵀx = c_i strictly inside the open square
    W(x0, r) (parallel pairs never meet). Used with the Euler count N = 1 + h + #crossings (generic lines)."""
    A, c = np.asarray(normals, np.float64), np.asarray(rhs, np.float64)
    count = 0
    for i, j in itertools.combinations(range(len(c)), 2):
        M = np.stack([A[i], A[j]])
        det = np.linalg.det(M)
        if abs(det) <= 1e-12 * np.linalg.norm(A[i]) * np.linalg.norm(A[j]):
            continue
        p = np.linalg.solve(M, np.array([c[i], c[j]]))
        count += int(np.all(np.abs(p - x0) < r))
    return count


def box_relation_exact(a, c, x0, r) -> str:
    """aᵀx = c against the box W(x0, r), on the float data taken exactly: the values at the 2^d corners (the LP's
    vertices; no Hölder formula) in rationals → "cuts" if c lies strictly between the smallest and the largest,
    "touches" if it equals one of them, else "misses". ``c`` may be a Fraction."""
    from fractions import Fraction as F

    a, x0, r = [F(float(v)) for v in a], [F(float(v)) for v in x0], F(float(r))
    vals = [sum(ai * (xi + si * r) for ai, xi, si in zip(a, x0, sg))
            for sg in itertools.product((-1, 1), repeat=len(a))]
    c, lo, hi = F(c), min(vals), max(vals)
    if lo < c < hi:
        return "cuts"
    return "touches" if c in (lo, hi) else "misses"


def line_regions_2d_exact(W, b, x0, r):
    """(N, cutting) of the 2-D line arrangement {w_iᵀx + b_i = 0} inside the box W(x0, r), in rationals:
    ``cutting`` (bool per line) from :func:`box_relation_exact`, and N = 1 + h + #pairwise crossings strictly
    inside W (Euler's formula for lines in a convex window). None where the arrangement is not generic (a touch,
    a line twice, a crossing on ∂W, three lines through one point): the formula does not apply there."""
    from fractions import Fraction as F

    x0q, rq = [F(float(v)) for v in x0], F(float(r))
    cut, cutting = [], []
    for w, bi in zip(W, b):
        rel = box_relation_exact(w, -F(float(bi)), x0, r)
        if rel == "touches":
            return None
        cutting.append(rel == "cuts")
        if rel == "cuts":
            cut.append(([F(float(v)) for v in w], -F(float(bi))))
    points = []
    for (a1, c1), (a2, c2) in itertools.combinations(cut, 2):
        det = a1[0] * a2[1] - a1[1] * a2[0]
        if det == 0:
            if a1[0] * c2 == a2[0] * c1 and a1[1] * c2 == a2[1] * c1:
                return None  # the same line twice
            continue
        p = ((c1 * a2[1] - c2 * a1[1]) / det, (a1[0] * c2 - a2[0] * c1) / det)
        dist = max(abs(p[0] - x0q[0]), abs(p[1] - x0q[1]))
        if dist == rq:
            return None
        if dist < rq:
            points.append(p)
    if len(set(points)) != len(points):
        return None
    return 1 + len(cut) + len(points), np.array(cutting)


# -- C10: a 2-D convolution and BatchNorm2d written out with loops over positions ------------------------------

def conv2d_patches(x, kh: int, kw: int) -> np.ndarray:
    """Patches of images ``x`` ``(B, C, H, W)`` for a stride-1, unpadded ``kh × kw`` convolution, by explicit
    loops over positions: ``(B, H', W', C·kh·kw)`` (channel-major, as the weight ``(C_out, C, kh, kw)`` ravels)."""
    B, C, H, W = x.shape
    out = np.empty((B, H - kh + 1, W - kw + 1, C * kh * kw))
    for i in range(H - kh + 1):
        for j in range(W - kw + 1):
            out[:, i, j] = x[:, :, i:i + kh, j:j + kw].reshape(B, -1)
    return out


def batchnorm2d_train(x, weight, bias, gamma, beta, eps) -> np.ndarray:
    """Conv (stride 1, no padding, raw bias included) then train-mode BatchNorm2d, statistics over the batch AND
    the positions (biased variance): PyTorch's semantics, written out. Returns ``(B, C_out, H', W')``."""
    C_out, _, kh, kw = weight.shape
    P = conv2d_patches(x, kh, kw)
    z = P @ weight.reshape(C_out, -1).T + bias  # (B, H', W', C_out)
    mu = z.mean(axis=(0, 1, 2))
    var = ((z - mu) ** 2).mean(axis=(0, 1, 2))
    return np.moveaxis(gamma * (z - mu) / np.sqrt(var + eps) + beta, -1, 1)


def conv_reference_offsets(x, weight) -> tuple[np.ndarray, np.ndarray]:
    """C10b by loops: for every channel c and position p, w_cᵀ(P_p x̄ − m̄) with m̄ the mean patch over batch ×
    positions, and ‖P_pᵀ w_c‖₂ (= ‖w_c‖₂ without padding). Returns ``(offset, norm)`` each ``(C_out, H', W')``."""
    C_out, _, kh, kw = weight.shape
    P = conv2d_patches(x, kh, kw)
    mbar = P.reshape(-1, P.shape[-1]).mean(axis=0)
    Pbar = conv2d_patches(x.mean(axis=0, keepdims=True), kh, kw)[0]  # patches of the centroid image
    Wf = weight.reshape(C_out, -1)
    offset = np.moveaxis((Pbar - mbar) @ Wf.T, -1, 0)
    norm = np.broadcast_to(np.linalg.norm(Wf, axis=1)[:, None, None], offset.shape)
    return offset, norm
