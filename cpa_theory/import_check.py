"""An imported network against the framework's own forward pass (PyTorch, Flax): one check for every importer.

The importers read a model's layers; this module confirms that what they built *is* the model, by evaluating both
in float64 and comparing row by row, relative to max(1, |output|∞), within
:data:`cpa_theory.tolerances.IMPORT_AGREEMENT_RTOL`:

* eval mode: at probe points — standard normal rows at scales 1, 10, 100 and 1000 (explicit seed), so that
  breakpoints far from the unit ball (relu6's 6, a clip at 8) are reached;
* train mode: on the batch (the framework's train-mode call), and away from it through the framework's
  evaluation call with the running statistics replaced by the batch's mean and biased variance — the same
  function — at the batch and the probe points; that second call counts only when it reproduces the network on
  the batch itself.

A difference is a :class:`cpa_theory.errors.ImportCheckError` naming where it was found; nothing is returned.
"""

from __future__ import annotations

import copy

import numpy as np

from .errors import ImportCheckError
from .tolerances import IMPORT_AGREEMENT_RTOL

__all__ = ["probes", "row_errors", "require_agreement", "check_torch_import"]

#: probe points: explicit seed, standard normal rows at each scale
PROBE_SEED, PROBE_ROWS, PROBE_SCALES = 20261203, 16, (1.0, 10.0, 100.0, 1000.0)


def probes(shape) -> np.ndarray:
    """``(len(PROBE_SCALES) · PROBE_ROWS, *shape)`` probe points (fixed seed)."""
    rng = np.random.default_rng(PROBE_SEED)
    return np.concatenate([s * rng.standard_normal((PROBE_ROWS,) + tuple(shape)) for s in PROBE_SCALES])


def row_errors(ours, ref) -> np.ndarray:
    """Per row: |ours − ref|∞ / max(1, |ref|∞); inf where either is not finite. Shapes must hold the same
    number of values per row."""
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if ours.size != ref.size or ours.shape[:1] != ref.shape[:1]:
        raise ImportCheckError(f"the model's output has shape {ref.shape}, the imported network's {ours.shape}: the "
                               "model computes more than the layers that were read.")
    ours, ref = ours.reshape(len(ours), -1), ref.reshape(len(ref), -1)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(ours - ref).max(axis=1, initial=0.0) / np.maximum(1.0, np.abs(ref).max(axis=1, initial=0.0))
    return np.where(np.isfinite(err), err, np.inf)


def require_agreement(err, where: str, tol: float, hint: str) -> None:
    """Raise :class:`ImportCheckError` when the largest row error exceeds ``tol``."""
    worst = float(np.max(err, initial=0.0))
    if not worst <= tol:
        raise ImportCheckError(f"the imported network differs from the model's own forward pass by {worst:.3g} "
                               f"(relative; tolerance {tol:.1g}) {where}; {hint}")


# -- PyTorch -----------------------------------------------------------------------------------------------------
_TORCH_HINT = ("cpa_theory misread a layer of this model: please report it (model code and the message); until "
               "then, write the model with the standard modules the importer lists.")


def _torch_bns(model):
    import torch.nn as nn

    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _torch_call(model, x):
    import torch

    with torch.no_grad():
        out = model(torch.as_tensor(np.asarray(x, dtype=np.float64)))
    if not isinstance(out, torch.Tensor):
        raise ImportCheckError(f"the model returns {type(out).__name__}; the importer reads models with one tensor "
                               "output.")
    return out.detach().cpu().double().numpy()


def check_torch_import(model, forward, batch=None, input_shape=None) -> None:
    """Check ``forward`` (the imported network's float64 forward pass on ``(M, *input_shape)``) against the
    PyTorch ``model`` (a deep copy in float64, dropout off): see the module docstring. ``batch`` given: train
    mode; otherwise eval mode with the running statistics."""
    import torch.nn as nn

    m = copy.deepcopy(model).double()
    drop = [mod for mod in m.modules() if isinstance(mod, nn.modules.dropout._DropoutNd)]
    P = probes(input_shape if batch is None else np.shape(batch)[1:])
    if batch is None:
        m.eval()
        require_agreement(row_errors(forward(P), _torch_call(m, P)), "in eval mode at probe points",
                          IMPORT_AGREEMENT_RTOL, _TORCH_HINT)
        return
    X = np.asarray(batch, dtype=np.float64)
    bns = _torch_bns(m)
    seen: dict = {}
    hooks = [b.register_forward_hook(lambda mod, inp, out: seen.setdefault(id(mod), []).append(inp[0].detach()))
             for b in bns]
    m.train()
    for mod in drop:
        mod.eval()
    try:
        ref = _torch_call(m, X)
    finally:
        for h in hooks:
            h.remove()
    require_agreement(row_errors(forward(X), ref), "in train mode on the batch", IMPORT_AGREEMENT_RTOL, _TORCH_HINT)
    # away from the batch: eval mode with running statistics := the batch's (each BN called once, with buffers)
    if any(len(seen.get(id(b), ())) != 1 or b.running_mean is None for b in bns):
        return
    for b in bns:
        z = seen[id(b)][0]
        dims = [0] + list(range(2, z.dim()))
        b.running_mean.copy_(z.mean(dim=dims))
        b.running_var.copy_(z.var(dim=dims, unbiased=False))
    m.eval()
    both = np.concatenate([X, P])
    err = row_errors(forward(both), _torch_call(m, both))
    if err[:len(X)].max(initial=0.0) <= IMPORT_AGREEMENT_RTOL:
        require_agreement(err, "away from the batch (eval mode with the batch's statistics)", IMPORT_AGREEMENT_RTOL,
                          _TORCH_HINT)
