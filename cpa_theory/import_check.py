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
PyTorch: the tolerance grows by the BatchNorm inputs' conditioning (|mean| + std)/sqrt(var + eps) — centring
raw features of 1e9 ± 1 loses ~1e-7 in any float64 forward — and is ``IMPORT_AGREEMENT_RTOL_FLOAT32`` for a
float32 model whose weights are derived (parametrizations, weight norm: its float64 copy recomputes them). A
model that cannot be deep-copied, or that PyTorch will not run in the mode asked for (BatchNorm eps = 0 in
train mode), is returned unchecked with an :class:`ImportCheckSkippedWarning` saying why.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np

from .errors import ImportCheckError
from .tolerances import IMPORT_AGREEMENT_RTOL, IMPORT_AGREEMENT_RTOL_FLOAT32

__all__ = ["probes", "row_errors", "require_agreement", "check_torch_import", "ImportCheckSkippedWarning"]

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


class ImportCheckSkippedWarning(UserWarning):
    """The import could not be checked against the model (it cannot be copied, or PyTorch will not run it in
    the mode asked for): the network is returned unchecked, and the warning says why."""


def _batch_stats(bns, seen) -> dict:
    """Per BatchNorm called exactly once on the batch: the mean and biased variance of its input (per channel)."""
    out = {}
    for b in bns:
        if len(seen.get(id(b), ())) == 1:
            z = seen[id(b)][0]
            dims = [0] + list(range(2, z.dim()))
            out[id(b)] = (z.mean(dim=dims), z.var(dim=dims, unbiased=False))
    return out


def _conditioning(bns, stats) -> float:
    """max over BatchNorm features of (|mean| + std)/sqrt(var + eps): centring z − mean in float64 loses about u
    times this relative (raw features of 1e9 ± 1 lose 1e-7 in any float64 forward, PyTorch's as well as ours),
    from the batch the layer saw (``stats``, train mode) or its running statistics (eval)."""
    k = 1.0
    for b in bns:
        if id(b) in stats:
            mean, var = stats[id(b)]
        elif b.running_mean is not None:
            mean, var = b.running_mean, b.running_var
        else:
            continue
        k = max(k, float(((mean.abs() + var.sqrt()) / (var + b.eps).sqrt()).max()))
    return k


def _derived_weights(model) -> bool:
    """Weights computed from other tensors by the model (parametrizations, weight/spectral norm hooks, pruning):
    a float64 copy recomputes them in float64, not what a float32 model uses."""
    from torch.nn.utils import parametrize

    return any(parametrize.is_parametrized(m) or len(m._forward_pre_hooks) for m in model.modules())


def _tolerance(model, k) -> float:
    import torch

    low = any(p.dtype in (torch.float32, torch.float16, torch.bfloat16) for p in model.parameters())
    base = IMPORT_AGREEMENT_RTOL_FLOAT32 if low and _derived_weights(model) else IMPORT_AGREEMENT_RTOL
    return base * k


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

    try:
        m = copy.deepcopy(model).double()
    except Exception as exc:  # non-leaf tensors (pruning, old-style weight norm), locks or files on the model
        warnings.warn(f"the import was not checked against the model: it cannot be copied ({type(exc).__name__}: "
                      f"{str(exc).splitlines()[0][:160]}).", ImportCheckSkippedWarning, stacklevel=3)
        return
    drop = [mod for mod in m.modules() if isinstance(mod, nn.modules.dropout._DropoutNd)]
    P = probes(input_shape if batch is None else np.shape(batch)[1:])
    bns = _torch_bns(m)
    if batch is None:
        m.eval()
        ref = _run_or_skip(m, P)
        if ref is not None:
            tol = _tolerance(model, _conditioning(bns, {}))
            require_agreement(row_errors(forward(P), ref), "in eval mode at probe points", tol, _hint(tol))
        return
    X = np.asarray(batch, dtype=np.float64)
    seen: dict = {}
    hooks = [b.register_forward_hook(lambda mod, inp, out: seen.setdefault(id(mod), []).append(inp[0].detach()))
             for b in bns]
    m.train()
    for mod in drop:
        mod.eval()
    try:
        ref = _run_or_skip(m, X)
    finally:
        for h in hooks:
            h.remove()
    if ref is None:
        return
    stats = _batch_stats(bns, seen)
    tol = _tolerance(model, _conditioning(bns, stats))
    require_agreement(row_errors(forward(X), ref), "in train mode on the batch", tol, _hint(tol))
    # away from the batch: eval mode with running statistics := the batch's (each BN called once, with buffers)
    if any(id(b) not in stats or b.running_mean is None for b in bns):
        return
    for b in bns:
        b.running_mean.copy_(stats[id(b)][0])
        b.running_var.copy_(stats[id(b)][1])
    m.eval()
    both = np.concatenate([X, P])
    ref = _run_or_skip(m, both)
    if ref is None:
        return
    err = row_errors(forward(both), ref)
    if err[:len(X)].max(initial=0.0) <= tol:
        require_agreement(err, "away from the batch (eval mode with the batch's statistics)", tol, _hint(tol))


def _hint(tol) -> str:
    if tol > 1e3 * IMPORT_AGREEMENT_RTOL:
        return (f"the tolerance is already widened to {tol:.1g} for BatchNorm inputs far from their spread (float64 "
                "cannot do better there); " + _TORCH_HINT)
    return _TORCH_HINT


def _run_or_skip(m, x):
    """The model's output on ``x``, or None (with :class:`ImportCheckSkippedWarning`) when PyTorch will not run it
    (e.g. BatchNorm with eps = 0 in train mode)."""
    try:
        return _torch_call(m, x)
    except ImportCheckError:
        raise
    except Exception as exc:
        warnings.warn(f"the import was not checked against the model: PyTorch did not run it ({type(exc).__name__}: "
                      f"{str(exc).splitlines()[0][:160]}).", ImportCheckSkippedWarning, stacklevel=4)
        return None
