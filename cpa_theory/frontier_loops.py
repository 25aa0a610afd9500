"""The flat engines' compiled loops (numba): the space engine's split, cell tests, vertex solves and face areas,
and the parent test of both engines.

:meth:`cpa_theory.frontier3d.Frontier3D._split` cuts a few hundred small polyhedra per wave; as whole-array numpy
passes that cost ~60 array operations per wave whatever the wave's size. Here the same rules run as plain loops,
compiled once (numba, cached on disk):

* :func:`crossings` — per cut cell, the edges whose endpoints lie strictly on both sides of the cut: each must
  be listed by exactly two of the cell's faces; one crossing point per edge.
* :func:`clip_side` — one side of every cut cell: each face clipped (its points on that side or on the cut, and
  the crossings, in cyclic order; a face keeps area only with ≥ 3 points, one of them strictly on that side), the
  cap chained from the clipped faces' segments on the cut (each cap vertex starts exactly one segment — no
  angular sort, so slivers below float64 resolution are ordered correctly), and the new cell's bounding box
  widened as in :meth:`cpa_theory.frontier3d.Frontier3D._boxes`.
* :func:`split_prepare` — a wave's cut cells selected from its tested cells, their crossings found and solved
  (:func:`solve_rows3`) in one pass.
* :func:`split_tables` — both sides of every cut cell as the rows the face and pool tables append (sources'
  planes and signs, caps on the cut, pool starts).
* :func:`face_areas` — the faces' area vectors and centroids (the measure balance of unmatched facets).
* :func:`distinct_per_cell`, :func:`cell_vertices` — each cell's distinct vertices (its faces list each about
  three times), so that the filters run once per (cell, vertex).
* :func:`wave_signs` — one wave's cell tests fused: the box filter, the tested cells' faces and distinct
  vertices, and the vertex filter on them (the bounds of :mod:`cpa_theory.frontier_kernels`, tested equal to
  its numpy kernels; the undecided entries go back to the caller's exact test).
* :func:`box_sides_dense`, :func:`pair_extremes` — the layer's parent test (every parent against its screened
  lines: box filter, then the vertex filter over each parent's distinct vertices), in both engines.
* :func:`project_rows`, :func:`sweep_pairs`, :func:`components` — the completeness checks' vertex identification
  (the sweep of :func:`cpa_theory.frontier._close_pairs` over rows of the vertex table, then union–find).
* :func:`wave_cells`, :func:`wave_fold` — a one-line wave's cells and lines, and its outcome (sides of the cells
  not cut, next line), around :func:`wave_signs`.
* :func:`wave_run`, :func:`split_finish`, :func:`split_cells` — a layer's waves in one call without the GIL (the tables grown here,
  capacity doubling): back to the caller only for what needs rationals (a wave's undecided signs, crossing
  points float64 cannot bound) or to report progress.
* :func:`witness_balls` — witnesses, certified ball radii (:func:`_clearance`: the facet clearance of
  :func:`cpa_theory.polytope.facet_clearance`) and volumes of every cell in one pass.
* :func:`match_codes`, :func:`pack_fields`, :func:`euler_counts`, :func:`count_distinct` — facet matching by
  predicted codes in a hash table (the codes packed into words), and the Euler characteristic's distinct edges and
  faces (hash sets, no sort).
* :func:`sign_table`, :func:`compact_faces`, :func:`compose_lines` — the filters' coefficient table, the pools
  rewritten with the live cells, and the next layer's charts and switching sets (the formulas of
  :mod:`cpa_theory.frontier_kernels`, fused).
* :func:`solve_rows3` — points on three planes each, with the error bound of
  :func:`cpa_theory.polytope._solve_systems` (the same arithmetic, one system at a time instead of ~40 whole-array
  passes; every 3 × 3 vertex solve of every engine goes through it).

The float predicates here are the filters of :mod:`cpa_theory.frontier_kernels` and the vertex bound of
:func:`cpa_theory.polytope._solve_systems`, with the same proven bounds (tests hold them equal to those
functions); what a filter leaves undecided and every point float64 cannot bound go back to the caller's exact
rational path. A structural failure comes back as a nonzero code (:data:`ERRORS`), which the caller raises as
:class:`cpa_theory.errors.CPAInternalError`. The loops use numpy's error model (a float division by zero is
inf or NaN, as in the numpy kernels, which the finiteness checks then catch; every division here is guarded).

Layout (entries grouped by face, faces by cell): cell c owns faces ``cf[c] : cf[c + 1]``, face f owns entries
``fe[f] : fe[f + 1]``; ``vid`` and ``s`` are the entries' vertex ids and sides (int8) of the cut.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .tolerances import DOT_EXTRA_TERMS, FILTER_SAFETY, UNIT_ROUNDOFF, VERTEX_ERR_MAX_RTOL

__all__ = ["crossings", "clip_side", "split_prepare", "split_tables", "chain_cap", "distinct_per_cell", "cell_vertices",
           "face_areas", "solve_rows3", "wave_signs", "box_sides_dense", "pair_extremes", "project_rows", "sweep_pairs", "components",
           "witness_balls", "mix64", "count_distinct", "euler_counts", "code_hash", "match_codes", "pack_fields",
           "sign_table", "sign_rows", "compact_faces", "wave_cells", "wave_fold", "compose_lines", "ERRORS",
           "split_finish", "split_cells", "wave_run"]

#: code → what went wrong (a bug, or an arrangement the engine does not handle: an internal error)
ERRORS = {
    1: "a polyhedron edge is not shared by exactly two of its faces",
    2: "a cut polyhedron has a cap with fewer than 3 vertices",
    3: "a cap vertex starts two segments (non-convex cut)",
    4: "a cap's segments do not close up",
    5: "a cap's segments form more than one cycle",
}

_U2 = 2.0 * UNIT_ROUNDOFF
_U = UNIT_ROUNDOFF
_K3 = (3 + DOT_EXTRA_TERMS) * UNIT_ROUNDOFF  # one rounded dot product of length 3
_TINY = 2.0 ** -1022  # cpa_theory.frontier_kernels.TINY
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # hashing (splitmix64, Fibonacci)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


@njit(cache=True, nogil=True, error_model="numpy")
def _next(i, f, fe):
    """The entry after ``i`` in face ``f``'s cycle."""
    j = i + 1
    return fe[f] if j == fe[f + 1] else j


@njit(cache=True, nogil=True, error_model="numpy")
def crossings(cf, fe, vid, s):
    """One crossing per cut edge: ``(xid (E,), e1 (X,), e2 (X,), cell (X,), code)`` — each crossing entry's
    crossing index (−1 elsewhere), the two entries (one per face of the edge, in entry order) and the cell."""
    nc = len(cf) - 1
    E = len(vid)
    xid = np.full(E, -1, np.int64)
    e1 = np.empty(E, np.int64)
    e2 = np.empty(E, np.int64)
    lo = np.empty(E, np.int64)
    hi = np.empty(E, np.int64)
    cell = np.empty(E, np.int64)
    nx = 0
    for c in range(nc):
        x0 = nx
        for f in range(cf[c], cf[c + 1]):
            for i in range(fe[f], fe[f + 1]):
                k = _next(i, f, fe)
                if s[i] * s[k] >= 0:
                    continue
                a, b = min(vid[i], vid[k]), max(vid[i], vid[k])
                t = x0
                while t < nx and not (lo[t] == a and hi[t] == b):
                    t += 1
                if t == nx:
                    e1[t], e2[t], lo[t], hi[t], cell[t] = i, -1, a, b, c
                    nx += 1
                elif e2[t] >= 0:
                    return xid, e1[:0], e2[:0], cell[:0], 1
                else:
                    e2[t] = i
                xid[i] = t
        for t in range(x0, nx):
            if e2[t] < 0:
                return xid, e1[:0], e2[:0], cell[:0], 1
    return xid, e1[:nx].copy(), e2[:nx].copy(), cell[:nx].copy(), 0


