"""Bad input: one test each; every error is typed and names the fix."""

import json

import numpy as np
import pytest

from cpa_theory import (ActivationError, BatchError, BatchNorm, BatchNormError, CPAInputError, Layer, Network,
                        NetworkFormatError, NonFiniteError, ShapeError, WindowError, identity, load_network,
                        network_from_dict, relu, save_network, switching_hyperplanes, window_hits)


def doc(**over):
    d = {"format": "cpa-network/1", "input_dim": 2, "layers": [
        {"weight": [[1.0, -0.5], [0.3, 2.0]], "bias": [0.1, -0.2],
         "batchnorm": {"mode": "train", "gamma": [1, 1], "beta": [0, 0]}, "activation": "relu"}],
        "batch": [[0.0, 0.1], [1.0, -0.2], [0.5, 0.5]]}
    d.update(over)
    return d


def layer_doc(**over):
    d = doc()
    d["layers"][0].update(over)
    return d


def test_all_errors_are_value_errors():
    for cls in (ActivationError, BatchError, BatchNormError, NetworkFormatError, NonFiniteError, ShapeError,
                WindowError):
        assert issubclass(cls, CPAInputError) and issubclass(cls, ValueError)


def test_nan_weight():
    with pytest.raises(NonFiniteError, match="finite"):
        network_from_dict(layer_doc(weight=[[float("nan"), 0.0], [0.0, 1.0]]))


def test_inf_bias():
    with pytest.raises(NonFiniteError, match="finite"):
        network_from_dict(layer_doc(bias=[float("inf"), 0.0]))


def test_nan_gamma():
    with pytest.raises(NonFiniteError):
        network_from_dict(layer_doc(batchnorm={"mode": "train", "gamma": [float("nan"), 1], "beta": [0, 0]}))


def test_bias_length_mismatch():
    with pytest.raises(ShapeError, match="one bias per output"):
        network_from_dict(layer_doc(bias=[0.0, 0.0, 0.0]))


def test_weight_input_dim_mismatch():
    with pytest.raises(ShapeError, match="out x in"):
        network_from_dict(layer_doc(weight=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))


def test_ragged_weight():
    with pytest.raises(ShapeError, match="rectangular"):
        network_from_dict(layer_doc(weight=[[1.0, 0.0], [1.0]]))


def test_gamma_length_mismatch():
    with pytest.raises(ShapeError, match="one entry per neuron"):
        network_from_dict(layer_doc(batchnorm={"mode": "train", "gamma": [1, 1, 1], "beta": [0, 0]}))


@pytest.mark.parametrize("bn, missing", [({"mode": "train", "beta": [0, 0]}, "gamma"),
                                         ({"mode": "train", "gamma": [1, 1]}, "beta"),
                                         ({"mode": "eval", "running_mean": [0, 0], "running_var": [1, 1]}, "gamma")])
def test_batchnorm_without_gamma_or_beta_is_refused_by_name(bn, missing):
    """Referee: a batchnorm without gamma/beta loaded silently with 1 and 0 (INTERFACE lists a default only for
    eps)."""
    with pytest.raises(NetworkFormatError, match=f"no '{missing}'"):
        network_from_dict(layer_doc(batchnorm=bn))


def test_leaky_relu_object_without_its_slope_is_refused():
    with pytest.raises(ActivationError, match="negative_slope"):
        network_from_dict(layer_doc(activation={"name": "leaky_relu"}))


def test_batch_of_one():
    with pytest.raises(BatchError, match="at least 2"):
        network_from_dict(doc(batch=[[0.0, 0.0]]))


def test_missing_batch_in_train_mode():
    d = doc()
    del d["batch"]
    with pytest.raises(BatchError, match="eval mode"):
        network_from_dict(d)


