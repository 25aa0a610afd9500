"""The ``cpa-network/2`` file format: convolutional networks (docs/network-format-v2.md), reading v1 too.

A v2 document is JSON with ``"format": "cpa-network/2"``, ``input_shape``, a list of typed ``layers`` (conv,
linear, batchnorm, activation, avgpool, adaptive_avgpool, maxpool, flatten, residual) and an optional
``batch``. Every array is either inline (nested lists) or a reference ``{"npz": "key"}`` into a sidecar
``.npz`` named by the top-level ``"arrays"`` entry (relative to the JSON file), read with
``allow_pickle=False`` — never pickles. :func:`load_any_network` reads v1 (→ :class:`Network`) and v2
(→ :class:`ConvNetwork`; a dense network with ``max_groups`` layers → :class:`Network`).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from .activations import activation_from_spec
from .bn import DEFAULT_EPS, BatchNorm
from .convnet import ConvNetwork
from .errors import CPAInputError, NetworkFormatError, OutputError
from .fileformat import FORMAT as FORMAT_V1
from .fileformat import atomic_write_text, network_from_dict
from .outputs import write_output
from .layers import (Activation, AdaptiveAvgPool, AvgPool, BatchNormND, Conv, Flatten, Linear, MaxPool, Residual)
from .maxgroups import MaxGroups, is_max_groups, refuse_max_groups
from .network import Layer, Network

__all__ = ["FORMAT_V2", "convnet_to_dict", "convnet_from_dict", "save_convnet", "load_any_network",
           "network_as_convnet"]

FORMAT_V2 = "cpa-network/2"


def network_as_convnet(net: Network) -> ConvNetwork:
    """A dense v1 :class:`Network` as the same function in layer form (Linear, BatchNorm, Activation)."""
    refuse_max_groups(net.layers, "the layer form of a dense network (ConvNetwork: elementwise activations)")
    layers = []
    for l in net.layers:
        layers.append(Linear(l.weight, l.bias))
        if l.batchnorm is not None:
            layers.append(BatchNormND(l.batchnorm))
        layers.append(Activation(l.activation))
    return ConvNetwork((net.input_dim,), tuple(layers), net.batch)


class _Arrays:
    """Collects arrays for the sidecar (``sidecar=True``) or inlines them as lists."""

    def __init__(self, sidecar: bool):
        self.sidecar = sidecar
        self.store: dict[str, np.ndarray] = {}

    def put(self, name: str, arr):
        if arr is None:
            return None
        arr = np.asarray(arr, dtype=np.float64)
        if not self.sidecar:
            return arr.tolist()
        key = f"a{len(self.store)}_{name}"
        self.store[key] = arr
        return {"npz": key}


def _layers_to_list(layers, arrays: _Arrays, prefix: str) -> list:
    out = []
    for i, op in enumerate(layers):
        p = f"{prefix}{i}"
        if isinstance(op, Conv):
            out.append({"type": "conv", "weight": arrays.put(f"{p}_weight", op.weight),
                        "bias": arrays.put(f"{p}_bias", op.bias), "stride": list(op.stride),
                        "padding": list(op.padding), "dilation": list(op.dilation), "groups": op.groups})
        elif isinstance(op, Linear):
            out.append({"type": "linear", "weight": arrays.put(f"{p}_weight", op.weight),
                        "bias": arrays.put(f"{p}_bias", op.bias)})
        elif isinstance(op, BatchNormND):
            bn = op.bn
            d = {"type": "batchnorm", "mode": bn.mode, "num_features": bn.num_features,
                 "gamma": arrays.put(f"{p}_gamma", bn.gamma), "beta": arrays.put(f"{p}_beta", bn.beta), "eps": bn.eps}
            if bn.running_mean is not None:
                d["running_mean"] = arrays.put(f"{p}_rm", bn.running_mean)
                d["running_var"] = arrays.put(f"{p}_rv", bn.running_var)
            out.append(d)
        elif isinstance(op, Activation):
            out.append({"type": "activation", "activation": op.activation.to_spec()})
        elif isinstance(op, AvgPool):
            out.append({"type": "avgpool", "kernel": list(op.kernel), "stride": list(op.stride),
                        "padding": list(op.padding)})
        elif isinstance(op, AdaptiveAvgPool):
            out.append({"type": "adaptive_avgpool", "output_size": list(op.output_size)})
        elif isinstance(op, MaxPool):
            out.append({"type": "maxpool", "kernel": list(op.kernel), "stride": list(op.stride),
                        "padding": list(op.padding), "dilation": list(op.dilation)})
        elif isinstance(op, Flatten):
            out.append({"type": "flatten"})
        elif isinstance(op, Residual):
            out.append({"type": "residual", "body": _layers_to_list(op.body, arrays, f"{p}b"),
                        "shortcut": None if op.shortcut is None else _layers_to_list(op.shortcut, arrays, f"{p}s")})
        else:
            raise CPAInputError(f"layer {p} ({type(op).__name__}) has no cpa-network/2 form.")
    return out


def convnet_to_dict(net, *, sidecar: bool = False) -> tuple[dict, dict]:
    """``(document, arrays)``: the v2 document of ``net`` (ConvNetwork or dense Network) and, with
    ``sidecar=True``, the arrays it references (otherwise ``{}`` and everything is inline)."""
    if isinstance(net, Network) and any(is_max_groups(l.activation) for l in net.layers):
        return _dense_to_dict(net, sidecar)
    if isinstance(net, Network):
        net = network_as_convnet(net)
    arrays = _Arrays(sidecar)
    doc = {"format": FORMAT_V2, "input_shape": list(net.input_shape),
           "layers": _layers_to_list(net.layers, arrays, "l")}
    if net.batch is not None:
        doc["batch"] = arrays.put("batch", net.batch)
    return doc, arrays.store


def _dense_to_dict(net: Network, sidecar: bool) -> tuple[dict, dict]:
    """A dense network with max-group layers: per layer ``linear``, optional ``batchnorm``, then ``activation`` or
    ``max_groups`` (``{"type": "max_groups", "n_in": n, "groups": [[i, ...], ...]}``); read back as a
    :class:`Network` (docs/network-format-v2.md)."""
    arrays = _Arrays(sidecar)
    layers = []
    for i, l in enumerate(net.layers):
        layers += _layers_to_list((Linear(l.weight, l.bias),), arrays, f"l{i}_")
        if l.batchnorm is not None:
            layers += _layers_to_list((BatchNormND(l.batchnorm),), arrays, f"l{i}_bn")
        if is_max_groups(l.activation):
            layers.append(l.activation.to_v2())
        else:
            layers.append({"type": "activation", "activation": l.activation.to_spec()})
    doc = {"format": FORMAT_V2, "input_shape": [net.input_dim], "layers": layers}
    if net.batch is not None:
        doc["batch"] = arrays.put("batch", net.batch)
    return doc, arrays.store


def _dense_from_dict(doc, store) -> Network:
    """The inverse of :func:`_dense_to_dict`: a layer list with ``max_groups`` entries must be dense."""
    shape = doc["input_shape"]
    if not (isinstance(shape, list) and len(shape) == 1):
        raise NetworkFormatError(f"a network with max_groups layers is dense: input_shape must be [d]; got {shape!r}.")
    specs = doc["layers"]
    if not isinstance(specs, list):
        raise NetworkFormatError("layers must be a list of layer objects.")
    layers, i = [], 0
    while i < len(specs):
        where = f"layers[{i}]"
        s = specs[i]
        if not (isinstance(s, dict) and s.get("type") == "linear"):
            raise NetworkFormatError(f"{where}: a network with max_groups layers is a sequence of linear, optional "
                                     "batchnorm, then activation or max_groups; expected a linear layer here.")
        lin = _layers_from_list([s], store, where + ".")[0]
        i += 1
        bn = None
        if i < len(specs) and isinstance(specs[i], dict) and specs[i].get("type") == "batchnorm":
            bn = _layers_from_list([specs[i]], store, f"layers[{i}].")[0].bn
            i += 1
        if i >= len(specs) or not isinstance(specs[i], dict):
            raise NetworkFormatError(f"layers[{i}]: expected an activation or max_groups entry after the linear layer.")
        a = specs[i]
        where = f"layers[{i}]"
        try:
            if a.get("type") == "max_groups":
                _need(a, ("n_in", "groups"), where)
                act = MaxGroups(a["groups"], a["n_in"])
            elif a.get("type") == "activation":
                _need(a, ("activation",), where)
                act = activation_from_spec(a["activation"])
            else:
                raise NetworkFormatError(f"{where}: expected an activation or max_groups entry; got {a.get('type')!r}.")
            bias = lin.bias if lin.bias is not None else np.zeros(lin.weight.shape[0])
            layers.append(Layer(lin.weight, bias, act, bn))
        except NetworkFormatError:
            raise
        except CPAInputError as exc:
            raise type(exc)(f"{where}: {exc}") from None
        i += 1
    batch = _array(doc.get("batch"), store, "batch")
    if not isinstance(shape[0], int) or isinstance(shape[0], bool):
        raise NetworkFormatError(f"input_shape must be [d] with an integer d; got {shape!r}.")
    return Network(shape[0], tuple(layers), batch)


def _array(v, store, where):
    if v is None:
        return None
    if isinstance(v, dict):
        if set(v) != {"npz"}:
            raise NetworkFormatError(f"{where}: an array reference must be {{\"npz\": key}}; got keys {sorted(v)}.")
        if store is None:
            raise NetworkFormatError(f"{where} refers to the sidecar but the document has no 'arrays' entry.")
        if v["npz"] not in store:
            raise NetworkFormatError(f"{where}: key {v['npz']!r} is not in the sidecar .npz; re-export the network.")
        return np.asarray(store[v["npz"]], dtype=np.float64)
    try:
        return np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise NetworkFormatError(f"{where} must be a rectangular list of numbers.") from None


def _need(spec, keys, where):
    missing = [k for k in keys if k not in spec]
    if missing:
        raise NetworkFormatError(f"{where} ({spec.get('type')}) is missing {missing}; add them.")


def _layers_from_list(specs, store, prefix) -> tuple:
    if not isinstance(specs, list):
        raise NetworkFormatError(f"{prefix or 'layers'} must be a list of layer objects.")
    out = []
    for i, s in enumerate(specs):
        where = f"{prefix}layers[{i}]"
        if not isinstance(s, dict) or "type" not in s:
            raise NetworkFormatError(f"{where} must be an object with a 'type'.")
        t = s["type"]
        try:
            if t == "conv":
                _need(s, ("weight",), where)
                out.append(Conv(_array(s["weight"], store, where + ".weight"), _array(s.get("bias"), store, where),
                                s.get("stride", 1), s.get("padding", 0), s.get("dilation", 1), s.get("groups", 1)))
            elif t == "linear":
                _need(s, ("weight",), where)
                out.append(Linear(_array(s["weight"], store, where + ".weight"), _array(s.get("bias"), store, where)))
            elif t == "batchnorm":
                _need(s, ("mode", "num_features", "gamma", "beta"), where)
                out.append(BatchNormND(BatchNorm(int(s["num_features"]), s["mode"], _array(s.get("gamma"), store, where),
                                                 _array(s.get("beta"), store, where), s.get("eps", DEFAULT_EPS),
                                                 _array(s.get("running_mean"), store, where),
                                                 _array(s.get("running_var"), store, where))))
            elif t == "activation":
                _need(s, ("activation",), where)
                out.append(Activation(activation_from_spec(s["activation"])))
            elif t == "avgpool":
                _need(s, ("kernel",), where)
                out.append(AvgPool(s["kernel"], s.get("stride"), s.get("padding", 0), len(s["kernel"])))
            elif t == "adaptive_avgpool":
                _need(s, ("output_size",), where)
                out.append(AdaptiveAvgPool(s["output_size"], len(s["output_size"])))
            elif t == "maxpool":
                _need(s, ("kernel",), where)
                out.append(MaxPool(s["kernel"], s.get("stride"), s.get("padding", 0), s.get("dilation", 1),
                                   len(s["kernel"])))
            elif t == "flatten":
                out.append(Flatten())
            elif t == "residual":
                _need(s, ("body",), where)
                sc = s.get("shortcut")
                out.append(Residual(_layers_from_list(s["body"], store, where + ".body."),
                                    None if sc is None else _layers_from_list(sc, store, where + ".shortcut.")))
            else:
                raise NetworkFormatError(f"{where}: unknown layer type {t!r}; use conv, linear, batchnorm, activation, "
                                         "avgpool, adaptive_avgpool, maxpool, flatten or residual.")
        except NetworkFormatError:
            raise
        except CPAInputError as exc:
            raise type(exc)(f"{where}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise NetworkFormatError(f"{where}: {exc}") from None
    return tuple(out)


def convnet_from_dict(doc, store=None) -> ConvNetwork | Network:
    """Build a :class:`ConvNetwork` from a parsed v2 document (``store``: the sidecar's arrays, if any); a document
    with ``max_groups`` layers is a dense network with max-pooling and gives a :class:`Network`."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_V2:
        raise NetworkFormatError(f"format tag is {doc.get('format') if isinstance(doc, dict) else None!r}; "
                                 f"expected \"{FORMAT_V2}\".")
    _need(doc, ("input_shape", "layers"), "the network")
    if isinstance(doc["layers"], list) and any(isinstance(s, dict) and s.get("type") == "max_groups"
                                               for s in doc["layers"]):
        return _dense_from_dict(doc, store)
    layers = _layers_from_list(doc["layers"], store, "")
    batch = _array(doc.get("batch"), store, "batch")
    return ConvNetwork(tuple(doc["input_shape"]), layers, batch)


def _read_sidecar(path: Path) -> dict:
    if not path.is_file():
        raise NetworkFormatError(f"sidecar {str(path)!r} does not exist; keep it next to the JSON file.")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError) as exc:  # object arrays (pickles) are refused by allow_pickle=False
        raise NetworkFormatError(f"cannot read sidecar {str(path)!r} without pickles ({exc}); re-export it.") from None