@njit(cache=True, nogil=True, error_model="numpy")
def chain_cap(sa, sb, nseg, out, at, used):
    """Chain a cap's segments ``sa[t] → sb[t]`` (t < nseg) into one cycle written to ``out[at : at + nseg]``,
    from the smallest starting vertex on, each segment followed by the one that starts where it ends: every cap
    vertex must start exactly one segment, and the segments must close up into one cycle. Returns an
    :data:`ERRORS` code (0: chained). ``used``: scratch of ≥ nseg booleans."""
    if nseg < 3:
        return 2
    for t in range(nseg):
        for u in range(t + 1, nseg):
            if sa[t] == sa[u]:
                return 3
    cur = 0
    for t in range(1, nseg):
        if sa[t] < sa[cur]:
            cur = t
    first = cur
    for t in range(nseg):
        used[t] = False
    for step in range(nseg):
        if used[cur]:
            return 5
        used[cur] = True
        out[at + step] = sa[cur]
        nxt = -1
        for u in range(nseg):
            if sa[u] == sb[cur]:
                nxt = u
                break
        if nxt < 0:
            return 4
        cur = nxt
    return 0 if cur == first else 5


@njit(cache=True, nogil=True, error_model="numpy")
def clip_side(cf, fe, vid, s, xid, keep, nv_new, VE):
    """Side ``keep`` (−1 or +1) of every cut cell. ``xid``: crossing index per entry (:func:`crossings`),
    ``nv_new[x]`` its vertex id; ``VE``: the vertex table (coordinates, error bound).

    Returns ``(pv, fcnt, fsrc, nf, box, code)``: the new faces' vertex ids one after another, cell by cell
    (its clipped faces, then its cap), their sizes, their source face (the cut cell's face index, or −1 for the
    cap), the faces per new cell, and its box ``(nc, 6)`` (lo, hi widened by 2u|·|)."""
    nc = len(cf) - 1
    E = len(vid)
    F = len(fe) - 1
    pv = np.empty(4 * E + 8, np.int64)  # clipped faces ≤ 2 points per entry, caps ≤ 2 per entry
    fcnt = np.empty(F + nc, np.int64)
    fsrc = np.empty(F + nc, np.int64)
    nf = np.empty(nc, np.int64)
    box = np.empty((nc, 6), np.float64)
    # scratch for one face's clipped points and one cell's cap segments
    fv = np.empty(2 * E + 2, np.int64)
    fcut = np.empty(2 * E + 2, np.bool_)
    sa = np.empty(2 * E + 2, np.int64)
    sb = np.empty(2 * E + 2, np.int64)
    used = np.zeros(2 * E + 2, np.bool_)
    npv = 0
    nface = 0
    for c in range(nc):
        nseg = 0
        faces_c = 0
        for f in range(cf[c], cf[c + 1]):
            m = 0
            strict = 0
            for i in range(fe[f], fe[f + 1]):
                k = _next(i, f, fe)
                si, sk = s[i], s[k]
                if si == keep:
                    strict += 1
                if si == 0 or si == keep:
                    fv[m] = vid[i]
                    fcut[m] = si == 0 and sk != keep
                    m += 1
                if si * sk < 0:
                    fv[m] = nv_new[xid[i]]
                    fcut[m] = sk != keep
                    m += 1
            if m < 3 or strict == 0:
                continue  # no area on this side (or touching the cap in a segment only)
            for t in range(m):
                pv[npv + t] = fv[t]
                if fcut[t]:  # a segment on the cut; the cap runs the other way: next point → this one
                    sa[nseg] = fv[(t + 1) % m]
                    sb[nseg] = fv[t]
                    nseg += 1
            npv += m
            fcnt[nface] = m
            fsrc[nface] = f
            nface += 1
            faces_c += 1
        code = chain_cap(sa, sb, nseg, pv, npv, used)
        if code:
            return pv[:0], fcnt[:0], fsrc[:0], nf[:0], box[:0], code
        npv += nseg
        fcnt[nface] = nseg
        fsrc[nface] = -1
        nface += 1
        nf[c] = faces_c + 1
    # boxes over each new cell's points (the cap's points are on its clipped faces too: every entry counts)
    f0 = 0
    p = 0
    for c in range(nc):
        lo0 = lo1 = lo2 = np.inf
        hi0 = hi1 = hi2 = -np.inf
        n_c = 0
        for g in range(f0, f0 + nf[c]):
            n_c += fcnt[g]
        for t in range(p, p + n_c):
            v = pv[t]
            e = VE[v, 3]
            x0, x1, x2 = VE[v, 0], VE[v, 1], VE[v, 2]
            lo0, hi0 = min(lo0, x0 - e), max(hi0, x0 + e)
            lo1, hi1 = min(lo1, x1 - e), max(hi1, x1 + e)
            lo2, hi2 = min(lo2, x2 - e), max(hi2, x2 + e)
        p += n_c
        f0 += nf[c]
        box[c, 0], box[c, 3] = lo0 - _U2 * abs(lo0), hi0 + _U2 * abs(hi0)
        box[c, 1], box[c, 4] = lo1 - _U2 * abs(lo1), hi1 + _U2 * abs(hi1)
        box[c, 2], box[c, 5] = lo2 - _U2 * abs(lo2), hi2 + _U2 * abs(hi2)
    return pv[:npv], fcnt[:nface], fsrc[:nface], nf, box, 0


@njit(cache=True, nogil=True, error_model="numpy")
def distinct_per_cell(cb, vid):
    """Each cell's distinct vertex ids: ``(du (K,), dcell (K,), emap (E,))`` for entries grouped by cell (cell c
    owns entries ``cb[c] : cb[c + 1]``) — the distinct ids cell by cell in order of first appearance, their
    cell, and each entry's index into ``du`` (faces list a polyhedron's vertices about three times each). One
    open-addressing table for all cells (a slot belongs to the cell that wrote it last: nothing to clear)."""
    nc = len(cb) - 1
    E = len(vid)
    du = np.empty(E, np.int64)
    dcell = np.empty(E, np.int64)
    emap = np.empty(E, np.int64)
    big = 0
    for c in range(nc):
        big = max(big, cb[c + 1] - cb[c])
    cap = _table_size(big)
    mask = np.uint64(cap - 1)
    key = np.empty(cap, np.int64)
    owner = np.full(cap, -1, np.int64)
    at = np.empty(cap, np.int64)
    k = 0
    for c in range(nc):
        for i in range(cb[c], cb[c + 1]):
            v = vid[i]
            h = ((np.uint64(v) * _GOLDEN) >> np.uint64(32)) & mask  # Fibonacci hashing
            while owner[h] == c and key[h] != v:
                h = (h + np.uint64(1)) & mask
            if owner[h] != c:
                owner[h], key[h], at[h] = c, v, k
                du[k], dcell[k] = v, c
                k += 1
            emap[i] = at[h]
    return du[:k].copy(), dcell[:k].copy(), emap


@njit(cache=True, nogil=True, error_model="numpy")
def _face_area(fstart, fcount, pv, VE, f):
    """Face ``f``'s area vector ½ Σ (v_i − c) × (v_{i+1} − c) (outward for a counter-clockwise face) and centroid
    c (the mean of its vertex ids ``pv[fstart[f] : fstart[f] + fcount[f]]`` into ``VE``): six floats."""
    s0, n = fstart[f], fcount[f]
    c0 = c1 = c2 = 0.0
    for i in range(s0, s0 + n):
        v = pv[i]
        c0 += VE[v, 0]
        c1 += VE[v, 1]
        c2 += VE[v, 2]
    c0, c1, c2 = c0 / n, c1 / n, c2 / n
    a0 = a1 = a2 = 0.0
    for i in range(n):
        v, w = pv[s0 + i], pv[s0 + (i + 1) % n]
        r0, r1, r2 = VE[v, 0] - c0, VE[v, 1] - c1, VE[v, 2] - c2
        q0, q1, q2 = VE[w, 0] - c0, VE[w, 1] - c1, VE[w, 2] - c2
        a0 += 0.5 * (r1 * q2 - r2 * q1)
        a1 += 0.5 * (r2 * q0 - r0 * q2)
        a2 += 0.5 * (r0 * q1 - r1 * q0)
    return a0, a1, a2, c0, c1, c2


@njit(cache=True, nogil=True, error_model="numpy")
def face_areas(fstart, fcount, pv, VE, faces):
    """Area vectors and centroids (:func:`_face_area`) of the faces ``faces``: ``(area, cen)``, each ``(F, 3)`` —
    the float arithmetic of the volume-sum and measure-balance checks (tolerance-based)."""
    F = len(faces)
    area = np.zeros((F, 3))
    cen = np.zeros((F, 3))
    for t in range(F):
        a0, a1, a2, c0, c1, c2 = _face_area(fstart, fcount, pv, VE, faces[t])
        area[t, 0], area[t, 1], area[t, 2] = a0, a1, a2
        cen[t, 0], cen[t, 1], cen[t, 2] = c0, c1, c2
    return area, cen


