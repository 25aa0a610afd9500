"""Max over index groups as a CPA layer of the dense network: max-pooling for the exact engine (THEORY §3, §6, §7).

A dense layer z = W h + b (optionally BN) followed by :class:`MaxGroups` outputs, per group g (a pool: a set of
pre-activation indices, groups may differ in size and overlap), y_g = max_{j ∈ g} z_j. Its *piece* in group g is
the argmax (local position in the group; ties go to the first position, as ``numpy.argmax`` and PyTorch's
forward value agree on the maximum). Switching sets inside a group are {z_a = z_b}; the activation regions of
the layer are the argmax patterns: the region where group g's argmax is a is the convex set {z_a ≥ z_b ∀ b ∈ g}
(one cell per winner, NOT one per ordering of the losers — counting orderings would count the switching sets of
losing pairs, which are not switching sets of the max). Ties at the maximum are boundaries, like breakpoints.

* :class:`MaxGroups` — the activation (numpy and ``jax.numpy`` forward, pieces, ties).
* :func:`refine_max_batch` — the exact engine's refinement of a batch of cells by a max-group layer (called by
  ``regions._refine_batch``): per cell, groups whose pairs keep one side are resolved at once; a group with a
  cutting pair is resolved by clipping the cell to {z_a − z_b ≥ 0 ∀ b} for each candidate winner a, with the
  same exact-predicate ``polytope.split`` (keeping one side). Every clip facet carries the key
  ``(layer, group, ("max", i, j), code)`` (i < j local positions; the hyperplane is z_i − z_j = 0), so the
  completeness check finds the neighbour across it (argmax j instead of i in that group).
"""

from __future__ import annotations

import numpy as np

from .errors import ActivationError, CPAInputError, NetworkFormatError
from .frontier_kernels import left_multiply
from .tolerances import DOT_EXTRA_TERMS, FILTER_SAFETY, UNIT_ROUNDOFF

__all__ = ["MaxGroups", "is_max_groups", "MaxGroupsUnsupportedError", "refuse_max_groups", "pool_groups",
           "refine_max_batch"]

U = UNIT_ROUNDOFF


class MaxGroupsUnsupportedError(CPAInputError):
    """A feature that needs elementwise CPA activations (breakpoints, closed forms, sweeps, cpa-network/1) was
    asked of a network with a max-group (max-pooling) layer."""


def is_max_groups(act) -> bool:
    return isinstance(act, MaxGroups)


def refuse_max_groups(layers, what: str) -> None:
    """Raise :class:`MaxGroupsUnsupportedError` naming ``what`` if any layer has a max-group activation."""
    for i, l in enumerate(layers):
        if is_max_groups(getattr(l, "activation", None)):
            raise MaxGroupsUnsupportedError(
                f"{what} needs elementwise CPA activations with breakpoints, but layer {i} is a max over groups "
                "(max-pooling); count its regions exactly with count_regions / count_on_slice instead.")


