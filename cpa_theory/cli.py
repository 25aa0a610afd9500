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
    def error(self, message):  # argparse's own usage errors are bad input too: exit 2
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"cpa-theory: error: {message} (see --help)\n")


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


def _parse_center(text: str) -> list[list[float]]:
    """A centre "x1,x2,..." or a file of centres (one per line, or a JSON list of lists)."""
    from .errors import CPAInputError

    path = Path(text)
    if path.is_file():
        content = path.read_text().strip()
        if content.startswith("["):
            try:
                rows = json.loads(content)
            except json.JSONDecodeError as exc:
                raise CPAInputError(f"centre file {text!r} is not valid JSON ({exc.msg}); give a list of lists "
                                    "or one comma-separated centre per line.") from None
            if rows and not isinstance(rows[0], list):
                rows = [rows]
        else:
            rows = [line.replace(",", " ").split() for line in content.splitlines() if line.strip()]
        out = []
        for row in rows:
            try:
                out.append([float(v) for v in row])
            except (TypeError, ValueError):
                raise CPAInputError(f"centre file {text!r} has a non-numeric row {row!r}.") from None
        return out
    try:
        return [[float(v) for v in text.split(",")]]
    except ValueError:
        raise CPAInputError(f"--center {text!r} is neither numbers like 0.5,-1 nor an existing file of centres.") from None


def _centers(args, dim: int):
    import numpy as np

    from .errors import NonFiniteError, ShapeError

    rows = [row for text in args.center for row in _parse_center(text)]
    for row in rows:
        if len(row) != dim:
            raise ShapeError(f"centre {row} has {len(row)} coordinates; the network's input dimension is {dim}.")
        if not all(np.isfinite(row)):
            raise NonFiniteError(f"centre {row} contains NaN or inf; give finite coordinates.")
    single = len(args.center) == 1 and not Path(args.center[0]).is_file()
    return np.asarray(rows, dtype=np.float64), single


def _parse_radius(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"radius {text!r} is not a number") from None


def _print(obj, as_json: bool, table) -> None:
    if as_json:
        print(json.dumps(obj))
    else:
        table(obj)


# -- info ----------------------------------------------------------------
def cmd_info(args) -> int:
    import numpy as np

    from .fileformat import load_network
    from .hyperplanes import HyperplaneStatus, switching_hyperplanes

    net = load_network(args.network)
    cond = net.condition()
    hp = switching_hyperplanes(cond, 0)
    layers = []
    for i, layer in enumerate(net.layers):
        bn = layer.batchnorm
        layers.append({"layer": i, "in": layer.in_dim, "out": layer.out_dim,
                       "batchnorm": None if bn is None else bn.mode,
                       "activation": layer.activation.name, "breakpoints": list(layer.activation.breakpoints)})
    neurons = []
    for i in range(hp.num_neurons):
        for k in range(hp.breakpoints.size):
            row = {"neuron": i, "breakpoint": float(hp.breakpoints[k]),
                   "status": HyperplaneStatus(hp.status[i, k]).name.lower(),
                   "offset": float(hp.offsets[i, k]), "distance_from_anchor": float(hp.signed_distances()[i, k])}
            if hp.tau is not None:
                row["tau"] = float(hp.tau[i, k])
                row["s"] = float(hp.scale[i])
            neurons.append(row)
    out = {"input_dim": net.input_dim, "widths": list(net.widths), "layers": layers,
           "batch_size": None if net.batch is None else int(net.batch.shape[0]),
           "anchor": hp.anchor.tolist(), "first_layer_hyperplanes": neurons}

    def table(o):
        print(f"input_dim {o['input_dim']}, widths {o['widths']}, batch size {o['batch_size']}")
        for l in o["layers"]:
            print(f"  layer {l['layer']}: {l['in']} -> {l['out']}, BN {l['batchnorm']}, {l['activation']} "
                  f"(breakpoints {l['breakpoints']})")
        print(f"first-layer anchor (batch centroid in train mode): {np.round(hp.anchor, 6).tolist()}")
        print(f"{'neuron':>6} {'t_k':>8} {'status':>14} {'offset':>12} {'dist':>12}" + (f" {'tau':>10}" if hp.tau is not None else ""))
        for r in o["first_layer_hyperplanes"]:
            line = f"{r['neuron']:>6} {r['breakpoint']:>8.3g} {r['status']:>14} {r['offset']:>12.5g} {r['distance_from_anchor']:>12.5g}"
            if "tau" in r:
                line += f" {r['tau']:>10.4g}"
            print(line)

    _print(out, args.json, table)
    return EXIT_OK


