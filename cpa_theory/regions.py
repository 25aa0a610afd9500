"""Exact activation-region counts N(f; W) in a window, layer by layer (THEORY §3, §5, §6).

Start from the window W(x0, r) as a polytope, in coordinates y = x − p centred
at the first layer's anchor p (the batch centroid in train mode, so concurrent
BN hyperplanes stay exactly concurrent). For layer ℓ, inside each cell the layer
input is an affine map h = A y + c (C9) and the layer's switching sets are the
hyperplanes of ``hyperplanes.layer_switching_sets``; the ones that can meet W
(the C4 window criterion, ``windows.window_slack``) are tested on the cell's
vertices, and the cell is split by every one that cuts its interior. Cells that
no switching set of the last layer cuts are the activation regions.

Every region is certified: a witness point (mean of its vertices) and the radius
of a ball around it inside the region, re-checked by an independent forward pass
of the network that must reproduce the region's activation code (and, on
request, by an exact rational forward pass).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .hyperplanes import HyperplaneStatus, layer_switching_sets, pullback_anchors, switching_hyperplanes
from .network import ConditionedNetwork, Network, as_point
from .polytope import Polytope, box_polygon, box_polytope, polytope_from_halfspaces, split, vertex_signs
from .tolerances import AFFINE_MAP_RTOL, FACET_MATCH_TOL, SCREEN_MARGIN_RTOL, WITNESS_MIN_RELATIVE_RADIUS
from .windows import Window, WindowRelation, dual_norm, window_relations, window_slack

__all__ = ["Region", "RegionCount", "count_regions", "enumerate_regions", "MAX_VERTEX_DIM"]

#: vertex enumeration keeps 2^d box corners: beyond this input dimension counting is refused.
MAX_VERTEX_DIM = 10

#: cells are refined in batches of this many per layer (vectorised pull-backs; bounded memory).
_BATCH = 512

#: witnesses are re-checked in batches of this many (one vectorised forward pass; bounded memory).
_CERTIFY_CHUNK = 4096


@dataclass(frozen=True)
class Region:
    """One certified activation region.

    code: tuple of int arrays (piece index per neuron, per layer); witness: ``(d,)`` x-coordinates;
    radius: a Euclidean ball of this radius around the witness lies in the region;
    vertices: ``(Nv, d)`` x-coordinates; out_A ``(n_out, d)``, out_c ``(n_out,)``: f(x) = out_A x + out_c;
    facets: ``(G, h)`` with the region = {x : G x ≤ h} (window sides and switching hyperplanes).
    """

    code: tuple
    witness: np.ndarray
    radius: float
    vertices: np.ndarray
    out_A: np.ndarray
    out_c: np.ndarray
    facets: tuple = field(default=(), repr=False)


@dataclass
class RegionCount:
    """Result of counting in one window (the CLI's JSON object; timing stays out of it so that the JSON
    is byte-identical across runs)."""

    center: np.ndarray
    radius: float
    regions: int
    linear_regions: int
    hits: int
    certified: bool
    uncertified: int
    seconds: float
    exact_fallbacks: int = 0
    region_list: list | None = None

    @property
    def dim(self) -> int:
        return int(self.center.shape[0])

    @property
    def per_volume(self) -> float:
        """N / (2r)^d."""
        return self.regions / (2.0 * self.radius) ** self.dim

    @property
    def log_regions(self) -> float:
        return math.log(self.regions)

    def as_json(self) -> dict:
        return {"center": self.center.tolist(), "radius": self.radius, "regions": self.regions,
                "linear_regions": self.linear_regions, "hits": self.hits, "certified": self.certified,
                "uncertified": self.uncertified, "per_volume": self.per_volume, "log_regions": self.log_regions}


def _conditioned(net) -> ConditionedNetwork:
    if isinstance(net, Network):
        return net.condition()
    if isinstance(net, ConditionedNetwork):
        return net
    raise TypeError("count_regions needs a Network or a ConditionedNetwork.")


def _layer_pieces(signs_side, gain_sign, K):
    """Piece index per neuron from the cell's side of each (neuron, breakpoint) hyperplane."""
    if not K:
        return np.zeros(len(gain_sign), dtype=np.int64)
    above = (signs_side.reshape(-1, K) * gain_sign[:, None]) > 0  # ẑ − t_k > 0
    return above.sum(axis=1)


