"""``report.md``: the claim table, every check and negative control, the derivations, the real-data study."""

from __future__ import annotations

import json

from ..fileformat import atomic_write_text

__all__ = ["write_report"]


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, dict)):
        text = json.dumps(v, default=str)
        return text if len(text) <= 160 else text[:157] + "…"
    return str(v)


def _details(item: dict) -> str:
    skip = {"name", "kind", "passed", "refuted"}
    return "; ".join(f"{k} = {_fmt(v)}" for k, v in item.items() if k not in skip)


def write_report(out, header: dict, entries: list[dict], data: dict | None, proofs: list) -> None:
    from proofs.render import result_markdown

    L = ["# cpa-theory reproduce — report", "",
         f"Scale `{header['config']['scale']}`, seed {header['config']['seed']}, dtype {header['dtype']}, "
         f"backend {header['backend']} ({header['device']}, {header['devices']} device(s)), git "
         f"`{header['git_revision'][:12]}`; versions: "
         + ", ".join(f"{k} {v}" for k, v in header["versions"].items()) + ".", "",
         "## Claims", "", "| claim | status | negative control | evidence (kind, with numbers) | seconds |",
         "|---|---|---|---|---|"]
    for e in entries:
        kind = "; ".join(e.get("evidence", [])) or "—"
        L.append(f"| **{e['claim']}** {e['title']} | {e['status']} | {e['negative_control']} | {kind} | "
                 f"{e['seconds']:.1f} |")
    L.append("")
    for e in entries:
        L += [f"## {e['claim']} — {e['title']}", "", f"**Statement.** {e['statement']}", "",
              "**Verdict.** " + ("pass" if e["status"] == "pass" else "FAIL") + ": "
              + ("; ".join(e.get("evidence", [])) or "—") + ".", "",
              "**Assumptions.** " + "; ".join(e["assumptions"]), "", "| check | kind | result | details |",
              "|---|---|---|---|"]
        for c in e["checks"]:
            L.append(f"| {c['name']} | {c['kind']} | {'pass' if c['passed'] else '**FAIL**'} | {_details(c)} |")
        L += ["", "| negative control (must be rejected) | result | details |", "|---|---|---|"]
        for n in e["negatives"]:
            L.append(f"| {n['name']} | {'refuted' if n['refuted'] else '**NOT refuted**'} | {_details(n)} |")
        L.append("")
        for fig in e["figures"]:
            L += [f"![{e['claim']}]({fig})", ""]
        L += [f"Tests: {', '.join(e['tests'])}", ""]
    if data is not None:
        L += ["## Real data: local region density over training", "",
              "Exact certified counts at held-out points: moons with the vertex counter, digits (64-d) with the "
              "LP counter; hitting numbers by C4 (layer 1) and C9 (layer 2 inside certified parent regions).", "",
              "| dataset | step | mode | accuracy | r | D_r | h (layer 1) | inside parent | h (layer 2) | certified |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for r in data["moons"]["rows"] + data["digits"]["rows"]:
            L.append(f"| {r['dataset']} | {r['step']} | {r['mode']} | {r['accuracy']:.3f} | {r['radius']:g} | "
                     f"{r['D_r']:.2f} | {r['hits_layer1']:.2f} | {_fmt(r.get('fraction_inside_parent', '—'))} | "
                     f"{_fmt(r.get('hits_layer2_inside_parent', '—'))} | {r['certified']} |")
        L += ["", "| mode (moons, trained) | r | D_r | per volume | certified |", "|---|---|---|---|---|"]
        for r in data["moons"]["by_radius"]:
            L.append(f"| {r['mode']} | {r['radius']:g} | {r['D_r']:.2f} | {r['per_volume']:.1f} | {r['certified']} |")
        L.append("")
        for fig in data["figures"]:
            L += [f"![{fig}]({fig})", ""]
    if proofs:
        L += ["## Symbolic derivations", ""]
        L += [result_markdown(p) for p in proofs]
    atomic_write_text(out / "report.md", "\n".join(L) + "\n")