@njit(cache=True, nogil=True, error_model="numpy")
def solve_rows3(Q, A, B, EA, EB, scale):
    """Points on three hyperplanes each: system i has the rows ``Q[i] (3,)`` of the tables ``A (H, 3)``,
    ``B (H,)`` and their error bounds ``EA``, ``EB``. Returns ``(V (n, 3), err (n,))`` — exactly the arithmetic
    and the bound of :func:`cpa_theory.polytope._solve_systems` for d = 3 (adjugate inverse X; ‖M⁻¹‖∞ bounded
    through R = X M − I; err = inf where float64 cannot bound the point, V = NaN where no inverse formed)."""
    n = Q.shape[0]
    V = np.full((n, 3), np.nan)
    err = np.full(n, np.inf)
    k = _K3
    M = np.empty((3, 3))
    X = np.empty((3, 3))
    v = np.empty(3)
    for i in range(n):
        for r in range(3):
            for c in range(3):
                M[r, c] = A[Q[i, r], c]
        # adjugate: column c is the cross product of rows c + 1 and c + 2
        for c in range(3):
            r1, r2 = (c + 1) % 3, (c + 2) % 3
            X[0, c] = M[r1, 1] * M[r2, 2] - M[r1, 2] * M[r2, 1]
            X[1, c] = M[r1, 2] * M[r2, 0] - M[r1, 0] * M[r2, 2]
            X[2, c] = M[r1, 0] * M[r2, 1] - M[r1, 1] * M[r2, 0]
        det = M[0, 0] * X[0, 0] + M[0, 1] * X[1, 0] + M[0, 2] * X[2, 0]
        if not (np.isfinite(det) and det != 0):
            continue
        good = True
        for r in range(3):
            for c in range(3):
                X[r, c] = X[r, c] / det
                good = good and np.isfinite(X[r, c])
        if not good:
            continue
        b0, b1, b2 = B[Q[i, 0]], B[Q[i, 1]], B[Q[i, 2]]
        for r in range(3):
            v[r] = X[r, 0] * b0 + X[r, 1] * b1 + X[r, 2] * b2
        nX = nM = rho = shrink_rows = pert = vmax = 0.0
        finite = True
        for r in range(3):
            vmax = max(vmax, abs(v[r]))
            finite = finite and np.isfinite(v[r])
        for r in range(3):
            q = Q[i, r]
            br = B[q]
            dotv = M[r, 0] * v[0] + M[r, 1] * v[1] + M[r, 2] * v[2]
            absdot = abs(M[r, 0]) * abs(v[0]) + abs(M[r, 1]) * abs(v[1]) + abs(M[r, 2]) * abs(v[2])
            resid = abs(dotv - br) + k * (absdot + abs(br))
            pert = max(pert, EA[q, 0] * abs(v[0]) + EA[q, 1] * abs(v[1]) + EA[q, 2] * abs(v[2]) + EB[q] + resid)
            nX = max(nX, abs(X[r, 0]) + abs(X[r, 1]) + abs(X[r, 2]))
            nM = max(nM, abs(M[r, 0]) + abs(M[r, 1]) + abs(M[r, 2]))
            shrink_rows = max(shrink_rows, EA[q, 0] + EA[q, 1] + EA[q, 2])
            rrow = 0.0
            for c in range(3):
                rc = X[r, 0] * M[0, c] + X[r, 1] * M[1, c] + X[r, 2] * M[2, c]
                if r == c:
                    rc -= 1.0
                rrow += abs(rc)
            rho = max(rho, rrow)
        nX *= 1 + k
        nM *= 1 + k
        rho = (rho + 2 * k * nX * nM) * (1 + k)
        ninv = nX / (1.0 - rho) if rho < 0.5 else nX
        shrink = 1.0 - ninv * shrink_rows * (1 + k)
        e = np.inf
        if rho < 0.5 and shrink > 0.5:
            e = FILTER_SAFETY * ninv * pert / shrink
        e += _U * vmax
        if not (finite and e <= VERTEX_ERR_MAX_RTOL * scale):  # also catches NaN
            e = np.inf
        V[i, 0], V[i, 1], V[i, 2] = v[0], v[1], v[2]
        err[i] = e
    return V, err


@njit(cache=True, nogil=True, error_model="numpy")
def _box_side(box, i, T, r, d):
    """:func:`cpa_theory.frontier_kernels.box_sides` for box ``box[i] (2d,)`` and row ``r`` of the sign table:
    +1 / −1 when the whole box is strictly on that side of the exact hyperplane, 0 undecided (or overflow)."""
    Eb = 0.0
    Msum = 0.0
    vmin = -T[r, d]
    vmax = -T[r, d]
    for q in range(d):
        lo, hi = box[i, q], box[i, d + q]
        m = max(abs(lo), abs(hi))
        Msum += m
        Eb += m * T[r, d + 1 + q]
        a = T[r, q]
        if a >= 0:
            vmin += a * lo
            vmax += a * hi
        else:
            vmin += a * hi
            vmax += a * lo
    E = FILTER_SAFETY * (Eb + T[r, 2 * d + 1] + (3 * d + 4) * _TINY * (1 + Msum + T[r, 2 * d + 2]))
    if np.isfinite(vmin) and np.isfinite(vmax) and np.isfinite(E):
        if vmin > E:
            return 1
        if vmax < -E:
            return -1
    return 0


@njit(cache=True, nogil=True, error_model="numpy")
def _vertex_side(VE, v, T, r, d):
    """:func:`cpa_theory.frontier_kernels.vertex_sides` for vertex ``v`` (row of ``VE``: coordinates, error
    bound) and row ``r`` of the sign table: ``(float sign, undecided, overflow)``."""
    val = -T[r, d]
    Ev = 0.0
    asum = abs(VE[v, d])
    for q in range(d):
        x = VE[v, q]
        val += x * T[r, q]
        Ev += abs(x) * T[r, d + 1 + q]
        asum += abs(x)
    E = FILTER_SAFETY * (Ev + T[r, 2 * d + 1] + T[r, 2 * d + 2] * VE[v, d]
                         + (3 * d + 5) * _TINY * (1 + asum + T[r, 2 * d + 2]))
    sg = 1 if val > 0 else (-1 if val < 0 else 0)
    return sg, not (abs(val) > E), not (np.isfinite(val) and np.isfinite(E))


@njit(cache=True, nogil=True, error_model="numpy")
def _cell_entries(cstart, ccount, sel, fpool, fstart, fcount, pv):
    """The pool entries of cells ``sel`` (cell i: faces ``fpool[cstart[i] : cstart[i] + ccount[i]]``, face f the
    vertex ids ``pv[fstart[f] : fstart[f] + fcount[f]]``): ``(faces, fcells, fcnt, vid, ecells, cb)`` — face
    ids, each face's index into ``sel``, entries per face, the entries' vertex ids and index into ``sel``, and
    each selected cell's first entry (``cb``, with the total appended)."""
    nt = len(sel)
    nf = 0
    for t in range(nt):
        nf += ccount[sel[t]]
    faces = np.empty(nf, np.int64)
    fcells = np.empty(nf, np.int64)
    fcnt = np.empty(nf, np.int64)
    ne = 0
    k = 0
    for t in range(nt):
        i = sel[t]
        for g in range(cstart[i], cstart[i] + ccount[i]):
            f = fpool[g]
            faces[k], fcells[k], fcnt[k] = f, t, fcount[f]
            ne += fcount[f]
            k += 1
    vid = np.empty(ne, np.int64)
    ecells = np.empty(ne, np.int64)
    cb = np.empty(nt + 1, np.int64)
    e = 0
    k = 0
    for t in range(nt):
        cb[t] = e
        i = sel[t]
        for _ in range(ccount[i]):
            f = faces[k]
            for g in range(fstart[f], fstart[f] + fcount[f]):
                vid[e] = pv[g]
                ecells[e] = t
                e += 1
            k += 1
    cb[nt] = ne
    return faces, fcells, fcnt, vid, ecells, cb


@njit(cache=True, nogil=True, error_model="numpy")
def cell_vertices(cstart, ccount, fpool, fstart, fcount, pv):
    """Each cell's distinct vertex ids (its faces list each about three times): ``(ids cell after cell, count
    per cell)``."""
    n = len(cstart)
    _, _, _, vid, _, cb = _cell_entries(cstart, ccount, np.arange(n), fpool, fstart, fcount, pv)
    du, dcell, _ = distinct_per_cell(cb, vid)
    cnt = np.zeros(n, np.int64)
    for k in range(len(dcell)):
        cnt[dcell[k]] += 1
    return du, cnt


