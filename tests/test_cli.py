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