def test_batch_wrong_dimension():
    with pytest.raises(ShapeError, match="input dimension"):
        network_from_dict(doc(batch=[[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]))


def test_non_increasing_breakpoints():
    with pytest.raises(ActivationError, match="strictly increasing"):
        network_from_dict(layer_doc(activation={"name": "cpa", "breakpoints": [1.0, 0.0], "values": [0, 1],
                                                "left_slope": 0, "right_slope": 1}))


def test_equal_adjacent_slopes():
    with pytest.raises(ActivationError, match="not a breakpoint"):
        network_from_dict(layer_doc(activation={"name": "cpa", "breakpoints": [0.0], "values": [0.0],
                                                "left_slope": 1, "right_slope": 1}))


def test_unknown_activation():
    with pytest.raises(ActivationError, match="unknown activation"):
        network_from_dict(layer_doc(activation="swish"))


def test_unknown_bn_mode():
    with pytest.raises(BatchNormError, match="'train' or 'eval'"):
        network_from_dict(layer_doc(batchnorm={"mode": "inference", "gamma": [1, 1], "beta": [0, 0]}))


def test_missing_running_statistics():
    with pytest.raises(BatchNormError, match="running_mean"):
        network_from_dict(layer_doc(batchnorm={"mode": "eval", "gamma": [1, 1], "beta": [0, 0]}))


def test_negative_eps():
    with pytest.raises(BatchNormError, match=">= 0"):
        network_from_dict(layer_doc(batchnorm={"mode": "train", "gamma": [1, 1], "beta": [0, 0], "eps": -1e-5}))


def test_negative_running_var():
    with pytest.raises(BatchNormError, match="negative"):
        network_from_dict(layer_doc(batchnorm={"mode": "eval", "gamma": [1, 1], "beta": [0, 0],
                                                                "running_mean": [0, 0], "running_var": [-1, 1]}))


def test_wrong_format_tag():
    with pytest.raises(NetworkFormatError, match="cpa-network/1"):
        network_from_dict(doc(format="onnx"))


def test_unknown_layer_key():
    with pytest.raises(NetworkFormatError, match="unknown keys"):
        network_from_dict(layer_doc(kernel_size=3))


def test_malformed_json(tmp_path):
    path = tmp_path / "net.json"
    path.write_text(json.dumps(doc())[:-20])  # truncated
    with pytest.raises(NetworkFormatError, match="not valid JSON"):
        load_network(path)


def test_missing_file(tmp_path):
    with pytest.raises(NetworkFormatError, match="does not exist"):
        load_network(tmp_path / "nope.json")


def test_radius_not_positive():
    hp = switching_hyperplanes(network_from_dict(doc()))
    with pytest.raises(WindowError, match="> 0"):
        window_hits(hp, [0.0, 0.0], 0.0)


def test_center_of_wrong_dimension():
    hp = switching_hyperplanes(network_from_dict(doc()))
    with pytest.raises(ShapeError, match="input dimension"):
        window_hits(hp, [0.0, 0.0, 0.0], 1.0)


def test_forward_with_wrong_dimension():
    with pytest.raises(ShapeError, match="input dimension is 2"):
        network_from_dict(doc()).forward(np.zeros((3, 5)))


def test_save_into_missing_folder_leaves_nothing(tmp_path):
    net = network_from_dict(doc())
    with pytest.raises(CPAInputError, match="does not exist"):
        save_network(net, tmp_path / "missing" / "net.json")
    assert not (tmp_path / "missing").exists()


def test_save_failure_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "net.json"
    net = network_from_dict(doc())
    save_network(net, path)
    before = path.read_text()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr("cpa_theory.outputs.os.replace", boom)  # every writer goes through outputs.write_output
    with pytest.raises(RuntimeError):
        save_network(net, path)
    assert path.read_text() == before
    # no temporary file left (beside the file, only the folder's record of what cpa-theory wrote)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cpa-theory-outputs.jsonl", "net.json"]


def test_network_without_layers():
    with pytest.raises(ShapeError, match="at least one layer"):
        Network(2, ())


def test_eval_mode_needs_no_batch():
    bn = BatchNorm(2, "eval", running_mean=[0, 0], running_var=[1, 1])
    net = Network(2, (Layer(np.eye(2), np.zeros(2), relu(), bn), Layer(np.ones((1, 2)), [0.0], identity())))
    assert net.forward(np.zeros(2)).shape == (1, 1)


# -- the same catalogue through the command line: exit 2, one line naming the fix, no traceback -----------------
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = str(ROOT / "examples" / "bn_relu_2d.json")


def cli(*args):
    return subprocess.run([sys.executable, "-m", "cpa_theory", *args], capture_output=True, text=True, cwd=ROOT)


def assert_bad_input(res, fix):
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert fix in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) <= 2  # argparse adds a usage line


