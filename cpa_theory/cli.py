"""The ``cpa-theory`` command line (INTERFACE.md).

Exit codes: 0 success; 1 a claim or check failed; 2 bad input (one-line
message naming the fix, no traceback unless ``--debug``); 3 internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage errors are bad input too: exit 2, one line (no usage dump)
        self.exit(EXIT_BAD_INPUT, f"cpa-theory: error: {_one_line(message)} (see --help)\n")


_NUMBER = r"(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|inf|infinity|nan)"
_NUMBER_LIST = re.compile(rf"-{_NUMBER}(?:,[-+]?{_NUMBER})*", re.IGNORECASE)  # "-1.8,-2.3", "-1e-3", "-inf,0"


def _glue_negative_values(argv: list[str]) -> list[str]:
    """``--center -1.8,-2.3`` → ``--center=-1.8,-2.3``: argparse takes a token starting with '-' that is not a
    plain negative number for an option, so the documented ``--opt X1,X2,...`` form failed for a negative
    first coordinate (or ``--radius -1e-3``). A long option followed by a number list gets it as its value."""
    out, i = [], 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            return out + argv[i:]
        if tok.startswith("--") and "=" not in tok and i + 1 < len(argv) and _NUMBER_LIST.fullmatch(argv[i + 1]):
            out.append(f"{tok}={argv[i + 1]}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


#: error lines are cut here: a message must fit a terminal line or two, whatever the input was
_MAX_MESSAGE = 400


def _one_line(text) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _parse_center(text: str) -> tuple[list[list[float]], bool]:
    """A centre "x1,x2,..." or a file of centres (one per line, or a JSON list of lists).

    Returns ``(rows, from_file)``. File contents are never quoted in messages (a wrong path such as
    /etc/passwd must not be echoed)."""
    from .errors import InputFileError
    from .inputs import check_numbers, parse_json, read_user_text, short

    if os.path.lexists(text):
        shown = short(text, 120)
        content = read_user_text(text, "centre file").strip()
        if not content:
            raise InputFileError(f"centre file {shown} is empty; give one centre per line (x1,x2,...) or a JSON "
                                 "list of lists.")
        if content.startswith("["):
            rows = parse_json(content, f"centre file {shown}")
            if not isinstance(rows, list) or not rows:
                raise InputFileError(f"centre file {shown} holds an empty list; give at least one centre, e.g. "
                                     "[[0.5, -1.0]].")
            if not any(isinstance(r, list) for r in rows):
                rows = [rows]
            for i, row in enumerate(rows):
                if not isinstance(row, list) or not row:
                    raise InputFileError(f"centre file {shown}: entry {i} is not a non-empty list of numbers; give "
                                         "a JSON list of lists such as [[0.5, -1.0], [1, 2]].")
                check_numbers(row, f"centre file {shown}, entry {i},", InputFileError)
            return [[float(v) for v in row] for row in rows], True
        out = []
        for lineno, line in enumerate(content.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                out.append([float(v) for v in line.replace(",", " ").split()])
            except ValueError:
                raise InputFileError(f"centre file {shown}, line {lineno}, is not comma- or space-separated "
                                     "numbers; give one centre per line (x1,x2,...).") from None
        if not out:
            raise InputFileError(f"centre file {shown} holds no centres; give one centre per line (x1,x2,...).")
        return out, True
    try:
        return [[float(v) for v in text.split(",")]], False
    except ValueError:
        raise InputFileError(f"--center {short(text, 60)} is neither numbers like 0.5,-1 nor an existing file of "
                             "centres.") from None


def _centers(args, dim: int):
    import numpy as np

    from .errors import NonFiniteError, ShapeError
    from .inputs import short

    rows, files = [], 0
    for text in args.center:
        got, from_file = _parse_center(text)
        rows.extend(got)
        files += from_file
    for row in rows:
        if len(row) != dim:
            raise ShapeError(f"centre {short(row)} has {len(row)} coordinates; the network's input dimension is {dim}.")
        if not all(np.isfinite(row)):
            raise NonFiniteError(f"centre {short(row)} contains NaN or inf; give finite coordinates.")
    single = len(args.center) == 1 and not files
    return np.asarray(rows, dtype=np.float64), single


def _parse_radius(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"radius {text!r} is not a number") from None


def _parse_workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--workers {text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"--workers must be >= 1 (got {n}); use 1 to count in this process")
    return n


def _parse_centres(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--centres {text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"--centres must be >= 1 (got {n}): the number of --data rows to centre on")
    return n


def _parse_jobs(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--jobs {text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"--jobs must be >= 1 (got {n}); use 1 to count in this process")
    return n


def _parse_seed(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed {text!r} is not a whole number") from None
    if not 0 <= n < 2**32:
        raise argparse.ArgumentTypeError(f"--seed must be in 0..2^32-1 (got {n}); give a non-negative seed")
    return n


def _check_radius(args, centers) -> float:
    """The radius in the range the toolkit computes with (see ``inputs.check_radius``)."""
    from .inputs import check_radius

    import numpy as np

    return check_radius(args.radius, np.abs(centers).max(axis=0) if len(centers) else None, centers.shape[1])


def _dump(obj) -> str:
    """The one JSON printer: real JSON only (NaN or infinity in a result is a bug, exit 3)."""
    from .errors import CPAInternalError

    try:
        return json.dumps(obj, allow_nan=False)
    except ValueError:
        raise CPAInternalError("a result holds NaN or infinity, which JSON cannot carry") from None


def _print(obj, as_json: bool, table) -> None:
    if as_json:
        print(_dump(obj))
    else:
        table(obj)


# -- info ----------------------------------------------------------------
def _bn_label(bn) -> str:
    if bn is None:
        return "no BN"
    return "BN train (batch statistics)" if bn.mode == "train" else "BN eval (running statistics)"


def cmd_info(args) -> int:
    import numpy as np

    from .fileformat import load_network
    from .hyperplanes import HyperplaneStatus, switching_hyperplanes

    net = load_network(args.network)
    hp = switching_hyperplanes(net.condition(), 0)
    layers = []
    for i, layer in enumerate(net.layers):
        bn = layer.batchnorm
        layers.append({"layer": i, "in": layer.in_dim, "out": layer.out_dim,
                       "batchnorm": None if bn is None else bn.mode,
                       "activation": layer.activation.name, "breakpoints": list(layer.activation.breakpoints)})
    # whole arrays once (a row loop calling signed_distances() per row was quadratic in the width)
    status = [HyperplaneStatus(v).name.lower() for v in range(len(HyperplaneStatus))]
    dist = hp.signed_distances()
    n, K = hp.offsets.shape
    cols = {"neuron": np.repeat(np.arange(n), K).tolist(), "breakpoint": np.tile(hp.breakpoints, n).tolist(),
            "status": [status[v] for v in np.asarray(hp.status).reshape(-1)],
            "offset": hp.offsets.reshape(-1).tolist(), "distance_from_anchor": dist.reshape(-1).tolist()}
    if hp.tau is not None:
        cols["tau"] = hp.tau.reshape(-1).tolist()
        cols["s"] = np.repeat(hp.scale, K).tolist()
    neurons = [dict(zip(cols, vals)) for vals in zip(*cols.values())]
    first_bn = net.layers[0].batchnorm
    anchor_kind = "batch centroid" if first_bn is not None and first_bn.mode == "train" else "origin"
    out = {"input_dim": net.input_dim, "widths": list(net.widths), "layers": layers,
           "batch_size": None if net.batch is None else int(net.batch.shape[0]),
           "anchor": hp.anchor.tolist(), "anchor_kind": anchor_kind, "first_layer_hyperplanes": neurons}

    def table(o):
        batch = f", batch of {o['batch_size']} points" if o["batch_size"] is not None else ", no batch"
        print(f"input_dim {o['input_dim']}, widths {o['widths']}{batch}")
        for l, layer in zip(o["layers"], net.layers):
            print(f"  layer {l['layer']}: {l['in']} -> {l['out']}, {_bn_label(layer.batchnorm)}, {l['activation']} "
                  f"(breakpoints {l['breakpoints']})")
        if anchor_kind == "batch centroid":
            print(f"first-layer anchor (batch centroid x̄): {np.round(hp.anchor, 6).tolist()}")
        else:
            print("first-layer anchor: the origin (layer 0 has no train-mode BN)")
        print(f"{'neuron':>6} {'t_k':>8} {'status':>14} {'offset':>12} {'dist':>12}" + (f" {'tau':>10}" if hp.tau is not None else ""))
        lines = []
        for r in o["first_layer_hyperplanes"]:
            line = f"{r['neuron']:>6} {r['breakpoint']:>8.3g} {r['status']:>14} {r['offset']:>12.5g} {r['distance_from_anchor']:>12.5g}"
            if "tau" in r:
                line += f" {r['tau']:>10.4g}"
            lines.append(line)
        print("\n".join(lines))

    _print(out, args.json, table)
    return EXIT_OK


# -- hits ----------------------------------------------------------------
def cmd_hits(args) -> int:
    from .fileformat import load_network
    from .hyperplanes import switching_hyperplanes
    from .windows import Window, WindowRelation, window_relations

    net = load_network(args.network)
    centers, single = _centers(args, net.input_dim)
    _check_radius(args, centers)
    Window(centers[0], args.radius, args.p)  # validates p with a clear message
    hp = switching_hyperplanes(net.condition(), 0)
    rel = window_relations(hp, centers, args.radius, args.p)
    rel32 = _float32_relations(hp, centers, args.radius, args.p)
    rows = [{"center": c.tolist(), "radius": args.radius, "p": args.p if args.p != float("inf") else "inf",
             "hits": int((r == WindowRelation.CUTS).sum()), "touches": int((r == WindowRelation.TOUCHES).sum()),
             "switching_sets": int(hp.regular.sum()),
             "float32_disagreements": int(((r != r32) & hp.regular[None]).sum())}
            for c, r, r32 in zip(centers, rel, rel32)]
    out = rows[0] if single else rows

    def table(o):
        for r in rows:
            print(f"centre {r['center']}  r={r['radius']}  hits {r['hits']} / {r['switching_sets']}"
                  f"  (touching only: {r['touches']})")

    _print(out, args.json, table)
    return EXIT_OK


def _float32_relations(hp, centers, radius, p):
    """The same C4 decisions evaluated in float32 (reported, so float32 users see what they would lose)."""
    import numpy as np

    from .windows import classify_slack, dual_norm, hyperplane_residual, window_slack

    f = np.float32
    n32, a32, o32 = hp.normals.astype(f), hp.anchor.astype(f), hp.offsets.astype(f)
    resid = hyperplane_residual(n32, a32, o32, centers.astype(f))
    return classify_slack(window_slack(dual_norm(n32, p)[None, :, None], resid, f(radius)))


# -- count ---------------------------------------------------------------
#: the text table lists at most this many windows (all of them are in --json)
_MAX_ROWS_SHOWN = 20


def cmd_count(args) -> int:
    from .density import count_many
    from .fileformat import load_network

    net = load_network(args.network)
    centers, single = _centers(args, net.input_dim)
    _check_radius(args, centers)
    workers = args.workers
    cpus = os.cpu_count() or 1
    if workers > cpus:
        print(f"cpa-theory: note: --workers {workers} is more than the {cpus} CPUs here; using {cpus}.",
              file=sys.stderr)
        workers = cpus
    workers = min(workers, len(centers))
    progress = len(centers) > 1
    if args.scheduler:  # a Dask cluster (issue #15): an address, or local:N
        from .distributed import dask_client

        with dask_client(args.scheduler) as client:
            rows = count_many(net, centers, args.radius, client=client, progress=progress, out=args.out,
                              fresh=args.fresh)
    elif workers > 1:
        from .density import worker_pool

        with worker_pool(workers) as executor:  # Ctrl-C cancels the queued windows and stops the workers
            rows = count_many(net, centers, args.radius, executor=executor, progress=progress, out=args.out,
                              fresh=args.fresh)
    else:
        rows = count_many(net, centers, args.radius, progress=progress, out=args.out, fresh=args.fresh)
    out = rows[0] if single else rows

    def table(o):
        for r in rows[:_MAX_ROWS_SHOWN]:
            print(f"centre {r['center']}  r={r['radius']}  regions {r['regions']}  linear regions "
                  f"{r['linear_regions']}  first-layer hits {r['hits']}  certified {r['certified']}")
        if len(rows) > _MAX_ROWS_SHOWN:
            print(f"… {len(rows) - _MAX_ROWS_SHOWN} more windows (--json lists all)")
        if len(rows) > 1:
            n = len(rows)
            print(f"over {n} windows of radius {args.radius:g} (95 % CIs, t with {n - 1} df; certified "
                  f"{sum(r['certified'] for r in rows)}/{n}):")
            from numerics.stats import describe_ci, mean_ci95

            for key, name in (("regions", "D_r = mean N"), ("linear_regions", "mean N_lin"), ("hits", "mean h")):
                m, ci = mean_ci95([r[key] for r in rows])
                print(f"  {name:<13} {m:>9.4g}   {describe_ci(ci, n)}")

    _print(out, args.json, table)
    return EXIT_OK if all(r["certified"] for r in rows) else EXIT_CHECK_FAILED


# -- plot ----------------------------------------------------------------
def cmd_plot(args) -> int:
    from .fileformat import load_network
    from .inputs import check_output_path

    check_output_path(args.out, "--out", ".png")  # before any work: a directory or a missing folder is bad input
    net = load_network(args.network)
    centers, _ = _centers(args, net.input_dim)
    if len(centers) != 1:
        from .errors import ShapeError

        raise ShapeError(f"plot draws one window; got {len(centers)} centres: give one --center x1,x2.")
    _check_radius(args, centers)
    from .plotting import plot_partition_comparison

    plot_partition_comparison(net, centers[0], args.radius, args.out)
    print(args.out)
    return EXIT_OK


# -- slice ---------------------------------------------------------------
def _read_npy(path, what: str):
    """A .npy array from a user file: the regular-file and size checks of ``inputs.read_user_bytes``, then
    ``np.load(allow_pickle=False)`` (object arrays, i.e. pickles, are refused)."""
    import io

    import numpy as np

    from .errors import InputFileError
    from .inputs import read_user_bytes, short

    data = read_user_bytes(path, what)
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        kind = "holds pickled objects" if "pickle" in str(exc).lower() else "is not a .npy array file"
        raise InputFileError(f"{what} {short(str(path), 120)} {kind}; save a numeric array with np.save(path, X)."
                             ) from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise InputFileError(f"{what} {short(str(path), 120)} is not a numeric array (np.load gave "
                             f"{type(arr).__name__}); save a numeric array with np.save(path, X).")
    return np.asarray(arr, dtype=np.float64)


def _parse_indices(text: str) -> list[int]:
    try:
        idx = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--through {text!r} is not three whole numbers like 0,5,9") from None
    if len(idx) != 3:
        raise argparse.ArgumentTypeError(f"--through needs three row indices like 0,5,9; got {len(idx)}")
    return idx


def _slice_points(args, d: int):
    """The three points of a --through/--points slice, flat ``(3, d)``, and their labels."""
    import numpy as np

    from .errors import NonFiniteError, ShapeError
    from .inputs import short

    if args.through is not None:
        if args.data is None:
            raise ShapeError("--through i,j,k picks rows of a data file: add --data X.npy.")
        X = _read_npy(args.data, "data file")
        if X.ndim < 2:
            raise ShapeError(f"data file holds an array of shape {X.shape}; give one row per point, (n, d) or "
                             "(n, *input_shape).")
        n = X.shape[0]
        X = X.reshape(n, -1)
        bad = [i for i in args.through if not -n <= i < n]
        if bad:
            raise ShapeError(f"--through indices {bad} are out of range for {n} data rows; use 0..{n - 1}.")
        if len(set(i % n for i in args.through)) < 3:
            raise ShapeError(f"--through {args.through} repeats a row; give three different rows.")
        P, labels = X[args.through], [f"#{i}" for i in args.through]
    else:
        if str(args.points).endswith(".npy"):
            P = _read_npy(args.points, "points file")
            P = P.reshape(P.shape[0], -1) if P.ndim >= 2 else P.reshape(1, -1)
        else:
            rows, _ = _parse_center(args.points)
            if len({len(r) for r in rows}) > 1:
                raise ShapeError(f"points file {short(args.points, 120)} has rows of different lengths; give three "
                                 f"points of {d} coordinates.")
            P = np.asarray(rows, dtype=np.float64)
        if P.shape[0] != 3:
            raise ShapeError(f"points file {short(args.points, 120)} holds {P.shape[0]} points; give exactly three.")
        labels = ["p1", "p2", "p3"]
    if P.shape[1] != d:
        raise ShapeError(f"the slice's points have {P.shape[1]} coordinates; the network's input has {d} values "
                         "(flattened).")
    if not np.all(np.isfinite(P)):
        raise NonFiniteError("the slice's points contain NaN or inf; give finite data.")
    return P, labels


def cmd_slice(args) -> int:
    import numpy as np

    from .errors import NetworkFormatError, ShapeError, WindowError
    from .fileformat_v2 import load_any_network
    from .inputs import read_user_bytes
    from .slices import count_on_slice, random_slice, slice_through_points
    from .slice_views import as_convnet

    if args.centres is not None or args.centres_file is not None:
        return _cmd_slice_density(args)
    if args.jobs is not None:
        raise ShapeError("--jobs belongs to the density mode (--centres N or --centres-file); one slice is counted in "
                         "this process.")
    given = sum(x is not None for x in (args.through, args.points, args.random))
    if given != 1:
        raise ShapeError("choose one slice: --through i,j,k --data X.npy, --points FILE, or --random K --center "
                         "x1,x2,...")
    if args.out:
        from .inputs import check_output_path

        check_output_path(args.out, "--out", ".png")  # before any work
    read_user_bytes(args.network, "network file", NetworkFormatError)  # regular file, size cap (no FIFO hang)
    net = as_convnet(load_any_network(args.network))
    d = net.input_dim
    if not (np.isfinite(args.margin) and args.margin >= 0):
        raise WindowError(f"--margin must be a finite number >= 0; got {args.margin!r}.")
    labels = None
    if args.random is not None:
        import jax

        if not 1 <= args.random <= 4:
            raise ShapeError(f"--random {args.random}: exact slices have k = 1 … 4 dimensions.")
        if not args.center:
            raise ShapeError("--random K needs the slice centre: add --center x1,x2,... (or a file of one centre).")
        centers, _ = _centers(args, d)
        if len(centers) != 1:
            raise ShapeError(f"--random draws one slice; got {len(centers)} centres: give one --center.")
        radius = 1.0 if args.radius is None else args.radius
        if not (np.isfinite(radius) and radius > 0):
            raise WindowError(f"--radius must be a finite number > 0; got {radius!r}.")
        sl = random_slice(centers[0], args.random, key=jax.random.PRNGKey(args.seed), radius=radius)
    else:
        if args.center or args.radius is not None:
            raise ShapeError("--center and --radius belong to --random; a slice through three points is centred "
                             "at their centroid and sized by --margin.")
        P, labels = _slice_points(args, d)
        sl = slice_through_points(*P, margin=args.margin)
    res = count_on_slice(net, sl)
    out = {"regions": res.regions, "linear_regions": res.linear_regions, "certified": res.certified,
           "complete": res.complete, "k": sl.k, "radius": sl.radius, "x0": sl.x0.tolist(),
           "basis": sl.V.T.tolist(), "points": sl.points.tolist()}
    if args.out:
        from .slice_views import plot_slice_views

        views = plot_slice_views(net, sl, args.out, point_labels=labels)
        out["views"] = [None if v is None else {k: v[k] for k in ("view", "regions", "linear_regions", "certified")}
                        for v in views]
        out["out"] = str(args.out)

    def table(o):
        print(f"{o['k']}-D slice, t in [-{o['radius']:.4g}, {o['radius']:.4g}]^{o['k']}: regions {o['regions']}  "
              f"linear regions {o['linear_regions']}  certified {o['certified']}  complete {o['complete']}")
        for v in o.get("views", ()):
            if v is not None:
                print(f"  {v['view']:<6} regions {v['regions']}  linear regions {v['linear_regions']}")
        if "out" in o:
            print(o["out"])

    _print(out, args.json, table)
    return EXIT_OK if res.certified and res.complete else EXIT_CHECK_FAILED


def _cmd_slice_density(args) -> int:
    """``slice --centres N | --centres-file IDX.npy --data X.npy``: the slice density (``slices.slice_density``):
    one random k-dim slice through each chosen data row (k = --random, default 2; window [−r, r]^k, r = --radius,
    default 1; independent keys split from --seed), exact certified counts, their mean with a t-based 95 % CI,
    counted in --jobs processes."""
    import math

    import jax
    import numpy as np

    from .density import worker_pool
    from .errors import NetworkFormatError, ShapeError, WindowError
    from .fileformat_v2 import load_any_network
    from .inputs import read_user_bytes, short
    from .slice_views import as_convnet
    from .slices import MAX_SLICE_DIM, slice_density

    if args.centres is not None and args.centres_file is not None:
        raise ShapeError("give one of --centres N (the first N rows of --data) and --centres-file IDX.npy.")
    for flag, val in (("--through", args.through), ("--points", args.points), ("--center", args.center),
                      ("--out", args.out)):
        if val is not None:
            raise ShapeError(f"{flag} does not go with --centres/--centres-file (a random slice through each of many "
                             "data rows); drop it, or drop --centres to count one slice.")
    if args.data is None:
        raise ShapeError("--centres/--centres-file choose rows of --data: add --data X.npy.")
    read_user_bytes(args.network, "network file", NetworkFormatError)
    net = as_convnet(load_any_network(args.network))
    d = net.input_dim
    X = _read_npy(args.data, "--data file")
    X = X.reshape(X.shape[0], -1) if X.ndim >= 1 and X.shape[0] else X.reshape(0, -1)
    if X.shape[1] != d:
        raise ShapeError(f"--data rows have {X.shape[1]} values; the network's input has {d} (flattened).")
    n = X.shape[0]
    if args.centres_file is not None:
        raw = _read_npy(args.centres_file, "--centres-file")
        if raw.ndim != 1 or raw.size == 0 or not np.all(raw == np.round(raw)):
            raise ShapeError(f"--centres-file {short(str(args.centres_file), 120)} must hold a non-empty 1-D array of "
                             "row indices (whole numbers), e.g. np.save(path, np.arange(50)).")
        idx = raw.astype(np.int64)
        if idx.min() < 0 or idx.max() >= n:
            raise ShapeError(f"--centres-file holds row indices out of range 0..{n - 1} (--data has {n} rows).")
    else:
        if args.centres > n:
            raise ShapeError(f"--centres {args.centres} is more than the {n} rows of --data; give at most {n}.")
        idx = np.arange(args.centres)
    k = 2 if args.random is None else args.random
    if not 1 <= k <= MAX_SLICE_DIM:
        raise ShapeError(f"--random {k}: exact slices have k = 1 … {MAX_SLICE_DIM} dimensions.")
    radius = 1.0 if args.radius is None else args.radius
    if not (np.isfinite(radius) and radius > 0):
        raise WindowError(f"--radius must be a finite number > 0; got {radius!r}.")
    if not np.all(np.isfinite(X[idx])):
        raise ShapeError("the chosen --data rows contain NaN or inf; give finite data.")
    jobs = 1 if args.jobs is None else args.jobs
    cpus = os.cpu_count() or 1
    if jobs > cpus:
        print(f"cpa-theory: note: --jobs {jobs} is more than the {cpus} CPUs here; using {cpus}.", file=sys.stderr)
        jobs = cpus
    jobs = min(jobs, len(idx))
    key = jax.random.PRNGKey(args.seed)
    if jobs > 1:
        with worker_pool(jobs) as executor:  # Ctrl-C cancels the queued slices and stops the workers
            res = slice_density(net, X[idx], radius=radius, key=key, k=k, executor=executor)
    else:
        res = slice_density(net, X[idx], radius=radius, key=key, k=k)
    lo, hi = res["ci"]
    finite = math.isfinite(lo) and math.isfinite(hi)
    out = {"mode": "density", "centres": idx.tolist(), "counts": [int(c) for c in res["counts"]], "mean": res["mean"],
           "ci": [lo, hi] if finite else None, "confidence": res["confidence"], "k": k, "radius": float(radius),
           "seed": args.seed, "certified": res["certified"]}

    def table(o):
        from numerics.stats import describe_ci

        ci = "n/a (one centre)" if o["ci"] is None else describe_ci(o["ci"], len(o["centres"]))
        print(f"slice density over {len(o['centres'])} centres (random {o['k']}-D slices, t in [-{o['radius']:g}, "
              f"{o['radius']:g}]^{o['k']}, seed {o['seed']}): mean regions {o['mean']:.4g}, 95 % CI {ci}, "
              f"certified {o['certified']}")

    _print(out, args.json, table)
    return EXIT_OK if res["certified"] else EXIT_CHECK_FAILED


# -- sweep ---------------------------------------------------------------
def cmd_sweep(args) -> int:
    from numerics.sweep import SweepConfig, run_sweep

    from .errors import ConfigError
    from .inputs import read_json

    doc = read_json(args.config, "sweep configuration", ConfigError)
    cfg = SweepConfig.from_dict(doc)
    if args.scheduler:  # the exact counts (count_networks) on a Dask cluster (issue #15)
        from .distributed import dask_client

        with dask_client(args.scheduler) as client:
            rows = run_sweep(cfg, args.out, progress=True, fresh=args.fresh, client=client)
    else:
        rows = run_sweep(cfg, args.out, progress=True, fresh=args.fresh)
    if args.json:
        print(_dump(rows))
    else:
        counted = any("n_bn_mean" in r for r in rows)
        extra = f" {'E[N_BN]':>8} {'E[N_plain]':>10}" if counted else ""
        print(f"{'B':>4} {'sigma_b':>8} {'r':>6} {'D':>6} {'E[h_BN]':>9} {'E[h_plain]':>11} {'C6 bound':>9}{extra}")
        for r in rows:
            dist = "-" if r["distance"] is None else f"{r['distance']:.3g}"
            counts = f" {r['n_bn_mean']:>8.2f} {r['n_plain_mean']:>10.2f}" if counted else ""
            print(f"{r['batch_size']:>4} {r['bias_scale']:>8.3g} {r['radius']:>6.3g} {dist:>6} "
                  f"{r['h_bn_mean']:>9.2f} {r['h_plain_mean']:>11.2f} {r['c6_bound_h_plain']:>9.2f}{counts}")
        print(f"rows: {Path(args.out) / 'results.jsonl'}")
    return EXIT_OK


# -- prove ---------------------------------------------------------------
def _claim_ids(values) -> list[str] | None:
    """Claim ids from repeatable options that may hold comma lists ("C1,C3" or "C1 C3")."""
    ids = [c.strip() for v in values or () for c in v.replace(" ", ",").split(",") if c.strip()]
    return ids or None


def cmd_prove(args) -> int:
    from proofs.registry import run

    if args.markdown:
        from .inputs import check_output_path

        check_output_path(args.markdown, "--markdown", ".md")  # before the proofs run
    results = run(_claim_ids(args.claim))
    if args.markdown:
        from proofs.render import results_markdown

        from .outputs import write_output

        write_output(args.markdown, results_markdown(results))
    if args.json:
        print(_dump([r.as_json() for r in results]))
    else:
        print(f"{'claim':<22} {'status':<8} {'expected':<9} {'seconds':>8}  statement")
        for r in results:
            mark = "" if r.ok else "  <-- FAILED"
            print(f"{r.claim:<22} {r.status.value:<8} {'refuted' if r.negative else 'proved':<9} "
                  f"{r.seconds:>8.2f}  {r.statement[:70]}{mark}")
        print(f"total {sum(r.seconds for r in results):.2f} s; "
              f"{sum(r.ok for r in results)}/{len(results)} as expected")
    return EXIT_OK if all(r.ok for r in results) else EXIT_CHECK_FAILED


# -- reproduce -----------------------------------------------------------
def cmd_reproduce(args) -> int:
    from .progress import show_progress
    from .reproduce import all_passed, reproduce

    claims = _claim_ids([args.claims]) if args.claims else None
    log = (lambda *a, **k: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    entries, data = reproduce(args.out, claims=claims, scale=args.scale, seed=args.seed, progress=show_progress(),
                              log=log, fresh=args.fresh)
    if args.json:
        print(_dump([{k: e[k] for k in ("claim", "status", "negative_control", "seconds")} for e in entries]))
    else:
        print(f"{'claim':<6} {'status':<7} {'negative control':<17} {'seconds':>8}  title")
        for e in entries:
            print(f"{e['claim']:<6} {e['status']:<7} {e['negative_control']:<17} {e['seconds']:>8.1f}  {e['title']}")
        if data is not None:
            print(f"real data: {'all counts certified' if data['certified'] else 'UNCERTIFIED counts'} "
                  f"({data['seconds']:.1f} s)")
        print(f"report: {Path(args.out) / 'report.md'}")
    return EXIT_OK if all_passed(entries, data) else EXIT_CHECK_FAILED


# -- parser ----------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cpa-theory", description=(
        "Training-time BatchNorm and the local affine-region partition of piecewise-affine networks "
        "(arXiv 2605.04946)."), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  cpa-theory hits examples/bn_relu_2d.json --center 0.2,0.1 --radius 0.5 --json")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors (exit codes unchanged)")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"cpa-theory {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name, help_, example, func):
        p = sub.add_parser(name, help=help_, description=help_, epilog=f"example:\n  {example}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks on errors (exit codes unchanged)")
        p.set_defaults(func=func)
        return p

    p = add("info", "describe a cpa-network/1 file and its first-layer switching hyperplanes",
            "cpa-theory info examples/bn_relu_2d.json", cmd_info)
    p.add_argument("network", help="cpa-network/1 JSON file")
    p.add_argument("--json", action="store_true", help="print one JSON document")

    p = add("hits", "first-layer hitting numbers h(f; W) by the exact window criterion (C4)",
            "cpa-theory hits examples/bn_relu_2d.json --center 0.2,0.1 --radius 0.5 --json", cmd_hits)
    p.add_argument("network", help="cpa-network/1 JSON file")
    p.add_argument("--center", action="append", required=True,
                   help="window centre x1,x2,... (repeatable) or a file of centres")
    p.add_argument("--radius", type=_parse_radius, required=True, help="window radius r > 0")
    p.add_argument("--p", type=float, default=float("inf"), help="window norm (default inf: the l-inf box)")
    p.add_argument("--json", action="store_true", help="print one JSON document")

    from .regions import MAX_VERTEX_DIM

    p = add("count", "exact certified region counts N, N_lin and first-layer hits in l-inf windows (input "
            f"dimension <= {MAX_VERTEX_DIM}: vertex enumeration; beyond, use numerics.lp_regions.count_regions_lp)",
            "cpa-theory count examples/bn_relu_2d.json --center 0.92,-0.43 --radius 0.5 --json", cmd_count)
    p.add_argument("network", help="cpa-network/1 JSON file")
    p.add_argument("--center", action="append", required=True,
                   help="window centre x1,x2,... (repeatable) or a file of centres")
    p.add_argument("--radius", type=_parse_radius, required=True, help="window radius r > 0")
    p.add_argument("--workers", type=_parse_workers, default=1,
                   help="processes for many centres (default 1; at most the CPU count)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="count on a Dask cluster: a scheduler address "
                   "(tcp://HOST:8786) or local:N for N local worker processes (pip install -e '.[dask]')")
    p.add_argument("--out", metavar="DIR", help="resumable run directory: finished chunks of windows are kept "
                   "there and a rerun of the same command counts only the rest")
    p.add_argument("--fresh", action="store_true", help="with --out: replace an earlier count of other settings "
                   "(removes only the files cpa-theory wrote there)")
    p.add_argument("--json", action="store_true", help="print one JSON document")

    p = add("plot", "draw a 2-D window's partition: train-mode BN vs the same weights without BN (PNG)",
            "cpa-theory plot examples/bn_relu_2d.json --center 0.92,-0.43 --radius 1 --out partition.png", cmd_plot)
    p.add_argument("network", help="cpa-network/1 JSON file (input dimension 2)")
    p.add_argument("--center", action="append", required=True, help="window centre x1,x2")
    p.add_argument("--radius", type=_parse_radius, required=True, help="window radius r > 0")
    p.add_argument("--out", default="partition.png", help="output PNG (written atomically)")

    p = add("slice", "exact certified region count on a k-dim slice through data (any cpa-network/1 or /2 file; "
            "train-mode BN frozen on the file's batch); --out draws train-mode BN vs eval mode vs BN removed",
            "cpa-theory slice examples/tiny_cnn.json --through 0,1,2 --data examples/tiny_cnn_points.npy --json",
            cmd_slice)
    p.add_argument("network", help="cpa-network/1 or cpa-network/2 JSON file")
    p.add_argument("--through", type=_parse_indices, metavar="I,J,K",
                   help="the plane through rows I, J, K of --data (centred at their centroid)")
    p.add_argument("--data", metavar="X.npy", help="data rows (n, d) or (n, *input_shape), read without pickles")
    p.add_argument("--points", metavar="FILE", help="three points: .npy, a JSON list of lists or one x1,x2,... a line")
    p.add_argument("--random", type=int, metavar="K", help="a random K-dim slice (K = 1..4) through --center")
    p.add_argument("--center", action="append", help="with --random: the slice centre x1,x2,... or a file")
    p.add_argument("--radius", type=_parse_radius, help="with --random or --centres: half-width of the slice window (default 1)")
    p.add_argument("--seed", type=_parse_seed, default=0, help="with --random or --centres: PRNG seed (default 0)")
    p.add_argument("--margin", type=_parse_radius, default=0.1,
                   help="with three points: window half-width = (1 + margin) x the largest point coordinate (default 0.1)")
    p.add_argument("--out", metavar="PNG", help="also draw train-mode BN | eval mode | BN removed side by side")
    p.add_argument("--centres", type=_parse_centres, metavar="N",
                   help="density mode: a random slice (k = --random, default 2; half-width --radius, default 1) through "
                   "each of the first N rows of --data; prints the counts and their mean with a 95 %% CI")
    p.add_argument("--centres-file", metavar="IDX.npy", help="density mode: the rows of --data given by this 1-D "
                   "integer .npy array")
    p.add_argument("--jobs", type=_parse_jobs, metavar="J", help="density mode: count the slices in J processes")
    p.add_argument("--json", action="store_true", help="print one JSON document")

    p = add("sweep", "Monte Carlo BN-vs-no-BN hitting numbers over a grid (JAX, sharded, resumable)",
            "cpa-theory sweep examples/sweeps/small.json --out runs/sweep1", cmd_sweep)
    p.add_argument("config", help="JSON object of SweepConfig settings")
    p.add_argument("--out", required=True, help="run directory (a rerun resumes it)")
    p.add_argument("--fresh", action="store_true", help="replace an earlier sweep in --out (removes only the files "
                   "cpa-theory wrote there)")
    p.add_argument("--json", action="store_true", help="print the rows as one JSON document")
    p.add_argument("--scheduler", metavar="ADDRESS", help="exact counts (count_networks) on a Dask cluster: a scheduler address "
                   "(tcp://HOST:8786) or local:N for N local worker processes (pip install -e '.[dask]')")

    p = add("prove", "check the symbolic derivations of C1-C4, C8-C10 and refute their negative controls",
            "cpa-theory prove --claim C3 --json", cmd_prove)
    p.add_argument("--claim", "--claims", dest="claim", action="append",
                   help="claim ids, repeatable or comma-separated, e.g. C3 or C1,C3; default all")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--markdown", metavar="FILE", help="also write the derivations as Markdown with LaTeX")

    p = add("reproduce", "check every claim C1-C10 (proofs, certificates, Monte Carlo, exact counts, negative "
            "controls), train on real data, write a report", "cpa-theory reproduce --scale small --out runs/repro",
            cmd_reproduce)
    p.add_argument("--claims", help="comma-separated claim ids, e.g. C5,C7 (default: all, plus the real-data study)")
    p.add_argument("--scale", default="small", choices=("small", "full"),
                   help="small: minutes on a laptop CPU (default); full: larger sweeps, for a GPU")
    p.add_argument("--out", default="runs/reproduce", help="report directory (a rerun resumes it)")
    p.add_argument("--seed", type=_parse_seed, default=0, help="seed of every random draw, >= 0 (default 0)")
    p.add_argument("--fresh", action="store_true", help="discard an earlier run in --out instead of resuming it")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of the table")

    return parser


def _fs_error(exc: OSError) -> bool:
    """An OSError about the user's files (a directory given as a file, permissions, a full disk)."""
    import errno

    return exc.errno in (errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS,
                         errno.EEXIST, errno.ENOENT, errno.EDQUOT, errno.ENAMETOOLONG)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(_glue_negative_values(sys.argv[1:] if argv is None else list(argv)))
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    from .errors import CPAInputError, CPAInternalError

    if argv is None:  # the command line itself: SIGTERM (timeout, Slurm, systemd) unwinds like Ctrl-C
        _terminate_like_interrupt()
    try:
        if argv is None:  # the command line's own process: freed memory kept for reuse (cpa_theory.allocator)
            from .allocator import keep_freed_memory, wanted_by_the_command_line

            if wanted_by_the_command_line():
                keep_freed_memory()
        return args.func(args)
    except KeyboardInterrupt as exc:
        code = 143 if isinstance(exc, Terminated) else 130
        print(f"cpa-theory: {'terminated' if code == 143 else 'interrupted'}", file=sys.stderr)
        if argv is None:  # the command line itself (not a caller in this process)
            _end_after_interrupt(code)
        return code
    except BrokenPipeError:  # e.g. piped into `head`: not an error of ours
        sys.stdout = open(os.devnull, "w")
        return EXIT_OK
    except CPAInputError as exc:
        caught, code, line = exc, EXIT_BAD_INPUT, f"error: {exc}"
    except OSError as exc:
        caught = exc
        if not _fs_error(exc):
            code, line = EXIT_INTERNAL, _internal_line(exc)
        else:
            where = f" {exc.filename!r}" if exc.filename else ""
            code, line = EXIT_BAD_INPUT, (f"error: cannot use{where}: {exc.strerror or exc}; check the path and its "
                                          "permissions, or choose another location.")
    except CPAInternalError as exc:
        caught, code, line = exc, EXIT_INTERNAL, _internal_line(exc)
    except Exception as exc:  # noqa: BLE001 — anything else is a bug of ours: exit 3, never 2
        caught, code, line = exc, EXIT_INTERNAL, _internal_line(exc)
    if args.debug:  # the traceback, then the same line and the same exit code
        import traceback

        traceback.print_exception(caught)
    print(f"cpa-theory: {_one_line(line)}", file=sys.stderr)
    return code


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C: worker pools stop their workers
    (``density.worker_pool``), run directories release their locks, nothing is half-written; exit 143."""


def _terminate_like_interrupt() -> None:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        def raise_terminated(signum, frame):
            raise Terminated()

        signal.signal(signal.SIGTERM, raise_terminated)


def _end_after_interrupt(code: int = 130) -> None:
    """End the process with ``code`` (130, or 143 after SIGTERM) now, skipping interpreter shutdown, when JAX is
    loaded.

    An interrupted jitted call leaves XLA compiling on its own thread pool, and a normal shutdown then crashes
    in that thread (segfault, seen with Ctrl-C during `reproduce`'s JAX work). The sweep holds Ctrl-C until its
    JAX call returns (``progress.interrupts_deferred``); this is the net for every other JAX call. By now every
    ``with``/``finally`` block has run and results are written atomically, so nothing is lost by not shutting down.
    """
    if "jax" not in sys.modules:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _internal_line(exc) -> str:
    return (f"internal error (a bug, not your input): {type(exc).__name__}: {_one_line(exc)[:200]} — please report "
            "it to the cpa_theory maintainers with the command line and the output of the same command with --debug.")


if __name__ == "__main__":
    sys.exit(main())