@njit(cache=True, nogil=True, error_model="numpy")
def wave_signs(cells, cstart, ccount, box, rows, T, fpool, fstart, fcount, pv, VE):
    """One wave's cell tests, fused (the float filters of :func:`cpa_theory.frontier_kernels.box_sides` and
    :func:`cpa_theory.frontier_kernels.vertex_sides`, the same bounds): pair i is cell ``c = cells[i]`` (faces
    ``fpool[cstart[c] : cstart[c] + ccount[c]]``, face f the vertex ids ``pv[fstart[f] : fstart[f] + fcount[f]]``),
    its bounding box ``box[c] (2d,)`` and the row ``rows[i]`` of the sign table ``T``.

    Returns ``(side, tested, faces, fcells, fcnt, vid, ecells, du, dcell, emap, sd, und, bad)``: the box side of
    every pair (+1 / −1 / 0 undecided); the pairs the box leaves undecided; their faces, each face's index into
    ``tested``, entries per face; the entries' vertex ids and tested-pair index; each tested cell's distinct
    vertices (:func:`distinct_per_cell`); the float sign of each distinct vertex, whether float64 left it
    undecided (the caller decides it exactly), and whether any value overflowed (an internal error)."""
    d = VE.shape[1] - 1
    n = len(cells)
    side = np.zeros(n, np.int8)
    nt = 0
    tested = np.empty(n, np.int64)
    for i in range(n):
        s = _box_side(box, cells[i], T, rows[i], d)
        side[i] = s
        if s == 0:
            tested[nt] = i
            nt += 1
    tested = tested[:nt].copy()
    sel = np.empty(nt, np.int64)
    for t in range(nt):
        sel[t] = cells[tested[t]]
    faces, fcells, fcnt, vid, ecells, cb = _cell_entries(cstart, ccount, sel, fpool, fstart, fcount, pv)
    du, dcell, emap = distinct_per_cell(cb, vid)
    K = len(du)
    sd = np.zeros(K, np.int8)
    und = np.zeros(K, np.bool_)
    bad = False
    for j in range(K):
        sd[j], und[j], b = _vertex_side(VE, du[j], T, rows[tested[dcell[j]]], d)
        bad = bad or b
    return side, tested, faces, fcells, fcnt, vid, ecells, du, dcell, emap, sd, und, bad


@njit(cache=True, nogil=True, error_model="numpy")
def wave_cells(pos, par, end, act_j, nK):
    """A one-line wave's pairs: the live cells whose parent's cut list is not done (``pos[c] < end[par[c]]``)
    with the next line of it, ``j = act_j[pos[c]]`` (row ``par[c]·nK + j`` of the sign table). Returns ``(cells,
    rows, j, the most lines any cell has left)``."""
    n = len(pos)
    m = 0
    rest = 0
    for c in range(n):
        left = end[par[c]] - pos[c]
        if left > 0:
            m += 1
            rest = max(rest, left)
    cells = np.empty(m, np.int64)
    rows = np.empty(m, np.int64)
    jc = np.empty(m, np.int64)
    t = 0
    for c in range(n):
        if pos[c] < end[par[c]]:
            j = act_j[pos[c]]
            cells[t], rows[t], jc[t] = c, par[c] * nK + j, j
            t += 1
    return cells, rows, jc, rest


@njit(cache=True, nogil=True, error_model="numpy")
def wave_fold(cells, jc, side, tested, dcell, sd, emap, sides, pos):
    """A one-line wave's outcome (:func:`wave_signs`, the undecided signs already decided): every cell moves to
    its next line (``pos += 1``); a cell its line does not cut records its side of it (``sides[c, j]`` = max +
    min of its vertices' signs: the box's side twice, 0 when it lies on the line). Returns ``(cut, s)``: whether
    each tested pair is cut, and each tested entry's sign (``sd[emap]``) for the split."""
    n = len(cells)
    smax = side.copy()
    smin = side.copy()
    for t in range(len(tested)):
        smax[tested[t]], smin[tested[t]] = -2, 2
    for k in range(len(sd)):
        i = tested[dcell[k]]
        smax[i] = max(smax[i], sd[k])
        smin[i] = min(smin[i], sd[k])
    for i in range(n):
        c = cells[i]
        pos[c] += 1
        if not (smax[i] > 0 and smin[i] < 0):
            sides[c, jc[i]] = smax[i] + smin[i]
    cut = np.empty(len(tested), np.bool_)
    for t in range(len(tested)):
        i = tested[t]
        cut[t] = smax[i] > 0 and smin[i] < 0
    s = np.empty(len(emap), np.int8)
    for e in range(len(emap)):
        s[e] = sd[emap[e]]
    return cut, s


@njit(cache=True, nogil=True, error_model="numpy")
def box_sides_dense(box, T, screened):
    """The parent test's box filter: ``(C, nK)`` int8 sides of each parent's box ``box[c] (2d,)`` for its
    screened lines (row ``c·nK + j`` of ``T``; 0 for the unscreened and the undecided)."""
    C, nK = screened.shape
    d = box.shape[1] // 2
    side = np.zeros((C, nK), np.int8)
    for c in range(C):
        for j in range(nK):
            if screened[c, j]:
                side[c, j] = _box_side(box, c, T, c * nK + j, d)
    return side


@njit(cache=True, nogil=True, error_model="numpy")
def pair_extremes(cells, rows, dv, dstart, dcount, VE, T):
    """The vertex filter on (cell, hyperplane) pairs: pair i tests the distinct vertices
    ``dv[dstart[c] : dstart[c] + dcount[c]]`` of cell ``c = cells[i]`` against row ``rows[i]`` of ``T``.

    Returns ``(smax, smin, und_pair, und_vertex, bad)``: per pair the max and min sign over the vertices float64
    decides (−2 / 2 when none), the (pair, vertex) entries it leaves undecided (the caller decides them exactly
    and folds them in), and whether any value overflowed (an internal error)."""
    n = len(cells)
    d = VE.shape[1] - 1
    smax = np.empty(n, np.int8)
    smin = np.empty(n, np.int8)
    total = 0
    for i in range(n):
        smax[i], smin[i] = -2, 2
        total += dcount[cells[i]]
    up = np.empty(total, np.int64)
    uv = np.empty(total, np.int64)
    nu = 0
    bad = False
    for i in range(n):
        c, r = cells[i], rows[i]
        for t in range(dstart[c], dstart[c] + dcount[c]):
            sg, u, b = _vertex_side(VE, dv[t], T, r, d)
            bad = bad or b
            if u:
                up[nu], uv[nu] = i, dv[t]
                nu += 1
            else:
                smax[i] = max(smax[i], sg)
                smin[i] = min(smin[i], sg)
    return smax, smin, up[:nu].copy(), uv[:nu].copy(), bad


@njit(cache=True, nogil=True, error_model="numpy")
def split_tables(cf, fe, vid, s, xid, nv_new, VE, faces, fplane, fsign, cut_plane, base_v, base_f, base_pool):
    """Both sides of every cut cell (:func:`clip_side` with keep = −1, then +1) as the rows to append to the
    space engine's tables: ``faces`` the cut cells' face ids (the ``f`` of ``cf``/``fe``), ``fplane``/``fsign``
    the face table, ``cut_plane`` each cut cell's hyperplane; ``base_v``, ``base_f``, ``base_pool`` the current
    lengths of the vertex-entry pool, the face table and the face pool.

    Returns ``(pv, fstart, fcount, fplane, fsign, (cstart, nf, box) of the lower sides, the same of the upper
    sides, code)``: new face f (id ``base_f + f``) is ``pv[fstart[f] - base_v :][: fcount[f]]`` on hyperplane
    ``fplane[f]`` with sign ``fsign[f]`` (a clipped face keeps its source's; a cap is on the cut cell's
    hyperplane, sign +1 on the lower side and −1 on the upper); new cell c of a side owns the pool entries
    ``cstart[c] : cstart[c] + nf[c]`` (its new faces, in order)."""
    below, above = np.int64(-1), np.int64(1)  # typed int64, not literals: clip_side is built once
    pvL, fcL, srcL, nfL, boxL, code = clip_side(cf, fe, vid, s, xid, below, nv_new, VE)
    if code:
        return (pvL, fcL, fcL, fcL, fcL.astype(np.int8), fcL, nfL, boxL, fcL, nfL, boxL, code)
    pvU, fcU, srcU, nfU, boxU, code = clip_side(cf, fe, vid, s, xid, above, nv_new, VE)
    if code:
        return (pvU, fcU, fcU, fcU, fcU.astype(np.int8), fcU, nfU, boxU, fcU, nfU, boxU, code)
    FL, FU = len(fcL), len(fcU)
    pv = np.concatenate((pvL, pvU))
    fcount = np.concatenate((fcL, fcU))
    fstart = np.empty(FL + FU, np.int64)
    fpl = np.empty(FL + FU, np.int64)
    fsg = np.empty(FL + FU, np.int8)
    at = base_v
    for t in range(FL + FU):
        fstart[t] = at
        at += fcount[t]
    for half in range(2):
        src, nf, off, cap_sign = (srcL, nfL, 0, 1) if half == 0 else (srcU, nfU, FL, -1)
        t = off
        for c in range(len(nf)):
            for g in range(nf[c]):
                f = src[t - off]
                if f < 0:
                    fpl[t], fsg[t] = cut_plane[c], cap_sign
                else:
                    fpl[t], fsg[t] = fplane[faces[f]], fsign[faces[f]]
                t += 1
    cL = np.empty(len(nfL), np.int64)
    cU = np.empty(len(nfU), np.int64)
    at = base_pool
    for c in range(len(nfL)):
        cL[c] = at
        at += nfL[c]
    for c in range(len(nfU)):
        cU[c] = at
        at += nfU[c]
    return pv, fstart, fcount, fpl, fsg, cL, nfL, boxL, cU, nfU, boxU, 0


