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
from . import frontier2d
from .frontier import _screen, confirm_same_maps, layer_lines, output_maps, same_maps
from .frontier_kernels import chart_tables, charts_after
from .exact import ExactCharts, dot, exact_code, exact_code_and_switching
from .hyperplanes import switching_hyperplanes
from .maxgroups import is_max_groups, refine_max_batch
from .network import ConditionedNetwork, Network, as_point
from .polytope import (Hyper, box_polygon, box_polytope, cell_volume, cell_volumes, exact_facet_vertices,
                       facet_clearance, facet_corners, facet_measures, polytope_from_halfspaces, split, vertex_signs)
from .tolerances import FACET_BALANCE_RTOL, UNIT_ROUNDOFF, VOLUME_SUM_RTOL, WITNESS_MIN_RELATIVE_RADIUS
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

#: regions are certified in chunks of this many as they stream out of the refinement (one vectorised forward
#: pass and volume pass per chunk, then a progress update); only then are their cells dropped.
_STREAM_CHUNK = 512

#: a window shows its progress bar (``progress=None``) once it has taken this long.
_PROGRESS_AFTER_S = 2.0

#: neighbour look-ups per vectorised pass when completeness is checked at the end (bounded transient memory).
_LOOKUP_CHUNK = 1 << 16


@dataclass(frozen=True)
class Region:
    """One certified activation region.

    code: tuple of int arrays (piece index per neuron, per layer); witness: ``(d,)`` x-coordinates;
    radius: a Euclidean ball of this radius around the witness lies in the region (for regions thinner than
    float64 resolution, certified by an exact rational witness, ``witness`` is that point rounded to float64
    and may fall just outside; ``radius`` is the exact ball's);
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
    """A region before certification: its cell (y-coordinates), code, flat neurons and output map (y) f = A y + c
    with magnitude bounds mA, mc and relative error rel (|error| ≤ rel·(mA, mc))."""

    __slots__ = ("P", "code", "flat", "A", "c", "mA", "mc", "rel")

    def __init__(self, P, code, flat, A, c, mA=None, mc=None, rel=None):
        self.P, self.code, self.flat, self.A, self.c = P, code, flat, A, c
        self.mA, self.mc, self.rel = mA, mc, rel


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
    """Yield the regions (:class:`_Leaf`) depth first with a bounded frontier.

    The frontier is a stack of generators, one per layer in progress: each refines one batch of at most
    ``_BATCH`` cells of its layer (:func:`_refine_batch`) and hands out the next layer's cells in batches
    of at most ``_BATCH`` as they are made. At any time the stack holds, per layer, one parent batch, the
    split stack of the cell being refined (O(n_l) cells) and at most ``_BATCH`` finished children: O(depth ×
    _BATCH) cells, whatever the fan-out of a cell (one window cell can split into 10^5 first-layer cells).
    """
    d = cond.input_dim
    y0 = win.center - p
    charts = ExactCharts(cond, p)
    layers = cond.layers
    # a cell: (cell, A, c, mA, mc, code, flat) with h = A y + c, |A| ≤ mA, |c| ≤ mc, error ≤ rel·(mA, mc)
    eye = np.eye(d)
    stack = [iter([(0, 0.0, [(root, eye, p.copy(), eye, np.abs(p), (), ())])])]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        li, rel, batch = item
        if li == len(layers):
            for P, A, c, mA, mc, code, flat in batch:
                yield _Leaf(P, code, flat, A, c, mA, mc, rel)
            continue
        stack.append(_tagged(li + 1, _refine_batch(layers[li], li, batch, rel, y0, win.radius, d, charts, stats,
                                                  chunk=_BATCH)))


def _tagged(li, parts):
    for part, rel in parts:
        yield li, rel, part


def _refine_batch(cl, li, batch, rel, y0, radius, d, charts, stats, chunk=_BATCH):
    """Split every cell of ``batch`` by the switching sets of layer ``cl``; yield the next layer's cells in
    lists of at most ``chunk`` (None: one list) as they are made, each list with its charts' relative error
    bound. The cells of one parent are made depth first (a split stack of O(n_l) cells), so a generator holds
    ``batch``, that stack and at most ``chunk`` children whatever a cell's fan-out."""
    if is_max_groups(cl.activation):  # max-pooling: argmax regions by clipping (maxgroups.refine_max_batch)
        out, rel_max = refine_max_batch(cl, li, batch, rel, y0, radius, d, charts, stats)
        step = max(1, len(out) if chunk is None else chunk)
        for i in range(0, len(out), step):
            yield out[i:i + step], rel_max
        return
    A = np.stack([item[1] for item in batch])  # (C, m, d)
    c = np.stack([item[2] for item in batch])  # (C, m)
    mA = np.stack([item[3] for item in batch])
    mc = np.stack([item[4] for item in batch])
    act = cl.activation
    # the chart primitive (ConditionedLayer.chart) with the error bounds, and the C4 screen: shared with the
    # flat engines (cpa_theory.frontier)
    lines = layer_lines(cl, A, c, mA, mc, rel, li)
    fa, fb, EA, EB = lines["fa"], lines["fb"], lines["EA"], lines["EB"]
    N, z0, mlin, mgap, rel2, K = lines["N"], lines["z0"], lines["mlin"], lines["mgap"], lines["rel2"], lines["K"]
    g, e = cl.bn.gain, cl.bn.shift
    C, n = z0.shape
    screened, sides0 = _screen(lines, y0, radius)
    tables = chart_tables(act)  # slopes, intercepts and the intercepts' magnitude bounds (the chart primitive)
    leaf_cells, leaf_parent, leaf_sides = [], [], []

    def next_cells(cells, parents, sides):
        return _next_cells(batch, cells, parents, sides, K, n, N, z0, g, e, mlin, mgap, tables)

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
            if chunk is not None and len(leaf_cells) >= chunk:
                yield next_cells(leaf_cells, leaf_parent, leaf_sides), rel2 + 2 * U
                leaf_cells, leaf_parent, leaf_sides = [], [], []
    if leaf_cells:
        yield next_cells(leaf_cells, leaf_parent, leaf_sides), rel2 + 2 * U


