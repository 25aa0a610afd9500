"""The ``cpa-network/1`` JSON file format (INTERFACE.md): load, save, dicts.

Writes go through :func:`cpa_theory.outputs.write_output` (atomic, regular files
only, umask/mode respected), so a failed or interrupted save never leaves a
half-written file.
"""

from __future__ import annotations

import json

from .activations import activation_from_spec
from .bn import DEFAULT_EPS, BatchNorm
from .errors import CPAInputError, NetworkFormatError, ShapeError
from .network import Layer, Network
from .outputs import write_output

__all__ = ["FORMAT", "network_from_dict", "network_to_dict", "load_network", "save_network", "atomic_write_text"]

FORMAT = "cpa-network/1"
_LAYER_KEYS = {"weight", "bias", "batchnorm", "activation"}


def _bn_from_dict(spec, n: int, where: str) -> BatchNorm | None:
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise NetworkFormatError(f"{where}.batchnorm must be null or an object; got {spec!r}.")
    if "mode" not in spec:
        raise NetworkFormatError(f"{where}.batchnorm has no 'mode'; add \"mode\": \"train\" or \"eval\".")
    missing = [k for k in ("gamma", "beta") if k not in spec]
    if missing:
        raise NetworkFormatError(f"{where}.batchnorm has no {' or '.join(repr(k) for k in missing)}; add them (a list "
                                 f"of {n} numbers each: {{\"gamma\": [1, ...], \"beta\": [0, ...]}} for PyTorch's "
                                 "initial values).")
    unknown = set(spec) - {"mode", "gamma", "beta", "eps", "running_mean", "running_var"}
    if unknown:
        raise NetworkFormatError(f"{where}.batchnorm has unknown keys {sorted(unknown)}; allowed: mode, gamma, "
                                 "beta, eps, running_mean, running_var.")
    try:
        return BatchNorm(n, spec["mode"], spec.get("gamma"), spec.get("beta"), spec.get("eps", DEFAULT_EPS),
                         spec.get("running_mean"), spec.get("running_var"))
    except CPAInputError as exc:
        raise type(exc)(f"{where}: {exc}") from None


def network_from_dict(doc) -> Network:
    """Build a :class:`Network` from a parsed ``cpa-network/1`` document."""
    if not isinstance(doc, dict):
        raise NetworkFormatError("a network file must hold a JSON object with 'format', 'input_dim' and 'layers'.")
    if doc.get("format") == "cpa-network/2":
        raise NetworkFormatError("this is a cpa-network/2 (convolutional) file; count it on slices with "
                                 "`cpa-theory slice` (cpa_theory.slices), or read it with load_any_network.")
    if doc.get("format") != FORMAT:
        raise NetworkFormatError(f"format tag is {doc.get('format')!r}; this reader understands \"{FORMAT}\" "
                                 "(add \"format\": \"cpa-network/1\").")
    for key in ("input_dim", "layers"):
        if key not in doc:
            raise NetworkFormatError(f"the network has no '{key}'; add it (see INTERFACE.md).")
    if not isinstance(doc["layers"], list):
        raise NetworkFormatError("'layers' must be a list of layer objects.")
    layers = []
    for i, spec in enumerate(doc["layers"]):
        where = f"layers[{i}]"
        if not isinstance(spec, dict):
            raise NetworkFormatError(f"{where} must be an object with weight, bias, batchnorm, activation.")
        missing = {"weight", "bias", "activation"} - set(spec)
        if missing:
            raise NetworkFormatError(f"{where} is missing {sorted(missing)}; add them.")
        unknown = set(spec) - _LAYER_KEYS
        if unknown:
            raise NetworkFormatError(f"{where} has unknown keys {sorted(unknown)}: cpa-network/1 layers are dense "
                                     "(weight, bias, batchnorm, activation); convert other layer types first.")
        from .inputs import as_float_array

        w = as_float_array(spec["weight"], f"{where}.weight (a rectangular out x in list of numbers)", ShapeError)
        if w.ndim != 2:  # report the weight, not the BN parameters sized from it
            raise ShapeError(f"{where}.weight has shape {w.shape}; it must be a 2-D out x in list of lists "
                             "(one row per neuron).")
        n = w.shape[0]
        try:
            layers.append(Layer(w, spec["bias"], activation_from_spec(spec["activation"]),
                                _bn_from_dict(spec.get("batchnorm"), n, where)))
        except CPAInputError as exc:
            if str(exc).startswith(where):
                raise
            raise type(exc)(f"{where}: {exc}") from None
    batch = doc.get("batch")
    try:
        return Network(doc["input_dim"], tuple(layers), None if batch is None else batch)
    except CPAInputError:
        raise
    except (TypeError, ValueError) as exc:
        raise NetworkFormatError(f"invalid network: {exc}") from None


def network_to_dict(net: Network) -> dict:
    """The ``cpa-network/1`` document of ``net`` (floats round-trip exactly)."""
    if not isinstance(net, Network):
        from .errors import ArgumentTypeError

        raise ArgumentTypeError(f"save / network_to_dict need a cpa_theory Network; got {type(net).__name__}. "
                                "Pass the Network built with cpa.Network(...) or loaded with cpa.load(path).")
    layers = []
    for layer in net.layers:
        bn = layer.batchnorm
        bn_doc = None
        if bn is not None:
            bn_doc = {"mode": bn.mode, "gamma": bn.gamma.tolist(), "beta": bn.beta.tolist(), "eps": bn.eps}
            if bn.mode == "eval":
                bn_doc["running_mean"] = bn.running_mean.tolist()
                bn_doc["running_var"] = bn.running_var.tolist()
        layers.append({"weight": layer.weight.tolist(), "bias": layer.bias.tolist(), "batchnorm": bn_doc,
                       "activation": layer.activation.to_spec()})
    doc = {"format": FORMAT, "input_dim": int(net.input_dim), "layers": layers}
    if net.batch is not None:
        doc["batch"] = net.batch.tolist()
    return doc


def load_network(path) -> Network:
    """Read a ``cpa-network/1`` JSON file."""
    from .inputs import read_json

    # a regular file under the size cap, UTF-8, strict JSON (no NaN literals, huge integers or deep nesting)
    doc = read_json(path, "network file", NetworkFormatError)
    return network_from_dict(doc)


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: :func:`cpa_theory.outputs.write_output` (kept for old callers)."""
    write_output(path, text)


def save_network(net: Network, path) -> None:
    """Write ``net`` as ``cpa-network/1`` JSON, atomically."""
    from .inputs import check_output_path

    doc = network_to_dict(net)  # type errors before touching the disk
    check_output_path(path, "network file")
    write_output(path, json.dumps(doc, indent=1) + "\n")
