"""Exact activation-region counts N(f; W) in a window, layer by layer (THEORY §3, §5, §6).

Start from the window W(x0, r) as a cell, in coordinates y = x − p (p: the first layer's BN anchor in
train mode, else the window centre). For layer ℓ every cell carries the float64 chart h = A y + c of the
layer input (C9) with magnitude bounds |A| ≤ mA, |c| ≤ mc and a relative error bound, so that the layer's
switching sets {ẑ_j = t_k} (``ConditionedLayer.chart``) come with an error bound against the exact
switching sets of the float64 network. The sets that can meet W (C4 window criterion, safe margin) are
tested on the cell's vertices with exact predicates (``polytope.vertex_signs``: float64 filter, exact
rational fallback), and the cell is split by every one that cuts its interior. Cells no switching set of
the last layer cuts are the activation regions: the count is that of the float64 function taken exactly.

Certificates (THEORY §6): every region has a witness ball re-checked by an independent forward pass (float64;
regions float64 cannot certify — slivers below its resolution — get an exact rational witness re-checked by
the exact rational forward pass), and the count is *complete*: the region volumes add up to vol(W) and every
facet of a region inside W is matched by the neighbouring region across it (the region whose code differs in
exactly that neuron, found by code look-up; coincident switching sets fall back to a measure balance).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .errors import CPAInternalError
from . import frontier2d, frontier3d
from .exact import ExactCharts, dot, exact_code, exact_code_and_switching
from .hyperplanes import switching_hyperplanes
from .maxgroups import is_max_groups, refine_max_batch
from .network import ConditionedNetwork, Network, as_point
from .polytope import (Hyper, box_polygon, box_polytope, cell_volume, cell_volumes, facet_measures,
                       polytope_from_halfspaces, split, vertex_signs)
from .tolerances import (AFFINE_MAP_RTOL, DOT_EXTRA_TERMS, FACET_BALANCE_RTOL, FILTER_SAFETY, UNIT_ROUNDOFF,
                         VOLUME_SUM_RTOL, WITNESS_MIN_RELATIVE_RADIUS)
from .windows import Window, WindowRelation, window_relations

__all__ = ["Region", "RegionCount", "count_regions", "enumerate_regions", "MAX_VERTEX_DIM"]

U = UNIT_ROUNDOFF

#: vertex enumeration keeps 2^d box corners: beyond this input dimension counting is refused.
MAX_VERTEX_DIM = 10

#: deeper networks are refused: the float64 filters' error bounds grow with depth until every decision falls
#: back to rationals whose size also grows with depth (measured: width-2 BN nets of depth 100 take minutes).
MAX_EXACT_DEPTH = 1000

#: cells are refined in batches of this many per layer (vectorised charts; bounded memory).
_BATCH = 512

#: witnesses are re-checked in batches of this many (one vectorised forward pass; bounded memory).
_CERTIFY_CHUNK = 4096
_VOLUME_CHUNK = 256  # leaves per vectorised volume pass (and progress update)


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
    is byte-identical across runs).

    ``certified`` = every witness re-checked AND ``complete`` (the regions tile the window)."""

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
    complete: bool = True
    min_witness_radius: float = math.inf
    exact_witnesses: int = 0
    unmatched_facets: int = 0
    euler_characteristic: int | None = None  # V − E + F (− C in 3-D) of the regions' complex (1 = a tiling)

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
                "uncertified": self.uncertified, "per_volume": self.per_volume, "log_regions": self.log_regions,
                "complete": self.complete, "min_witness_radius": self.min_witness_radius,
                "exact_fallbacks": self.exact_fallbacks, "exact_witnesses": self.exact_witnesses,
                "euler_characteristic": self.euler_characteristic}


def _conditioned(net) -> ConditionedNetwork:
    if isinstance(net, Network):
        return net.condition()
    if isinstance(net, ConditionedNetwork):
        return net
    raise TypeError("count_regions needs a Network or a ConditionedNetwork.")


def _finite(*arrays, what: str):
    for a in arrays:
        if not np.all(np.isfinite(a)):
            raise CPAInternalError(f"float64 overflow or NaN in {what}; the exact count needs the network's "
                                   "charts within float64 range. Please report this network and window.")


