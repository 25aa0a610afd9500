"""cpa-network/2 (docs/network-format-v2.md): round trips, npz sidecar without pickles, v1 still readable."""

import json
from pathlib import Path

import numpy as np
import pytest

from cpa_theory.activations import relu
from cpa_theory.bn import BatchNorm
from cpa_theory.convnet import ConvNetwork
from cpa_theory.errors import NetworkFormatError, OutputError
from cpa_theory.fileformat import save_network
from cpa_theory.fileformat_v2 import load_any_network, save_convnet
from cpa_theory.layers import (Activation, AdaptiveAvgPool, AvgPool, BatchNormND, Conv, Flatten, Linear, MaxPool,
                               Residual)
from cpa_theory.network import Layer, Network


def _net(rng):
    batch = rng.normal(size=(5, 1, 6, 6))
    return ConvNetwork((1, 6, 6), (
        Conv(rng.normal(size=(2, 1, 3, 3)), rng.normal(size=2), 1, 1),
        BatchNormND(BatchNorm(2, "train", [1.1, 0.9], [0.1, 0.0])), Activation(relu()),
        Residual((Conv(rng.normal(size=(2, 2, 3, 3)), None, 1, 1), Activation(relu())),
                 (Conv(rng.normal(size=(2, 2, 1, 1))),)),
        AvgPool(2), MaxPool(2, 1), BatchNormND(BatchNorm(2, "eval", None, None, 1e-3, [0.1, 0.2], [1.5, 0.5])),
        AdaptiveAvgPool((1, 1)), Flatten(), Linear(rng.normal(size=(3, 2)), rng.normal(size=3))), batch)


@pytest.mark.parametrize("sidecar", [False, True])
def test_roundtrip_is_exact(tmp_path, rng, sidecar):
    net = _net(rng)
    path = tmp_path / "net.json"
    save_convnet(net, path, sidecar=sidecar)
    doc = json.loads(path.read_text())
    assert doc["format"] == "cpa-network/2" and (("arrays" in doc) == sidecar)
    back = load_any_network(path)
    x = rng.normal(size=(4, 1, 6, 6))
    assert np.array_equal(back.condition().forward(x), net.condition().forward(x))
    if sidecar:
        save_convnet(net, path, sidecar=True)  # replacing our own sidecar is allowed


def test_v1_still_readable_and_dense_as_v2(tmp_path, rng):
    dense = Network(3, (Layer(rng.normal(size=(4, 3)), rng.normal(size=4), relu(), BatchNorm(4, "train")),
                        Layer(rng.normal(size=(1, 4)), rng.normal(size=1), "identity")), rng.normal(size=(6, 3)))
    save_network(dense, tmp_path / "v1.json")
    v1 = load_any_network(tmp_path / "v1.json")
    assert isinstance(v1, Network)
    save_convnet(dense, tmp_path / "v2.json")
    v2 = load_any_network(tmp_path / "v2.json")
    x = rng.normal(size=(5, 3))
    np.testing.assert_allclose(v2.condition().forward(x), dense.forward(x), atol=1e-12)


def test_sidecar_refusals(tmp_path, rng):
    net = _net(rng)
    foreign = tmp_path / "net.npz"
    foreign.write_bytes(b"not ours")
    with pytest.raises(OutputError):
        save_convnet(net, tmp_path / "net.json", sidecar=True)
    assert foreign.read_bytes() == b"not ours"
    # a pickled object array in the sidecar is refused (allow_pickle=False)
    save_convnet(net, tmp_path / "ok.json", sidecar=True)
    np.savez(tmp_path / "ok.npz", a0_l0_weight=np.array([object()], dtype=object))
    with pytest.raises(NetworkFormatError):
        load_any_network(tmp_path / "ok.json")
    save_convnet(net, tmp_path / "inline.json")
    doc = json.loads((tmp_path / "inline.json").read_text())
    doc["layers"][0]["type"] = "conv3d"
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(NetworkFormatError, match="conv3d"):
        load_any_network(tmp_path / "bad.json")


@pytest.mark.parametrize("make", [
    lambda: Conv(np.ones((2, 1, 3, 3)), stride=(0, 1)),
    lambda: Conv(np.ones((2, 1, 3, 3)), dilation=(0, 1)),
    lambda: Conv(np.ones((2, 1, 3, 3)), dilation=(-1, 1)),
    lambda: Conv(np.ones((2, 1, 3, 3)), padding=-1),
    lambda: AvgPool((0, 0)),
    lambda: AvgPool((2, 2), stride=(0, 0)),
    lambda: MaxPool((2, 2), stride=(0, 0)),
    lambda: MaxPool((0, 0)),
    lambda: AdaptiveAvgPool((0, 0)),
    lambda: Conv(np.ones((2, 1, 5, 5))).out_shape((1, 4, 4)),  # the window does not fit the input
    lambda: MaxPool((5, 5)).out_shape((2, 2, 2)),
])
def test_conv_and_pool_parameters_out_of_range_are_refused_as_bad_input(make):
    """Referee's cases: stride/kernel/dilation 0 raised ZeroDivisionError (exit 3), a kernel larger than its input
    surfaced later as "Linear expects flat input ... got (0,)"; now a ShapeError (exit 2) names the field."""
    from cpa_theory.errors import CPAInputError

    with pytest.raises(CPAInputError, match="must be ≥|does not fit"):
        make()


@pytest.mark.parametrize("name, key", [("bn_relu_2d.json", "input_dim"), ("tiny_cnn.json", "format")])
def test_a_key_given_twice_is_refused_in_both_formats(tmp_path, name, key):
    """Referee's case: a second "input_dim" was taken silently (last one wins) and surfaced as a misleading
    column-count error; strict JSON refuses a repeated key, naming it (v1 and v2 readers)."""
    src = (Path(__file__).resolve().parents[1] / "examples" / name).read_text()
    i = src.index(f'"{key}"')
    j = src.index(",", i)
    path = tmp_path / name
    path.write_text(src[:j + 1] + " " + src[i:j + 1] + src[j + 1:])  # the same member again
    with pytest.raises(NetworkFormatError, match=f"{key}.*twice"):
        load_any_network(path)


@pytest.mark.parametrize("shape", [[1, -4, 4], [0, 4, 4], [], [1, 4.5, 4], ["one", 4, 4]])
def test_an_input_shape_that_is_not_positive_integers_is_refused_by_name(shape):
    """Referee's case: input_shape [1, -4, 4] was reported as a window that does not fit an input of size -4."""
    from cpa_theory.errors import ShapeError

    with pytest.raises(ShapeError, match="input_shape must be a list of positive integers"):
        ConvNetwork(shape, (Flatten(),))


def test_v1_commands_on_a_v2_file_point_to_slice():
    """Referee: `cpa-theory info examples/tiny_cnn.json` said to add "format": "cpa-network/1" (the wrong fix)."""
    from cpa_theory.fileformat import load_network

    with pytest.raises(NetworkFormatError, match="cpa-theory slice"):
        load_network(Path(__file__).resolve().parents[1] / "examples" / "tiny_cnn.json")
