"""``cpa-theory reproduce``: check every claim C1–C10 and write a report directory.

DIR/header.json   versions, device, dtype, seed, scale, claims, git revision, configuration hash
DIR/claims/CN.json one finished claim (atomic; a rerun with the same configuration skips it: resumable)
DIR/phase/         the C7 sweep's run directory (resumable on its own)
DIR/realdata.json  the real-data study (moons, digits) — written when all claims are selected
DIR/cnn_study.json the trained-CNN study on digits (reproduce.cnn_study) — likewise; a measurement, no claim
DIR/results.json   the INTERFACE list: {"claim", "status": pass|fail, "negative_control": refuted|not-refuted, …}
DIR/report.md      claim table, derivations, numbers, figures (PNG files beside it)
DIR/.cpa-theory-run.jsonl  the manifest of every file above (cpa_theory.rundir): only those are ever
                   overwritten or, with ``fresh``, removed; a non-empty directory without it is refused
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from ..claims import select
from ..errors import CPAInputError, OutputError
from ..outputs import write_output
from ..rundir import claim_run_dir
from .common import SCALES, Context
from .common import plain as _plain

__all__ = ["reproduce", "all_passed", "SCALES", "check_function"]


def check_function(claim):
    """The numeric check of a registry claim (``claim.check_ref`` = "module:function"), imported lazily."""
    import importlib

    module, name = claim.check_ref.split(":")
    return getattr(importlib.import_module(module), name)


def _header(scale: str, seed: int, ids: list[str], with_data: bool) -> dict:
    import platform

    import jax
    import numpy as np
    import sympy

    import cpa_theory
    from numerics.sweep import _git_revision

    # the code's identity is part of the configuration: results of other code are never resumed
    cfg = {"scale": scale, "seed": seed, "claims": ids, "realdata": with_data, "version": cpa_theory.__version__,
           "git_revision": _git_revision()}
    return {"config": cfg, "config_hash": hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16],
            "dtype": "float64", "backend": jax.default_backend(),
            "device": str(jax.devices()[0].device_kind), "devices": len(jax.devices()), "platform": platform.platform(),
            "versions": {"cpa_theory": cpa_theory.__version__, "jax": jax.__version__, "numpy": np.__version__,
                         "sympy": sympy.__version__, "python": platform.python_version()},
            "git_revision": _git_revision()}


def _prepare(out: Path, header: dict, fresh: bool):
    """Claim ``out`` (cpa_theory.rundir: only a new, empty or own directory; ``fresh`` removes only the files
    an earlier run recorded in its manifest) and write the header; returns the locked run directory."""
    run = claim_run_dir(out, "reproduce", header["config_hash"], fresh=fresh)
    try:
        run.mkdir("claims")
        write_output(out / "header.json", json.dumps(header, indent=1) + "\n")
    except BaseException:
        run.release(failed=True)
        raise
    return run


def _load_owned(run, path: Path):
    """A result file an earlier run of this configuration wrote (None if absent); refuses foreign files."""
    raw = run.read_owned(path)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise OutputError(f"{str(path)!r} is not valid JSON; delete it to recompute that result, or add --fresh.") \
            from None


def _entry(claim, ev, seconds: float) -> dict:
    passed = all(c["passed"] for c in ev.checks) and bool(ev.checks)
    refuted = all(n["refuted"] for n in ev.negatives) and bool(ev.negatives)
    return _plain({"claim": claim.id, "title": claim.title, "status": "pass" if passed else "fail",
                   "negative_control": "refuted" if refuted else "not-refuted", "evidence": ev.summary,
                   "statement": claim.statement,
                   "assumptions": list(claim.assumptions), "checks": ev.checks, "negatives": ev.negatives,
                   "numbers": ev.numbers, "figures": ev.figures, "seconds": round(seconds, 2),
                   "tests": list(claim.tests)})


def reproduce(out="runs/reproduce", claims=None, scale: str = "small", seed: int = 0, progress: bool = False,
              log=print, fresh: bool = False) -> tuple[list[dict], dict | None]:
    """Run the selected claims (default all) and, with all claims, the real-data study; write ``out``.

    Returns ``(entries, realdata)``: the results.json entries and the real-data study (None when skipped), with
    the trained-CNN study under ``realdata["cnn"]`` and ``realdata["certified"]`` covering both."""
    from numerics.kernels import ensure_x64

    if scale not in SCALES:
        raise CPAInputError(f"unknown scale {scale!r}; use one of {', '.join(SCALES)}.")
    ensure_x64()  # float64 for everything that certifies
    chosen = select(claims)
    ids = [c.id for c in chosen]
    with_data = claims is None or len(ids) == len(select(None))
    out = Path(out)
    header = _header(scale, seed, ids, with_data)
    with _prepare(out, header, fresh) as run:
        return _run_claims(run, out, chosen, ids, with_data, header, scale, seed, progress, log)


def _run_claims(run, out, chosen, ids, with_data, header, scale, seed, progress, log):
    from proofs.registry import select as select_obligations

    names = sorted({n for c in chosen for n in (*c.proofs, *c.negative_proofs)})
    proofs = {o.claim: o.check(seed=seed) for o in select_obligations(None) if o.claim in names}
    ctx = Context(scale, seed, out, proofs)
    entries = []
    for claim in chosen:
        path = out / "claims" / f"{claim.id}.json"
        done = _load_owned(run, path)
        if done is not None:
            entries.append(done)
            log(f"{claim.id}: done earlier ({entries[-1]['status']}), skipped")
            continue
        t0 = time.perf_counter()
        log(f"{claim.id}: {claim.title} …")
        check = check_function(claim)
        ev = check(ctx, progress=progress) if claim.id == "C7" else check(ctx)
        entry = _entry(claim, ev, time.perf_counter() - t0)
        write_output(path, json.dumps(entry, indent=1) + "\n")
        entries.append(entry)
        log(f"{claim.id}: {entry['status']}, negative control {entry['negative_control']} "
            f"({entry['seconds']:.1f} s)")
    data = None
    if with_data:
        path = out / "realdata.json"
        data = _load_owned(run, path)
        if data is not None:
            log("real data: done earlier, skipped")
        else:
            t0 = time.perf_counter()
            log("real data: training MLPs on moons and digits, measuring exact local density …")
            from .realdata import run_realdata

            data = _plain(run_realdata(ctx))
            data["seconds"] = round(time.perf_counter() - t0, 2)
            write_output(path, json.dumps(data, indent=1) + "\n")
            log(f"real data: done ({data['seconds']:.1f} s)")
        cnn = cnn_study_result(run, ctx, log)
        data = {**data, "cnn": cnn, "certified": bool(data.get("certified", True) and cnn["certified"])}
    write_output(out / "results.json", json.dumps(entries, indent=1) + "\n")
    from .report import write_report

    write_report(out, header, entries, data, [proofs[n] for n in names], cnn=None if data is None else data["cnn"])
    return entries, data


def cnn_study_result(run, ctx, log=print) -> dict:
    """The trained-CNN study (``reproduce.cnn_study``): ``ctx.out/cnn_study.json`` if an earlier run of this
    configuration wrote it, else computed and written (figures beside it) through the run directory ``run``."""
    path = ctx.out / "cnn_study.json"
    done = _load_owned(run, path)
    if done is not None:
        log("CNN study: done earlier, skipped")
        return done
    log("CNN study: training small CNNs on digits with and without BN, exact counts on 2-D slices …")
    from .cnn_study import run_cnn_study

    cnn = _plain(run_cnn_study(ctx, log))
    write_output(path, json.dumps(cnn, indent=1) + "\n")
    log(f"CNN study: done ({cnn['seconds']:.1f} s)")
    return cnn


def all_passed(entries: list[dict], data: dict | None = None) -> bool:
    return all(e["status"] == "pass" and e["negative_control"] == "refuted" for e in entries) and \
        (data is None or data.get("certified", True))