@njit(cache=True, nogil=True, error_model="numpy")
def split_prepare(cut, faces, fcells, fcnt, vid, s, cut_plane, fplane, A, B, EA, EB, scale):
    """The first half of a wave's split, on the tested cells' entries (:func:`wave_signs`' layout: ``faces``,
    ``fcells``, ``fcnt``, ``vid``, entry sides ``s``): keep the cells with ``cut[t]`` (hyperplane
    ``cut_plane[t]``), find their crossings (:func:`crossings`) and solve each crossing point on its edge's two
    face planes and the cut (:func:`solve_rows3` on the hyperplane table ``A, B, EA, EB``).

    Returns ``(cf, fe, faces, vid, s, planes, xid, VE, Q, code)`` for the cut cells: their layout for
    :func:`split_tables`, each cut cell's hyperplane, the crossing index per entry, the crossing points as
    vertex-table rows (coordinates, error bound; zeros and +inf where float64 cannot bound the point: the caller
    computes it exactly) and their defining hyperplanes ``Q (X, 3)``."""
    nt = len(cut)
    remap = np.full(nt, -1, np.int64)
    nc = 0
    for t in range(nt):
        if cut[t]:
            remap[t] = nc
            nc += 1
    planes = np.empty(nc, np.int64)
    for t in range(nt):
        if cut[t]:
            planes[remap[t]] = cut_plane[t]
    nf = 0
    ne = 0
    for k in range(len(faces)):
        if cut[fcells[k]]:
            nf += 1
            ne += fcnt[k]
    cf = np.zeros(nc + 1, np.int64)
    fe = np.empty(nf + 1, np.int64)
    kf = np.empty(nf, np.int64)
    kv = np.empty(ne, np.int64)
    ks = np.empty(ne, np.int8)
    fe[0] = 0
    f = 0
    e = 0
    src = 0
    for k in range(len(faces)):
        n = fcnt[k]
        if cut[fcells[k]]:
            cf[remap[fcells[k]] + 1] += 1
            kf[f] = faces[k]
            for g in range(n):
                kv[e + g] = vid[src + g]
                ks[e + g] = s[src + g]
            e += n
            f += 1
            fe[f] = e
        src += n
    for c in range(nc):
        cf[c + 1] += cf[c]
    xid, e1, e2, xcell, code = crossings(cf, fe, kv, ks)
    nx = len(e1)
    Q = np.empty((nx, 3), np.int64)
    VE = np.zeros((nx, 4))
    if code:
        return cf, fe, kf, kv, ks, planes, xid, VE, Q, code
    eface = np.empty(ne, np.int64)
    for g in range(nf):
        for i in range(fe[g], fe[g + 1]):
            eface[i] = g
    for x in range(nx):
        Q[x, 0] = fplane[kf[eface[e1[x]]]]
        Q[x, 1] = fplane[kf[eface[e2[x]]]]
        Q[x, 2] = planes[xcell[x]]
    V, err = solve_rows3(Q, A, B, EA, EB, scale)
    for x in range(nx):
        if np.isfinite(err[x]):
            VE[x, 0], VE[x, 1], VE[x, 2] = V[x, 0], V[x, 1], V[x, 2]
        VE[x, 3] = err[x]
    return cf, fe, kf, kv, ks, planes, xid, VE, Q, 0


#: :func:`wave_run`'s outcomes: all waves done; a wave needs exact signs (nothing of it applied); a wave's split
#: needs crossing points float64 cannot bound (its crossings appended, the rest to :func:`split_finish`); the
#: wave budget spent; a structural failure (its :data:`ERRORS` code returned beside)
WAVES_DONE, WAVE_EXACT_SIGNS, WAVE_EXACT_POINTS, WAVE_BUDGET, WAVE_FAILED = 0, 1, 2, 3, 4


@njit(cache=True, nogil=True, error_model="numpy")
def _room(a, n, m):
    """``a`` with room for rows ``n … n + m − 1``: itself, or its first ``n`` rows copied into twice the space
    (the capacity doubling of :class:`cpa_theory.frontier._Grow`)."""
    if n + m <= a.shape[0]:
        return a
    b = np.empty((max(2 * a.shape[0], n + m),) + a.shape[1:], a.dtype)
    b[:n] = a[:n]
    return b


@njit(cache=True, nogil=True, error_model="numpy")
def split_finish(prep, new_ids, live, pools, ns):
    """The second half of a wave's split, after :func:`split_prepare` (``prep`` = its ``cf, fe, faces, vid, s,
    planes, xid`` and the cut cells with their line index ``j``; their crossing points already rows ``new_ids``
    of the vertex table): both sides of every cut cell (:func:`split_tables`) appended to the pools, and the live
    cells updated — a cut cell becomes its lower side in place (its side of the cut −1), its upper side is
    appended (side +1; line pointer, parent and its other sides inherited).

    ``live`` = (pos, par, start, count, sides, box), ``pools`` = (fpool, fstart, fcount, fplane, fsign, pv, VE,
    vdef), ``ns`` = their lengths (live cells, face pool, faces, vertex entries, vertices), updated in place.
    Returns ``(code, live, pools)``: the arrays, reallocated where they grew."""
    cf, fe, faces, vid, s, planes, xid, ccells, j = prep
    pos, par, start, count, sides, box = live
    fpool, fstart, fcount, fplane, fsign, pv, VE, vdef = pools
    q0, f0, e0, nl = ns[1], ns[2], ns[3], ns[0]
    pvn, fst, fcn, fpl, fsg, cL, nfL, boxL, cU, nfU, boxU, code = split_tables(
        cf, fe, vid, s, xid, new_ids, VE, faces, fplane, fsign, planes, e0, f0, q0)
    if code:
        return code, live, pools
    F, E, m = len(fcn), len(pvn), len(ccells)
    pv = _room(pv, e0, E)
    pv[e0:e0 + E] = pvn
    fstart, fcount = _room(fstart, f0, F), _room(fcount, f0, F)
    fplane, fsign, fpool = _room(fplane, f0, F), _room(fsign, f0, F), _room(fpool, q0, F)
    for t in range(F):
        fstart[f0 + t], fcount[f0 + t], fplane[f0 + t], fsign[f0 + t] = fst[t], fcn[t], fpl[t], fsg[t]
        fpool[q0 + t] = f0 + t
    ns[1], ns[2], ns[3] = q0 + F, f0 + F, e0 + E
    live = split_cells(live, nl, ccells, j, cL, nfL, boxL, cU, nfU, boxU)
    ns[0] = nl + m
    return 0, live, (fpool, fstart, fcount, fplane, fsign, pv, VE, vdef)


