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
        network_from_dict(layer_doc(batchnorm={"mode": "train", "gamma": [float("nan"), 1]}))


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
        network_from_dict(layer_doc(batchnorm={"mode": "train", "gamma": [1, 1, 1]}))


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
        network_from_dict(layer_doc(batchnorm={"mode": "inference"}))


def test_missing_running_statistics():
    with pytest.raises(BatchNormError, match="running_mean"):
        network_from_dict(layer_doc(batchnorm={"mode": "eval", "gamma": [1, 1], "beta": [0, 0]}))


def test_negative_eps():
    with pytest.raises(BatchNormError, match=">= 0"):
        network_from_dict(layer_doc(batchnorm={"mode": "train", "eps": -1e-5}))


def test_negative_running_var():
    with pytest.raises(BatchNormError, match="negative"):
        network_from_dict(layer_doc(batchnorm={"mode": "eval", "running_mean": [0, 0], "running_var": [-1, 1]}))


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
    assert [p.name for p in tmp_path.iterdir()] == ["net.json"]  # no temporary file left


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
