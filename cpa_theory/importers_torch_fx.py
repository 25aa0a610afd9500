"""Import PyTorch convolutional networks (with residual blocks) into :class:`cpa_theory.convnet.ConvNetwork`.

``from_torch_convnet(model, batch=None, input_shape=None, state_dict=None)`` traces ``model`` with
``torch.fx`` (so residual blocks written as the user's own module classes are read through their
``forward``), maps every leaf module to a :mod:`cpa_theory.layers` operator and recognises ``a + b`` nodes
whose two operands branch from one common tensor as residual blocks y = body(x) + shortcut(x). Anything
else (concatenation, products, ``view``, unsupported modules or options) is refused with
:class:`cpa_theory.layers.UnsupportedLayerError` naming the module.

With ``batch`` every BatchNorm is in train mode conditioned on it (PyTorch ``.train()`` semantics); without,
in eval mode with the running statistics. Dropout is accepted and ignored (the identity in eval mode; a
conditioned training-time function has no dropout mask) with a note (``ConvImport.notes`` and a warning).
``state_dict`` (dict or a file read with ``weights_only=True``) is loaded into a deep copy: the caller's model
is never modified.
"""

from __future__ import annotations

import copy
import operator
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .activations import relu
from .bn import BatchNorm
from .convnet import ConvNetwork
from .errors import CPAInputError, NetworkFormatError
from .import_check import check_torch_import
from .layers import (Activation, AdaptiveAvgPool, AvgPool, BatchNormND, Conv, Flatten, Linear, MaxPool, Residual,
                     UnsupportedLayerError)

__all__ = ["from_torch_convnet", "ConvImport", "DropoutIgnoredWarning"]


class DropoutIgnoredWarning(UserWarning):
    """A Dropout module was accepted and ignored."""


@dataclass(frozen=True)
class ConvImport:
    """The imported network and the notes the import made (e.g. Dropout ignored)."""

    network: ConvNetwork
    notes: tuple


def _np(t) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _bn(mod, mode, name) -> BatchNormND:
    gamma = _np(mod.weight) if mod.weight is not None else None
    beta = _np(mod.bias) if mod.bias is not None else None
    kw = {}
    if mode == "eval":
        if mod.running_mean is None:
            raise UnsupportedLayerError(f"{name} ({type(mod).__name__}) has no running statistics "
                                        "(track_running_stats=False), so it has no eval mode; pass batch=... to "
                                        "condition it in train mode.")
        kw = {"running_mean": _np(mod.running_mean), "running_var": _np(mod.running_var)}
    return BatchNormND(BatchNorm(mod.num_features, mode, gamma, beta, float(mod.eps), **kw))