def enumerate_regions(net, center, radius, *, stats=None, domain=None):
    """Yield the activation regions in W(center, radius) one by one (depth first, bounded memory).

    Each item is ``(polytope_in_y, code, A, c, anchor, flat)``: the region as a polytope in y = x − anchor,
    its activation code, the output map f = A y + c on it, and per layer the neurons constant on it.
    :func:`count_regions` turns them into certified :class:`Region` objects. ``stats`` collects counters.
    """
    cond = _conditioned(net)
    win = Window(center, radius)
    d = cond.input_dim
    if win.dim != d:
        from .errors import ShapeError

        raise ShapeError(f"centre has {win.dim} coordinates; the network's input dimension is {d}.")
    if d > MAX_VERTEX_DIM:
        from .errors import WindowError

        raise WindowError(f"exact counting enumerates polytope vertices and supports input dimension <= "
                          f"{MAX_VERTEX_DIM}; got d = {d}. For higher d use numerics.lp_regions.count_regions_lp "
                          "(exact certified counts by LP splitting, for windows with few regions), or hitting "
                          "numbers (cpa-theory hits).")
    cond._check_defined()
    first = cond.layers[0].bn
    p = first.anchor.copy() if first.mode == "train" else win.center.copy()
    F = Fraction
    lo_ex = [F(float(x0)) - F(win.radius) - F(float(pl)) for x0, pl in zip(win.center, p)]
    hi_ex = [F(float(x0)) + F(win.radius) - F(float(pl)) for x0, pl in zip(win.center, p)]
    if domain is None:
        make_box = box_polygon if d == 2 else box_polytope  # ordered polygons in the plane: the fast path
        root = make_box(np.array([float(v) for v in lo_ex]), np.array([float(v) for v in hi_ex]), lo_ex, hi_ex)
    else:  # a bounded polytope {x : G x ≤ h} inside the window W(center, radius), in y = x − p
        G, h = domain
        root = polytope_from_halfspaces(G, h - G @ p)
    y0 = win.center - p
    layers = cond.layers
    stats = {} if stats is None else stats

    # DFS over batches of cells at one layer: (layer index, [(polytope, A, c, code, flat)]).
    stack = [(0, [(root, np.eye(d), p.copy(), (), ())])]
    while stack:
        li, batch = stack.pop()
        if li == len(layers):
            for P, A, c, code, flat in batch:
                yield P, code, A, c, p, flat
            continue
        leaves = list(_refine_batch(layers[li], batch, y0, win.radius, d))
        for i in range(0, len(leaves), _BATCH):
            stack.append((li + 1, leaves[i:i + _BATCH]))


class _AnchoredOffsets:
    """Exact offsets base_j + a_j·y* (rationals of the float data), computed only where a decision needs them."""

    def __init__(self, base, normals, ystar, index=None):
        self.base, self.normals, self.ystar = base, normals, [Fraction(float(v)) for v in ystar]
        self.index = np.arange(len(base)) if index is None else index

    def subset(self, cand) -> "_AnchoredOffsets":
        out = _AnchoredOffsets.__new__(_AnchoredOffsets)
        out.base, out.normals, out.ystar, out.index = self.base, self.normals, self.ystar, self.index[cand]
        return out

    def __getitem__(self, j) -> Fraction:
        k = int(self.index[j])
        return Fraction(float(self.base[k])) + sum(Fraction(float(a)) * y for a, y in zip(self.normals[k],
                                                                                         self.ystar))


