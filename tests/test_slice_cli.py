"""`cpa-theory slice` (issue #14, item 3): counts equal the API's, the JSON contract, bad input exits 2, the PNG."""

import json
from pathlib import Path

import numpy as np
import pytest

from cpa_theory import cli
from cpa_theory.activations import identity, relu
from cpa_theory.convnet import ConvNetwork
from cpa_theory.fileformat_v2 import load_any_network, save_convnet
from cpa_theory.layers import Activation, Conv, Flatten, Linear, MaxPool
from cpa_theory.slices import count_on_slice, random_slice, slice_through_points

ROOT = Path(__file__).resolve().parents[1]
NET = ROOT / "examples" / "tiny_cnn.json"
DATA = ROOT / "examples" / "tiny_cnn_points.npy"
V1 = ROOT / "examples" / "bn_relu_2d.json"


def run_main(capsys, *argv):
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_count_equals_count_on_slice_and_json_keys(capsys):
    code, out, err = run_main(capsys, "slice", NET, "--through", "0,1,2", "--data", DATA, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert {"regions", "linear_regions", "certified", "complete", "x0", "basis", "k", "radius", "points"} <= set(doc)
    X = np.load(DATA).reshape(3, -1)
    sl = slice_through_points(*X, margin=0.1)
    ref = count_on_slice(load_any_network(NET), sl)
    assert doc["regions"] == ref.regions and doc["linear_regions"] == ref.linear_regions
    assert doc["regions"] > 1 and doc["certified"] and doc["complete"]
    assert np.allclose(doc["x0"], sl.x0) and np.allclose(np.array(doc["basis"]).T, sl.V)
    assert np.allclose(doc["points"], sl.points)
    # the margin reaches the slice: a wider window is another window
    code, out2, _ = run_main(capsys, "slice", NET, "--through", "0,1,2", "--data", DATA, "--margin", "1", "--json")
    assert code == 0 and json.loads(out2)["radius"] == pytest.approx(2 * doc["radius"] / 1.1)


def test_points_file_and_random_slice_match_the_api(tmp_path, capsys):
    X = np.load(DATA).reshape(3, -1)
    pts = tmp_path / "p.txt"
    pts.write_text("\n".join(",".join(repr(float(v)) for v in row) for row in X) + "\n")
    code, out, err = run_main(capsys, "slice", NET, "--points", pts, "--json")
    assert code == 0, err
    assert json.loads(out)["regions"] == count_on_slice(load_any_network(NET), slice_through_points(*X)).regions
    import jax

    code, out, err = run_main(capsys, "slice", V1, "--random", "1", "--center", "0.9,-0.4", "--radius", "2",
                              "--seed", "3", "--json")
    assert code == 0, err
    doc = json.loads(out)
    sl = random_slice([0.9, -0.4], 1, key=jax.random.PRNGKey(3), radius=2.0)
    assert doc["k"] == 1 and doc["regions"] == count_on_slice(load_any_network(V1), sl).regions


def _maxpool_net(path):
    rng = np.random.default_rng(0)
    net = ConvNetwork((1, 4, 4), (Conv(rng.normal(size=(2, 1, 3, 3)), np.zeros(2), padding=(1, 1)),
                                  Activation(relu()), MaxPool((2, 2)), Flatten(), Linear(rng.normal(size=(1, 8)),
                                                                                         np.zeros(1)),
                                  Activation(identity())))
    save_convnet(net, path)
    return path


def test_maxpool_network_slices_like_the_api(tmp_path, capsys):
    """A cpa-network/2 CNN with MaxPool2d (refused before max-pooling was a CPA layer of the engine): the CLI count
    equals count_on_slice, certified, and the three views are drawn."""
    path = _maxpool_net(tmp_path / "mp.json")
    png = tmp_path / "mp.png"
    code, out, err = run_main(capsys, "slice", path, "--through", "0,1,2", "--data", DATA, "--json", "--out", png)
    assert code == 0, err
    doc = json.loads(out)
    sl = slice_through_points(*np.load(DATA).reshape(3, -1), margin=0.1)
    ref = count_on_slice(load_any_network(path), sl)
    assert doc["regions"] == ref.regions > 1 and doc["certified"] and doc["complete"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("case, args, fix", [
    ("out of range", ["--through", "0,1,7", "--data", DATA], "out of range"),
    ("repeated row", ["--through", "0,1,1", "--data", DATA], "three different rows"),
    ("no data", ["--through", "0,1,2"], "--data"),
    ("two slices", ["--through", "0,1,2", "--data", DATA, "--random", "2"], "choose one slice"),
    ("collinear", ["--points", "COLLINEAR"], "collinear"),
    ("wrong width", ["--points", "SHORT"], "coordinates"),
    ("pickle", ["--through", "0,1,2", "--data", "PICKLE"], "pickled"),
    ("random without centre", ["--random", "2"], "--center"),
    ("indices", ["--through", "0,1", "--data", DATA], "three row indices"),
])
def test_bad_input_exits_2_naming_the_fix(tmp_path, capsys, case, args, fix):
    (tmp_path / "col.txt").write_text("\n".join(",".join(str(float(i * k)) for i in range(16)) for k in (0, 1, 2)))
    (tmp_path / "short.txt").write_text("0,0\n1,0\n0,1\n")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, 2, 3], dtype=object), allow_pickle=True)
    subst = {"COLLINEAR": tmp_path / "col.txt", "SHORT": tmp_path / "short.txt", "PICKLE": tmp_path / "obj.npy"}
    net = NET
    argv = ["slice", net] + [subst.get(a, a) for a in args]
    code, out, err = run_main(capsys, *argv)
    assert code == 2, (case, out, err)
    assert fix in err and len(err.strip().splitlines()) == 1, err
    assert out == ""