@njit(cache=True, nogil=True, error_model="numpy")
def split_cells(live, nl, ccells, j, cL, nL, boxL, cU, nU, boxU):
    """The live cells after a split (both flat engines): cut cell ``ccells[i]`` (by line ``j[i]`` of its parent's
    list) becomes its lower side in place — pool start ``cL[i]``, count ``nL[i]``, box ``boxL[i]``, side −1 of
    the cut — and its upper side is appended as cell ``nl + i`` (``cU``, ``nU``, ``boxU``, side +1; line pointer,
    parent and its other sides inherited). ``live`` = (pos, par, start, count, sides, box) with ``nl`` cells;
    returns it with ``nl + len(ccells)`` cells (arrays reallocated where they grew)."""
    pos, par, start, count, sides, box = live
    m = len(ccells)
    pos, par, start, count = _room(pos, nl, m), _room(par, nl, m), _room(start, nl, m), _room(count, nl, m)
    sides, box = _room(sides, nl, m), _room(box, nl, m)
    for i in range(m):
        c, u = ccells[i], nl + i
        start[c], count[c] = cL[i], nL[i]
        sides[c, j[i]] = -1
        sides[u, :] = sides[c, :]
        sides[u, j[i]] = 1
        pos[u], par[u] = pos[c], par[c]
        box[c, :] = boxL[i]
        box[u, :] = boxU[i]
        start[u], count[u] = cU[i], nU[i]
    return pos, par, start, count, sides, box


@njit(cache=True, nogil=True, error_model="numpy")
def wave_run(live, pools, ns, end, act_j, nK, T, hyper, scale, first_hyp, budget):
    """One-line waves (:func:`wave_cells`, :func:`wave_signs`, :func:`wave_fold`, :func:`split_prepare`,
    :func:`split_finish`) until every cell's cut list is done, or ``budget`` waves (< 0: no limit), or a wave
    needs Python: exact signs (the wave is left untouched, the caller runs it) or crossing points float64
    cannot bound (the wave's crossings are appended with error +inf, the caller computes them exactly and calls
    :func:`split_finish`). ``live``, ``pools``, ``ns`` as in :func:`split_finish`; ``hyper`` = the hyperplane
    table (A, B, EA, EB).

    Returns ``(outcome, code, rest, splits, live, pools, prep, new_ids)``: ``outcome`` one of ``WAVES_DONE`` …
    ``WAVE_FAILED``, the failure's code, the most lines any cell had left before the last wave, how many waves
    split cells, the arrays, and for ``WAVE_EXACT_POINTS`` the split's ``prep`` and crossing ids."""
    A, B, EA, EB = hyper
    e = np.zeros(0, np.int64)
    prep = (e, e, e, e, np.zeros(0, np.int8), e, e, e, e)
    new_ids = e
    waves, splits, rest = 0, 0, 0
    while True:
        if budget >= 0 and waves >= budget:
            return WAVE_BUDGET, 0, rest, splits, live, pools, prep, new_ids
        pos, par, start, count, sides, box = live
        fpool, fstart, fcount, fplane, fsign, pv, VE, vdef = pools
        n = ns[0]
        cells, rows, jc, left = wave_cells(pos[:n], par[:n], end, act_j, nK)
        if len(cells) == 0:
            return WAVES_DONE, 0, rest, splits, live, pools, prep, new_ids
        side, tested, faces, fcells, fcnt, vid, ecells, du, dcell, emap, sd, und, bad = wave_signs(
            cells, start, count, box, rows, T, fpool, fstart, fcount, pv, VE)
        if bad or np.any(und):
            return WAVE_EXACT_SIGNS, 0, rest, splits, live, pools, prep, new_ids
        cut, s = wave_fold(cells, jc, side, tested, dcell, sd, emap, sides, pos)
        waves += 1
        rest = left
        if not np.any(cut):
            continue
        cf, fe, kf, kv, ks, planes, xid, VEx, Q, code = split_prepare(
            cut, faces, fcells, fcnt, vid, s, first_hyp + rows[tested], fplane, A, B, EA, EB, scale)
        if code:
            return WAVE_FAILED, code, rest, splits, live, pools, prep, new_ids
        splits += 1
        v0, nx = ns[4], len(VEx)
        VE, vdef = _room(VE, v0, nx), _room(vdef, v0, nx)
        VE[v0:v0 + nx] = VEx
        vdef[v0:v0 + nx] = Q
        ns[4] = v0 + nx
        new_ids = np.arange(v0, v0 + nx)
        pools = (fpool, fstart, fcount, fplane, fsign, pv, VE, vdef)
        prep = (cf, fe, kf, kv, ks, planes, xid, cells[tested][cut], jc[tested][cut])
        if not np.all(np.isfinite(VEx[:, 3])):
            return WAVE_EXACT_POINTS, 0, rest, splits, live, pools, prep, new_ids
        code, live, pools = split_finish(prep, new_ids, live, pools, ns)
        if code:
            return WAVE_FAILED, code, rest, splits, live, pools, prep, new_ids


@njit(cache=True, nogil=True, error_model="numpy")
def project_rows(VE, rows, proj):
    """For the points ``VE[rows, :d]`` (d = ``len(proj)``, their error bounds ``VE[rows, d]``): the projections
    ``w = V @ proj``, the largest error bound and the largest |coordinate| (the sweep's slab,
    :func:`cpa_theory.frontier._close_pairs`)."""
    m, d = len(rows), len(proj)
    w = np.empty(m)
    emax = 0.0
    vmax = 0.0
    for i in range(m):
        r = rows[i]
        acc = 0.0
        for q in range(d):
            x = VE[r, q]
            acc += x * proj[q]
            vmax = max(vmax, abs(x))
        w[i] = acc
        emax = max(emax, VE[r, d])
    return w, emax, vmax


@njit(cache=True, nogil=True, error_model="numpy")
def sweep_pairs(w, order, VE, rows, slab):
    """The sweep of :func:`cpa_theory.frontier._close_pairs` over the points ``VE[rows]`` (coordinates, error
    bound) visited in the order ``order`` of their projections ``w``: every pair (a, b) with
    ``w[b] − w[a] ≤ slab`` (a before b) whose coordinates all agree to 2 (err_a + err_b). Returns ``(i, j)``,
    positions in ``rows``."""
    m = len(order)
    d = VE.shape[1] - 1
    n = 0
    for fill in range(2):  # count the pairs, then list them
        if fill:
            pi = np.empty(n, np.int64)
            pj = np.empty(n, np.int64)
            n = 0
        for a in range(m):
            ia = order[a]
            ra = rows[ia]
            b = a + 1
            while b < m and w[order[b]] - w[ia] <= slab:
                ib = order[b]
                rb = rows[ib]
                tol = 2.0 * (VE[ra, d] + VE[rb, d])
                close = True
                for q in range(d):
                    if not abs(VE[ra, q] - VE[rb, q]) <= tol:
                        close = False
                        break
                if close:
                    if fill:
                        pi[n], pj[n] = ia, ib
                    n += 1
                b += 1
    return pi, pj


@njit(cache=True, nogil=True, error_model="numpy")
def components(m, r, c):
    """Connected components of the graph on ``m`` nodes with edges ``(r[k], c[k])`` (union–find): ``(labels,
    count)``, components numbered in order of their smallest node."""
    parent = np.arange(m)
    for k in range(len(r)):
        a, b = r[k], c[k]
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        while parent[b] != b:
            parent[b] = parent[parent[b]]
            b = parent[b]
        if a != b:
            if a < b:
                parent[b] = a
            else:
                parent[a] = b
    labels = np.empty(m, np.int64)
    n = 0
    for i in range(m):
        a = i
        while parent[a] != a:
            a = parent[a]
        if a == i:
            labels[i] = n
            n += 1
        else:
            labels[i] = labels[a]
    return labels, n


@njit(cache=True, nogil=True, error_model="numpy")
def _clearance(A, B, EA, EB, h, sg, pt, perr):
    """:func:`cpa_theory.polytope.facet_clearance` for one point ``pt (d,)`` (coordinates within ``perr``) and row
    ``h`` of the hyperplane table: the certified distance of the point inside ``sg·(a·y − β) ≤ 0``, or +inf when
    a = 0."""
    d = len(pt)
    dot = 0.0
    ea_p = 0.0
    sum_a = 0.0
    sum_ea = 0.0
    abs_dot = 0.0
    n2 = 0.0
    e2 = 0.0
    for q in range(d):
        a, e, x = A[h, q], EA[h, q], pt[q]
        dot += a * x
        ea_p += e * abs(x)
        sum_a += abs(a)
        sum_ea += e
        abs_dot += abs(a) * abs(x)
        n2 += a * a
        e2 += e * e
    slack = -sg * (dot - B[h])
    E = FILTER_SAFETY * (ea_p + EB[h] + (sum_a + sum_ea) * perr + (d + DOT_EXTRA_TERMS) * _U * (abs_dot + abs(B[h])))
    if not n2 > 0:
        return np.inf
    return (slack - E) / (np.sqrt(n2) + np.sqrt(e2))


