"""``report.md``: the claim table, every check and negative control, the derivations, the real-data study."""

from __future__ import annotations

import json
import math

from ..outputs import write_output

__all__ = ["write_report"]


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, dict)):
        text = json.dumps(v, default=str)
        return text if len(text) <= 160 else text[:157] + "…"
    return str(v)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")  # a pipe inside a table cell would end it


def _details(item: dict) -> str:
    skip = {"name", "kind", "passed", "refuted"}
    return _cell("; ".join(f"{k} = {_fmt(v)}" for k, v in item.items() if k not in skip))


def _ci(c) -> str:
    return "—" if not c else f"[{c[0]:.3f}, {c[1]:.3f}]"


def _ci2(c) -> str:
    """An interval with 2 decimals; '(no spread)' for a zero-width one, '' when there is none."""
    if not c or c[0] is None or not all(math.isfinite(v) for v in c):
        return ""
    return "(no spread)" if c[0] == c[1] else f"[{c[0]:.2f}, {c[1]:.2f}]"


def _num(v) -> str:
    return "none on the grid" if v is None else f"{v:.3f}"


def _c7_tables(num: dict) -> list[str]:
    """C7's crossover distances (h and N) and the N-vs-h disagreement, as tables with the setting."""
    L = [f"**Crossover distances** ({num.get('setting', '')}; D* = where E[BN] − E[no BN] turns ≤ 0, linear "
         "interpolation between grid points, 95 % percentile bootstrap over networks):", "",
         "| setting | σ_b | D*_h (Monte Carlo) | 95 % CI | exact D*_h (closed form) | exact, interpolated on the "
         "grid |",
         "|---|---|---|---|---|---|"]
    for t in num["crossovers_h"]:
        L.append(f"| {t['setting']} | {t['sigma_b']:g} | {_num(t['D_star_h'])} | {_ci(t['ci95'])} | "
                 f"{_num(t['exact_D_star_h'])} | {_num(t['exact_on_grid'])} |")
    L += ["", "| setting | σ_b | D*_N | 95 % CI | D*_h | 95 % CI | N_BN at D = 0 | E[N_plain] at D = 0 | "
          "E[h_plain] at D = 0 | N verdict at D = 0 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for t in num["crossovers_N"]:
        L.append(f"| {t['setting']} | {t['sigma_b']:g} | {_num(t['D_star_N'])} | {_ci(t['ci95_N'])} | "
                 f"{_num(t['D_star_h'])} | {_ci(t['ci95_h'])} | {t['N_BN_at_0']:.1f} | {t['E_N_plain_at_0']:.1f} | "
                 f"{t['E_h_plain_at_0']:.1f} | {t['verdict_N_at_0']} |")
    ex = num["example"]
    L += ["", f"**Where BN refines LESS by N even at the centroid** (THEORY's example; {ex['setting']}, d = 2, "
          f"n = 32, r = 0.2, B = 16, D = 0, σ_b = 0.1, {ex['networks']} networks): E[h_BN] = {ex['E_h_BN']:.0f} > "
          f"E[h_plain] = {ex['E_h_plain']:.2f} {_ci(ex['E_h_plain_ci95'])}, but N_BN = {ex['N_BN']:.0f} < "
          f"E[N_plain] = {ex['E_N_plain']:.1f} {_ci(ex['E_N_plain_ci95'])}; difference CI "
          f"{_ci(ex['N_difference_ci95'])}. Exact certified counts on the first {ex['counted_networks']} networks: "
          f"E[N_plain] = {ex['counted_E_N_plain']:.1f}, difference t₇ CI {_ci(ex['counted_N_difference_ci95_t7'])}. "
          "Rows of the N table with verdict 'plain' at D = 0 are the other places where this happens.", ""]
    return L


def _cnn_section(cnn: dict) -> list[str]:
    """The trained-CNN study (``reproduce.cnn_study``): a measurement with intervals, not a pass/fail claim."""
    cfg = cnn["config"]
    L = ["## Real data, convolutional: a trained CNN on digits (measurement, no claim)", "",
         f"{cfg['architecture']}, trained with and without BN in {cfg['framework']} ({cfg['steps']} Adam steps, "
         f"{cfg['seeds']} seeds; without BN from the same initial weights and minibatches). Modes: **train** = BN "
         f"conditioned on a real training batch of {cfg['train_batch']} digits, **eval** = running statistics, "
         "**plain** = the model trained without BN. Every count is an exact certified count of activation regions "
         "on a 2-D slice (an uncertified count stops the run); the trained parameters are converted into "
         f"`ConvNetwork` s and checked against the JAX forward (largest difference {cnn['max_conversion_error']:.1e}). "
         f"Measures: **slice** = N on the plane through three test digits ({cfg['slices']} triples; slice "
         f"half-widths {min(cfg['slice_radii']):.2f}–{max(cfg['slice_radii']):.2f}), **window** = N in W(0, r) of a "
         f"random 2-D slice through a test digit ({cfg['centres']} test digits). The same slices for every seed, "
         "mode and checkpoint (paired). CI (crossed): 95 % two-way random-effects interval over seeds and units "
         "(triples / test digits), Satterthwaite df; boot: 95 % pigeonhole bootstrap over seeds × units; seeds: t "
         "interval over the seeds' means. Test accuracy "
         "of a BN model: eval mode. At step 0 eval mode (running mean 0, variance 1, γ = 1, β = 0) is the no-BN "
         "model's initial network up to the factor 1/√(1 + ε), hence (almost always) the same counts.", "",
         "| measure | r | step | mode | test acc. | mean N | 95 % CI (crossed) | 95 % CI (boot, seeds × units) | "
         "95 % CI (t, seeds) | seeds' means |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in cnn["rows"]:
        L.append(f"| {r['measure']} | {_radius(r)} | {r['step']} | "
                 f"{r['mode']} | {r['test_accuracy']:.3f} | {r['mean']:.1f} | {_ci1(r['ci95'])} | "
                 f"{_ci1(r['ci95_boot'])} | {_ci1(r['ci95_t_seeds'])} | "
                 f"{', '.join(f'{v:.1f}' for v in r['seed_means'])} |")
    L += ["", "Effect sizes (paired per seed and unit; p: crossed random-effects test of mean difference = 0, Holm "
          "over all "
          f"{len(cnn['effects'])} comparisons):", "",
          "| measure | r | step | comparison | mean difference | 95 % CI (crossed) | 95 % CI (boot) | ratio of means "
          "| 95 % CI (boot) | p | Holm p |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in cnn["effects"]:
        L.append(f"| {e['measure']} | {_radius(e)} | {e['step']} | "
                 f"{e['comparison']} | {e['mean']:.1f} | {_ci1(e['ci95'])} | {_ci1(e['ci95_boot'])} | "
                 f"{e['ratio']:.3f} | {_ci(e['ratio_ci95'])} | {e['p']:.3g} | {e['p_holm']:.3g} |")
    L += ["", f"Study time: {cnn['seconds']:.1f} s.", ""]
    for fig in cnn["figures"]:
        L += [f"![{fig}]({fig})", ""]
    return L


def _radius(row) -> str:
    return "—" if row["radius"] is None else f"{row['radius']:g}"


def _ci1(c) -> str:
    return "—" if not c or c[0] is None else f"[{c[0]:.1f}, {c[1]:.1f}]"


def write_report(out, header: dict, entries: list[dict], data: dict | None, proofs: list, cnn: dict | None = None) \
        -> None:
    from proofs.render import result_markdown

    L = ["# cpa-theory reproduce — report", "",
         f"Scale `{header['config']['scale']}`, seed {header['config']['seed']}, dtype {header['dtype']}, "
         f"backend {header['backend']} ({header['device']}, {header['devices']} device(s)), git "
         f"`{header['git_revision'][:12]}`; versions: "
         + ", ".join(f"{k} {v}" for k, v in header["versions"].items()) + ".", "",
         "## Claims", "", "| claim | status | negative control | evidence (kind, with numbers) | seconds |",
         "|---|---|---|---|---|"]
    for e in entries:
        kind = ("; ".join(e.get("evidence", [])) or "—").replace("|", "\\|")  # a pipe would end the cell
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
            L.append(f"| {_cell(c['name'])} | {c['kind']} | {'pass' if c['passed'] else '**FAIL**'} | {_details(c)} |")
        L += ["", "| negative control (must be rejected) | result | details |", "|---|---|---|"]
        for n in e["negatives"]:
            L.append(f"| {_cell(n['name'])} | {'refuted' if n['refuted'] else '**NOT refuted**'} | {_details(n)} |")
        L.append("")
        if e["claim"] == "C7" and "crossovers_h" in e.get("numbers", {}):
            L += _c7_tables(e["numbers"])
        if e["claim"] == "C9" and "abs_delta_random" in e.get("numbers", {}):
            num = e["numbers"]
            L += ["**Transfer defect |δ_w| = |wᵀy⊥|/s** (layer-2 neurons, per certified parent region):", "",
                  "| networks | exact transfer certified | min | 10 % | median | 90 % | max |",
                  "|---|---|---|---|---|---|---|"]
            for name, key, ex in (("random, width 8 > d = 2", "abs_delta_random", "exact_transfer_random"),
                                  (f"trained on moons (accuracy {num['trained_accuracy']:.2f}), width 16",
                                   "abs_delta_trained", "exact_transfer_trained")):
                q = num[key]
                L.append(f"| {name} | {num[ex][0]} of {num[ex][1]} parent regions | {q['min']:.3g} | {q['q10']:.3g} | "
                         f"{q['median']:.3g} | {q['q90']:.3g} | {q['max']:.3g} |")
            L.append("")
        for fig in e["figures"]:
            L += [f"![{e['claim']}]({fig})", ""]
        L += [f"Tests: {', '.join(e['tests'])}", ""]
    if data is not None:
        L += ["## Real data: local region density over training", "",
              "Exact certified counts at held-out points: moons with the vertex counter, digits (64-d) with the "
              "LP counter; hitting numbers by C4 (layer 1) and C9 (layer 2 inside certified parent regions).", "",
              "D_r with its Student-t 95 % interval over the held-out points; the fraction of windows inside their "
              "layer-1 region with a Wilson 95 % interval.", "",
              "| dataset | step | mode | accuracy | r | D_r [95 % CI] | h (layer 1) | inside parent [95 % CI] | "
              "h (layer 2) | certified |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for r in data["moons"]["rows"] + data["digits"]["rows"]:
            inside = _fmt(r.get('fraction_inside_parent', '—'))
            if r.get("fraction_inside_parent_ci95"):
                inside += f" {_ci2(r['fraction_inside_parent_ci95'])}"
            L.append(f"| {r['dataset']} | {r['step']} | {r['mode']} | {r['accuracy']:.3f} | {r['radius']:g} | "
                     f"{r['D_r']:.2f} {_ci2(r.get('D_r_ci95'))} | {r['hits_layer1']:.2f} | {inside} | "
                     f"{_fmt(r.get('hits_layer2_inside_parent', '—'))} | {r['certified']} |")
        if data.get("effects"):
            L += ["", "Paired effects (the same held-out points in every mode; per-point differences of exact counts, "
                  "t interval; p: paired t-test, Holm over all "
                  f"{len(data['effects'])} comparisons):", "",
                  "| dataset | step | comparison | mean difference [95 % CI] | ratio of means | p | Holm p |",
                  "|---|---|---|---|---|---|---|"]
            for e in data["effects"]:
                L.append(f"| {e['dataset']} | {e['step']} | {e['comparison']} | {e['mean_difference']:.2f} "
                         f"{_ci2(e['ci95'])} | {e['ratio']:.3f} | {e['p']:.3g} | {e['p_holm']:.3g} |")
        L += ["", "| mode (moons, trained) | r | D_r [95 % CI] | per volume | certified |", "|---|---|---|---|---|"]
        for r in data["moons"]["by_radius"]:
            L.append(f"| {r['mode']} | {r['radius']:g} | {r['D_r']:.2f} {_ci2(r.get('D_r_ci95'))} | "
                     f"{r['per_volume']:.1f} | {r['certified']} |")
        L.append("")
        for fig in data["figures"]:
            L += [f"![{fig}]({fig})", ""]
    if cnn is not None:
        L += _cnn_section(cnn)
    if proofs:
        L += ["## Symbolic derivations", ""]
        L += [result_markdown(p) for p in proofs]
    write_output(out / "report.md", "\n".join(L) + "\n")