def test_out_writes_a_png_with_three_views(tmp_path, capsys):
    png = tmp_path / "s.png"
    code, out, err = run_main(capsys, "slice", NET, "--through", "0,1,2", "--data", DATA, "--out", png, "--json")
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads(out)
    views = {v["view"]: v for v in doc["views"]}
    assert set(views) == {"train", "eval", "no_bn"} and views["train"]["regions"] == doc["regions"]
    net = load_any_network(NET)
    sl = slice_through_points(*np.load(DATA).reshape(3, -1))
    assert views["no_bn"]["regions"] == count_on_slice(net.without_batchnorm(), sl).regions
    assert views["no_bn"]["regions"] != views["train"]["regions"]  # BN changes the partition of this net
    # eval view = the file's running statistics (this file's BN is in train mode and carries them)
    from dataclasses import replace

    from cpa_theory.layers import BatchNormND

    layers = tuple(BatchNormND(replace(op.bn, mode="eval")) if isinstance(op, BatchNormND) else op for op in net.layers)
    ev = ConvNetwork(net.input_shape, layers)
    assert views["eval"]["regions"] == count_on_slice(ev, sl).regions != views["train"]["regions"]


def test_out_into_missing_folder_exits_2_and_3d_slices_are_not_drawn(tmp_path, capsys):
    code, _, err = run_main(capsys, "slice", NET, "--through", "0,1,2", "--data", DATA, "--out",
                            tmp_path / "no" / "s.png")
    assert code == 2 and not (tmp_path / "no").exists()
    code, _, err = run_main(capsys, "slice", V1, "--random", "1", "--center", "0,0", "--out", tmp_path / "s.png")
    assert code == 2 and "2-D" in err and not (tmp_path / "s.png").exists()


def test_help_has_an_example(capsys):
    code, out, _ = run_main(capsys, "slice", "--help")
    assert code == 0 and "example:" in out and "cpa-theory slice" in out


def test_density_over_centres_equals_the_api_serial_and_parallel(tmp_path, capsys):
    """--centres N: one random 2-D slice through each of the first N rows of --data (keys split from --seed); the
    counts, mean and t CI equal slices.slice_density's, with --jobs 2 (process pool) as in one process; a
    --centres-file selects the same rows; another seed gives other slices."""
    import jax

    from cpa_theory.slices import slice_density

    base = ["slice", NET, "--data", DATA, "--radius", "0.4", "--seed", "5", "--json"]
    code, out, err = run_main(capsys, *base, "--centres", "3")
    assert code == 0, err
    doc = json.loads(out)
    X = np.load(DATA).reshape(3, -1)
    ref = slice_density(load_any_network(NET), X, radius=0.4, key=jax.random.PRNGKey(5))
    assert doc["counts"] == ref["counts"].tolist() and doc["mean"] == pytest.approx(ref["mean"])
    assert doc["ci"] == pytest.approx(list(ref["ci"])) and doc["certified"] and doc["k"] == 2
    assert doc["ci"][0] <= doc["mean"] <= doc["ci"][1]
    code, out, err = run_main(capsys, *base, "--centres", "3", "--jobs", "2")
    assert code == 0, err
    assert json.loads(out)["counts"] == doc["counts"]
    np.save(tmp_path / "idx.npy", np.array([2, 0]))
    code, out, err = run_main(capsys, *base, "--centres-file", tmp_path / "idx.npy")
    assert code == 0, err
    sub = json.loads(out)
    ref2 = slice_density(load_any_network(NET), X[[2, 0]], radius=0.4, key=jax.random.PRNGKey(5))
    assert sub["centres"] == [2, 0] and sub["counts"] == ref2["counts"].tolist()
    code, out, _ = run_main(capsys, "slice", NET, "--data", DATA, "--radius", "0.4", "--seed", "6", "--json",
                            "--centres", "3")
    assert code == 0 and json.loads(out)["counts"] != doc["counts"]  # the seed reaches the slices


@pytest.mark.parametrize("args, fix", [
    (["--centres", "3", "--through", "0,1,2"], "--through"),
    (["--centres", "9"], "at most 3"),
    (["--centres", "0"], "--centres must be >= 1"),
    (["--centres-file", "IDX"], "out of range"),
    (["--through", "0,1,2", "--jobs", "2"], "--jobs"),
    (["--centres", "2", "--random", "5"], "k = 1"),
])
def test_density_bad_input_exits_2(tmp_path, capsys, args, fix):
    np.save(tmp_path / "idx.npy", np.array([0, 7]))
    argv = ["slice", NET, "--data", DATA] + [tmp_path / "idx.npy" if a == "IDX" else a for a in args]
    code, out, err = run_main(capsys, *argv)
    assert code == 2 and fix in err and out == "", (code, err)