@njit(cache=True, nogil=True, error_model="numpy")
def witness_balls(start, count, fpool, fstart, fcount, pv, VE, fplane, fsign, A, B, EA, EB, p):
    """The space engine's witnesses, balls and volumes in one pass over every cell (faces ``fpool[start[c] :
    start[c] + count[c]]``): the centroid y of the cell's distinct vertices, its error bound (the vertices'
    largest plus 4u|y|), the ball radius min over the faces of :func:`_clearance` less 2u|y + p|, and the volume
    Σ_faces (v_f − y)·area_f / 3 with v_f the face's first vertex and area_f its fan from there (one pass over
    the face; the centroid form of :func:`face_areas` needs two).

    Returns ``(y (C, 3), radius (C,), volume (C,))``."""
    C = len(start)
    d = 3
    cys = np.zeros((C, d))
    rad = np.empty(C)
    vol = np.zeros(C)
    seen = np.full(len(VE), -1, np.int64)
    pt = np.empty(d)
    for c in range(C):
        n = 0
        emax = 0.0
        for g in range(start[c], start[c] + count[c]):
            f = fpool[g]
            for i in range(fstart[f], fstart[f] + fcount[f]):
                v = pv[i]
                if seen[v] != c:
                    seen[v] = c
                    n += 1
                    for q in range(d):
                        cys[c, q] += VE[v, q]
                    e = VE[v, d]
                    if not e <= emax and emax == emax:  # NaN stays (an overflowed bound: no ball)
                        emax = e
        ymax = 0.0
        wmax = 0.0
        for q in range(d):
            cys[c, q] /= n
            pt[q] = cys[c, q]
            ymax = max(ymax, abs(pt[q]))
            wmax = max(wmax, abs(pt[q] + p[q]))
        err = emax + _U * ymax * 4
        r = np.inf
        nan = False  # a clearance that is NaN (overflow) makes the radius NaN: never a certified ball
        for g in range(start[c], start[c] + count[c]):
            f = fpool[g]
            x = _clearance(A, B, EA, EB, fplane[f], np.float64(fsign[f]), pt, err)
            if x != x:
                nan = True
            elif x < r:
                r = x
        rad[c] = np.nan if nan else r - _U2 * wmax
        for g in range(start[c], start[c] + count[c]):  # Σ (v0 − y)·(Σ fan triangles' (r × q)) / 6 per face
            f = fpool[g]
            s0, m = fstart[f], fcount[f]
            v0 = pv[s0]
            o0, o1, o2 = VE[v0, 0], VE[v0, 1], VE[v0, 2]
            a0 = a1 = a2 = 0.0
            for i in range(s0 + 1, s0 + m - 1):
                v, w = pv[i], pv[i + 1]
                r0, r1, r2 = VE[v, 0] - o0, VE[v, 1] - o1, VE[v, 2] - o2
                q0, q1, q2 = VE[w, 0] - o0, VE[w, 1] - o1, VE[w, 2] - o2
                a0 += r1 * q2 - r2 * q1
                a1 += r2 * q0 - r0 * q2
                a2 += r0 * q1 - r1 * q0
            vol[c] += ((o0 - pt[0]) * a0 + (o1 - pt[1]) * a1 + (o2 - pt[2]) * a2) / 6.0
    return cys, rad, vol


# -- hashing: code matching and the Euler characteristic's distinct edges and faces ---------------------------------