class MaxGroups:
    """y_g = max_{j ∈ groups[g]} z_j for pre-activations z ``(..., n_in)`` → ``(..., G)``.

    Args: ``groups``: a sequence of non-empty sequences of indices in 0 … n_in − 1 (no repeats inside a group);
    ``n_in``: the number of pre-activations. Attributes: ``idx`` ``(G, s_max)`` int (short groups padded with
    their first member: a repeated member changes neither the max nor the first argmax), ``valid`` ``(G, s_max)``
    bool, ``sizes`` ``(G,)``.
    """

    name = "max_groups"

    def __init__(self, groups, n_in: int):
        if isinstance(n_in, bool) or not isinstance(n_in, (int, np.integer)) or n_in < 1:
            raise ActivationError(f"max_groups: n_in must be a positive integer; got {n_in!r}.")
        gs = []
        try:
            for g in groups:
                row = [int(v) for v in g]
                if any(float(v) != int(v) for v in g):
                    raise ValueError
                gs.append(tuple(row))
        except (TypeError, ValueError):
            raise ActivationError("max_groups: groups must be a list of lists of integer indices, e.g. "
                                  "[[0, 1], [2, 3]].") from None
        if not gs:
            raise ActivationError("max_groups: give at least one group.")
        for gi, g in enumerate(gs):
            if not g:
                raise ActivationError(f"max_groups: group {gi} is empty; every group needs at least one index.")
            if min(g) < 0 or max(g) >= n_in:
                raise ActivationError(f"max_groups: group {gi} has an index outside 0..{n_in - 1} (the layer has "
                                      f"{n_in} pre-activations).")
            if len(set(g)) != len(g):
                raise ActivationError(f"max_groups: group {gi} repeats an index; list each member once.")
        self.groups = tuple(gs)
        self.n_in = int(n_in)
        s = max(len(g) for g in gs)
        self.sizes = np.array([len(g) for g in gs], dtype=np.int64)
        self.idx = np.array([list(g) + [g[0]] * (s - len(g)) for g in gs], dtype=np.int64)
        self.valid = np.arange(s)[None, :] < self.sizes[:, None]
        lo, hi, grp, li, lj = [], [], [], [], []
        for gi, g in enumerate(gs):
            for i in range(len(g)):
                for j in range(i + 1, len(g)):
                    lo.append(g[i]), hi.append(g[j]), grp.append(gi), li.append(i), lj.append(j)
        # every (group, i < j) pair: the hyperplane z_lo − z_hi = 0 of that group
        self.pair_lo = np.array(lo, dtype=np.int64)
        self.pair_hi = np.array(hi, dtype=np.int64)
        self.pair_group = np.array(grp, dtype=np.int64)
        self.pair_i = np.array(li, dtype=np.int64)
        self.pair_j = np.array(lj, dtype=np.int64)

    # -- identity (frozen-dataclass-like) --------------------------------------------------------------
    def __eq__(self, other):
        return isinstance(other, MaxGroups) and self.groups == other.groups and self.n_in == other.n_in

    def __hash__(self):
        return hash((self.groups, self.n_in))

    def __repr__(self):
        return f"MaxGroups({len(self.groups)} groups of sizes {sorted(set(self.sizes.tolist()))}, n_in={self.n_in})"

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    # -- evaluation -----------------------------------------------------------------------------------
    def __call__(self, z, xp=np):
        """max per group: ``(M, n_in)`` → ``(M, G)`` (numpy or jax.numpy)."""
        return xp.max(z[..., self.idx], axis=-1)

    def piece_index(self, z, xp=np):
        """Argmax per group (local position, first on ties): int ``(M, G)``."""
        return xp.argmax(z[..., self.idx], axis=-1)

    def winners(self, pieces) -> np.ndarray:
        """Global pre-activation index of each group's winner for pieces ``(..., G)``."""
        return np.take_along_axis(np.broadcast_to(self.idx, (*np.shape(pieces), self.idx.shape[1])),
                                  np.asarray(pieces)[..., None], axis=-1)[..., 0]

    def ties(self, z) -> np.ndarray:
        """``(M, G)`` bool: the maximum of the group is attained by two or more members (a switching set)."""
        zz = z[..., self.idx]
        mx = zz.max(axis=-1, keepdims=True)
        return ((zz == mx) & self.valid).sum(axis=-1) > 1

    # -- serialisation ---------------------------------------------------------------------------------
    def to_spec(self):
        raise NetworkFormatError("a max-group (max-pooling) layer has no cpa-network/1 form; save the network in "
                                 "cpa-network/2 (cpa_theory.fileformat_v2.save_convnet).")

    def to_v2(self) -> dict:
        return {"type": "max_groups", "n_in": self.n_in, "groups": [list(g) for g in self.groups]}


def pool_groups(pool, in_shape) -> MaxGroups:
    """The groups of a :class:`cpa_theory.layers.MaxPool` on a ``(C, *S)`` tensor flattened in C order: one group
    per output entry (C, *S_out), its members the flat indices of the window's entries (padding excluded: it is
    −inf and never the maximum)."""
    from .layers import window_view

    n = int(np.prod(in_shape))
    ids = np.arange(n, dtype=np.float64).reshape(1, *in_shape)
    w = window_view(ids, pool.kernel, pool.stride, pool.padding, pool.dilation, -1.0)
    w = w.reshape(-1, int(np.prod(w.shape[2 + len(pool.kernel):])))
    groups = [[int(v) for v in row if v >= 0] for row in w]
    if any(not g for g in groups):
        raise CPAInputError("a max-pool window lies entirely in the padding; use padding <= kernel/2.")
    return MaxGroups(groups, n)