class _Leaf:
    """A region before certification: its cell (y-coordinates), code, flat neurons and output map (y)."""

    __slots__ = ("P", "code", "flat", "A", "c")

    def __init__(self, P, code, flat, A, c):
        self.P, self.code, self.flat, self.A, self.c = P, code, flat, A, c


def _setup(cond, center, radius, domain):
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
    if len(cond.layers) > MAX_EXACT_DEPTH:
        from .errors import ShapeError

        raise ShapeError(f"exact counting supports networks of at most {MAX_EXACT_DEPTH} layers (got "
                         f"{len(cond.layers)}): beyond that the exact rational fallbacks grow without bound. Count a "
                         "truncated network, or use hitting numbers (cpa-theory hits).")
    cond._check_defined()
    first = cond.layers[0].bn
    p = first.anchor.copy() if first.mode == "train" else win.center.copy()
    Fr = Fraction
    pe = [Fr(float(v)) for v in p]
    if domain is None:
        lo_ex = [Fr(float(x0)) - Fr(win.radius) - pl for x0, pl in zip(win.center, pe)]
        hi_ex = [Fr(float(x0)) + Fr(win.radius) - pl for x0, pl in zip(win.center, pe)]
        root = box_polygon(lo_ex, hi_ex) if d == 2 else box_polytope(lo_ex, hi_ex)
        vol = float((2 * Fr(win.radius)) ** d)
    else:  # a bounded polytope {x : G x ≤ h}: in y = x − p its exact right-hand sides are h − G p
        G, h = domain
        exact_h = [Fr(float(hv)) - dot([Fr(float(v)) for v in g], pe) for g, hv in zip(G, h)]
        root = polytope_from_halfspaces(G, np.array([float(v) for v in exact_h]), exact_h=exact_h)
        vol = cell_volume(root)
    return win, p, root, vol


def enumerate_regions(net, center, radius, *, stats=None, domain=None):
    """Yield the activation regions in W(center, radius) one by one (depth first, bounded memory).

    Each item is ``(cell_in_y, code, A, c, anchor, flat)``: the region as a cell in y = x − anchor, its
    activation code, the output map f = A y + c on it, and per layer the neurons that sit on a breakpoint on
    the whole region. :func:`count_regions` turns them into certified :class:`Region` objects.
    ``stats`` collects counters (``exact_fallbacks``: sign decisions made in rationals).
    """
    cond = _conditioned(net)
    win, p, root, _ = _setup(cond, center, radius, domain)
    stats = {} if stats is None else stats
    for leaf in _leaves(cond, win, p, root, stats):
        yield leaf.P, leaf.code, leaf.A, leaf.c, p, leaf.flat


def _leaves(cond, win, p, root, stats):
    d = cond.input_dim
    y0 = win.center - p
    charts = ExactCharts(cond, p)
    layers = cond.layers
    # a cell: (cell, A, c, mA, mc, code, flat) with h = A y + c, |A| ≤ mA, |c| ≤ mc, error ≤ rel·(mA, mc)
    eye = np.eye(d)
    stack = [(0, 0.0, [(root, eye, p.copy(), eye, np.abs(p), (), ())])]
    while stack:
        li, rel, batch = stack.pop()
        if li == len(layers):
            for P, A, c, _, _, code, flat in batch:
                yield _Leaf(P, code, flat, A, c)
            continue
        leaves, rel2 = _refine_batch(layers[li], li, batch, rel, y0, win.radius, d, charts, stats)
        for i in range(0, len(leaves), _BATCH):
            stack.append((li + 1, rel2, leaves[i:i + _BATCH]))