def write(tmp_path, doc_or_text):
    path = tmp_path / "net.json"
    path.write_text(doc_or_text if isinstance(doc_or_text, str) else json.dumps(doc_or_text))
    return str(path)


def test_cli_truncated_file(tmp_path):
    assert_bad_input(cli("count", write(tmp_path, json.dumps(doc())[:-15]), "--center", "0,0", "--radius", "1"),
                     "not valid JSON")


def test_cli_empty_file(tmp_path):
    assert_bad_input(cli("count", write(tmp_path, ""), "--center", "0,0", "--radius", "1"), "not valid JSON")


def test_cli_unknown_activation_in_file(tmp_path):
    assert_bad_input(cli("count", write(tmp_path, layer_doc(activation="gelu")), "--center", "0,0", "--radius", "1"),
                     "unknown activation")


def test_cli_wrong_format_tag(tmp_path):
    assert_bad_input(cli("info", write(tmp_path, doc(format="cpa-network/9"))), "cpa-network/1")


def test_cli_nan_weight_in_file(tmp_path):
    assert_bad_input(cli("info", write(tmp_path, layer_doc(weight=[["NaN", 0], [0, 1]]))), "layers[0]")


def test_cli_missing_file():
    assert_bad_input(cli("count", "no-such.json", "--center", "0,0", "--radius", "1"), "does not exist")


def test_cli_radius_nan():
    assert_bad_input(cli("count", EXAMPLE, "--center", "0,0", "--radius", "nan"), "> 0")


def test_cli_radius_zero():
    assert_bad_input(cli("hits", EXAMPLE, "--center", "0,0", "--radius", "0"), "> 0")


def test_cli_center_not_a_number():
    assert_bad_input(cli("count", EXAMPLE, "--center", "x,1", "--radius", "1"), "numbers")


def test_cli_center_wrong_dimension():
    assert_bad_input(cli("count", EXAMPLE, "--center", "0,0,0", "--radius", "1"), "input dimension")