# -- the exact engine's refinement by a max-group layer ------------------------------------------------------
def _resolve(act, groups, s):
    """Winners of ``groups`` (int array) from constant pair signs ``s`` (over all pairs; only the pairs of
    ``groups`` are read): ``(pieces, flat)`` per group. Pair (i < j) with sign s: s > 0 → j loses, s < 0 → i
    loses, s = 0 (identical on the cell) → j loses (first position wins a tie); flat: the winner ties a member
    identically."""
    G, smax = act.idx.shape
    loser = np.where(s < 0, act.pair_i, act.pair_j)
    losses = np.bincount(act.pair_group * smax + loser, minlength=G * smax).reshape(G, smax)
    losses[~act.valid] = 1 << 30
    win = np.argmin(losses, axis=1)
    if np.any(losses[groups, win[groups]] != 0):  # signs on a cell are a total preorder: this cannot happen
        from .errors import CPAInternalError

        raise CPAInternalError("max-group refinement: inconsistent pair signs on a cell; please report this network.")
    tie = (s == 0) & (act.pair_i == win[act.pair_group])
    flat = np.bincount(act.pair_group[tie], minlength=G) > 0
    return win[groups], flat[groups]


def _passthrough(cl) -> np.ndarray:
    """``(n,)`` int: k where pre-activation j is exactly the input h_k (weight row e_k, gain 1, shift 0, anchor 0
    — the identity layer that ``slice_network`` emits before a pool; float64 data are the exact data), else −1."""
    W, bn = cl.weight, cl.bn
    n = W.shape[0]
    k = np.argmax(W != 0, axis=1)
    ok = ((W != 0).sum(axis=1) == 1) & (W[np.arange(n), k] == 1.0) & (bn.gain == 1.0) & (bn.shift == 0.0) & (
        bn.anchor[k] == 0.0)
    return np.where(ok, k, -1)


def _sign_table(prev_act) -> np.ndarray:
    """For inputs h_a, h_b = φ(ẑ_a), φ(ẑ_b) on pieces (pa, pb) of the previous CPA layer: the sign of h_a − h_b
    on a cell where neither neuron sits on a breakpoint throughout, when one piece is flat and the other's zero
    of h_a − h_b lies at or beyond its piece's end (the set h_a = h_b is then that piece's own boundary, which
    the cell does not cross), in exact rationals; 2 = not decided here. ``(P, P)`` int8, P = pieces."""
    from fractions import Fraction

    from .exact import exact_piece_maps

    maps = exact_piece_maps(prev_act)
    t = [Fraction(float(v)) for v in prev_act.breakpoints]
    P = len(maps)
    T = np.full((P, P), 2, dtype=np.int8)

    def sgn(v):
        return (v > 0) - (v < 0)

    def beyond(tau, piece):  # −1: tau <= the piece's lower end; +1: tau >= its upper end; 0: inside
        if piece > 0 and tau <= t[piece - 1]:
            return -1
        if piece < len(t) and tau >= t[piece]:
            return 1
        return 0

    for pa, (sa, oa) in enumerate(maps):
        for pb, (sb, ob) in enumerate(maps):
            if sa == 0 and sb == 0:
                T[pa, pb] = sgn(oa - ob)
            elif sa == 0:  # h_a − h_b = −sb (ẑ_b − τ), τ = (oa − ob)/sb
                side = beyond((oa - ob) / sb, pb)
                if side:
                    T[pa, pb] = side * sgn(sb)  # τ below the piece: ẑ_b − τ ≥ 0 → −sign(sb); above: +sign(sb)
            elif sb == 0:  # h_a − h_b = sa (ẑ_a − τ), τ = (ob − oa)/sa
                side = beyond((ob - oa) / sa, pa)
                if side:
                    T[pa, pb] = -side * sgn(sa)
    return T