# -- hits ----------------------------------------------------------------
def cmd_hits(args) -> int:
    from .fileformat import load_network
    from .hyperplanes import switching_hyperplanes
    from .windows import Window, WindowRelation, window_relations

    net = load_network(args.network)
    centers, single = _centers(args, net.input_dim)
    Window(centers[0], args.radius, args.p)  # validates radius / p with a clear message
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
def cmd_count(args) -> int:
    from .density import count_many
    from .fileformat import load_network
    from .windows import Window

    net = load_network(args.network)
    centers, single = _centers(args, net.input_dim)
    Window(centers[0], args.radius)  # validates the radius with a clear message
    progress = len(centers) > 1 and not args.json
    if args.scheduler:  # a Dask cluster (issue #15): an address, or local:N
        from .distributed import dask_client

        with dask_client(args.scheduler) as client:
            rows = count_many(net, centers, args.radius, client=client, progress=progress, out=args.out,
                               fresh=args.fresh)
    elif args.workers and args.workers > 1 and len(centers) > 1:
        from .density import worker_pool

        with worker_pool(args.workers) as executor:  # Ctrl-C cancels the queued windows and stops the workers
            rows = count_many(net, centers, args.radius, executor=executor, progress=progress, out=args.out,
                               fresh=args.fresh)
    else:
        rows = count_many(net, centers, args.radius, progress=progress, out=args.out,
                               fresh=args.fresh)
    out = rows[0] if single else rows

    def table(o):
        for r in rows:
            print(f"centre {r['center']}  r={r['radius']}  regions {r['regions']}  linear regions "
                  f"{r['linear_regions']}  first-layer hits {r['hits']}  certified {r['certified']}")

    _print(out, args.json, table)
    return EXIT_OK if all(r["certified"] for r in rows) else EXIT_CHECK_FAILED


# -- plot ----------------------------------------------------------------
def cmd_plot(args) -> int:
    from .fileformat import load_network

    net = load_network(args.network)
    centers, _ = _centers(args, net.input_dim)
    if len(centers) != 1:
        from .errors import ShapeError

        raise ShapeError(f"plot draws one window; got {len(centers)} centres: give one --center x1,x2.")
    from .plotting import plot_partition_comparison

    plot_partition_comparison(net, centers[0], args.radius, args.out)
    print(args.out)
    return EXIT_OK