def test_cli_unwritable_output_location(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert_bad_input(cli("plot", EXAMPLE, "--center", "0,0", "--radius", "1", "--out", str(blocker / "p.png")),
                     "does not exist")


def test_cli_plot_needs_two_dimensions(tmp_path):
    d = doc(input_dim=1, batch=[[0.0], [1.0]])
    d["layers"][0]["weight"] = [[1.0], [2.0]]
    assert_bad_input(cli("plot", write(tmp_path, d), "--center", "0", "--radius", "1", "--out",
                         str(tmp_path / "p.png")), "dimension 2")


def test_cli_unknown_claim():
    assert_bad_input(cli("prove", "--claim", "C99"), "choose from")


# -- the bad-input catalogue of issue #11: every named input exits 2 with one short line naming the fix ----------
# In-process (cpa_theory.cli.main) so that ~40 cases cost about a second; the few cases where the process itself
# matters (a FIFO that must not hang, Ctrl-C) run as subprocesses below.
import os  # noqa: E402

from cpa_theory import cli as _cli  # noqa: E402


def run_main(capsys, *argv):
    try:
        code = _cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _net(tmp_path, text, name="net.json"):
    path = tmp_path / name
    path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
    return path


def _with_layer(**over):
    return json.dumps(layer_doc(**over))


def _sweep_cfg(tmp_path, text):
    return _net(tmp_path, text, "cfg.json")


C = ["--center", "0.9,-0.4", "--radius", "0.5"]
CATALOGUE = {
    # item 7
    "radius 1e300": (lambda t: ["count", EXAMPLE, "--center", "0.9,-0.4", "--radius", "1e300"], "smaller radius"),
    "radius 1e-200": (lambda t: ["count", EXAMPLE, "--center", "0.9,-0.4", "--radius", "1e-200"], "larger radius"),
    "radius 1e-155 (Infinity per volume)": (lambda t: ["count", EXAMPLE, "--center", "0,0", "--radius", "1e-155"],
                                            "larger radius"),
    "hits radius 1e300": (lambda t: ["hits", EXAMPLE, "--center", "0,0", "--radius", "1e300"], "smaller radius"),
    "nested-array JSON bomb": (lambda t: ["info", _net(t, "[" * 200000 + "]" * 200000)], "nested deeper"),
    "integer literal 10^400": (lambda t: ["info", _net(t, _with_layer(bias=[0, 0]).replace("[0, 0]", "[1" + "0" * 400
                                                                                           + ", 0]"))], "digits"),
    "5000-digit integer": (lambda t: ["info", _net(t, '{"input_dim": ' + "7" * 5000 + "}")], "digits"),
    "float literal 1e400": (lambda t: ["info", _net(t, _with_layer(bias=[0, 0]).replace("[0, 0]", "[1e400, 0]"))],
                            "overflows float64"),
    "NaN literal": (lambda t: ["info", _net(t, _with_layer(bias=[0, 0]).replace("[0, 0]", "[NaN, 0]"))],
                    "finite numbers"),
    "left_slope [0, 1]": (lambda t: ["info", _net(t, _with_layer(activation={
        "name": "cpa", "breakpoints": [0.0], "values": [0.0], "left_slope": [0, 1], "right_slope": 1}))], "one number"),
    "empty centres file": (lambda t: ["count", EXAMPLE, "--center", _net(t, "", "c.txt"), "--radius", "0.5"], "is empty"),
    "[] centres file": (lambda t: ["count", EXAMPLE, "--center", _net(t, "[]", "c.json"), "--radius", "0.5"],
                        "at least one centre"),
    "non-UTF-8 centres file": (lambda t: ["count", EXAMPLE, "--center", _net(t, b"0.1,0.2\n\xff\xfe1,2\n", "c.txt"),
                                          "--radius", "0.5"], "UTF-8"),
    "plot --out DIR": (lambda t: ["plot", EXAMPLE, *C, "--out", t], "is a directory"),
    "prove --markdown DIR": (lambda t: ["prove", "--claim", "C1", "--markdown", t], "is a directory"),
    "reproduce --seed -5": (lambda t: ["reproduce", "--seed", "-5", "--out", t / "r"], "non-negative"),
    "network path is a directory": (lambda t: ["info", t], "is a directory"),
    "sweep config is a directory": (lambda t: ["sweep", t, "--out", t / "s"], "is a directory"),
    "sweep radii a string": (lambda t: ["sweep", _sweep_cfg(t, '{"radii": "0.1"}'), "--out", t / "s"], "list of numbers"),
    "sweep radii a scalar": (lambda t: ["sweep", _sweep_cfg(t, '{"radii": 0.1}'), "--out", t / "s"], "list of numbers"),
    "sweep widths a string": (lambda t: ["sweep", _sweep_cfg(t, '{"widths": "64"}'), "--out", t / "s"], "list of numbers"),
    # item 8
    "/dev/zero as the network": (lambda t: ["info", "/dev/zero"], "not a regular file"),
    "file over the size cap": (lambda t: ["info", _net(t, " " * 3 * 2**20)], "CPA_THEORY_MAX_INPUT_MB"),
    "--center /etc/passwd-like file": (lambda t: ["count", EXAMPLE, "--center", _net(t, "root:x:0:0:secret\n", "p"),
                                                  "--radius", "0.5"], "line 1"),
    # item 9
    'weight "1.0" (a string)': (lambda t: ["info", _net(t, _with_layer(weight=[["1.0", 0], [0, 1]]))], "plain numbers"),
    "bias true": (lambda t: ["info", _net(t, _with_layer(bias=[True, 0]))], "plain numbers"),
    'eps "1e-5"': (lambda t: ["info", _net(t, _with_layer(batchnorm={"mode": "train", "gamma": [1, 1], "beta": [0, 0], "eps": "1e-5"}))], "number"),
    "negative_slope [0.1, 0.2]": (lambda t: ["info", _net(t, _with_layer(activation={
        "name": "leaky_relu", "negative_slope": [0.1, 0.2]}))], "one number"),
    "nested breakpoints": (lambda t: ["info", _net(t, _with_layer(activation={
        "name": "cpa", "breakpoints": [[0.0, 1.0]], "values": [0.0, 1.0], "left_slope": 0, "right_slope": 0}))],
        "flat list"),
    "sweep radii []": (lambda t: ["sweep", _sweep_cfg(t, '{"radii": []}'), "--out", t / "s"], "empty list"),
    'sweep networks "8"': (lambda t: ["sweep", _sweep_cfg(t, '{"networks": "8"}'), "--out", t / "s"], "number"),
    "sweep seed true": (lambda t: ["sweep", _sweep_cfg(t, '{"seed": true}'), "--out", t / "s"], "number"),
    "--workers 0": (lambda t: ["count", EXAMPLE, *C, "--workers", "0"], ">= 1"),
    "--workers -1": (lambda t: ["count", EXAMPLE, *C, "--workers", "-1"], ">= 1"),
    "zero-width layer": (lambda t: ["info", _net(t, json.dumps({"format": "cpa-network/1", "input_dim": 2, "layers": [
        {"weight": [[]], "bias": [0.0], "activation": "relu"}]}))], "at least one neuron"),
    "1-D weight": (lambda t: ["info", _net(t, _with_layer(weight=[1.0, 2.0]))], "weight has shape (2,)"),
    "batch of 3000 strings": (lambda t: ["info", _net(t, json.dumps(doc(batch=[["x" * 100, "y"]] * 3000)))],
                              "plain numbers"),
}


@pytest.mark.parametrize("case", sorted(CATALOGUE))
def test_bad_input_catalogue_exits_2_with_one_short_line(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CPA_THEORY_MAX_INPUT_MB", "2")
    build, fix = CATALOGUE[case]
    code, out, err = run_main(capsys, *build(tmp_path))
    assert code == 2, (case, code, err)
    assert fix in err, (case, err)
    lines = err.strip().splitlines()
    assert len(lines) <= 4 and all(len(line) <= 500 for line in lines), err  # argparse adds a usage block
    assert "Traceback" not in err and out == ""
    assert "root:x" not in err and "xxxxxxxx" not in err  # file contents are never echoed


def test_bad_input_catalogue_covers_the_issue():
    # the inputs issue #11 names (items 7-9); a case removed from the catalogue fails here
    named = {"radius 1e300", "radius 1e-200", "nested-array JSON bomb", "integer literal 10^400", "5000-digit integer",
             "left_slope [0, 1]", "empty centres file", "[] centres file", "non-UTF-8 centres file", "plot --out DIR",
             "prove --markdown DIR", "reproduce --seed -5", "sweep config is a directory", "sweep radii a string",
             "sweep radii a scalar", "/dev/zero as the network", "--center /etc/passwd-like file",
             'weight "1.0" (a string)', "bias true", "negative_slope [0.1, 0.2]", "nested breakpoints", "sweep radii []",
             "--workers 0", "--workers -1", "zero-width layer"}
    assert named <= set(CATALOGUE)


def test_corrupt_resume_files_exit_2_naming_file_and_fix(tmp_path, capsys):
    out = tmp_path / "rep"
    assert run_main(capsys, "reproduce", "--claims", "C1", "--out", out, "--json")[0] == 0
    (out / "claims" / "C1.json").write_text('{"claim": "C1", "sta')
    code, _, err = run_main(capsys, "reproduce", "--claims", "C1", "--out", out, "--json")
    # a result file changed since the toolkit wrote it is the user's now: refused, never read, deleted or replaced
    assert code == 2 and "C1.json" in err and "changed after cpa-theory wrote it" in err and "new --out" in err, err
    cfg = _sweep_cfg(tmp_path, '{"d": 2, "width": 4, "networks": 2, "batch_sizes": [4], "bias_scales": [0.1], '
                               '"radii": [0.1], "distances": [0.0, 1.0]}')
    assert run_main(capsys, "sweep", cfg, "--out", tmp_path / "sw", "--json")[0] == 0
    (tmp_path / "sw" / "chunks" / "000001.json").write_text("{")
    code, _, err = run_main(capsys, "sweep", cfg, "--out", tmp_path / "sw", "--json")
    assert code == 2 and "000001.json" in err and "changed after cpa-theory wrote it" in err, err
    (tmp_path / "sw" / "header.json").write_text("[" * 10000)
    code, _, err = run_main(capsys, "sweep", cfg, "--out", tmp_path / "sw", "--json")
    assert code == 2 and "header.json" in err and "new --out" in err, err


def test_workers_above_cpu_count_are_capped_with_a_note(capsys, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 1)  # one CPU: counting stays in this process
    code, out, err = run_main(capsys, "count", EXAMPLE, *C, "--workers", "1000", "--json")
    assert code == 0 and "using 1" in err and json.loads(out)["certified"]


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("exc, code", [(CPAInputError("bad thing; fix it"), 2), (ZeroDivisionError("x"), 3),
                                       (RecursionError("deep"), 3), (ValueError("raw"), 3)])
def test_exit_codes_are_kept_with_debug(exc, code, debug, capsys, monkeypatch):
    from cpa_theory.errors import CPAInternalError

    def boom(args):
        raise exc

    monkeypatch.setattr(_cli, "cmd_info", boom)
    got, _, err = run_main(capsys, *(["--debug"] if debug else []), "info", EXAMPLE)
    assert got == code, err
    assert ("Traceback" in err) == debug
    assert ("report" in err) == (code == 3)  # an internal error says what to report, never "bad input"
    assert CPAInternalError is not None


def test_nan_inside_a_computation_exits_3_not_2(capsys, monkeypatch):
    import cpa_theory.density as density

    monkeypatch.setattr(density, "count_many", lambda *a, **k: [{"center": [0.0, 0.0], "radius": 0.5,
                                                                 "regions": 1, "per_volume": float("nan"),
                                                                 "certified": True}])
    code, out, err = run_main(capsys, "count", EXAMPLE, *C, "--json")
    assert code == 3 and "internal error" in err and "NaN" not in out


def test_internal_error_class_exits_3(capsys, monkeypatch):
    from cpa_theory.errors import CPAInternalError

    def boom(args):
        raise CPAInternalError("inconsistent certificate")

    monkeypatch.setattr(_cli, "cmd_hits", boom)
    code, _, err = run_main(capsys, "--debug", "hits", EXAMPLE, *C)
    assert code == 3 and "Traceback" in err and "inconsistent certificate" in err


def test_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "centres.fifo"
    os.mkfifo(fifo)
    res = subprocess.run([sys.executable, "-m", "cpa_theory", "count", EXAMPLE, "--center", str(fifo), "--radius",
                          "0.5"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 2 and "not a regular file" in res.stderr


# -- the Python API: wrong types raise typed errors from cpa_theory.errors (naming the fix), never raw
# AttributeError / TypeError / ValueError / RuntimeError ------------------------------------------------------
def _api_cases():
    import cpa_theory as cpa
    from cpa_theory.density import local_density
    from cpa_theory.regions import count_regions
    from numerics.lp_regions import count_regions_lp

    net = load_network(EXAMPLE)
    eye = np.eye(2)

    def L(**k):
        return cpa.Layer(**{"weight": eye, "bias": np.zeros(2), "activation": cpa.relu(), **k})

    return {
        "Layer(batchnorm='train')": lambda: L(batchnorm="train"),
        "Layer(weight=[['1','0'],['0','1']])": lambda: L(weight=[["1", "0"], ["0", "1"]]),
        "Layer(weight=[[True, 0], [0, 1]])": lambda: L(weight=[[True, 0], [0, 1]]),
        "Layer(zero neurons)": lambda: cpa.Layer(np.zeros((0, 2)), np.zeros(0), cpa.relu()),
        "Layer(zero inputs)": lambda: cpa.Layer(np.zeros((2, 0)), np.zeros(2), cpa.relu()),
        "BatchNorm(-1)": lambda: cpa.BatchNorm(-1),
        "BatchNorm(0)": lambda: cpa.BatchNorm(0),
        "BatchNorm(2.5)": lambda: cpa.BatchNorm(2.5),
        "BatchNorm('2')": lambda: cpa.BatchNorm("2"),
        "BatchNorm(2, eps='1e-5')": lambda: cpa.BatchNorm(2, eps="1e-5"),
        "BatchNorm(2, eps=True)": lambda: cpa.BatchNorm(2, eps=True),
        "BatchNorm(2, mode=['train'])": lambda: cpa.BatchNorm(2, mode=["train"]),
        "Network(2, None)": lambda: cpa.Network(2, None),
        "Network(2, [1])": lambda: cpa.Network(2, [1]),
        "Network(2, Layer)": lambda: cpa.Network(2, L()),
        "Network(True, layers)": lambda: cpa.Network(True, (cpa.Layer(np.ones((2, 1)), np.zeros(2), cpa.relu()),)),
        "load(None)": lambda: cpa.load(None),
        "load(3)": lambda: cpa.load(3),
        "save(None, path)": lambda: cpa.save(None, "unused.json"),
        "save(net, None)": lambda: cpa.save(net, None),
        "network_to_dict(None)": lambda: cpa.network_to_dict(None),
        "count_regions(None)": lambda: count_regions(None, [0, 0], 0.5),
        "count_regions(net, c, '0.5')": lambda: count_regions(net, [0, 0], "0.5"),
        "count_regions(net, c, 1e300)": lambda: count_regions(net, [0, 0], 1e300),
        "window_hits(hp, c, '0.5')": lambda: cpa.window_hits(cpa.switching_hyperplanes(net), [0, 0], "0.5"),
        "count_regions_lp(max_regions=0)": lambda: count_regions_lp(net, [0, 0], 0.5, max_regions=0),
        "count_regions_lp(None)": lambda: count_regions_lp(None, [0, 0], 0.5),
        "count_regions_lp(max_regions='x')": lambda: count_regions_lp(net, [0, 0], 0.5, max_regions="x"),
        "local_density(net, c, True)": lambda: local_density(net, [0, 0], True),
        "switching_hyperplanes(None)": lambda: cpa.switching_hyperplanes(None),
        "switching_hyperplanes(net, 'a')": lambda: cpa.switching_hyperplanes(net, "a"),
        "window_hits(None, c, r)": lambda: cpa.window_hits(None, [0, 0], 0.5),
        "leaky_relu([0.1, 0.2])": lambda: cpa.leaky_relu([0.1, 0.2]),
        "spline(left_slope=[0, 1])": lambda: cpa.spline([0.0], [0.0], [0, 1], 1.0),
        "spline(nested breakpoints)": lambda: cpa.spline([[0.0, 1.0]], [0.0, 1.0], 0.0, 0.0),
        "activation_from_spec({'name': ['relu']})": lambda: cpa.activation_from_spec({"name": ["relu"]}),
        "affine_map(x, 'a')": lambda: net.condition().affine_map([0, 0], "a"),
        "affine_map(x, 9)": lambda: net.condition().affine_map([0, 0], 9),
        "batch_inputs(9)": lambda: net.condition().batch_inputs(9),
        "standardized_offset('a', 'b', 'c')": lambda: cpa.standardized_offset("a", "b", "c"),
        "bn_scale('a', 1)": lambda: cpa.bn_scale("a", 1),
        "from_flax(None, [])": lambda: cpa.from_flax(None, []),
        "from_flax(variables without module=)": lambda: cpa.from_flax({"params": {"Dense_0": {}}}, ["relu"]),
        "from_flax(activations=None)": lambda: cpa.from_flax({"params": {"Dense_0": {"kernel": eye, "bias": [0, 0]}}},
                                                             None),
    }


API_CASES = sorted(_api_cases())


@pytest.mark.parametrize("case", API_CASES)
def test_public_api_raises_typed_errors_naming_the_fix(case):
    call = _api_cases()[case]
    with pytest.raises(CPAInputError) as info:
        call()
    msg = str(info.value)
    assert len(msg) < 400 and msg.rstrip().endswith((".", ")")), msg
    assert any(word.lower() in msg.lower() for word in ("give", "use", "must", "Write", "Build", "build", "pass", "choose", "raise",
                                        "Compute", "e.g.", "expected", "check", "needs", "is not", "remove", "rename")), msg


def test_one_dimensional_weight_reports_the_weight_not_gamma():
    with pytest.raises(ShapeError, match=r"layers\[0\]\.weight has shape \(2,\)"):
        network_from_dict(layer_doc(weight=[1.0, 2.0]))


def test_zero_width_layer_cannot_reach_save(tmp_path):
    with pytest.raises(ShapeError, match="at least one neuron"):
        Layer(np.zeros((0, 2)), np.zeros(0), relu())
    assert not list(tmp_path.iterdir())


def test_strict_json_reader_limits():
    from cpa_theory.inputs import parse_json

    for text, fix in (("[" * 100 + "]" * 100, "deeper than 64"), ("[1" + "0" * 400 + "]", "digits"),
                      ("[Infinity]", "finite"), ("[1e999]", "overflows")):
        with pytest.raises(CPAInputError, match=fix):
            parse_json(text, "test input")
    assert parse_json('{"a": [1, 2.5, "x"]}', "ok") == {"a": [1, 2.5, "x"]}


class _Payload:  # an arbitrary (picklable) object inside a state dict
    pass


def test_pickled_state_dict_refusal_does_not_pass_on_torchs_unsafe_suggestion(tmp_path):
    torch = pytest.importorskip("torch")
    from cpa_theory.importers import load_torch_state_dict

    path = tmp_path / "evil.pt"
    torch.save({"0.weight": _Payload()}, path)
    with pytest.raises(NetworkFormatError, match="pickled Python objects") as info:
        load_torch_state_dict(path)
    msg = str(info.value)
    assert "weights_only=False" not in msg and "can still be loaded" not in msg and "\x1b" not in msg
    with pytest.raises(NetworkFormatError, match="not a regular file"):
        load_torch_state_dict("/dev/zero")  # read through inputs.py: never read forever


@pytest.mark.parametrize("polytope", [3, "box", (np.eye(2),), (np.eye(2), [[1.0, "a"]])])
def test_count_regions_polytope_of_the_wrong_type_is_a_shape_error(polytope):
    from cpa_theory.errors import ShapeError
    from cpa_theory.regions import count_regions

    with pytest.raises(ShapeError, match="polytope"):
        count_regions(load_network(EXAMPLE), polytope=polytope)
