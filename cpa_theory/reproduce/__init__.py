"""``cpa-theory reproduce``: check every claim C1–C9 and write a report directory.

DIR/header.json   versions, device, dtype, seed, scale, claims, git revision, configuration hash
DIR/claims/CN.json one finished claim (atomic; a rerun with the same configuration skips it: resumable)
DIR/phase/         the C7 sweep's run directory (resumable on its own)
DIR/realdata.json  the real-data study (moons, digits) — written when all claims are selected
DIR/results.json   the INTERFACE list: {"claim", "status": pass|fail, "negative_control": refuted|not-refuted, …}
DIR/report.md      claim table, derivations, numbers, figures (PNG files beside it)
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from ..claims import select
from ..errors import CPAInputError
from ..fileformat import atomic_write_text
from ..inputs import read_json
from .checks import SCALES, Context, _plain

__all__ = ["reproduce", "all_passed", "SCALES"]


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


_OUTPUTS = ("header.json", "claims", "phase", "realdata.json", "results.json", "report.md")


def _prepare(out: Path, header: dict, fresh: bool) -> None:
    path = out / "header.json"
    if fresh and path.exists():  # only what reproduce itself writes is removed
        import shutil

        for name in _OUTPUTS:
            p = out / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        for png in out.glob("*.png"):
            png.unlink()
    if path.exists():
        old = read_json(path, "run header", fix="the report directory is damaged: choose a new --out")
        if old.get("config_hash") != header["config_hash"]:
            raise CPAInputError(f"{str(out)!r} holds a reproduce run with another configuration "
                                f"({old.get('config')}); add --fresh to replace it, or choose a new --out.")
        return
    try:
        (out / "claims").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CPAInputError(f"cannot create the report directory {str(out)!r} ({exc.strerror}); choose another "
                            "--out.") from None
    atomic_write_text(path, json.dumps(header, indent=1) + "\n")


def _entry(claim, ev, seconds: float) -> dict:
    passed = all(c["passed"] for c in ev.checks) and bool(ev.checks)
    refuted = all(n["refuted"] for n in ev.negatives) and bool(ev.negatives)
    return _plain({"claim": claim.id, "title": claim.title, "status": "pass" if passed else "fail",
                   "negative_control": "refuted" if refuted else "not-refuted", "statement": claim.statement,
                   "assumptions": list(claim.assumptions), "checks": ev.checks, "negatives": ev.negatives,
                   "numbers": ev.numbers, "figures": ev.figures, "seconds": round(seconds, 2),
                   "tests": list(claim.tests)})


def reproduce(out="runs/reproduce", claims=None, scale: str = "small", seed: int = 0, progress: bool = False,
              log=print, fresh: bool = False) -> tuple[list[dict], dict | None]:
    """Run the selected claims (default all) and, with all claims, the real-data study; write ``out``.

    Returns ``(entries, realdata)``: the results.json entries and the real-data study (None when skipped)."""
    import jax

    if scale not in SCALES:
        raise CPAInputError(f"unknown scale {scale!r}; use one of {', '.join(SCALES)}.")
    if not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)  # float64 for everything that certifies
    chosen = select(claims)
    ids = [c.id for c in chosen]
    with_data = claims is None or len(ids) == len(select(None))
    out = Path(out)
    header = _header(scale, seed, ids, with_data)
    _prepare(out, header, fresh)
    from proofs.registry import select as select_obligations

    names = sorted({n for c in chosen for n in (*c.proofs, *c.negative_proofs)})
    proofs = {o.claim: o.check(seed=seed) for o in select_obligations(None) if o.claim in names}
    ctx = Context(scale, seed, out, proofs)
    entries = []
    for claim in chosen:
        path = out / "claims" / f"{claim.id}.json"
        if path.exists():
            entries.append(read_json(path, "finished claim", fix="delete that file to recompute the claim"))
            log(f"{claim.id}: done earlier ({entries[-1]['status']}), skipped")
            continue
        t0 = time.perf_counter()
        log(f"{claim.id}: {claim.title} …")
        ev = claim.check(ctx, progress=progress) if claim.id == "C7" else claim.check(ctx)
        entry = _entry(claim, ev, time.perf_counter() - t0)
        atomic_write_text(path, json.dumps(entry, indent=1) + "\n")
        entries.append(entry)
        log(f"{claim.id}: {entry['status']}, negative control {entry['negative_control']} "
            f"({entry['seconds']:.1f} s)")
    data = None
    if with_data:
        path = out / "realdata.json"
        if path.exists():
            data = read_json(path, "real-data result", fix="delete that file to recompute the study")
            log("real data: done earlier, skipped")
        else:
            t0 = time.perf_counter()
            log("real data: training MLPs on moons and digits, measuring exact local density …")
            from .realdata import run_realdata

            data = _plain(run_realdata(ctx))
            data["seconds"] = round(time.perf_counter() - t0, 2)
            atomic_write_text(path, json.dumps(data, indent=1) + "\n")
            log(f"real data: done ({data['seconds']:.1f} s)")
    atomic_write_text(out / "results.json", json.dumps(entries, indent=1) + "\n")
    from .report import write_report

    write_report(out, header, entries, data, [proofs[n] for n in names])
    return entries, data


def all_passed(entries: list[dict], data: dict | None = None) -> bool:
    return all(e["status"] == "pass" and e["negative_control"] == "refuted" for e in entries) and \
        (data is None or data.get("certified", True))
