"""Import users' PyTorch and Flax MLPs into :class:`Network` (train-mode BN conditioned on a batch, or eval).

PyTorch: ``from_torch(model, batch=None, state_dict=None)`` for ``nn.Sequential`` of Linear / BatchNorm1d /
ReLU / LeakyReLU / Hardtanh / ReLU6 / Hardsigmoid / Identity. ``state_dict`` (a dict or a file saved with
``torch.save``) is loaded into ``model`` first; files are read with ``weights_only=True`` — never unpickling
arbitrary objects. Flax: ``from_flax`` lives in :mod:`cpa_theory.importers_flax` (re-exported here).

With ``batch`` given, BN layers are in train mode conditioned on it (PyTorch ``BatchNorm1d.train()``
semantics); without, they are in eval mode with the module's running statistics. Dropout is accepted and
ignored with a note (a :class:`cpa_theory.importers_torch_fx.DropoutIgnoredWarning`): it is the identity in eval
mode, and the conditioned training-time function has no dropout mask.

Convolutional models — any Conv, pooling, BatchNorm2d or Flatten module, or a model that is not a plain
``nn.Sequential`` of leaf modules (residual blocks written as the user's own classes) — are passed on to
:func:`cpa_theory.importers_torch_fx.from_torch_convnet`; ``from_torch`` then returns its
:class:`cpa_theory.convnet.ConvNetwork` (the import's notes are issued as warnings).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .activations import CPAActivation, hardsigmoid, identity, leaky_relu, relu, relu6, spline
from .bn import BatchNorm
from .errors import ArgumentTypeError, CPAInputError, NetworkFormatError
from .inputs import read_user_bytes, short
from .import_check import check_torch_import
from .importers_flax import from_flax
from .network import Layer, Network

__all__ = ["from_torch", "from_flax", "load_torch_state_dict"]


def _np(t) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _torch_activation(mod) -> CPAActivation:
    import torch.nn as nn

    if isinstance(mod, nn.ReLU):
        return relu()
    if isinstance(mod, nn.LeakyReLU):
        return leaky_relu(float(mod.negative_slope))
    if isinstance(mod, nn.ReLU6):
        return relu6()
    if isinstance(mod, nn.Hardsigmoid):
        return hardsigmoid()
    if isinstance(mod, nn.Hardtanh):  # after ReLU6 (a Hardtanh subclass)
        lo, hi = float(mod.min_val), float(mod.max_val)
        return spline([lo, hi], [lo, hi], 0.0, 0.0)
    if isinstance(mod, nn.Identity):
        return identity()
    raise CPAInputError(f"unsupported layer {type(mod).__name__}: cpa_theory imports nn.Sequential of Linear, "
                        "BatchNorm1d, ReLU, LeakyReLU, Hardtanh, ReLU6, Hardsigmoid, Identity; remove or replace it.")


def load_torch_state_dict(path) -> dict:
    """Read a ``torch.save``d state dict with ``weights_only=True`` (no arbitrary unpickling)."""
    import io

    import torch

    # regular file, size cap (a FIFO or /dev/zero is refused before torch sees it)
    data = read_user_bytes(path, "state-dict file", NetworkFormatError)
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        # torch's message suggests weights_only=False, i.e. running the file's pickled code: never pass that on
        kind = "holds pickled Python objects, not only tensors," if "weights_only" in str(exc) or "Unpickl" in \
            type(exc).__name__ else f"is not a torch.save file ({type(exc).__name__}), so it"
        raise NetworkFormatError(f"state-dict file {short(str(path), 120)} {kind} cannot be read as a weights-only "
                                 "state dict; save it with torch.save(model.state_dict(), path).") from None


_DROPOUT = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout")
_CONV_MODULES = ("Conv1d", "Conv2d", "BatchNorm2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d",
                 "AdaptiveAvgPool2d", "MaxPool1d", "MaxPool2d", "Flatten")


def _is_convnet(model) -> bool:
    """Does ``model`` need the convolutional importer (conv/pool/BN2d/Flatten modules, or structure beyond a
    flat ``nn.Sequential`` of leaf modules, e.g. residual blocks as user classes)?"""
    import torch.nn as nn

    from .importers_torch_fx import torch_forward

    if not isinstance(model, nn.Module):
        return False
    if any(type(m).__name__ in _CONV_MODULES and type(m).__module__.startswith("torch.nn") for m in model.modules()):
        return True
    if isinstance(model, nn.Sequential) and torch_forward(model):  # nested modules (a residual block class)
        return _flat_sequential(model) is None  # need tracing; nested nn.Sequentials of leaves are one flat MLP
    # a user class composing modules, or one whose own forward replaces its torch base class's
    return next(model.children(), None) is not None or not torch_forward(model)


def _flat_sequential(model):
    """``model`` (nn.Sequentials nested in nn.Sequentials, leaf modules at the bottom) as one flat nn.Sequential
    of its leaves in order, or None when some child is another kind of container (a user class)."""
    import torch.nn as nn

    from .importers_torch_fx import torch_forward

    leaves = []

    def walk(m) -> bool:
        for child in m:  # iterating the Sequential keeps a module used twice; children() lists it once
            if not torch_forward(child):  # a user forward (a subclass of Linear, ReLU, Sequential...): trace it
                return False
            if isinstance(child, nn.Sequential):
                if not walk(child):
                    return False
            elif next(child.children(), None) is not None:
                return False
            else:
                leaves.append(child)
        return True

    return nn.Sequential(*leaves) if walk(model) else None


def from_torch(model, batch=None, state_dict=None, *, input_shape=None):
    """Convert an ``nn.Sequential`` MLP to a :class:`Network`; a convolutional or residual model to a
    :class:`cpa_theory.convnet.ConvNetwork` (via ``from_torch_convnet``; ``input_shape`` ``(C, *spatial)`` is
    needed there when no batch is given). See the module docstring."""
    import torch.nn as nn

    from .importers_torch_fx import check_materialised, from_torch_convnet

    if isinstance(model, nn.Module):
        check_materialised(model)
    if _is_convnet(model):
        # from_torch_convnet issues its notes (e.g. Dropout ignored) as warnings itself
        return from_torch_convnet(model, batch, input_shape=input_shape, state_dict=state_dict).network
    try:
        return _from_flat_sequential(model, batch, state_dict)
    except _NotAnMLP:  # e.g. Linear, ReLU, BatchNorm1d, Linear: a valid network, just not Linear→BN→activation
        return from_torch_convnet(model, batch, input_shape=input_shape, state_dict=state_dict).network


class _NotAnMLP(CPAInputError):
    """The flat Sequential is not of the form (Linear [BatchNorm1d] [activation])*: the traced importer takes it."""


def _from_flat_sequential(model, batch, state_dict):
    import torch
    import torch.nn as nn

    if state_dict is not None:
        sd = load_torch_state_dict(state_dict) if isinstance(state_dict, (str, Path)) else state_dict
        if not isinstance(sd, dict):
            raise ArgumentTypeError(f"state_dict must be a file path or a dict of tensors; got {short(sd, 30)}.")
        if not isinstance(model, nn.Module):
            raise ArgumentTypeError(f"from_torch needs an nn.Sequential; got {type(model).__name__}.")
        import copy

        model = copy.deepcopy(model)  # load into a copy: the caller's model keeps its own weights
        try:
            model.load_state_dict(sd)
        except (RuntimeError, TypeError, KeyError) as exc:
            raise NetworkFormatError(f"state dict does not fit the model: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(model, nn.Sequential):
        raise CPAInputError(f"from_torch needs an nn.Sequential; got {type(model).__name__}. Wrap the layers in "
                            "nn.Sequential(...).")
    given = model
    model = _flat_sequential(model)  # nested nn.Sequentials of leaf modules (not None: _is_convnet said so)
    mode = "train" if batch is not None else "eval"
    layers: list[dict] = []
    for i, mod in enumerate(model):
        if type(mod).__name__ in _DROPOUT and type(mod).__module__.startswith("torch.nn"):
            import warnings

            from .importers_torch_fx import DropoutIgnoredWarning

            warnings.warn(f"module {i} ({type(mod).__name__}) ignored: dropout is the identity in eval mode and the "
                          "conditioned training-time function has no dropout mask.", DropoutIgnoredWarning,
                          stacklevel=2)
            continue
        if isinstance(mod, nn.Linear):
            b = _np(mod.bias) if mod.bias is not None else np.zeros(mod.out_features)
            layers.append({"weight": _np(mod.weight), "bias": b, "bn": None, "act": None})
            continue
        if not layers:
            raise _NotAnMLP(f"{type(mod).__name__} before the first Linear layer")
        cur = layers[-1]
        if isinstance(mod, nn.BatchNorm1d):
            if cur["bn"] is not None or cur["act"] is not None:
                raise _NotAnMLP("BatchNorm1d not directly after a Linear layer")
            gamma = _np(mod.weight) if mod.weight is not None else None
            beta = _np(mod.bias) if mod.bias is not None else None
            kw = {}
            if mode == "eval":
                if mod.running_mean is None:
                    raise CPAInputError("BatchNorm1d without running statistics (track_running_stats=False) has no "
                                        "eval mode; pass batch=... to condition it in train mode.")
                kw = {"running_mean": _np(mod.running_mean), "running_var": _np(mod.running_var)}
            cur["bn"] = BatchNorm(mod.num_features, mode, gamma, beta, float(mod.eps), **kw)
            continue
        if cur["act"] is not None:
            raise _NotAnMLP(f"two activations in a row ({type(mod).__name__})")
        cur["act"] = _torch_activation(mod)
    if not layers:
        raise CPAInputError("the model has no nn.Linear layer.")
    out = tuple(Layer(l["weight"], l["bias"], l["act"] or identity(), l["bn"]) for l in layers)
    if batch is not None and isinstance(batch, torch.Tensor):
        batch = _np(batch)
    net = Network(out[0].in_dim, out, batch)
    check_torch_import(given, net.condition().forward, net.batch, (net.input_dim,))
    return net