def _refine_batch(cl, batch, y0, radius, d):
    """Split every cell of ``batch`` by the switching sets of layer ``cl``; yield the next layer's cells."""
    A = np.stack([item[1] for item in batch])  # (C, m, d)
    c = np.stack([item[2] for item in batch])  # (C, m)
    normals, offsets, status, _ = layer_switching_sets(cl, A, c, np.zeros(d))
    C, n, K = offsets.shape
    flat_n = np.repeat(normals, K, axis=1) if K else np.zeros((C, 0, d))  # (C, nK, d)
    # Where the layer's BN anchor pulls back to a point y* of the cell's affine chart (A injective, anchor − c
    # in range A; C9), every switching set passes through y* exactly in real arithmetic: anchor them there,
    # with rational offsets base + a·y*, so that concurrent deep hyperplanes stay exactly concurrent.
    ystar, has_pb = pullback_anchors(A, cl.bn.anchor[None, :] - c)
    base = cl.bn.switching_offsets(cl.activation.breakpoints_array)[0].reshape(n * K)
    regular = (status == HyperplaneStatus.REGULAR).reshape(C, n * K)
    anchored = base[None, :] + np.einsum("cjd,cd->cj", flat_n, ystar)
    flat_o = np.where(has_pb[:, None] & regular, anchored, offsets.reshape(C, n * K))
    # C4 screen: a switching set that misses (or only touches) the whole window cannot cut a cell in it
    resid = np.einsum("cjd,d->cj", flat_n, y0) - flat_o
    slack = window_slack(dual_norm(flat_n), resid, radius)
    screened = regular & (slack > -SCREEN_MARGIN_RTOL * (1 + np.abs(flat_o)))
    # switching sets that are screened out keep one side on all of W: read it at the window centre
    sides0 = np.sign(resid).astype(np.int8)
    gain_sign = np.sign(cl.bn.gain)
    slope_tab = np.asarray(cl.activation.slopes)
    icpt_tab = np.asarray(cl.activation.intercepts())
    pre_A = cl.bn.gain[None, :, None] * np.matmul(cl.weight, A)  # (C, n, d)
    pre_c = cl.bn.gain * ((c - cl.bn.anchor) @ cl.weight.T) + cl.bn.shift  # (C, n)
    const = np.all(status != HyperplaneStatus.REGULAR, axis=2) if K else np.zeros((C, n), bool)
    const_pieces = cl.activation.piece_index(pre_c)
    for ci, (P, _, _, code, flat) in enumerate(batch):
        fn, fo = flat_n[ci], flat_o[ci]
        exact = _AnchoredOffsets(base, fn, ystar[ci]) if has_pb[ci] else None
        pending = [(P, np.flatnonzero(screened[ci]), sides0[ci])]
        while pending:
            Q, cand, s_here = pending.pop()
            cutting = np.zeros(0, bool)
            if len(cand):
                sg = vertex_signs(Q, fn[cand], fo[cand], None if exact is None else exact.subset(cand))
                pos, neg = (sg > 0).any(axis=0), (sg < 0).any(axis=0)
                cutting = pos & neg
                s_here = s_here.copy()
                s_here[cand[~cutting]] = np.where(pos[~cutting], 1, -1)
            if cutting.any():
                j = int(np.flatnonzero(cutting)[0])
                hj = cand[j]
                below, above = split(Q, fn[hj], fo[hj], sg[:, j], None if exact is None else exact[hj])
                remaining = cand[cutting][1:]
                s_below, s_above = s_here.copy(), s_here.copy()
                s_below[hj], s_above[hj] = -1, 1
                pending.append((below, remaining, s_below))
                pending.append((above, remaining, s_above))
                continue
            # a leaf for this layer: every switching set keeps one side on Q's interior
            pieces = _layer_pieces(s_here, gain_sign, K)
            if const[ci].any():
                pieces = np.where(const[ci], const_pieces[ci], pieces)
            slope, icpt = slope_tab[pieces], icpt_tab[pieces]
            flat_here = ~np.any(pre_A[ci] != 0, axis=1)  # neurons constant on this region
            yield (Q, slope[:, None] * pre_A[ci], slope * pre_c[ci] + icpt, code + (pieces,), flat + (flat_here,))


def _exact_code(cond: ConditionedNetwork, x) -> tuple:
    """Activation code at x in exact rational arithmetic on the network's float64 parameters."""
    F = Fraction
    h = [F(float(v)) for v in x]
    code = []
    for layer in cond.layers:
        W = [[F(float(v)) for v in row] for row in layer.weight]
        p = [F(float(v)) for v in layer.bn.anchor]
        g = [F(float(v)) for v in layer.bn.gain]
        e = [F(float(v)) for v in layer.bn.shift]
        diff = [hi - pi for hi, pi in zip(h, p)]
        z = [gi * sum(wij * dj for wij, dj in zip(row, diff)) + ei for row, gi, ei in zip(W, g, e)]
        t = [F(v) for v in layer.activation.breakpoints]
        a = [F(v) for v in layer.activation.slopes]
        pieces, out = [], []
        vals = layer.activation.values_at_breakpoints()
        for zi in z:
            k = sum(1 for tk in t if tk <= zi)
            pieces.append(k)
            if not t:
                out.append(a[0] * zi + F(layer.activation.value_at_first))
            else:
                ref = t[0] if k == 0 else t[k - 1]
                vref = F(vals[0]) if k == 0 else F(vals[k - 1])
                out.append(vref + a[k] * (zi - ref))
        code.append(np.array(pieces))
        h = out
    return tuple(code)