@njit(cache=True, nogil=True, error_model="numpy")
def mix64(x):
    """splitmix64's finaliser on one uint64 (a bijection that spreads every input bit over all output bits)."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True, error_model="numpy")
def _table_size(n):
    cap = 16
    while cap < 2 * n:
        cap *= 2
    return cap


@njit(cache=True, nogil=True, error_model="numpy")
def count_distinct(keys):
    """The number of distinct values among the uint64 ``keys`` (an open-addressing hash set: O(n), no sort)."""
    cap = _table_size(len(keys))
    mask = np.uint64(cap - 1)
    table = np.empty(cap, np.uint64)
    used = np.zeros(cap, np.bool_)
    n = 0
    for k in keys:
        at = mix64(k) & mask
        while used[at] and table[at] != k:
            at = (at + np.uint64(1)) & mask
        if not used[at]:
            used[at] = True
            table[at] = k
            n += 1
    return n


@njit(cache=True, nogil=True, error_model="numpy")
def euler_counts(labels, fcnt, nv, R):
    """Edges and faces of a 3-D cell complex given as face cycles (face f: the corner groups ``labels`` of its
    ``fcnt[f]`` entries, faces one after another): ``(E, F)`` — distinct unordered pairs of consecutive groups
    that differ, and distinct faces by vertex set (the sum of the random words ``R[label]`` over the face, mod
    2^64, mixed with its size: a face shared by two cells counts once)."""
    nf = len(fcnt)
    ekeys = np.empty(len(labels), np.uint64)
    fkeys = np.empty(nf, np.uint64)
    ne = 0
    s0 = 0
    for f in range(nf):
        n = fcnt[f]
        h = np.uint64(0)
        for i in range(n):
            u = labels[s0 + i]
            w = labels[s0 + (i + 1) % n]
            h += R[u]
            if u != w:
                ekeys[ne] = np.uint64(min(u, w) * nv + max(u, w))
                ne += 1
        fkeys[f] = h ^ (np.uint64(n) * _GOLDEN)
        s0 += n
    return count_distinct(ekeys[:ne]), count_distinct(fkeys)


@njit(cache=True, nogil=True, error_model="numpy")
def code_hash(W, salt):
    """Per region (row of the code words ``W``): h = Σ_w mix64(W_w + salt_w) mod 2^64. One word changed changes
    one term, so a neighbour's hash is the region's with that term replaced. (A linear Σ W_w·R_w collided
    whenever two codes differed in the top bit of two words: 2^63 (R_a + R_b) ≡ 0 for odd R.)"""
    C, nw = W.shape
    h = np.zeros(C, np.uint64)
    for c in range(C):
        for w in range(nw):
            h[c] += mix64(W[c, w] + salt[w])
    return h


@njit(cache=True, nogil=True, error_model="numpy")
def pack_fields(k, W, woff, per_word, bits, top):
    """One layer's piece indices ``k (C, n)`` OR-ed into the code words ``W (C, ·)``: neuron j's field is word
    ``woff + j // per_word``, shift ``(j % per_word) · bits`` (:func:`cpa_theory.frontier._code_words`). Returns
    False (and stops) at an index outside 0 … ``top``."""
    n = k.shape[1]
    for r in range(k.shape[0]):
        w, sh, t = woff, np.uint64(0), 0  # word, shift and slot of neuron j (no division per field)
        for j in range(n):
            x = k[r, j]
            if x < 0 or x > top:
                return False
            W[r, w] |= np.uint64(x) << sh
            t += 1
            sh += np.uint64(bits)
            if t == per_word:
                w, sh, t = w + 1, np.uint64(0), 0
    return True


@njit(cache=True, nogil=True, error_model="numpy")
def match_codes(W, salt, cell, planes, meta, Ks, woff, per_word, bits, hash_mask):
    """The region across each facet: facet f of region ``cell[f]`` lies on hyperplane ``planes[f]``, whose
    metadata row ``meta[planes[f]]`` = (layer, parent, j·K + k) says breakpoint k of neuron j of that layer
    (K = ``Ks[layer]``; layer −1: a side of the domain, no neighbour). The neighbour's code is the region's with
    that neuron's piece moved from k + 1 to k or from k to k + 1 (its field: word ``woff[layer] + j // per_word``,
    shift ``(j % per_word)·bits``). The neighbour is looked up by its predicted hash (:func:`code_hash`, masked
    by ``hash_mask``: all ones, or 0 to test the worst case) in an open-addressing table of the regions, and every
    candidate with that hash is verified on all its words: a hash only finds it.

    Returns ``(pairs (P, 2), unmatched)``: each matched inner facet's (region, neighbour) once, from the smaller
    region, in facet order; and the inner facets with no neighbour (the piece neither k nor k + 1, or no region
    with the predicted code)."""
    C, nw = W.shape
    h = code_hash(W, salt) & hash_mask
    cap = _table_size(C)
    tmask = np.uint64(cap - 1)
    table = np.full(cap, -1, np.int64)
    for c in range(C):
        at = h[c] & tmask
        while table[at] >= 0:
            at = (at + np.uint64(1)) & tmask
        table[at] = c
    nf = len(cell)
    pairs = np.empty((nf, 2), np.int64)
    unmatched = np.empty(nf, np.int64)
    npair = 0
    nun = 0
    for i in range(nf):
        c, L, jk = cell[i], meta[planes[i], 0], meta[planes[i], 2]
        if L < 0:
            continue
        j, k = jk // Ks[L], jk % Ks[L]
        w = woff[L] + j // per_word[L]
        sh = np.uint64((j % per_word[L]) * bits[L])
        field = np.uint64((1 << bits[L]) - 1)
        piece = np.int64((W[c, w] >> sh) & field)
        one = np.uint64(1) << sh
        nb = -1
        if piece == k + 1 or piece == k:
            target = W[c, w] - one if piece == k + 1 else W[c, w] + one
            hn = (h[c] - mix64(W[c, w] + salt[w]) + mix64(target + salt[w])) & hash_mask
            at = hn & tmask
            while table[at] >= 0:
                m = table[at]
                if h[m] == hn and W[m, w] == target:
                    same = True
                    for x in range(nw):
                        if x != w and W[m, x] != W[c, x]:
                            same = False
                            break
                    if same:
                        nb = m
                        break
                at = (at + np.uint64(1)) & tmask
        if nb < 0:
            unmatched[nun] = i
            nun += 1
        elif nb > c:
            pairs[npair, 0], pairs[npair, 1] = c, nb
            npair += 1
    return pairs[:npair].copy(), unmatched[:nun].copy()


@njit(cache=True, nogil=True, error_model="numpy")
def sign_table(a, b, ea, eb, k):
    """The rows of :func:`cpa_theory.frontier._sign_table` — (a, β, ea + k|a|, eβ + k|β|, Σ|a| + Σea) per
    hyperplane, row-major, in one pass."""
    T = np.empty((a.shape[0], 2 * a.shape[1] + 3))
    sign_rows(T, a, b, ea, eb, k, 0, a.shape[0])
    return T


@njit(cache=True, nogil=True, error_model="numpy")
def sign_rows(T, a, b, ea, eb, k, r0, r1):
    """Rows ``r0 … r1 − 1`` of :func:`sign_table`, written into ``T``."""
    d = a.shape[1]
    for i in range(r0, r1):
        sa = 0.0
        se = 0.0
        for q in range(d):
            x = abs(a[i, q])
            T[i, q] = a[i, q]
            T[i, d + 1 + q] = ea[i, q] + k * x
            sa += x
            se += ea[i, q]
        T[i, d] = b[i]
        T[i, 2 * d + 1] = eb[i] + k * abs(b[i])
        T[i, 2 * d + 2] = sa + se


@njit(cache=True, nogil=True, error_model="numpy")
def shift_into(dst, at, x, lo, delta):
    """``dst[at + i] = x[i]``, plus ``delta`` where ``x[i] ≥ lo`` (ids appended past a table's new rows)."""
    for i in range(len(x)):
        v = x[i]
        dst[at + i] = v + delta if v >= lo else v


@njit(cache=True, nogil=True, error_model="numpy")
def compact_faces(start, count, fpool, fstart, fcount, pv, fplane, fsign):
    """The face tables of the cells ``(start, count)`` only, renumbered: ``(pv, fstart, fcount, fplane, fsign)``
    with the cells' faces one after another (cell i's faces are then ``sum(count[:i]) …``), each face's
    vertex ids contiguous from ``fstart`` (the entries of :func:`_cell_entries`)."""
    faces, _, ocount, opv, _, _ = _cell_entries(start, count, np.arange(len(start)), fpool, fstart, fcount, pv)
    nf = len(faces)
    ostart = np.empty(nf, np.int64)
    oplane = np.empty(nf, np.int64)
    osign = np.empty(nf, np.int8)
    e = 0
    for t in range(nf):
        f = faces[t]
        ostart[t], oplane[t], osign[t] = e, fplane[f], fsign[f]
        e += ocount[t]
    return opv, ostart, ocount, oplane, osign


@njit(cache=True, nogil=True, error_model="numpy")
def compose_lines(N, z0, mlin, mgap, par, pieces, slope_tab, icpt_tab, mag_tab, g, e, W2, anchor, g2, e2, t2, rel,
                  zerr):
    """:func:`cpa_theory.frontier_kernels.charts_after` then :func:`cpa_theory.frontier_kernels.next_lines` for
    every cell at once, fused (no temporaries): cell c's parent chart is row ``par[c]`` of ``N, z0, mlin, mgap``
    and its neurons sit on ``pieces[c]``; the next layer has weight ``W2 (n2, n)``, BN anchor, gain, shift and
    breakpoints ``t2 (K,)``. The same formulas — each product and sum of the numpy kernels, the sums in one
    order (the error bounds hold for any) — and the same outputs ``(fa, fb, EA, EB, N2, z02, mlin2, mgap2, EN,
    Ez)`` (for K = 1, ``fa`` is ``N2`` and ``EA`` is ``EN``)."""
    C, n = pieces.shape
    d = N.shape[2]
    n2 = W2.shape[0]
    K = len(t2)
    rel2 = rel + (n + DOT_EXTRA_TERMS + 2) * _U
    N2 = np.empty((C, n2, d))
    z02 = np.empty((C, n2))
    mlin2 = np.empty((C, n2, d))
    mgap2 = np.empty((C, n2))
    EN = np.empty((C, n2, d))
    Ez = np.empty((C, n2))
    fb = np.empty((C, n2 * K))
    EB = np.empty((C, n2 * K))
    A = np.empty((n, d))
    mA = np.empty((n, d))
    cc = np.empty(n)
    mc = np.empty(n)
    sloped = np.empty(n, np.bool_)
    WT = np.ascontiguousarray(W2.T)  # (n, n2): the products below run along j, contiguous (they vectorise)
    aWT = np.abs(WT)
    accN = np.empty((d, n2))
    accM = np.empty((d, n2))
    gap = np.empty(n2)
    mg = np.empty(n2)
    for c in range(C):
        p = par[c]
        for i in range(n):  # the layer's output chart on this cell (charts_after)
            k = pieces[c, i]
            s = slope_tab[k]
            sg = abs(s) * abs(g[i])
            sloped[i] = s != 0.0
            for q in range(d):
                A[i, q] = s * N[p, i, q]
                mA[i, q] = sg * mlin[p, i, q]
            cc[i] = s * z0[p, i] + icpt_tab[k]
            mc[i] = abs(s) * (abs(g[i]) * mgap[p, i] + abs(e[i])) + mag_tab[k]
        # the next layer's pre-activation chart and its switching sets (next_lines): every sum over i in order
        accN[:, :] = 0.0
        accM[:, :] = 0.0
        gap[:] = 0.0
        mg[:] = 0.0
        for i in range(n):
            ci = cc[i] - anchor[i]
            mi = mc[i] + abs(anchor[i])
            for j in range(n2):
                gap[j] += ci * WT[i, j]
                mg[j] += mi * aWT[i, j]
            if not sloped[i]:  # a flat piece: its terms are ±0 (entries are finite), which leave every sum as it is
                continue
            for q in range(d):
                a = A[i, q]
                m = mA[i, q]
                for j in range(n2):
                    accN[q, j] += WT[i, j] * a
                    accM[q, j] += aWT[i, j] * m
        for j in range(n2):
            for q in range(d):
                N2[c, j, q] = accN[q, j] * g2[j]
                mlin2[c, j, q] = accM[q, j]
                EN[c, j, q] = rel2 * abs(g2[j]) * accM[q, j]
            z = g2[j] * gap[j] + e2[j]
            z02[c, j] = z
            mgap2[c, j] = mg[j]
            ez = rel2 * (abs(g2[j]) * mg[j] + abs(e2[j])) + zerr[j]
            Ez[c, j] = ez
            for k in range(K):
                b = t2[k] - z
                fb[c, j * K + k] = b
                EB[c, j * K + k] = ez + _U * abs(b)
    if K == 1:
        return N2, fb, EN, EB, N2, z02, mlin2, mgap2, EN, Ez
    fa = np.empty((C, n2 * K, d))
    EA = np.empty((C, n2 * K, d))
    for c in range(C):
        for j in range(n2):
            for k in range(K):
                for q in range(d):
                    fa[c, j * K + k, q] = N2[c, j, q]
                    EA[c, j * K + k, q] = EN[c, j, q]
    return fa, fb, EA, EB, N2, z02, mlin2, mgap2, EN, Ez