def refine_max_batch(cl, li, batch, rel, y0, radius, d, charts, stats):
    """``regions._refine_batch`` for a layer whose activation is :class:`MaxGroups`.

    ``batch``: cells ``(P, A, c, mA, mc, code, flat)`` with the layer input h = A y + c (|A| ≤ mA, |c| ≤ mc,
    relative error ≤ rel). Returns the next layer's cells (code row: argmax per group; flat row: the group's
    maximum is tied on the whole cell) and the next relative error bound. Error bounds of the difference
    hyperplanes (z_lo − z_hi): |Δ(N_lo − N_hi)| ≤ EN_lo + EN_hi + u|·|, the same for the offsets.
    """
    from .polytope import Hyper, split, vertex_signs
    from .regions import _finite

    act = cl.activation
    A = np.stack([item[1] for item in batch])
    c = np.stack([item[2] for item in batch])
    mA = np.stack([item[3] for item in batch])
    mc = np.stack([item[4] for item in batch])
    bn = cl.bn
    with np.errstate(over="ignore", invalid="ignore"):
        lin, gap = cl.chart(A, c)
        g, e = bn.gain, bn.shift
        N = g[None, :, None] * lin
        z0 = g * gap + e
        absW = np.abs(cl.weight)
        mlin = left_multiply(absW, mA)
        mgap = (mc + np.abs(bn.anchor)) @ absW.T
        m_in = cl.weight.shape[1]
        rel2 = rel + (m_in + DOT_EXTRA_TERMS + 2) * U
        EN = rel2 * np.abs(g)[None, :, None] * mlin
        Ez = rel2 * (np.abs(g) * mgap + np.abs(e)) + bn.z_error
        lo, hi = act.pair_lo, act.pair_hi
        fa = N[:, lo] - N[:, hi]  # (C, P, d): z_lo − z_hi = fa·y − fb
        fb = z0[:, hi] - z0[:, lo]
        EA = EN[:, lo] + EN[:, hi] + U * np.abs(fa)
        EB = Ez[:, lo] + Ez[:, hi] + U * np.abs(fb)
    _finite(N, z0, EN, Ez, fa, fb, EA, EB, what=f"the charts of layer {li}")
    G = act.n_groups
    # pairs whose float data and error bounds are exactly zero are identically z_lo = z_hi (e.g. two dead ReLUs)
    exact_zero = (~np.any(fa != 0, axis=2) & (fb == 0) & ~np.any(EA != 0, axis=2) & (EB == 0))
    ay0 = np.abs(y0) + radius
    resid = np.einsum("cjd,d->cj", fa, y0) - fb
    dual = np.abs(fa).sum(axis=2)
    Es = FILTER_SAFETY * (np.einsum("cjd,d->cj", EA, ay0) + EB + (d + DOT_EXTRA_TERMS + 2) * U
                          * (np.einsum("cjd,d->cj", np.abs(fa), ay0) + np.abs(fb)))
    from .frontier import screen_finite  # (frontier imports exact, which imports this module)

    screen_finite(resid, dual, Es)
    screened = (np.abs(resid) - radius * dual <= Es) & ~exact_zero
    sides0 = np.where(exact_zero, 0, np.sign(resid)).astype(np.int8)
    # pairs whose normal is exactly zero (both rows constant on the cell, e.g. pixels the slice never moves):
    # z_lo − z_hi = −fb* is one number per cell; a screened one (float64 cannot decide its sign) is decided once in
    # rationals below instead of at every vertex
    # a float normal of exactly 0 with a nonzero error bound (rows that cancel in float, e.g. two entries of a pool
    # window fed by the same maximum) is tried the same way: when the exact normal is 0 too, one decision serves
    # the whole cell instead of an exact one at every vertex of every sub-cell
    const_undecided = screened & ~np.any(fa != 0, axis=2)
    bound_zero = ~np.any(EA != 0, axis=2)
    pairs_of = [np.flatnonzero(act.pair_group == gi) for gi in range(G)]
    # pairs of passed-through inputs (a pool after an activation): many signs follow from the previous layer's
    # pieces alone (a dead ReLU against a live one), which spares the exact fallbacks at vertices on the live
    # neuron's own boundary, where z_a − z_b is exactly 0
    known_tab = None
    if li > 0:
        prev = charts.layers[li - 1]
        pt = _passthrough(cl)
        if prev.mg is None and np.any(pt >= 0):
            ka, kb = pt[lo], pt[hi]
            both = np.flatnonzero((ka >= 0) & (kb >= 0))
            if len(both):
                known_tab = (_sign_table(prev.act), both, ka[both], kb[both])
    all_groups = np.arange(G)
    leaf_cells, leaf_parent, leaf_pieces, leaf_flat = [], [], [], []
    for ci, (P, _, _, _, _, code, flat) in enumerate(batch):
        fa_c, fb_c, EA_c, EB_c = fa[ci], fb[ci], EA[ci], EB[ci]

        lines = {}

        def line(q, code=code, lines=lines):  # exact (a*, β*) of pair q on this cell, each computed once
            if q not in lines:
                lines[q] = charts.difference(code, int(lo[q]), int(hi[q]))
            return lines[q]

        def signs(Q, cand, line=line, fa_c=fa_c, fb_c=fb_c, EA_c=EA_c, EB_c=EB_c):
            sg = vertex_signs(Q, fa_c[cand], fb_c[cand], EA_c[cand], EB_c[cand],
                              lambda jj, cand=cand: line(int(cand[jj])), stats)[0]
            return sg, (sg > 0).any(axis=0), (sg < 0).any(axis=0)

        def hyper(q, code=code, line=line, fa_c=fa_c, fb_c=fb_c, EA_c=EA_c, EB_c=EB_c):
            return Hyper(fa_c[q], fb_c[q], EA_c[q], EB_c[q],
                         (li, int(act.pair_group[q]), ("max", int(act.pair_i[q]), int(act.pair_j[q])), code),
                         fn=lambda q=q: line(q))

        s0, scr = sides0[ci].copy(), screened[ci]
        cu = np.flatnonzero(const_undecided[ci])
        if len(cu):
            scr = scr.copy()
            for q in cu.tolist():
                a_ex, beta = line(q)  # exact: z_lo − z_hi = a*·y − β*
                if any(a_ex):  # not constant on the cell: its sign is decided vertex by vertex
                    if bound_zero[ci, q]:  # the error bound said the exact normal is 0: a bug if not
                        from .errors import CPAInternalError

                        raise CPAInternalError("max-group refinement: a pair with zero normal and zero error bound "
                                               "has a nonzero exact normal; please report this network.")
                    continue
                s0[q] = (beta < 0) - (beta > 0)  # z_lo − z_hi = −β* on the whole cell
                scr[q] = False
            stats["exact_fallbacks"] = stats.get("exact_fallbacks", 0) + len(cu)
        if known_tab is not None:
            T, both, ka, kb = known_tab
            pc, fp = code[-1], flat[-1]
            kn = T[pc[ka], pc[kb]]
            kn[fp[ka] | fp[kb]] = 2  # a neuron on a breakpoint throughout: not decided by the table
            hit = kn != 2
            s0[both[hit]] = kn[hit]
            scr = scr.copy()
            scr[both[hit]] = False
        pending = [(P, s0, np.flatnonzero(scr), np.full(G, -1, np.int64), np.zeros(G, dtype=bool))]
        while pending:
            Q, s, cand, pieces, fl = pending.pop()
            cutting = np.zeros(0, dtype=bool)
            if len(cand):
                sg, pos, neg = signs(Q, cand)
                cutting = pos & neg
                nc = ~cutting
                s = s.copy()
                s[cand[nc]] = pos[nc].view(np.int8) - neg[nc].view(np.int8)
            open_ = pieces < 0
            cut_groups = np.unique(act.pair_group[cand[cutting]]) if cutting.any() else np.zeros(0, np.int64)
            is_cut = np.zeros(G, dtype=bool)
            is_cut[cut_groups] = True
            settle = all_groups[open_ & ~is_cut]
            if len(settle):
                pieces, fl = pieces.copy(), fl.copy()
                pieces[settle], fl[settle] = _resolve(act, settle, s)
            if not len(cut_groups):
                leaf_cells.append(Q)
                leaf_parent.append(ci)
                leaf_pieces.append(pieces)
                leaf_flat.append(fl)
                continue
            gi = int(cut_groups[0])
            rest = cand[cutting]
            rest = rest[act.pair_group[rest] != gi]  # the other cut groups: re-decided on each clipped cell
            cut_set = set(cand[cutting].tolist())
            col = {int(q): k for k, q in enumerate(cand.tolist())}  # column of pair q in sg
            members = act.groups[gi]
            for a in range(len(members)):
                clips, lost, tie = [], False, False
                for q in pairs_of[gi].tolist():
                    i, j = int(act.pair_i[q]), int(act.pair_j[q])
                    if a not in (i, j):
                        continue
                    sigma = 1 if a == i else -1  # winning needs sigma·(z_lo − z_hi) ≥ 0
                    if q in cut_set:
                        clips.append((q, sigma))
                    elif sigma * s[q] < 0 or (s[q] == 0 and sigma < 0):
                        lost = True
                        break
                    elif s[q] == 0:
                        tie = True
                if lost:
                    continue
                Qa = Q
                for k, (q, sigma) in enumerate(clips):
                    sgq = signs(Qa, np.array([q]))[0][:, 0] if k else sg[:, col[q]]
                    up, down = bool((sgq > 0).any()), bool((sgq < 0).any())
                    if not (up and down):  # no longer cut on the clipped cell
                        if sigma * (int(up) - int(down)) < 0:
                            lost = True
                            break
                        continue
                    below, above = split(Qa, hyper(q), sgq, stats)
                    Qa = above if sigma > 0 else below
                if lost:
                    continue
                pa, fa_ = pieces.copy(), fl.copy()
                pa[gi], fa_[gi] = a, tie
                pending.append((Qa, s, rest, pa, fa_))
    if not leaf_cells:
        return [], rel2 + 2 * U
    L = len(leaf_cells)
    par = np.asarray(leaf_parent, dtype=np.intp)
    pieces = np.stack(leaf_pieces)
    flats = np.stack(leaf_flat)
    win = act.winners(pieces)  # (L, G) global indices
    A2 = N[par[:, None], win]
    c2 = z0[par[:, None], win]
    ag = np.abs(g)[win]
    mA2 = ag[:, :, None] * mlin[par[:, None], win]
    mc2 = ag * mgap[par[:, None], win] + np.abs(e)[win]
    out = []
    for i in range(L):
        code, flat = batch[leaf_parent[i]][5], batch[leaf_parent[i]][6]
        out.append((leaf_cells[i], A2[i], c2[i], mA2[i], mc2[i], code + (pieces[i].astype(np.int64),),
                    flat + (flats[i],)))
    return out, rel2 + 2 * U


