"""The CLI contract of INTERFACE.md: JSON shapes and exit codes (run as a subprocess)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "bn_relu_2d.json"


def run(*args):
    return subprocess.run([sys.executable, "-m", "cpa_theory", *args], capture_output=True, text=True, cwd=ROOT)


def test_hits_json_single_centre():
    res = run("hits", str(EXAMPLE), "--center", "0.92,-0.43", "--radius", "0.2", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["hits"] == 8 and out["switching_sets"] == 8  # β = 0 ReLU, window around x̄: every neuron (C5)


def test_hits_json_many_centres_is_a_list_in_order(tmp_path):
    res = run("hits", str(EXAMPLE), "--center", "50,50", "--center", "0.92,-0.43", "--radius", "0.2", "--json")
    out = json.loads(res.stdout)
    assert [o["center"] for o in out] == [[50.0, 50.0], [0.92, -0.43]]
    assert out[1]["hits"] == 8 and out[0]["hits"] < 8
    f = tmp_path / "centres.txt"
    f.write_text("50,50\n0.92 -0.43\n")
    assert json.loads(run("hits", str(EXAMPLE), "--center", str(f), "--radius", "0.2", "--json").stdout) == out


def test_info_json():
    res = run("info", str(EXAMPLE), "--json")
    out = json.loads(res.stdout)
    assert out["widths"] == [2, 8, 8, 1] and len(out["first_layer_hyperplanes"]) == 8


@pytest.mark.parametrize("args, fix", [
    (["hits", "missing.json", "--center", "0,0", "--radius", "1"], "check the path"),
    (["hits", str(EXAMPLE), "--center", "0,0", "--radius", "-1"], "> 0"),
    (["hits", str(EXAMPLE), "--center", "0,0,0", "--radius", "1"], "input dimension"),
    (["hits", str(EXAMPLE), "--center", "a,b", "--radius", "1"], "numbers"),
    (["hits", str(EXAMPLE), "--center", "nan,0", "--radius", "1"], "finite"),
    (["hits", str(EXAMPLE), "--center", "0,0", "--radius", "abc"], "not a number"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_exits_2_with_one_line_and_no_traceback(args, fix):
    res = run(*args)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert fix in res.stderr
    assert "Traceback" not in res.stderr


def test_debug_shows_traceback():
    res = run("--debug", "hits", "missing.json", "--center", "0,0", "--radius", "1")
    assert res.returncode != 0 and "Traceback" in res.stderr


@pytest.mark.parametrize("cmd", ["info", "hits", "count", "plot", "sweep", "prove"])
def test_every_subcommand_help_has_an_example(cmd):
    res = run(cmd, "--help")
    assert res.returncode == 0 and "example:" in res.stdout and "cpa-theory " + cmd in res.stdout


def test_count_json_contract_single_and_many():
    res = run("count", str(EXAMPLE), "--center", "0.92,-0.43", "--radius", "0.5", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    for key, typ in (("regions", int), ("linear_regions", int), ("hits", int), ("certified", bool)):
        assert isinstance(out[key], typ)
    assert out["certified"] and out["hits"] == 8 and out["regions"] >= 1 + out["hits"]
    many = json.loads(run("count", str(EXAMPLE), "--center", "0.92,-0.43", "--center", "5,5", "--radius", "0.5",
                          "--json").stdout)
    assert isinstance(many, list) and many[0]["regions"] == out["regions"] and many[1]["center"] == [5.0, 5.0]


def test_count_bad_radius_and_dimension_exit_2():
    assert run("count", str(EXAMPLE), "--center", "0,0", "--radius", "0").returncode == 2
    assert run("count", str(EXAMPLE), "--center", "0,0,1", "--radius", "1").returncode == 2


def test_plot_writes_png(tmp_path):
    out = tmp_path / "p.png"
    res = run("plot", str(EXAMPLE), "--center", "0.92,-0.43", "--radius", "1", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_into_missing_folder_exits_2_and_writes_nothing(tmp_path):
    res = run("plot", str(EXAMPLE), "--center", "0,0", "--radius", "1", "--out", str(tmp_path / "no" / "p.png"))
    assert res.returncode == 2 and "does not exist" in res.stderr
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("args", [
    ["count", str(EXAMPLE), "--center", "0.92,-0.43", "--center", "0,0", "--radius", "0.5", "--json"],
    ["hits", str(EXAMPLE), "--center", "0.92,-0.43", "--radius", "0.5", "--json"],
    ["info", str(EXAMPLE), "--json"],
])
def test_json_is_byte_identical_across_runs(args):
    first, second = run(*args), run(*args)
    assert first.returncode == 0 and first.stdout == second.stdout and first.stdout


def test_hits_reports_float32_disagreements_far_from_origin(tmp_path):
    import numpy as np

    from cpa_theory import BatchNorm, Layer, Network, identity, relu, save_network

    rng = np.random.default_rng(5)
    n = 400
    batch = (rng.normal(size=(32, 2)) + 3000.0).astype(np.float32).astype(float)
    net = Network(2, (Layer(rng.normal(size=(n, 2)), np.zeros(n), relu(), BatchNorm(n, "train")),
                      Layer(np.ones((1, n)), [0.0], identity())), batch)
    path = tmp_path / "far.json"
    save_network(net, path)
    centres = tmp_path / "c.txt"
    centres.write_text("\n".join(",".join(map(repr, map(float, row))) for row in batch[:16]))
    rows = json.loads(run("hits", str(path), "--center", str(centres), "--radius", "0.3", "--json").stdout)
    assert all(isinstance(r["float32_disagreements"], int) for r in rows)


# -- issue #11: interrupts, progress, what a person sees (in-process where the process is not what is tested) ---
import io  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402

from cpa_theory import cli as _cli  # noqa: E402
from helpers import CLI_WITH_CTRL_C  # noqa: E402

TINY_SWEEP = {"d": 2, "width": 4, "networks": 2, "batch_sizes": [4], "bias_scales": [0.1], "radii": [0.1],
              "distances": [0.0, 1.0, 2.0]}


def run_main(capsys, *argv):
    try:
        code = _cli.main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_ctrl_c_during_a_sweep_exits_130_without_a_crash(tmp_path):
    # Ctrl-C used to land inside an XLA compile: "interrupted", then a segfault at interpreter exit (rc -11)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"d": 2, "width": 64, "networks": 256, "batch_sizes": [8, 16, 32, 64],
                               "bias_scales": [0.1, 1.0], "radii": [0.1, 0.2], "distances": [0.0, 1.0, 2.0, 4.0]}))
    out = tmp_path / "run"
    proc = subprocess.Popen(CLI_WITH_CTRL_C + ["sweep", str(cfg), "--out", str(out), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.time() + 60
    while not (out / "header.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.8)  # the first grid point is being traced or compiled now (on the old code: a crash about 1 in 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert "interrupted" in err and "Segmentation" not in err and "Fatal Python error" not in err


def test_ctrl_c_inside_a_jax_call_is_delivered_after_it_returns(monkeypatch):
    # deterministic version of the test above: the kernel call itself receives SIGINT
    import numpy as np

    import numerics.sweep as sweep

    finished = []

    def kernel(keys, *args):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the interrupt would land here, abandoning XLA's compile thread
        finished.append(True)
        return tuple(np.zeros(len(keys)) for _ in range(7))  # the kernel returns 7 arrays

    monkeypatch.setattr(sweep, "_point_kernel", lambda *a: kernel)
    cfg = sweep.SweepConfig.from_dict(TINY_SWEEP)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_point(cfg, sweep.grid_points(cfg)[0])
    assert finished == [True]


def test_info_computes_distances_once_not_per_row(capsys, monkeypatch):
    # `info` on a 100,000-neuron net was quadratic: signed_distances() was recomputed for every row
    from cpa_theory.hyperplanes import SwitchingHyperplanes

    calls = []
    original = SwitchingHyperplanes.signed_distances
    monkeypatch.setattr(SwitchingHyperplanes, "signed_distances", lambda self: calls.append(1) or original(self))
    code, out, _ = run_main(capsys, "info", EXAMPLE, "--json")
    assert code == 0 and len(json.loads(out)["first_layer_hyperplanes"]) == 8 and len(calls) == 1


def test_info_labels_follow_the_bn_mode(tmp_path, capsys):
    from cpa_theory import BatchNorm, Layer, Network, identity, relu, save_network

    for bn, label in ((BatchNorm(2, "eval", running_mean=[0, 0], running_var=[1, 1]), "BN eval"), (None, "no BN")):
        net = Network(2, (Layer([[1.0, 0.5], [0.2, -1.0]], [0.1, 0.0], relu(), bn),
                          Layer([[1.0, 1.0]], [0.0], identity())))
        save_network(net, tmp_path / "n.json")
        code, out, _ = run_main(capsys, "info", tmp_path / "n.json")
        assert code == 0 and label in out
        assert "centroid" not in out and "None" not in out and "no batch" in out


def test_sweep_progress_label_counts_finished_points(tmp_path, capsys, monkeypatch):
    import rich.progress

    labels = []
    for name in ("add_task", "update"):
        original = getattr(rich.progress.Progress, name)

        def spy(self, *a, _original=original, **k):
            labels.append(k.get("description") or (a[0] if a and isinstance(a[0], str) else None))
            return _original(self, *a, **k)

        monkeypatch.setattr(rich.progress.Progress, name, spy)
    monkeypatch.setattr(sys, "stderr", _Terminal())
    from numerics.sweep import SweepConfig, run_sweep

    run_sweep(SweepConfig.from_dict(TINY_SWEEP), tmp_path / "s", progress=True)
    labels = [label for label in labels if label]
    assert labels[0].endswith("0/3 points done") and labels[-1].endswith("3/3 points done"), labels
    assert "━" in sys.stderr.getvalue()  # drawn on (the fake terminal) stderr


def test_no_bar_frames_in_stdout_without_a_terminal(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(TINY_SWEEP))
    code, out, err = run_main(capsys, "sweep", cfg, "--out", tmp_path / "s")
    assert code == 0 and "━" not in out and "done" not in out and "━" not in err
    code, out, err = run_main(capsys, "count", EXAMPLE, "--center", "0,0", "--center", "1,1", "--radius", "0.3")
    assert code == 0 and "━" not in out + err and "counting" not in out


def test_json_run_shows_progress_on_stderr_only_on_a_terminal(tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(TINY_SWEEP))
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code = _cli.main(["sweep", str(cfg), "--out", str(tmp_path / "s"), "--json"])
    out = capsys.readouterr().out
    assert code == 0 and len(json.loads(out)) == 3 and "━" in terminal.getvalue()


def test_version_and_help_niceties(capsys):
    import cpa_theory

    code, out, _ = run_main(capsys, "--version")
    assert code == 0 and cpa_theory.__version__ in out
    code, out, _ = run_main(capsys, "count", "--help")
    assert code == 0 and "dimension <= 10" in " ".join(out.split())


def test_prove_accepts_a_comma_list_like_reproduce(capsys):
    code, out, _ = run_main(capsys, "prove", "--claims", "C1,C3", "--json")
    claims = {r["claim"].split("-")[0] for r in json.loads(out)}
    assert code == 0 and claims == {"C1", "C3"}


def test_count_text_summarises_many_centres_with_a_t_interval(capsys, tmp_path):
    centres = tmp_path / "c.txt"
    centres.write_text("0.92,-0.43\n0,0\n1,1\n")
    code, out, _ = run_main(capsys, "count", EXAMPLE, "--center", centres, "--radius", "0.5")
    rows = json.loads(run_main(capsys, "count", EXAMPLE, "--center", centres, "--radius", "0.5", "--json")[1])
    import numpy as np
    from scipy.stats import t

    n = np.array([r["regions"] for r in rows], float)
    half = t.ppf(0.975, 2) * n.std(ddof=1) / np.sqrt(3)
    assert code == 0 and "D_r = mean N" in out and f"{n.mean():.4g}" in out and f"{n.mean() + half:.4g}" in out
    # a measure without spread (the referee's "mean h 3 [3, 3]") is not printed as a 95 % interval
    h = [r["hits"] for r in rows]
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("mean h"))
    assert ("no spread" in line) == (len(set(h)) == 1) and "[3, 3]" not in line


def test_cli_json_is_real_json(capsys):
    def strict(text):
        return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))

    for argv in (["hits", EXAMPLE, "--center", "0,0", "--radius", "0.5", "--json"],
                 ["hits", EXAMPLE, "--center", "0,0", "--radius", "0.5", "--p", "2", "--json"],
                 ["count", EXAMPLE, "--center", "0,0", "--radius", "1e-11", "--json"],
                 ["info", EXAMPLE, "--json"]):
        code, out, err = run_main(capsys, *argv)
        assert code in (0, 1), err
        strict(out)


def _eval_and_plain_copies(net):
    import numpy as np

    from cpa_theory import BatchNorm, Layer, Network

    layers = []
    for l in net.layers:
        bn = l.batchnorm
        if bn is not None:
            n = bn.num_features
            bn = BatchNorm(n, "eval", bn.gamma, bn.beta, bn.eps, running_mean=np.full(n, 0.1), running_var=np.ones(n))
        layers.append(Layer(l.weight, l.bias, l.activation, bn))
    return Network(2, tuple(layers)), net.without_batchnorm()


def test_plot_figure_titles_say_the_bn_mode_used_with_labels_legend_and_no_warnings(monkeypatch):
    import warnings

    import cpa_theory.plotting as plotting
    from cpa_theory import load_network

    figures = []
    monkeypatch.setattr(plotting, "save_figure", lambda fig, out: figures.append(fig))
    net = load_network(EXAMPLE)
    eval_net, plain = _eval_and_plain_copies(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warnings (glyphs, layout) fail the test
        for n in (net, eval_net, plain):
            plotting.plot_partition_comparison(n, [0.92, -0.43], 0.6, "unused.png")
    titles = [[ax.get_title() for ax in fig.axes] for fig in figures]
    assert "train-mode BN conditioned on its batch, B = 16" in titles[0][0]
    assert "eval-mode BN" in titles[1][0] and "batch" not in titles[1][0]
    assert "no BN" in titles[2][0] and "batch" not in titles[2][0] and "no BN" in titles[2][1]
    for fig in figures:
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel() and ax.get_legend() is not None
    legend = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
    assert any("centroid" in t for t in legend) and any("switching" in t for t in legend)


def test_region_colours_are_a_function_of_the_affine_map():
    import numpy as np

    from cpa_theory import load_network
    from cpa_theory.plotting import _gradient_scale, _map_colours
    from cpa_theory.regions import count_regions

    regions = count_regions(load_network(EXAMPLE), [0.92, -0.43], 0.6, keep_regions=True).region_list
    colours = np.array(_map_colours(regions, _gradient_scale(regions)))
    maps = [np.round(np.asarray(r.out_A, float)[0], 9).tobytes() for r in regions]
    for i in range(len(regions)):
        for j in range(len(regions)):
            assert (maps[i] == maps[j]) <= bool(np.allclose(colours[i], colours[j]))
    assert len({c.tobytes() for c in colours}) > 1
    again = np.array(_map_colours(regions, _gradient_scale(regions)))
    assert np.array_equal(colours, again)  # no randomness