def _certify_batch(cond, witnesses, radii, codes, radius_w, exact: bool, flats=None) -> np.ndarray:
    """Re-check a batch of witnesses with one independent forward pass: ``(M,)`` bool.

    A witness passes when its ball radius is positive (relative to the window), the forward pass at it
    reproduces the region's code in every layer, and no pre-activation sits exactly on a breakpoint
    (except neurons constant on the region, ``flats``, which may sit on one everywhere).
    """
    ok = radii > WITNESS_MIN_RELATIVE_RADIUS * radius_w
    zs = cond.preactivations(witnesses)
    for li, (layer, z) in enumerate(zip(cond.layers, zs)):
        got = layer.activation.piece_index(z)
        ok &= np.all(got == np.stack([c[li] for c in codes]), axis=1)
        if layer.activation.breakpoints:
            on_bp = np.isin(z, layer.activation.breakpoints_array)
            if flats is not None:
                on_bp &= ~np.stack([f[li] for f in flats])
            ok &= ~np.any(on_bp, axis=1)
    if exact:
        for i in np.flatnonzero(ok):
            ok[i] = all(np.array_equal(g, k) for g, k in zip(_exact_code(cond, witnesses[i]), codes[i]))
    return ok


def _same_map(a, b) -> bool:
    scale = 1.0 + max(np.abs(a).max(initial=0), np.abs(b).max(initial=0))
    return bool(np.all(np.abs(a - b) <= AFFINE_MAP_RTOL * scale))


def _facets_adjacent(P: Polytope, Q: Polytope) -> bool:
    """Do P and Q share a (d−1)-dimensional piece of boundary? (opposite facets, overlapping with interior)."""
    from scipy.optimize import linprog

    d = P.dim
    nP = P.G / np.linalg.norm(P.G, axis=1)[:, None]
    hP = P.h / np.linalg.norm(P.G, axis=1)
    nQ = Q.G / np.linalg.norm(Q.G, axis=1)[:, None]
    hQ = Q.h / np.linalg.norm(Q.G, axis=1)
    for i in range(len(nP)):
        match = np.flatnonzero((np.abs(nQ + nP[i]).max(axis=1) <= FACET_MATCH_TOL)
                               & (np.abs(hQ + hP[i]) <= FACET_MATCH_TOL * (1 + abs(hP[i]))))
        if not len(match):
            continue
        # maximise ρ: a (d−1)-ball of radius ρ in the common hyperplane inside both (other constraints)
        Gs = np.vstack([np.delete(nP, i, axis=0), np.delete(nQ, match, axis=0)])
        hs = np.concatenate([np.delete(hP, i), np.delete(hQ, match)])
        a = nP[i]
        # ball within the hyperplane: distance uses the component of each normal orthogonal to a
        proj = Gs - (Gs @ a)[:, None] * a[None, :]
        A_ub = np.hstack([Gs, np.linalg.norm(proj, axis=1)[:, None]])
        res = linprog(np.r_[np.zeros(d), -1.0], A_ub=A_ub, b_ub=hs, A_eq=np.r_[a, 0.0][None, :], b_eq=[hP[i]],
                      bounds=[(None, None)] * d + [(0, None)], method="highs")
        if res.status == 0 and -res.fun > FACET_MATCH_TOL:
            return True
    return False


def _linear_regions(items) -> int:
    """Maximal linear regions: connected components of adjacent regions with the same output map."""
    groups: dict = {}
    for idx, (P, A, c) in enumerate(items):
        key = tuple(np.round(np.concatenate([A.ravel(), c.ravel()]), 6))
        groups.setdefault(key, []).append(idx)
    total = 0
    for members in groups.values():
        # refine the rounded key by the tolerance comparison, then union adjacent members
        parent = {m: m for m in members}

        def find(u):
            while parent[u] != u:
                parent[u] = parent[parent[u]]
                u = parent[u]
            return u

        for i, u in enumerate(members):
            for v in members[i + 1:]:
                if find(u) == find(v):
                    continue
                Pu, Au, cu = items[u]
                Pv, Av, cv = items[v]
                if _same_map(Au, Av) and _same_map(cu, cv) and _facets_adjacent(Pu, Pv):
                    parent[find(u)] = find(v)
        total += len({find(m) for m in members})
    return total