def _conv(mod, name) -> Conv:
    if mod.padding_mode != "zeros":
        raise UnsupportedLayerError(f"{name} ({type(mod).__name__}) uses padding_mode={mod.padding_mode!r}; only "
                                    "'zeros' is supported.")
    k = mod.kernel_size
    pad = mod.padding
    if pad == "valid":
        pad = (0,) * len(k)
    elif pad == "same":
        tot = [d * (kk - 1) for d, kk in zip(mod.dilation, k)]
        if any(t % 2 for t in tot):
            raise UnsupportedLayerError(f"{name}: padding='same' with an even kernel extent pads asymmetrically; "
                                        "give explicit symmetric padding.")
        pad = tuple(t // 2 for t in tot)
    return Conv(_np(mod.weight), None if mod.bias is None else _np(mod.bias), mod.stride, pad, mod.dilation,
                mod.groups)


def _module_layer(mod, name, mode, notes):
    """The cpa_theory layer for one leaf module, or None (ignored: Dropout, Identity)."""
    import torch.nn as nn

    from .importers import _torch_activation

    if isinstance(mod, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)):
        notes.append(f"{name} ({type(mod).__name__}) ignored: dropout is the identity in eval mode and the "
                     "conditioned training-time function has no dropout mask.")
        return None
    if isinstance(mod, nn.Identity):
        return None
    if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
        return _conv(mod, name)
    if isinstance(mod, nn.Linear):
        return Linear(_np(mod.weight), None if mod.bias is None else _np(mod.bias))
    if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return _bn(mod, mode, name)
    if isinstance(mod, nn.Flatten):
        if mod.start_dim != 1 or mod.end_dim != -1:
            raise UnsupportedLayerError(f"{name} (Flatten) with start_dim={mod.start_dim}, end_dim={mod.end_dim}; "
                                        "only Flatten(1, -1) is supported.")
        return Flatten()
    if isinstance(mod, (nn.AvgPool1d, nn.AvgPool2d)):
        nd = 1 if isinstance(mod, nn.AvgPool1d) else 2
        if mod.ceil_mode or not mod.count_include_pad or getattr(mod, "divisor_override", None):
            raise UnsupportedLayerError(f"{name} ({type(mod).__name__}): only ceil_mode=False, "
                                        "count_include_pad=True, divisor_override=None are supported.")
        return AvgPool(mod.kernel_size, mod.stride, mod.padding, nd)
    if isinstance(mod, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        nd = 1 if isinstance(mod, nn.AdaptiveAvgPool1d) else 2
        size = mod.output_size
        if size is None or (not isinstance(size, int) and None in tuple(size)):
            raise UnsupportedLayerError(f"{name}: adaptive pooling with a None output size is not supported; give "
                                        "the size explicitly.")
        return AdaptiveAvgPool(size, nd)
    if isinstance(mod, (nn.MaxPool1d, nn.MaxPool2d)):
        nd = 1 if isinstance(mod, nn.MaxPool1d) else 2
        if mod.ceil_mode or mod.return_indices:
            raise UnsupportedLayerError(f"{name} ({type(mod).__name__}): ceil_mode and return_indices are not "
                                        "supported.")
        return MaxPool(mod.kernel_size, mod.stride, mod.padding, mod.dilation, nd)
    try:
        return Activation(_torch_activation(mod))
    except CPAInputError:
        raise UnsupportedLayerError(
            f"unsupported module {name} ({type(mod).__name__}): cpa_theory imports Conv1d/2d, Linear, "
            "BatchNorm1d/2d, AvgPool, AdaptiveAvgPool, MaxPool, Flatten, Dropout, Identity and CPA activations "
            "(ReLU, LeakyReLU, Hardtanh, ReLU6, Hardsigmoid), and residual additions; remove or replace it."
        ) from None


def _merge(a, b, name):
    """Residual block from two op paths [(node, op)] that branch from a common tensor."""
    k = 0
    while k < min(len(a), len(b)) and a[k][0] == b[k][0]:
        k += 1
    ra, rb = [op for _, op in a[k:] if op is not None], [op for _, op in b[k:] if op is not None]
    if not ra and not rb:
        raise UnsupportedLayerError(f"{name}: x + x is not a residual block; write 2 * x as a layer instead.")
    body, short = (rb, None) if not ra else ((ra, None) if not rb else (ra, rb))
    return a[:k] + [(name, Residual(tuple(body), None if short is None else tuple(short)))]


def check_materialised(model) -> None:
    """Refuse a model with uninitialised (lazy) parameters, e.g. an ``nn.LazyLinear`` never run."""
    from torch.nn.parameter import is_lazy

    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if is_lazy(t):
            raise CPAInputError(f"parameter {name!r} is uninitialised (a lazy module, e.g. nn.LazyLinear, that has not "
                                "run yet); run the model once on a batch (model(x)) before importing it.")


def torch_forward(m) -> bool:
    """Whether module ``m`` runs PyTorch's own ``forward`` (a user subclass that overrides it, e.g. a Linear that
    doubles its output, must be traced, not read as its base class)."""
    return getattr(type(m).forward, "__module__", "").startswith("torch.")


def from_torch_convnet(model, batch=None, *, input_shape=None, state_dict=None) -> ConvImport:
    """Convert a PyTorch CNN; see the module docstring.

    Args:
        model: ``nn.Module`` (``nn.Sequential`` or a module whose forward composes supported modules and
            residual additions).
        batch: ``(B, *input_shape)`` array/tensor; conditions every BatchNorm in train mode on it.
        input_shape: ``(C, *spatial)`` when no batch is given.
        state_dict: a dict or a ``torch.save``d file, loaded into a deep copy of ``model``.

    Returns: :class:`ConvImport` (``network``, ``notes``).
    """
    import torch
    import torch.fx as fx
    import torch.nn as nn
    import torch.nn.functional as F

    if not isinstance(model, nn.Module):
        raise CPAInputError(f"from_torch_convnet needs a torch nn.Module; got {type(model).__name__}.")
    check_materialised(model)
    if state_dict is not None:
        from .importers import load_torch_state_dict

        sd = load_torch_state_dict(state_dict) if isinstance(state_dict, (str, Path)) else state_dict
        model = copy.deepcopy(model)
        try:
            model.load_state_dict(sd)
        except RuntimeError as exc:
            raise NetworkFormatError(f"state dict does not fit the model: {str(exc).splitlines()[0][:200]}") from None
    if batch is not None and isinstance(batch, torch.Tensor):
        batch = _np(batch)
    if batch is not None:
        batch = np.asarray(batch, dtype=np.float64)
        input_shape = batch.shape[1:] if input_shape is None else input_shape
    if input_shape is None:
        raise CPAInputError("give batch=... (train-mode BN) or input_shape=(C, H, W) (eval mode).")
    mode = "train" if batch is not None else "eval"
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types on data-dependent control flow
        raise UnsupportedLayerError(f"cannot trace {type(model).__name__} with torch.fx ({type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0][:160]}); write forward without data-dependent "
                                    "control flow.") from None
    modules = dict(gm.named_modules())
    notes: list[str] = []
    values: dict = {}
    out_path = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if values:
                raise UnsupportedLayerError(f"{type(model).__name__} takes several inputs ({node.name}); one is supported.")
            values[node.name] = []
            continue
        if node.op == "output":
            arg = node.args[0]
            if not isinstance(arg, fx.Node):
                raise UnsupportedLayerError("the model returns several tensors; one output is supported.")
            out_path = values[arg.name]
            continue
        args = [a for a in node.args if isinstance(a, fx.Node)]
        if node.op == "call_module":
            mod = modules[node.target]
            layer = _module_layer(mod, node.target, mode, notes)
            values[node.name] = values[args[0].name] + [(node.name, layer)]
            continue
        if node.op == "get_attr":  # a forward of the user's own uses a parameter directly
            owner = str(node.target).rpartition(".")[0] or type(model).__name__
            raise UnsupportedLayerError(
                f"module {owner!r} has a forward of its own that uses its parameter {str(node.target)!r} directly (e.g. "
                "a subclass of nn.Linear that overrides forward); cpa_theory reads nn modules that run torch's own "
                "forward, relu, flatten(x, 1) and residual sums: write the layer with those.")
        fn = node.target
        label = f"{node.name} ({getattr(fn, '__name__', fn)})"
        if (node.op == "call_function" and fn in (operator.add, operator.iadd, torch.add)) or (
                node.op == "call_method" and fn in ("add", "add_", "__add__")):
            if len(args) != 2 or len(node.args) != 2 or node.kwargs:
                raise UnsupportedLayerError(f"{label}: only the sum of two tensors (x + body(x)) is supported.")
            values[node.name] = _merge(values[args[0].name], values[args[1].name], node.name)
            continue
        if (node.op == "call_function" and fn in (torch.relu, F.relu)) or (node.op == "call_method" and fn == "relu"):
            values[node.name] = values[args[0].name] + [(node.name, Activation(relu()))]
            continue
        if (node.op == "call_function" and fn is torch.flatten) or (node.op == "call_method" and fn == "flatten"):
            rest = list(node.args[1:]) + list(node.kwargs.values())
            if rest[:1] != [1] or any(v not in (-1,) for v in rest[1:]):
                raise UnsupportedLayerError(f"{label}: only flatten(x, 1) is supported.")
            values[node.name] = values[args[0].name] + [(node.name, Flatten())]
            continue
        raise UnsupportedLayerError(f"unsupported operation {label} in {type(model).__name__}.forward: cpa_theory "
                                    "reads modules, relu, flatten(x, 1) and residual sums; use nn modules for the "
                                    "rest.")
    layers = tuple(op for _, op in out_path if op is not None)
    net = ConvNetwork(tuple(input_shape), layers, batch)
    check_torch_import(model, net.condition().forward, batch, tuple(input_shape))
    for n in notes:
        warnings.warn(n, DropoutIgnoredWarning, stacklevel=2)
    return ConvImport(net, tuple(notes))