def domain_hits_max(cond, root, p, charts, stats) -> int:
    """First-layer switching sets {z_a = z_b} (distinct pairs of a group) that cut the root cell's interior
    (exact vertex signs), for a first layer with max groups."""
    from .polytope import vertex_signs

    cl = cond.layers[0]
    act = cl.activation
    lo, hi = distinct_pairs(act)
    if not len(lo):
        return 0
    d = cond.input_dim
    lin, gap = cl.chart(np.eye(d)[None], p[None])
    N = (cl.bn.gain[:, None] * lin[0])
    z0 = cl.bn.gain * gap[0] + cl.bn.shift
    fa, fb = N[lo] - N[hi], z0[hi] - z0[lo]
    mz = np.abs(cl.bn.gain) * (np.abs(cl.weight) @ np.abs(p - cl.bn.anchor)) + np.abs(cl.bn.shift)
    EA = (d + 5) * U * (np.abs(N[lo]) + np.abs(N[hi]))
    ez = cl.bn.z_error  # the float anchor's error
    EB = (d + 5) * U * (np.abs(fb) + mz[lo] + mz[hi]) + ez[lo] + ez[hi]
    sg = vertex_signs(root, fa, fb, EA, EB, lambda q: charts.difference((), int(lo[q]), int(hi[q])), stats)[0]
    return int(np.sum((sg > 0).any(axis=0) & (sg < 0).any(axis=0)))


def distinct_pairs(act: MaxGroups) -> tuple[np.ndarray, np.ndarray]:
    """The distinct switching sets {z_lo = z_hi} of the layer (a pair shared by overlapping pools counts once):
    ``(lo (P,), hi (P,))`` global indices, lo < hi."""
    if not len(act.pair_lo):
        return act.pair_lo, act.pair_hi
    a = np.minimum(act.pair_lo, act.pair_hi)
    b = np.maximum(act.pair_lo, act.pair_hi)
    u = np.unique(np.stack([a, b], axis=1), axis=0)
    return u[:, 0], u[:, 1]