def _polytope_domain(polytope, d):
    from .errors import ShapeError, WindowError

    G, h = (np.asarray(v, dtype=np.float64) for v in polytope)
    if G.ndim != 2 or G.shape[1] != d or h.shape != (G.shape[0],):
        raise ShapeError(f"polytope must be (G (F, {d}), h (F,)); got {G.shape} and {h.shape}.")
    if not (np.all(np.isfinite(G)) and np.all(np.isfinite(h))):
        raise WindowError("polytope constraints contain NaN or inf; give finite numbers.")
    try:
        P = polytope_from_halfspaces(G, h, as_polygon=False)
    except ValueError as exc:
        raise WindowError(f"polytope {{x : G x <= h}}: {exc}; give a bounded set with interior.") from None
    lo, hi = P.V.min(axis=0), P.V.max(axis=0)
    return G, h, (lo + hi) / 2, float(np.max(hi - lo) / 2) * (1 + 1e-9) + 1e-12


def count_regions(net, center=None, radius=None, *, keep_regions: bool = False, exact_recheck: bool = False,
                  linear: bool = True, polytope=None) -> RegionCount:
    """Exact, certified count of activation regions of ``net`` in the ℓ∞ window W(center, radius).

    Args:
        net: :class:`Network` (conditioned on its batch) or :class:`ConditionedNetwork`.
        center: ``(d,)``; radius: r > 0.
        keep_regions: also return the list of certified :class:`Region` objects.
        exact_recheck: re-check every witness with an exact rational forward pass too.
        linear: also count maximal linear regions (N_lin).
        polytope: ``(G, h)``: count in the bounded polytope {x : G x ≤ h} instead of a window (centre and
            radius are then taken from its bounding box, which the C4 screen uses).

    Returns: :class:`RegionCount` with ``regions`` (N), ``linear_regions`` (N_lin), ``hits`` (first-layer
    switching sets that cut int W, by C4), ``certified`` (every region's witness re-checked).
    """
    from .inputs import check_count_args

    if polytope is None:
        check_count_args(net, center, radius, "count_regions")  # typed errors for wrong types / unusable radii
    start = time.perf_counter()
    cond = _conditioned(net)
    domain = None
    if polytope is not None:
        domain = _polytope_domain(polytope, cond.input_dim)
        center, radius = domain[2], domain[3]
        domain = domain[:2]
    win = Window(as_point(center, cond.input_dim, "center",
                          "density.count_many(net, centers, r) or density.density_functional"), radius)
    stats: dict = {}
    n_regions = n_bad = 0
    regions = [] if keep_regions else None
    items = []
    buf: list = []

    def flush():
        nonlocal n_bad
        if not buf:
            return
        wit = np.stack([b[1] for b in buf])
        rad = np.array([b[2] for b in buf])
        ok = _certify_batch(cond, wit, rad, [b[0] for b in buf], win.radius, exact_recheck, [b[7] for b in buf])
        n_bad += int(np.count_nonzero(~ok))
        if keep_regions:
            regions.extend(Region(code, w, r, V, A, c, f) for (code, w, r, V, A, c, f, _) in buf)
        buf.clear()

    for P, code, A, c, p, flat in enumerate_regions(cond, win.center, win.radius, stats=stats, domain=domain):
        c_y = P.interior_point()
        n_regions += 1
        out_c = c - A @ p  # f(x) = A (x − p) + c
        if linear:
            items.append((P, A, out_c))
        buf.append((code, c_y + p, P.inradius_at(c_y), P.V + p if keep_regions else None, A, out_c,
                    (P.G, P.h + P.G @ p) if keep_regions else (), flat))
        if len(buf) >= _CERTIFY_CHUNK:
            flush()
    flush()
    hp = switching_hyperplanes(cond, 0)
    if domain is None:
        hits = int(np.sum(window_relations(hp, win.center, win.radius) == WindowRelation.CUTS))
    else:  # first-layer switching sets that cut the polytope's interior: exact signs at its vertices
        P0 = polytope_from_halfspaces(domain[0], domain[1] - domain[0] @ hp.anchor)
        reg = hp.regular.reshape(-1)
        sg = vertex_signs(P0, np.repeat(hp.normals, hp.offsets.shape[1], axis=0)[reg], hp.offsets.reshape(-1)[reg])
        hits = int(np.sum((sg > 0).any(axis=0) & (sg < 0).any(axis=0)))
    n_lin = _linear_regions(items) if linear else n_regions
    return RegionCount(win.center, win.radius, n_regions, n_lin, hits, n_bad == 0, n_bad,
                       time.perf_counter() - start, stats.get("exact_fallbacks", 0), regions)