def load_any_network(path):
    """Read a network file: ``cpa-network/1`` → :class:`Network`, ``cpa-network/2`` → :class:`ConvNetwork`."""
    from .inputs import parse_json

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise NetworkFormatError(f"network file {str(path)!r} does not exist; check the path.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NetworkFormatError(f"cannot read {str(path)!r} ({exc}).") from None
    doc = parse_json(text, repr(str(path)), NetworkFormatError)  # strict: no NaN literals, no repeated keys
    tag = doc.get("format") if isinstance(doc, dict) else None
    if tag == FORMAT_V1:
        return network_from_dict(doc)
    if tag != FORMAT_V2:
        raise NetworkFormatError(f"format tag is {tag!r}; this reader understands \"{FORMAT_V1}\" and \"{FORMAT_V2}\".")
    store = None
    if doc.get("arrays") is not None:
        name = doc["arrays"]
        if not isinstance(name, str) or Path(name).name != name:
            raise NetworkFormatError("'arrays' must be a plain file name next to the JSON file (no folders).")
        store = _read_sidecar(path.parent / name)
    return convnet_from_dict(doc, store)


def _owned_sidecar(json_path: Path, npz_name: str) -> bool:
    """The existing sidecar is ours to replace only if the JSON at ``json_path`` is a v2 file naming it."""
    try:
        doc = json.loads(json_path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("format") == FORMAT_V2 and doc.get("arrays") == npz_name


def save_convnet(net, path, *, sidecar: bool = False) -> None:
    """Write ``net`` as ``cpa-network/2`` JSON atomically; with ``sidecar=True`` the arrays go to
    ``<stem>.npz`` next to it (refusing to replace an .npz that no v2 file at ``path`` refers to)."""
    path = Path(path)
    doc, store = convnet_to_dict(net, sidecar=sidecar)
    if sidecar:
        npz = path.with_suffix(".npz")
        if npz.exists() and not _owned_sidecar(path, npz.name):
            raise OutputError(f"{str(npz)!r} exists and is not the sidecar of a cpa-network/2 file at {str(path)!r}; "
                              "choose another output name or remove it yourself.")
        doc["arrays"] = npz.name
        buf = io.BytesIO()
        np.savez(buf, **store)
        write_output(npz, buf.getvalue())  # atomic, regular files only, mode kept
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