def _refine_batch(cl, li, batch, rel, y0, radius, d, charts, stats):
    """Split every cell of ``batch`` by the switching sets of layer ``cl``; return the next layer's cells."""
    if is_max_groups(cl.activation):  # max-pooling: argmax regions by clipping (maxgroups.refine_max_batch)
        return refine_max_batch(cl, li, batch, rel, y0, radius, d, charts, stats)
    A = np.stack([item[1] for item in batch])  # (C, m, d)
    c = np.stack([item[2] for item in batch])  # (C, m)
    mA = np.stack([item[3] for item in batch])
    mc = np.stack([item[4] for item in batch])
    bn, act = cl.bn, cl.activation
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is detected below and reported
        lin, gap = cl.chart(A, c)
        g, e = bn.gain, bn.shift
        N = g[None, :, None] * lin  # ẑ(y) = N y + z0 on each cell
        z0 = g * gap + e
        absW = np.abs(cl.weight)
        mlin = np.matmul(absW, mA)
        mgap = (mc + np.abs(bn.anchor)) @ absW.T
        m_in = cl.weight.shape[1]
        # error of (N, z0) against the exact chart: the parent's relative error plus this layer's dot products
        rel2 = rel + (m_in + DOT_EXTRA_TERMS + 2) * U
        EN = rel2 * np.abs(g)[None, :, None] * mlin
        Ez = rel2 * (np.abs(g) * mgap + np.abs(e))
    _finite(N, z0, EN, Ez, what=f"the charts of layer {li}")
    t = act.breakpoints_array
    C, n = z0.shape
    K = len(t)
    fa = np.repeat(N, K, axis=1)  # (C, nK, d): hyperplane (j, k) at index j*K + k
    fb = (t[None, None, :] - z0[:, :, None]).reshape(C, n * K)
    EA = np.repeat(EN, K, axis=1)
    EB = np.repeat(Ez, K, axis=1) + U * np.abs(fb)
    # C4 screen with a safe margin: a switching set whose window slack is below −E misses W entirely and keeps
    # the side it has at the window centre
    ay0 = np.abs(y0) + radius
    resid = np.einsum("cjd,d->cj", fa, y0) - fb
    dual = np.abs(fa).sum(axis=2)
    Es = FILTER_SAFETY * (np.einsum("cjd,d->cj", EA, ay0) + EB + (d + DOT_EXTRA_TERMS + 2) * U
                          * (np.einsum("cjd,d->cj", np.abs(fa), ay0) + np.abs(fb)))
    screened = np.abs(resid) - radius * dual <= Es
    sides0 = np.sign(resid).astype(np.int8)
    slope_tab = np.asarray(act.slopes, dtype=np.float64)
    icpt_tab = np.asarray(act.intercepts(), dtype=np.float64)
    # bound on |φ's offset| used for the next chart's magnitude (covers the rounding of the intercepts)
    icpt_mag = np.abs(icpt_tab) + np.abs(slope_tab) * (np.abs(t).max() if K else 0.0) + (
        np.abs(np.asarray(act.values_at_breakpoints())).max() if K else 0.0)
    leaf_cells, leaf_parent, leaf_sides = [], [], []
    for ci, (P, _, _, _, _, code, flat) in enumerate(batch):
        fa_c, fb_c, EA_c, EB_c = fa[ci], fb[ci], EA[ci], EB[ci]

        def exact_line(j, code=code):
            return charts.hyperplane(code, j // K, j % K)

        pending = [(P, np.flatnonzero(screened[ci]), sides0[ci].copy())]
        while pending:
            Q, cand, s_here = pending.pop()
            cutting = np.zeros(0, bool)
            if len(cand):
                sg, vals, E, dec = vertex_signs(Q, fa_c[cand], fb_c[cand], EA_c[cand], EB_c[cand],
                                                lambda jj, cand=cand, line=exact_line: line(int(cand[jj])), stats)
                pos, neg = (sg > 0).any(axis=0), (sg < 0).any(axis=0)
                cutting = pos & neg
                s_here = s_here.copy()
                nc = ~cutting
                # off the cutting ones at most one of pos, neg holds: pos − neg is 1, −1 or 0 (on it everywhere)
                s_here[cand[nc]] = pos[nc].view(np.int8) - neg[nc].view(np.int8)
            if cutting.any():
                jj = int(np.flatnonzero(cutting)[0])
                hj = int(cand[jj])
                H = Hyper(fa_c[hj], fb_c[hj], EA_c[hj], EB_c[hj], (li, hj // K, hj % K, code),
                          fn=lambda hj=hj, line=exact_line: line(hj))
                below, above = split(Q, H, sg[:, jj], stats)
                remaining = cand[cutting]
                remaining = remaining[remaining != hj]
                s_below, s_above = s_here.copy(), s_here.copy()
                s_below[hj], s_above[hj] = -1, 1
                pending.append((below, remaining, s_below))
                pending.append((above, remaining, s_above))
                continue
            # a leaf for this layer: every switching set keeps one side on Q's interior (0: on it everywhere)
            leaf_cells.append(Q)
            leaf_parent.append(ci)
            leaf_sides.append(s_here)
    if not leaf_cells:
        return [], rel2 + 2 * U
    # the next layer's charts of all leaves at once (same arithmetic as one leaf at a time, row by row)
    L = len(leaf_cells)
    par = np.asarray(leaf_parent, dtype=np.intp)
    if K:
        sk = np.stack(leaf_sides).reshape(L, n, K)
        pieces = (sk >= 0).sum(axis=2).astype(np.int64)
        flat_here = (sk == 0).any(axis=2)
    else:
        pieces = np.zeros((L, n), dtype=np.int64)
        flat_here = np.zeros((L, n), dtype=bool)
    slope, icpt = slope_tab[pieces], icpt_tab[pieces]
    aslope = np.abs(slope)
    A2 = slope[:, :, None] * N[par]
    c2 = slope * z0[par] + icpt
    mA2 = aslope[:, :, None] * np.abs(g)[None, :, None] * mlin[par]
    mc2 = aslope * (np.abs(g)[None, :] * mgap[par] + np.abs(e)[None, :]) + icpt_mag[pieces]
    out = []
    for i in range(L):
        code, flat = batch[leaf_parent[i]][5], batch[leaf_parent[i]][6]
        out.append((leaf_cells[i], A2[i], c2[i], mA2[i], mc2[i], code + (pieces[i],), flat + (flat_here[i],)))
    return out, rel2 + 2 * U


# -- certification -------------------------------------------------------------------------------------------
def _exact_code(cond: ConditionedNetwork, x) -> tuple:
    """Activation code at x in exact rational arithmetic on the network's float64 parameters."""
    return exact_code(cond, x)


def _certify_batch(cond, witnesses, radii, codes, radius_w, exact: bool, flats=None) -> np.ndarray:
    """Re-check a batch of witnesses with one independent forward pass: ``(M,)`` bool.

    A witness passes when its ball radius is positive (relative to the window), the forward pass at it
    reproduces the region's code in every layer, and no pre-activation sits exactly on a breakpoint
    (except neurons on a breakpoint on the whole region, ``flats``).
    """
    ok = radii > WITNESS_MIN_RELATIVE_RADIUS * radius_w
    zs = cond.preactivations(witnesses)
    for li, (layer, z) in enumerate(zip(cond.layers, zs)):
        got = layer.activation.piece_index(z)
        ok &= np.all(got == np.stack([c[li] for c in codes]), axis=1)
        if is_max_groups(layer.activation):  # the argmax must be unique (a tie is a switching set)
            tie = layer.activation.ties(z)
            if flats is not None:
                tie &= ~np.stack([f[li] for f in flats])
            ok &= ~np.any(tie, axis=1)
        elif layer.activation.breakpoints:
            on_bp = np.isin(z, layer.activation.breakpoints_array)
            if flats is not None:
                on_bp &= ~np.stack([f[li] for f in flats])
            ok &= ~np.any(on_bp, axis=1)
    if exact:
        for i in np.flatnonzero(ok):
            ok[i] = all(np.array_equal(g, k) for g, k in zip(_exact_code(cond, witnesses[i]), codes[i]))
    return ok


def _exact_witness(cond, leaf, p_exact):
    """Exact rational witness of a region float64 cannot certify: (x* rational, ρ Fraction) or None.

    x* = mean of the exact vertices; ρ > 0 a rational with ρ·‖a*‖₂ ≤ slack* for every facet; then the exact
    forward pass at x* must reproduce the code, with no pre-activation on a breakpoint (except flat neurons).
    """
    P = leaf.P
    verts = P.exact_vertices()
    nv = len(verts)
    cy = tuple(sum(v[k] for v in verts) / nv for k in range(len(verts[0])))
    rho = None
    for H, s in P.facet_list():
        a, b = H.exact()
        slack = -s * (dot(a, cy) - b)
        if slack <= 0:
            return None
        n2 = sum(x * x for x in a)
        if n2 == 0:
            continue
        r = Fraction(float(slack) / math.sqrt(float(n2)) * (1 - 1e-6))
        while r > 0 and r * r * n2 > slack * slack:  # make it a proven lower bound
            r /= 2
        if r <= 0:
            return None
        rho = r if rho is None else min(rho, r)
    x = tuple(ci + pi for ci, pi in zip(cy, p_exact))
    code, on_bp = exact_code_and_switching(cond, x)  # one exact forward pass for both checks
    if not all(np.array_equal(g, k) for g, k in zip(code, leaf.code)):
        return None
    for bp, fl in zip(on_bp, leaf.flat):
        if np.any(bp & ~fl):
            return None
    return x, rho


def _inradii(leaves, points, point_errs) -> np.ndarray:
    """:meth:`polytope._Cell.inradius_at` for every leaf at once: ``(n,)`` radii ρ_i with B(points[i], ρ_i) in
    leaf i's cell (the same bound, evaluated over all facets of all leaves in one pass)."""
    fl = [lf.P.facet_list() for lf in leaves]
    counts = np.fromiter((len(f) for f in fl), dtype=np.intp, count=len(fl))
    hs = [fs for f in fl for fs in f]
    A = np.array([H.a for H, _ in hs])
    B = np.array([H.beta for H, _ in hs])
    EA = np.array([H.err_a for H, _ in hs])
    EB = np.array([H.err_b for H, _ in hs])
    sg = np.array([s for _, s in hs], dtype=np.float64)
    seg = np.repeat(np.arange(len(leaves)), counts)
    pt, perr = points[seg], point_errs[seg]
    ap = np.abs(pt)
    d = points.shape[1]
    slack = -sg * (np.einsum("fd,fd->f", A, pt) - B)
    absA = np.abs(A)
    E = FILTER_SAFETY * (np.einsum("fd,fd->f", EA, ap) + EB + (absA.sum(axis=1) + EA.sum(axis=1)) * perr
                         + (d + DOT_EXTRA_TERMS) * U * (np.einsum("fd,fd->f", absA, ap) + np.abs(B)))
    nrm = np.linalg.norm(A, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(nrm > 0, (slack - E) / (nrm + np.linalg.norm(EA, axis=1)), np.inf)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.minimum.reduceat(r, starts)


# -- completeness and maximal linear regions ----------------------------------------------------------------
def _same_map(a, b) -> bool:
    scale = 1.0 + max(np.abs(a).max(initial=0), np.abs(b).max(initial=0))
    return bool(np.all(np.abs(a - b) <= AFFINE_MAP_RTOL * scale))


def _code_key(code) -> bytes:
    return b"|".join(c.tobytes() for c in code)


def _adjacency(leaves):
    """Match every facet inside W with the region across it.

    The region across a (d−1)-facet of R on the switching set of neuron (ℓ, j), breakpoint k, has R's code
    with that neuron's piece moved across k (k ↔ k + 1) and nothing else changed: a generic point of the facet
    is on no other switching set, and pieces are continuous there. Returns ``(pairs, unmatched)``: adjacent
    region index pairs, and unmatched facets as (region, facet index) for the measure-balance fallback.
    """
    keys = [_code_key(lf.code) for lf in leaves]
    index = {k: i for i, k in enumerate(keys)}
    pairs, unmatched = [], []
    for i, lf in enumerate(leaves):
        # byte offset of layer l's row in keys[i] (rows joined by one separator byte): the neighbour's key is
        # keys[i] with one element's bytes replaced, which equals _code_key of the modified code
        starts, off = [], 0
        for row in lf.code:
            starts.append(off)
            off += row.nbytes + 1
        base = None
        for fi, (H, s) in enumerate(lf.P.facet_list()):
            key = H.key
            if key[0] in ("box", "domain"):
                continue
            layer, j, k = key[0], key[1], key[2]
            piece = int(lf.code[layer][j])
            if isinstance(k, tuple):  # max group j, facet z_a = z_b: across it the argmax is the other one
                other = k[2] if piece == k[1] else (k[1] if piece == k[2] else None)
            else:
                other = k if piece == k + 1 else (k + 1 if piece == k else None)
            if other is None:
                unmatched.append((i, fi))
                continue
            row = lf.code[layer]
            if base is None:
                base = bytearray(keys[i])
            at = starts[layer] + j * row.itemsize
            saved = base[at:at + row.itemsize]
            base[at:at + row.itemsize] = row.dtype.type(other).tobytes()
            nb = index.get(bytes(base))
            base[at:at + row.itemsize] = saved
            if nb is None:
                unmatched.append((i, fi))
            elif nb > i:
                pairs.append((i, nb))
    return pairs, unmatched


def _balance_ok(leaves, unmatched) -> bool:
    """Fallback for unmatched facets (coincident switching sets): per switching set and parent cell, the facet
    measure seen from its two sides must agree (THEORY §6, area-weighted facet matching)."""
    if not unmatched:
        return True
    keys = {}
    for i, fi in unmatched:
        H = leaves[i].P.facet_list()[fi][0]
        keys[(H.key[0], H.key[1], H.key[2], _code_key(H.key[3]))] = None
    sums = {k: [0.0, 0.0] for k in keys}
    for lf in leaves:
        fl = lf.P.facet_list()
        hit = [fi for fi, (H, s) in enumerate(fl) if H.key[0] not in ("box", "domain")
               and (H.key[0], H.key[1], H.key[2], _code_key(H.key[3])) in sums]
        if not hit:
            continue
        meas = facet_measures(lf.P)
        for fi in hit:
            H, s = fl[fi]
            sums[(H.key[0], H.key[1], H.key[2], _code_key(H.key[3]))][s > 0] += float(meas[fi])
    return all(abs(a - b) <= FACET_BALANCE_RTOL * max(a, b, 1e-300) and a > 0 for a, b in sums.values())


def _linear_components(leaves, pairs, out_maps) -> int:
    """Maximal linear regions: union-find over adjacent regions whose output maps agree (AFFINE_MAP_RTOL)."""
    parent = list(range(len(leaves)))

    def find(u):
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    if not pairs:
        return len(leaves)
    # _same_map on every adjacent pair at once (the same comparisons, vectorised over the pairs)
    uv = np.asarray(pairs, dtype=np.intp)
    A_all = np.stack([m[0] for m in out_maps])
    c_all = np.stack([m[1] for m in out_maps])
    same = np.ones(len(uv), dtype=bool)
    for X in (A_all, c_all):
        Xu, Xv = X[uv[:, 0]].reshape(len(uv), -1), X[uv[:, 1]].reshape(len(uv), -1)
        mag = np.abs(X).reshape(len(X), -1).max(axis=1, initial=0)
        scale = 1.0 + np.maximum(mag[uv[:, 0]], mag[uv[:, 1]])
        same &= np.all(np.abs(Xu - Xv) <= AFFINE_MAP_RTOL * scale[:, None], axis=1)
    for u, v in uv[same].tolist():
        ru, rv = find(u), find(v)
        if ru != rv:
            parent[ru] = rv
    return len({find(i) for i in range(len(leaves))})


def _polytope_domain(polytope, d):
    from .errors import ShapeError, WindowError

    try:
        G, h = (np.asarray(v, dtype=np.float64) for v in polytope)
    except (TypeError, ValueError):
        raise ShapeError(f"polytope must be a pair (G, h) of numeric arrays, G (F, {d}) and h (F,), describing "
                         "{x : G x <= h}.") from None
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


class _Progress:
    """Rich progress on stderr for one window: fraction of vol(W) counted, regions, exact fallbacks."""

    def __init__(self, mode, vol):
        self.mode, self.vol, self.bar, self.start = mode, vol, None, time.perf_counter()
        self.done = 0.0

    def update(self, dvol, regions, stats):
        self.done += dvol
        if self.mode is False or (self.mode is None and time.perf_counter() - self.start < 2.0):
            return
        if self.bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("counting regions"), BarColumn(), TextColumn("{task.percentage:>5.1f}% of W"),
                                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                console=Console(file=sys.stderr), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("count", total=self.vol, info="")
        if regions % 256 == 0:
            self.bar.update(self.task, completed=self.done,
                            info=f"{regions} regions, {stats.get('exact_fallbacks', 0)} exact decisions")

    def close(self):
        if self.bar is not None:
            self.bar.stop()


def count_regions(net, center=None, radius=None, *, keep_regions: bool = False, exact_recheck: bool = False,
                  linear: bool = True, polytope=None, progress: bool | None = False,
                  engine: str = "auto") -> RegionCount:
    """Exact, certified, complete count of activation regions of ``net`` in the ℓ∞ window W(center, radius).

    Args:
        net: :class:`Network` (conditioned on its batch) or :class:`ConditionedNetwork`.
        center: ``(d,)``; radius: r > 0.
        keep_regions: also return the list of certified :class:`Region` objects.
        exact_recheck: re-check every witness with an exact rational forward pass too.
        linear: also count maximal linear regions (N_lin), from the facet adjacency.
        polytope: ``(G, h)``: count in the bounded polytope {x : G x ≤ h} instead of a window (centre and
            radius are then taken from its bounding box, which the C4 screen uses).
        progress: rich progress bar on stderr (True), never (False), or once the window takes > 2 s (None).
        engine: ``"auto"`` (the plane engine :mod:`cpa_theory.frontier2d` for d = 2, every cell of a layer split
            at once) or ``"cells"`` (cell by cell, any d; the reference the plane engine is tested against).

    Returns: :class:`RegionCount` with ``regions`` (N), ``linear_regions`` (N_lin), ``hits`` (first-layer
    switching sets that cut int W, by C4), ``complete`` (volumes add up, every inner facet matched),
    ``certified`` (every witness re-checked and complete), ``exact_fallbacks`` (sign decisions made in
    rationals), ``min_witness_radius``.
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
    center = as_point(center, cond.input_dim, "center",
                      "density.count_many(net, centers, r) or density.density_functional")
    win, p, root, vol_w = _setup(cond, center, radius, domain)
    if engine == "auto" and frontier2d.supports(cond):  # the plane: all cells of a layer split at once
        res = frontier2d.count_plane(cond, win, p, root, vol_w, keep_regions=keep_regions,
                                     exact_recheck=exact_recheck, linear=linear, progress=progress)
        res.hits = _window_hits(cond, win, domain, root, p)
        res.seconds = time.perf_counter() - start
        return res
    if engine == "auto" and frontier3d.supports(cond):  # 3-D: the same, over flat face tables
        res = frontier3d.count_space(cond, win, p, root, vol_w, keep_regions=keep_regions,
                                     exact_recheck=exact_recheck, linear=linear, progress=progress)
        res.hits = _window_hits(cond, win, domain, root, p)
        res.seconds = time.perf_counter() - start
        return res
    p_exact = [Fraction(float(v)) for v in p]
    stats: dict = {}
    leaves = []
    vol_sum = 0.0
    bar = _Progress(progress, vol_w)
    pending: list = []

    def add_volumes():  # volumes in chunks (one vectorised pass per chunk in 3-D), then the progress bar
        nonlocal vol_sum
        vols = cell_volumes([lf.P for lf in pending])
        for lf, v in zip(pending, vols.tolist()):
            vol_sum += v
            leaves.append(lf)
            bar.update(v, len(leaves), stats)
        pending.clear()

    try:
        for leaf in _leaves(cond, win, p, root, stats):
            pending.append(leaf)
            if len(pending) >= _VOLUME_CHUNK:
                add_volumes()
        add_volumes()
    finally:
        bar.close()
    # witnesses: float64 first (one vectorised forward pass), exact rational ones where float64 cannot certify
    n = len(leaves)
    wit = np.empty((n, cond.input_dim))
    rad = np.empty(n)
    if n:
        cys = np.array([lf.P.interior_point() for lf in leaves])
        errs = np.array([lf.P.err.max() for lf in leaves]) + U * np.abs(cys).max(axis=1) * 4
        wit[:] = cys + p
        rad[:] = _inradii(leaves, cys, errs) - 2 * U * np.abs(wit).max(axis=1)
    ok = np.zeros(n, dtype=bool)
    for s0 in range(0, n, _CERTIFY_CHUNK):
        sl = slice(s0, s0 + _CERTIFY_CHUNK)
        ok[sl] = _certify_batch(cond, wit[sl], rad[sl], [lf.code for lf in leaves[sl]], win.radius, exact_recheck,
                                [lf.flat for lf in leaves[sl]])
    n_exact_wit = 0
    for i in np.flatnonzero(~ok):
        got = _exact_witness(cond, leaves[i], p_exact)
        if got is not None:
            x, rho = got
            wit[i] = [float(v) for v in x]
            rad[i] = float(rho)
            ok[i] = True
            n_exact_wit += 1
    n_bad = int(np.count_nonzero(~ok))
    # completeness: volumes, and every facet inside W matched by its neighbour
    vol_ok = abs(vol_sum - vol_w) <= VOLUME_SUM_RTOL * vol_w
    pairs, unmatched = _adjacency(leaves)
    complete = bool(vol_ok and _balance_ok(leaves, unmatched))
    out_maps = [(lf.A, lf.c - lf.A @ p) for lf in leaves]  # f(x) = A (x − p) + c
    n_lin = _linear_components(leaves, pairs, out_maps) if linear else n
    regions = None
    if keep_regions:
        regions = []
        for i, lf in enumerate(leaves):
            G, h = lf.P.facet_arrays()
            regions.append(Region(lf.code, wit[i], float(rad[i]), lf.P.V + p, out_maps[i][0], out_maps[i][1],
                                  (G, h + G @ p)))
    hits = _window_hits(cond, win, domain, root, p)
    min_rad = float(rad[ok].min()) if ok.any() else math.inf
    return RegionCount(win.center, win.radius, n, n_lin, hits, n_bad == 0 and complete, n_bad,
                       time.perf_counter() - start, int(stats.get("exact_fallbacks", 0)), regions, complete,
                       min_rad, n_exact_wit, len(unmatched))


def _window_hits(cond, win, domain, root, p) -> int:
    """First-layer switching sets that cut int W (C4), or the polytope's interior (exact vertex signs)."""
    if domain is None:
        hp = switching_hyperplanes(cond, 0)
        return int(np.sum(window_relations(hp, win.center, win.radius) == WindowRelation.CUTS))
    return _domain_hits(cond, root, p)


def _domain_hits(cond, root, p) -> int:
    """First-layer switching sets that cut the root cell's interior (exact vertex signs)."""
    stats: dict = {}
    charts = ExactCharts(cond, p)
    cl = cond.layers[0]
    if is_max_groups(cl.activation):
        from .maxgroups import domain_hits_max

        return domain_hits_max(cond, root, p, charts, stats)
    K = len(cl.activation.breakpoints)
    if not K:
        return 0
    d = cond.input_dim
    lin, gap = cl.chart(np.eye(d)[None], p[None])
    N = cl.bn.gain[None, :, None] * lin
    z0 = cl.bn.gain * gap + cl.bn.shift
    fa = np.repeat(N[0], K, axis=0)
    fb = (cl.activation.breakpoints_array[None, :] - z0[0][:, None]).reshape(-1)
    mz = np.abs(cl.bn.gain) * (np.abs(cl.weight) @ np.abs(p - cl.bn.anchor)) + np.abs(cl.bn.shift)
    EA = (d + 5) * U * np.abs(fa)
    EB = (d + 5) * U * (np.abs(fb) + mz.repeat(K))
    sg = vertex_signs(root, fa, fb, EA, EB, lambda j: charts.hyperplane((), j // K, j % K), stats)[0]
    return int(np.sum((sg > 0).any(axis=0) & (sg < 0).any(axis=0)))