# -- sweep ---------------------------------------------------------------
def cmd_sweep(args) -> int:
    from numerics.sweep import SweepConfig, run_sweep

    from .errors import CPAInputError

    try:
        doc = json.loads(Path(args.config).read_text())
    except FileNotFoundError:
        raise CPAInputError(f"sweep configuration {args.config!r} does not exist; check the path.") from None
    except json.JSONDecodeError as exc:
        raise CPAInputError(f"sweep configuration {args.config!r} is not valid JSON ({exc.msg}).") from None
    if not isinstance(doc, dict):
        raise CPAInputError("a sweep configuration is a JSON object of settings (see numerics/sweep.py).")
    cfg = SweepConfig.from_dict(doc)
    if args.scheduler:  # the exact counts (count_networks) on a Dask cluster (issue #15)
        from .distributed import dask_client

        with dask_client(args.scheduler) as client:
            rows = run_sweep(cfg, args.out, progress=not args.json, fresh=args.fresh, client=client)
    else:
        rows = run_sweep(cfg, args.out, progress=not args.json, fresh=args.fresh)
    if args.json:
        print(json.dumps(rows))
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
def cmd_prove(args) -> int:
    from proofs.registry import run

    results = run(args.claim)
    if args.markdown:
        from proofs.render import results_markdown

        from .outputs import write_output

        write_output(args.markdown, results_markdown(results))
    if args.json:
        print(json.dumps([r.as_json() for r in results]))
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
    from .reproduce import all_passed, reproduce

    claims = [c.strip() for c in args.claims.split(",") if c.strip()] if args.claims else None
    log = (lambda *a, **k: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    entries, data = reproduce(args.out, claims=claims, scale=args.scale, seed=args.seed, progress=not args.json,
                              log=log, fresh=args.fresh)
    if args.json:
        print(json.dumps([{k: e[k] for k in ("claim", "status", "negative_control", "seconds")} for e in entries]))
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
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name, help_, example, func):
        p = sub.add_parser(name, help=help_, description=help_, epilog=f"example:\n  {example}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
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

    p = add("count", "exact certified region counts N, N_lin and first-layer hits in l-inf windows",
            "cpa-theory count examples/bn_relu_2d.json --center 0.92,-0.43 --radius 0.5 --json", cmd_count)
    p.add_argument("network", help="cpa-network/1 JSON file")
    p.add_argument("--center", action="append", required=True,
                   help="window centre x1,x2,... (repeatable) or a file of centres")
    p.add_argument("--radius", type=_parse_radius, required=True, help="window radius r > 0")
    p.add_argument("--workers", type=int, default=1, help="processes for many centres (default 1)")
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

    p = add("sweep", "Monte Carlo BN-vs-no-BN hitting numbers over a grid (JAX, sharded, resumable)",
            "cpa-theory sweep examples/sweeps/small.json --out runs/sweep1", cmd_sweep)
    p.add_argument("config", help="JSON object of SweepConfig settings")
    p.add_argument("--out", required=True, help="run directory (a rerun resumes it)")
    p.add_argument("--fresh", action="store_true", help="replace an earlier sweep in --out (removes only the files "
                   "cpa-theory wrote there)")
    p.add_argument("--json", action="store_true", help="print the rows as one JSON document")
    p.add_argument("--scheduler", metavar="ADDRESS", help="exact counts (count_networks) on a Dask cluster: a scheduler address "
                   "(tcp://HOST:8786) or local:N for N local worker processes (pip install -e '.[dask]')")

    p = add("prove", "check the symbolic derivations of C1-C4, C8, C9 and refute their negative controls",
            "cpa-theory prove --claim C3 --json", cmd_prove)
    p.add_argument("--claim", action="append", help="claim id (repeatable), e.g. C3; default all")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--markdown", metavar="FILE", help="also write the derivations as Markdown with LaTeX")

    p = add("reproduce", "check every claim C1-C9 (proofs, certificates, Monte Carlo, exact counts, negative "
            "controls), train on real data, write a report", "cpa-theory reproduce --scale small --out runs/repro",
            cmd_reproduce)
    p.add_argument("--claims", help="comma-separated claim ids, e.g. C5,C7 (default: all, plus the real-data study)")
    p.add_argument("--scale", default="small", choices=("small", "full"),
                   help="small: minutes on a laptop CPU (default); full: larger sweeps, for a GPU")
    p.add_argument("--out", default="runs/reproduce", help="report directory (a rerun resumes it)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    p.add_argument("--fresh", action="store_true", help="discard an earlier run in --out instead of resuming it")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of the table")

    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(_glue_negative_values(sys.argv[1:] if argv is None else list(argv)))
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    from .errors import CPAInputError

    try:
        return args.func(args)
    except CPAInputError as exc:
        if args.debug:
            raise
        print(f"cpa-theory: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # e.g. piped into `head`: not an error of ours
        sys.stdout = open(os.devnull, "w")
        return EXIT_OK
    except KeyboardInterrupt:
        print("cpa-theory: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # internal error: exit 3, one line unless --debug
        if args.debug:
            raise
        print(f"cpa-theory: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