def _next_cells(batch, leaf_cells, leaf_parent, leaf_sides, K, n, N, z0, g, e, mlin, mgap, tables):
    """The next layer's cells: the charts of the leaves ``leaf_cells`` (children of ``batch[leaf_parent[i]]``,
    on the sides ``leaf_sides``) all at once (same arithmetic as one leaf at a time, row by row)."""
    L = len(leaf_cells)
    par = np.asarray(leaf_parent, dtype=np.intp)
    if K:
        sk = np.stack(leaf_sides).reshape(L, n, K)
        pieces = (sk >= 0).sum(axis=2).astype(np.int64)
        flat_here = (sk == 0).any(axis=2)
    else:
        pieces = np.zeros((L, n), dtype=np.int64)
        flat_here = np.zeros((L, n), dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowed bound is inf: the next layer refuses it
        A2, c2, mA2, mc2 = charts_after(N[par], z0[par], mlin[par], mgap[par], pieces, tables, g, e)
    out = []
    for i in range(L):
        code, flat = batch[leaf_parent[i]][5], batch[leaf_parent[i]][6]
        out.append((leaf_cells[i], A2[i], c2[i], mA2[i], mc2[i], code + (pieces[i],), flat + (flat_here[i],)))
    return out


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
        r = _sqrt_lower(slack * slack / n2)  # slack/‖a*‖₂ from below, at any scale of the weights
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


def _sqrt_lower(q: Fraction, bits: int = 60) -> Fraction:
    """A rational r with 0 < r ≤ √q and r ≥ √q·(1 − 2⁻⁽ᵇⁱᵗˢ⁻¹⁾) for a rational q > 0: isqrt(⌊q·4ᵏ⌋)/2ᵏ, k chosen so that
    q·4ᵏ ≥ 2^(2·bits). Integer arithmetic only: no float overflow or underflow whatever the scale of q (weights
    of 1e±200 give q far outside float64's range)."""
    e = q.numerator.bit_length() - q.denominator.bit_length()  # log2(q) within 1
    k = max(0, (2 * bits - e + 2) // 2)
    return Fraction(math.isqrt(q.numerator * 4 ** k // q.denominator), 2 ** k)


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
    r = facet_clearance(A, B, EA, EB, sg, points[seg], point_errs[seg])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.minimum.reduceat(r, starts)


# -- completeness and maximal linear regions ----------------------------------------------------------------
def _code_key(code) -> bytes:
    return b"|".join(c.tobytes() for c in code)


def _pieces(layer) -> int:
    """Number of pieces of a layer's code entries (the values a neuron's code can take; for a max-group layer
    the argmax position in the largest group)."""
    if is_max_groups(layer.activation):
        return int(layer.activation.sizes.max())
    return len(layer.activation.breakpoints) + 1


def _code_len(layer) -> int:
    """Entries of a layer's code: one per neuron, or one per group of a max-group layer."""
    return layer.activation.n_groups if is_max_groups(layer.activation) else layer.weight.shape[0]


class _CodeBook:
    """Compact activation codes: one row of ``width`` elements of ``dtype`` per region.

    All neurons of all layers in one flat index (layer ℓ's neuron j at ``offsets[ℓ] + j``). When every layer
    has ≤ 2 pieces (ReLU, leaky ReLU, |·|, …) the row is the bits of the code (``np.packbits``, ⌈n/8⌉ bytes for
    n neurons), else one uint8 (uint16 beyond 256 pieces) per neuron. The region across a facet on neuron
    (ℓ, j) differs in one element of the row: (element, new value) is all a facet needs to name it.
    """

    def __init__(self, cond):
        sizes = [_code_len(layer) for layer in cond.layers]
        self.is_max = [is_max_groups(layer.activation) for layer in cond.layers]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.total = int(self.offsets[-1])
        most = max(_pieces(layer) for layer in cond.layers)
        self.bits = most <= 2
        self.dtype = np.dtype(np.uint8 if most <= 256 else np.uint16)
        self.width = (self.total + 7) // 8 if self.bits else self.total
        self.elem_dtype = np.dtype(np.uint16 if self.width < 2**16 else np.int32)

    def flat(self, codes) -> np.ndarray:
        """``(M, total)`` int64 piece indices of M codes (tuples of per-layer arrays)."""
        return np.array([np.concatenate(code) for code in codes], dtype=np.int64).reshape(len(codes), self.total)

    def pack(self, flat) -> np.ndarray:
        return np.packbits(flat.astype(np.uint8), axis=1) if self.bits else flat.astype(self.dtype)

    def unpack(self, rows) -> np.ndarray:
        if self.bits:
            return np.unpackbits(rows, axis=1, count=self.total).astype(np.int64)
        return rows.astype(np.int64)

    def delta(self, rows, reg, pos, other):
        """(element, new value) turning the packed rows ``rows[reg]`` into the codes with flat neuron ``pos``
        at piece ``other``."""
        if self.bits:
            elem = pos // 8
            return elem, rows[reg, elem] ^ (np.uint8(0x80) >> (pos % 8).astype(np.uint8))
        return pos, other.astype(self.dtype)

    def neuron(self, rows, reg, elem, new):
        """Inverse of :meth:`delta`: ``(layer, neuron j, k)`` of the facet each delta crosses: k the breakpoint
        (the lower of the two pieces), or for a max-group layer ("max", a, b) with a < b the two argmax
        positions (the key of the tie facet z_a = z_b)."""
        if self.bits:
            flip = (rows[reg, elem] ^ new).astype(np.float64)  # one bit
            pos = elem.astype(np.int64) * 8 + 7 - np.round(np.log2(flip)).astype(np.int64)
            k = np.zeros(len(pos), dtype=np.int64)  # two pieces: breakpoint 0
            hi = k + 1
        else:
            pos = elem.astype(np.int64)
            old, nw = rows[reg, elem].astype(np.int64), new.astype(np.int64)
            k, hi = np.minimum(old, nw), np.maximum(old, nw)
        layer = np.searchsorted(self.offsets, pos, side="right") - 1
        ks = [("max", int(a), int(b)) if self.is_max[l] else int(a)
              for l, a, b in zip(layer.tolist(), k.tolist(), hi.tolist())]
        return layer, pos - self.offsets[layer], ks

    def prefix_key(self, flat_row, layer) -> bytes:
        """The name of the switching sets of ``layer`` on the cell with the code ``flat_row`` of the earlier
        layers (``Hyper.key[3]``, which is that prefix of every descendant's code)."""
        return flat_row[: self.offsets[layer]].tobytes()


class _RegionTable:
    """What completeness and N_lin need of the regions once their cells are certified and dropped.

    Per region: its packed code (``_CodeBook``), the number of its facets inside W, per such facet the
    (element, new value) naming the region across it, and (with ``linear``) its output map A (n_out, d), c.
    Facets whose neuron could not have been crossed there (coincident switching sets) are kept aside with their
    switching set's name for the facet-measure balance. Memory: N · (code bytes + 4 + F · (element + value
    bytes) + 8 · n_out (d + 1) + 16) for N regions with F facets inside W on average.
    """

    def __init__(self, cond, linear: bool):
        self.book = _CodeBook(cond)
        self.cond, self.p = cond, None
        self.linear = linear
        self.codes, self.nfacets, self.elems, self.news, self.maps_A, self.maps_c = [], [], [], [], [], []
        self.err_A, self.err_c = [], []  # per region: error bounds of its output map's entries (same_maps)
        self.same_u = self.same_v = np.zeros(0, dtype=np.int64)  # adjacent pairs with one map (after finish)
        self._charts = None
        self.n = 0
        self.early_unmatched = []  # (layer, j, k, prefix key) of facets no neighbour code can match

    def add(self, leaves, p) -> None:
        book = self.book
        self.p = p
        flat = book.flat([lf.code for lf in leaves])
        rows = book.pack(flat)
        reg, pos, other = [], [], []
        for i, lf in enumerate(leaves):
            for H, _ in lf.P.facet_list():
                key = H.key
                if key[0] in ("box", "domain"):
                    continue
                l, j, k = key[0], key[1], key[2]
                at = int(book.offsets[l]) + j
                piece = int(flat[i, at])
                if isinstance(k, tuple):  # max group j, tie facet z_a = z_b: across it the argmax is the other
                    o = k[2] if piece == k[1] else (k[1] if piece == k[2] else -1)
                else:  # breakpoint k: the piece moves across it (k ↔ k + 1)
                    o = k if piece == k + 1 else (k + 1 if piece == k else -1)
                if o < 0:
                    self.early_unmatched.append((l, j, k, book.prefix_key(flat[i], l)))
                    continue
                reg.append(i)
                pos.append(at)
                other.append(o)
        reg = np.asarray(reg, dtype=np.intp)
        pos, other = np.asarray(pos, dtype=np.int64), np.asarray(other, dtype=np.int64)
        elem, new = book.delta(rows, reg, pos, other)
        self.codes.append(rows)
        self.nfacets.append(np.bincount(reg, minlength=len(leaves)).astype(np.int32))
        self.elems.append(elem.astype(book.elem_dtype))
        self.news.append(new.astype(book.dtype))
        if self.linear:
            rel = np.array([lf.rel for lf in leaves])
            A, cx, eA, ec = output_maps(np.stack([lf.A for lf in leaves]), np.stack([lf.c for lf in leaves]),
                                        np.stack([lf.mA for lf in leaves]) * rel[:, None, None],
                                        np.stack([lf.mc for lf in leaves]) * rel[:, None], 1.0, p)
            self.maps_A.append(A)
            self.maps_c.append(cx)  # f(x) = A (x − p) + c
            self.err_A.append(eA)
            self.err_c.append(ec)
        self.n += len(leaves)

    def _code_of(self, i: int) -> tuple:
        """Region i's code (one array per layer) from its packed row (after :meth:`finish` concatenated them)."""
        flat = self.book.unpack(self.codes[0][i:i + 1])[0]
        off = self.book.offsets
        return tuple(flat[off[l]:off[l + 1]] for l in range(len(off) - 1))

    def nbytes(self) -> int:
        return sum(a.nbytes for part in (self.codes, self.nfacets, self.elems, self.news, self.maps_A, self.maps_c,
                                         self.err_A, self.err_c) for a in part)

    def finish(self):
        """Match every facet with its neighbour by code look-up (sorted packed codes, vectorised in chunks).

        Returns ``(n_unmatched, balance_keys, n_lin)``: facets without a neighbour, the names
        (layer, j, k, prefix key) of their switching sets for :func:`_balance_ok`, and the number of maximal
        linear regions (None without ``linear``)."""
        book, n = self.book, self.n
        if n == 0:
            return len(self.early_unmatched), list(dict.fromkeys(self.early_unmatched)), 0 if self.linear else None
        width = book.width * book.dtype.itemsize
        codes = np.ascontiguousarray(np.concatenate(self.codes))
        self.codes = [codes]
        keys = codes.view(np.dtype((np.void, width))).ravel()
        order = np.argsort(keys, kind="stable")
        skeys = keys[order]
        counts = np.concatenate(self.nfacets)
        elems, news = np.concatenate(self.elems), np.concatenate(self.news)
        self.nfacets, self.elems, self.news = [counts], [elems], [news]  # the chunks' memory goes
        fstart = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        A_all = c_all = None
        if self.linear:
            A_all, c_all = np.concatenate(self.maps_A), np.concatenate(self.maps_c)
            eA_all, ec_all = np.concatenate(self.err_A), np.concatenate(self.err_c)
            self.maps_A, self.maps_c, self.err_A, self.err_c = [A_all], [c_all], [eA_all], [ec_all]
        self._lookup = (skeys, order, width)
        balance = {k: None for k in self.early_unmatched}
        n_unmatched = len(self.early_unmatched)
        same_u, same_v = [], []
        charts = None
        r0 = 0
        while r0 < n:  # blocks of regions with about _LOOKUP_CHUNK facets
            r1 = max(r0 + 1, int(np.searchsorted(fstart, fstart[r0] + _LOOKUP_CHUNK, side="right")) - 1)
            r1 = min(r1, n)
            f0, f1 = fstart[r0], fstart[r1]
            reg = np.repeat(np.arange(r0, r1), counts[r0:r1])
            el, nw = elems[f0:f1].astype(np.intp), news[f0:f1]
            q = codes[reg]
            q[np.arange(len(reg)), el] = nw
            qk = q.view(np.dtype((np.void, width))).ravel()
            at = np.searchsorted(skeys, qk, side="right") - 1  # the last region with that code, as a dict would
            found = at >= 0
            found[found] = skeys[at[found]] == qk[found]
            nb = np.where(found, order[np.maximum(at, 0)], -1)
            miss = ~found
            if miss.any():
                n_unmatched += int(miss.sum())
                lay, neu, brk = book.neuron(codes, reg[miss], el[miss], nw[miss])
                flat = book.unpack(codes[reg[miss]])
                for row, l, j, k in zip(flat, lay.tolist(), neu.tolist(), brk):
                    balance[(l, j, k, book.prefix_key(row, l))] = None
            if self.linear:
                sel = found & (nb > reg)
                u, v = reg[sel], nb[sel]
                same = same_maps(u, v, A_all, c_all, eA_all, ec_all)
                if same.any() and charts is None:  # one exact chart cache for all blocks
                    charts = ExactCharts(self.cond, self.p)
                same = confirm_same_maps(self.cond, self.p, u, v, same, self._code_of, A_all.shape[1], charts)[0]
                same_u.append(u[same])
                same_v.append(v[same])
            r0 = r1
        if self.linear:
            self.same_u, self.same_v = np.concatenate(same_u), np.concatenate(same_v)
            self._charts = charts
        n_lin = _linear_components(n, self.same_u, self.same_v) if self.linear else None
        return n_unmatched, list(balance), n_lin

    def index_of(self, code):
        """The region with ``code`` (one array per layer), or None (after :meth:`finish`)."""
        skeys, order, width = self._lookup
        row = self.book.pack(self.book.flat([code]))
        key = np.ascontiguousarray(row).view(np.dtype((np.void, width))).ravel()
        at = int(np.searchsorted(skeys, key[0], side="right")) - 1
        return int(order[at]) if at >= 0 and skeys[at] == key[0] else None

    def linear_with(self, u, v) -> int:
        """N_lin after adding the adjacent pairs (u, v) found across unmatched facets (:mod:`.facet_probe`):
        their maps are compared as in :meth:`finish`."""
        u, v = np.asarray(u, dtype=np.int64), np.asarray(v, dtype=np.int64)
        A, c, eA, ec = self.maps_A[0], self.maps_c[0], self.err_A[0], self.err_c[0]
        same = same_maps(u, v, A, c, eA, ec)
        if same.any() and self._charts is None:
            self._charts = ExactCharts(self.cond, self.p)
        same = confirm_same_maps(self.cond, self.p, u, v, same, self._code_of, A.shape[1], self._charts)[0]
        self.same_u = np.concatenate([self.same_u, u[same]])
        self.same_v = np.concatenate([self.same_v, v[same]])
        return _linear_components(self.n, self.same_u, self.same_v)


def _balance_ok(leaves, keys, book, exempt=frozenset) -> bool:
    """Fallback for unmatched facets (coincident switching sets): per switching set and parent cell, the facet
    measure seen from its two sides must agree (THEORY §6, area-weighted facet matching).

    ``leaves``: all regions (an iterable: a second enumeration when the cells were not kept); ``keys``: the
    names (layer, j, k, prefix key) of the switching sets to balance; ``exempt()``: called once the leaves are
    consumed, the keys whose every unmatched facet has its neighbour proven by the facet probe (a max group
    tied three ways names one facet by different member pairs on its two sides: its measures are not comparable
    key by key, but each side's neighbour is known)."""
    if not keys:
        return True
    sums = {k: [0.0, 0.0] for k in keys}
    triples = {k[:3] for k in keys}
    for lf in leaves:
        fl = lf.P.facet_list()
        hit = [fi for fi, (H, s) in enumerate(fl) if H.key[0] not in ("box", "domain") and H.key[:3] in triples]
        if not hit:
            continue
        row = book.flat([lf.code])[0]
        hit = [fi for fi in hit if (*fl[fi][0].key[:3], book.prefix_key(row, fl[fi][0].key[0])) in sums]
        if not hit:
            continue
        meas = facet_measures(lf.P)
        for fi in hit:
            H, s = fl[fi]
            sums[(*H.key[:3], book.prefix_key(row, H.key[0]))][s > 0] += float(meas[fi])
    skip = exempt()
    return all(abs(a - b) <= FACET_BALANCE_RTOL * max(a, b, 1e-300) and a > 0 for k, (a, b) in sums.items()
               if k not in skip)


class _probing:
    """An iterable over the regions (a second enumeration) that, on its way, finds the region across every
    facet of a switching set named in ``keys`` whose predicted neighbour code is not in ``table``
    (:class:`cpa_theory.facet_probe.FacetProber`); :meth:`pairs` gives them once iterated."""

    def __init__(self, leaves, cond, p, root, table, keys):
        from .facet_probe import FacetProber

        self.leaves, self.table, self.book = leaves, table, table.book
        self.triples = {k[:3] for k in keys}
        self.keys = set(keys)
        self.prober = FacetProber(cond, p, root, table.index_of)
        self.u, self.v = [], []
        self.unproven = set()  # keys with a facet whose neighbour the probe could not find

    def __iter__(self):
        book = self.book
        for lf in self.leaves:
            yield lf
            fl = lf.P.facet_list()
            hit = [fi for fi, (H, _) in enumerate(fl)
                   if H.key[0] not in ("box", "domain") and H.key[:3] in self.triples]
            if not hit:
                continue
            row = book.flat([lf.code])[0]
            hit = [fi for fi in hit if (*fl[fi][0].key[:3], book.prefix_key(row, fl[fi][0].key[0])) in self.keys]
            if not hit:
                continue
            i = self.table.index_of(lf.code)
            for fi in hit:
                H, s = fl[fi]
                l, j, k = H.key[:3]
                piece = int(lf.code[l][j])  # the predicted neighbour exists: matched already
                lo, hi = (k[1], k[2]) if isinstance(k, tuple) else (k, k + 1)  # ("max", a, b): the tie z_a = z_b
                o = lo if piece == hi else (hi if piece == lo else -1)
                if o >= 0:
                    guess = [c.copy() for c in lf.code]
                    guess[l][j] = o
                    if self.table.index_of(guess) is not None:
                        continue
                nb = self.prober.probe(i, lf.code, H.exact(), s, facet_corners(lf.P, fi),
                                       lambda P=lf.P, fi=fi: exact_facet_vertices(P, fi))
                if nb is not None and i is not None:
                    self.u.append(min(i, nb))
                    self.v.append(max(i, nb))
                else:
                    self.unproven.add((l, j, k, book.prefix_key(row, l)))

    def pairs(self):
        return self.u, self.v

    def proven(self):
        """The keys whose every probed facet has its neighbour (after the iteration)."""
        return self.keys - self.unproven


def _linear_components(n, u, v) -> int:
    """Maximal linear regions: connected components of the ``n`` regions under the adjacent pairs (u, v) whose
    output maps agree (:func:`cpa_theory.frontier.same_maps`)."""
    if not len(u):
        return n
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    g = coo_matrix((np.ones(len(u), dtype=np.int8), (u, v)), shape=(n, n))
    return int(connected_components(g, directed=False)[0])


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
    """Rich progress on stderr for one window: fraction of vol(W) counted, regions, exact decisions.

    ``mode``: True shows it at once, None once the window has taken 2 s and only when stderr is a terminal,
    False never."""

    def __init__(self, mode, vol):
        self.mode, self.vol, self.bar, self.start = mode, vol, None, time.perf_counter()
        self.done = 0.0

    def update(self, dvol, regions, stats):
        self.done += dvol
        if self.mode is False or (self.mode is None and (time.perf_counter() - self.start < _PROGRESS_AFTER_S
                                                         or not _is_terminal(sys.stderr))):
            return
        if self.bar is None:
            from rich.console import Console
            from rich.errors import LiveError
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            # mode None has checked that stderr is a terminal; True leaves it to rich
            console = Console(file=sys.stderr, force_terminal=True if self.mode is None else None)
            self.bar = Progress(TextColumn("counting regions"), BarColumn(), TextColumn("{task.percentage:>5.1f}% of W"),
                                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                console=console, transient=True)
            try:
                self.bar.start()
            except LiveError:  # another rich display (an outer progress bar) owns the terminal: stay quiet
                self.bar, self.mode = None, False
                return
            self.task = self.bar.add_task("count", total=self.vol, info="")
        self.bar.update(self.task, completed=min(self.done, self.vol), refresh=True,
                        info=f"{regions} regions" + (f", {stats['exact_fallbacks']} exact signs"
                                                     if stats.get("exact_fallbacks") else ""))

    def close(self):
        if self.bar is not None:
            self.bar.stop()


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def count_regions(net, center=None, radius=None, *, keep_regions: bool = False, exact_recheck: bool = False,
                  linear: bool = True, polytope=None, progress: bool | None = False,
                  engine: str = "auto", kernels: str = "auto") -> RegionCount:
    """Exact, certified, complete count of activation regions of ``net`` in the ℓ∞ window W(center, radius).

    The regions stream out of the depth-first refinement (:func:`_leaves`, O(depth × ``_BATCH``) cells held)
    and are certified in chunks of ``_STREAM_CHUNK`` (witness balls, the independent forward pass, exact
    rational witnesses where float64 cannot certify, volumes); then their cells are dropped and only what
    completeness and N_lin need is kept (:class:`_RegionTable`). Memory: O(depth · ``_BATCH`` + ``_STREAM_CHUNK``)
    cells, plus N · (code bytes + 4 + F · 3 + 8 · n_out (d + 1) + 16) bytes for N regions with F facets inside W
    each (ReLU-like codes: one bit per neuron; element uint16 + value uint8 per facet; the map and its two error
    bounds) — measured 72, 84 and 87 bytes per region on 4-16-16-1, 5-32-32-1 and 6-16-16-16-1 (F ≈ 7–7.6)
    before the 16 bytes of error bounds were added — and during the final matching
    about as much again (sorted codes; look-ups in chunks of ``_LOOKUP_CHUNK`` facets). Facets that no
    neighbour matches (coincident switching sets, or a region missing) are settled by a facet-measure balance
    that enumerates the regions a second time (rare). ``keep_regions=True`` keeps every region instead
    (memory O(N · cell size), several kB per region in d ≥ 4).

    Args:
        net: :class:`Network` (conditioned on its batch) or :class:`ConditionedNetwork`.
        center: ``(d,)``; radius: r > 0.
        keep_regions: also return the list of certified :class:`Region` objects.
        exact_recheck: re-check every witness with an exact rational forward pass too.
        linear: also count maximal linear regions (N_lin), from the facet adjacency.
        polytope: ``(G, h)``: count in the bounded polytope {x : G x ≤ h} instead of a window (centre and
            radius are then taken from its bounding box, which the C4 screen uses).
        progress: rich progress bar on stderr (True), never (False), or once the window takes > 2 s and
            stderr is a terminal (None); it shows the fraction of vol(W) counted and the regions so far.
        engine: ``"auto"`` (the flat engines :mod:`cpa_theory.frontier2d` / :mod:`cpa_theory.frontier3d` for
            d = 2 / 3, every cell of a layer split at once) or ``"cells"`` (cell by cell, any d; the reference
            the flat engines are tested against).
        kernels: the flat engines' float64 kernels (:mod:`cpa_theory.frontier_kernels`): ``"numpy"``, ``"jax"``
            (jitted, :mod:`numerics.frontier_jax`; exact decisions stay on the host) or ``"auto"`` (jax when
            JAX's default backend is a GPU, else numpy). Counts and certificates do not depend on it.

    Returns: :class:`RegionCount` with ``regions`` (N), ``linear_regions`` (N_lin), ``hits`` (first-layer
    switching sets that cut int W, by C4), ``complete`` (volumes add up, every inner facet matched),
    ``certified`` (every witness re-checked and complete), ``exact_fallbacks`` (sign decisions made in
    rationals), ``min_witness_radius``.
    """
    from .frontier_kernels import select_kernels
    from .inputs import check_count_args

    kern = select_kernels(kernels)  # an unknown name is a typed error whatever the engine
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
                                     exact_recheck=exact_recheck, linear=linear, progress=progress,
                                     kernels=kern)
        res.hits = _window_hits(cond, win, domain, root, p)
        res.seconds = time.perf_counter() - start
        return res
    space = None
    if engine == "auto" and cond.input_dim == 3:
        from . import frontier3d as space  # imports numba (its compiled loops): only where the space engine runs
    if space is not None and space.supports(cond):  # 3-D: the same, over flat face tables
        res = space.count_space(cond, win, p, root, vol_w, keep_regions=keep_regions,
                                exact_recheck=exact_recheck, linear=linear, progress=progress, kernels=kern)
        res.hits = _window_hits(cond, win, domain, root, p)
        res.seconds = time.perf_counter() - start
        return res
    p_exact = [Fraction(float(v)) for v in p]
    stats: dict = {}
    table = _RegionTable(cond, linear)
    kept = [] if keep_regions else None
    regions = [] if keep_regions else None
    tally = {"vol": 0.0, "bad": 0, "exact": 0, "min_rad": math.inf}
    bar = _Progress(progress, vol_w)

    def certify(chunk):  # witnesses, forward pass, exact witnesses, volumes; then the cells can go
        n = len(chunk)
        vols = cell_volumes([lf.P for lf in chunk])
        cys = np.array([lf.P.interior_point() for lf in chunk])
        errs = np.array([lf.P.err.max() for lf in chunk]) + U * np.abs(cys).max(axis=1) * 4
        wit = cys + p
        rad = _inradii(chunk, cys, errs) - 2 * U * np.abs(wit).max(axis=1)
        ok = _certify_batch(cond, wit, rad, [lf.code for lf in chunk], win.radius, exact_recheck,
                            [lf.flat for lf in chunk])
        for i in np.flatnonzero(~ok):  # regions float64 cannot certify: an exact rational witness
            got = _exact_witness(cond, chunk[i], p_exact)
            if got is not None:
                x, rho = got
                wit[i] = [float(v) for v in x]
                rad[i] = float(rho)
                ok[i] = True
                tally["exact"] += 1
        tally["bad"] += int(n - np.count_nonzero(ok))
        if ok.any():
            tally["min_rad"] = min(tally["min_rad"], float(rad[ok].min()))
        tally["vol"] += float(vols.sum())
        table.add(chunk, p)
        if keep_regions:
            kept.extend(chunk)
            for i, lf in enumerate(chunk):
                G, h = lf.P.facet_arrays()
                regions.append(Region(lf.code, wit[i], float(rad[i]), lf.P.V + p, lf.A, lf.c - lf.A @ p,
                                      (G, h + G @ p)))
        bar.update(float(vols.sum()), table.n, stats)

    pending: list = []
    try:
        for leaf in _leaves(cond, win, p, root, stats):
            pending.append(leaf)
            if len(pending) >= _STREAM_CHUNK:
                certify(pending)
                pending = []
        if pending:
            certify(pending)
        pending = []
    finally:
        bar.close()
    n = table.n
    # completeness: volumes, and every facet inside W matched by its neighbour (measure balance for the rest)
    vol_ok = abs(tally["vol"] - vol_w) <= VOLUME_SUM_RTOL * vol_w
    n_unmatched, balance_keys, n_lin = table.finish()
    balanced = True
    if balance_keys and (vol_ok or linear):
        # the same enumeration finds the neighbours across unmatched facets (N_lin; and keys all of whose facets
        # have their neighbour need no balance)
        again = _probing(kept if keep_regions else _leaves(cond, win, p, root, {}), cond, p, root, table,
                         balance_keys)
        balanced = _balance_ok(again, balance_keys, table.book, again.proven)
        if linear:
            n_lin = table.linear_with(*again.pairs())
    complete = bool(vol_ok and balanced)
    if not linear:
        n_lin = n
    hits = _window_hits(cond, win, domain, root, p)
    n_bad = tally["bad"]
    return RegionCount(win.center, win.radius, n, n_lin, hits, n_bad == 0 and complete, n_bad,
                       time.perf_counter() - start, int(stats.get("exact_fallbacks", 0)), regions, complete,
                       tally["min_rad"], tally["exact"], n_unmatched)


def _window_hits(cond, win, domain, root, p) -> int:
    """First-layer switching sets that cut int W (C4's criterion, decided on the network's exact switching sets
    where float64 cannot), or the polytope's interior (exact vertex signs)."""
    if domain is None:
        hp = switching_hyperplanes(cond, 0)
        return int(np.sum(window_relations(hp, win.center, win.radius) == WindowRelation.CUTS))
    return _domain_hits(cond, root, p)


def _domain_hits(cond, root, p) -> int:
    """First-layer switching sets that cut the root cell's interior (the given polytope):
    exact vertex signs of the same exact function the regions are counted for (the exact batch centroid, the
    float64 gains and shifts as data), so that hits and regions never disagree on a touch (N ≥ h + 1)."""
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
    EB = (d + 5) * U * (np.abs(fb) + mz.repeat(K)) + cl.bn.z_error.repeat(K)  # + the float anchor's error
    sg = vertex_signs(root, fa, fb, EA, EB, lambda j: charts.hyperplane((), j // K, j % K), stats)[0]
    return int(np.sum((sg > 0).any(axis=0) & (sg < 0).any(axis=0)))
