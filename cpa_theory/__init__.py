"""cpa_theory: training-time BatchNorm and the local affine-region partition of CPA networks.

The core (this package's top level) re-exports activations, BN algebra,
networks, the file format, switching hyperplanes and the C4 window criterion.
Orchestrators (counting, sweeps, claims, CLI) are imported where used, so that
``numerics`` and ``proofs`` can import the core without a cycle.
"""

from .activations import (
    CPAActivation,
    absolute,
    activation_from_spec,
    hardsigmoid,
    hardtanh,
    identity,
    leaky_relu,
    relu,
    relu6,
    spline,
)
from .bn import BatchNorm, batch_statistics, bn_scale, standardized_coordinate, standardized_offset
from .errors import (
    ActivationError,
    BatchError,
    BatchNormError,
    CPAInputError,
    DegenerateBatchNormError,
    ImportCheckError,
    NetworkFormatError,
    NonFiniteError,
    ShapeError,
    WindowError,
)
from .fileformat import load_network, network_from_dict, network_to_dict, save_network
from .hyperplanes import HyperplaneStatus, SwitchingHyperplanes, switching_hyperplanes
from .network import ConditionedLayer, ConditionedNetwork, Layer, Network
from .windows import (
    Window,
    WindowRelation,
    bn_window_slack,
    dual_norm,
    exact_relation,
    hyperplane_residual,
    plain_window_slack,
    window_hits,
    window_relations,
    window_slack,
)

def from_torch(model, batch=None, state_dict=None, *, input_shape=None):
    """PyTorch model → Network (an ``nn.Sequential`` MLP) or ConvNetwork (conv/pool/BatchNorm2d/residual models;
    ``input_shape`` ``(C, *spatial)`` when no batch is given): ``cpa_theory.importers.from_torch``, torch lazily."""
    from .importers import from_torch as _from_torch

    return _from_torch(model, batch=batch, state_dict=state_dict, input_shape=input_shape)


def from_flax(variables, activations, batch=None, eps=None, *, module=None, apply_kwargs=None):
    """Flax Dense/BatchNorm variables → Network; with ``module=`` the layer order is traced and the import checked
    against ``module.apply`` (see ``cpa_theory.importers_flax``)."""
    from .importers_flax import from_flax as _from_flax

    return _from_flax(variables, activations, batch=batch, eps=eps, module=module, apply_kwargs=apply_kwargs)


load = load_network
save = save_network

__version__ = "0.1.0"

__all__ = [
    "CPAActivation", "absolute", "activation_from_spec", "hardsigmoid", "hardtanh", "identity", "leaky_relu",
    "relu", "relu6", "spline",
    "BatchNorm", "batch_statistics", "bn_scale", "standardized_coordinate", "standardized_offset",
    "ActivationError", "BatchError", "BatchNormError", "CPAInputError", "DegenerateBatchNormError",
    "ImportCheckError", "NetworkFormatError", "NonFiniteError", "ShapeError", "WindowError",
    "from_torch", "from_flax", "load_network", "network_from_dict", "network_to_dict", "save_network", "load", "save",
    "HyperplaneStatus", "SwitchingHyperplanes", "switching_hyperplanes",
    "ConditionedLayer", "ConditionedNetwork", "Layer", "Network",
    "Window", "WindowRelation", "bn_window_slack", "dual_norm", "exact_relation", "hyperplane_residual",
    "plain_window_slack", "window_hits", "window_relations", "window_slack",
]
