"""Import Flax (linen) MLPs of Dense (+ BatchNorm) layers into :class:`Network`, checked against the module.

``from_flax(variables, activations, batch=None, *, module, apply_kwargs=None)``. The variables alone do not say
how the layers are composed: Flax numbers ``Dense_k`` and ``BatchNorm_k`` separately and in *construction* order
(``nn.Dense(1)(relu(nn.Dense(8)(x)))`` names the outer layer ``Dense_0``), a BatchNorm without scale and bias has
no parameters at all, and ``setup`` modules carry the user's names. So the module is required: one
``module.apply`` records every submodule call in call order (``capture_intermediates`` with a recording filter;
nothing is stored), the leaf calls give the Dense → BatchNorm chain (each BatchNorm's own ``epsilon``), and the
imported network is then compared with Flax's own forward pass in float64:

* eval mode: ``module.apply(variables, x, **apply_kwargs)`` at probe points of several scales (a breakpoint at 6
  or a clip at 8 is reached);
* train mode: ``module.apply(..., mutable=["batch_stats"])`` on the batch (Flax's batch variance E[z²] − E[z]²
  loses digits when |mean| ≫ std: the tolerance grows by that ratio), and — the same function away from the
  batch — ``module.apply`` in its default (evaluation) call with the running statistics replaced by the batch's
  mean and biased variance, at the batch and the probe points; that call counts only when it reproduces the
  network on the batch itself (a module whose default call is not its evaluation path skips it).

A difference beyond :data:`cpa_theory.tolerances.IMPORT_AGREEMENT_RTOL` (``IMPORT_AGREEMENT_RTOL_FLOAT32`` when a
layer computes in float32) per row, relative to max(1, |output|) (:mod:`cpa_theory.import_check`), is an
:class:`cpa_theory.errors.ImportCheckError` that says what to check (the activation list, where BatchNorm sits,
``apply_kwargs`` such as ``{"train": True}``); nothing wrong is returned. Layers computing in bfloat16 / float16 are refused: the check could not tell a wrong import from
rounding.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .activations import CPAActivation
from .bn import BatchNorm
from .errors import ArgumentTypeError, CPAInputError, NetworkFormatError
from .import_check import probes, require_agreement, row_errors
from .inputs import short
from .network import Layer, Network
from .tolerances import IMPORT_AGREEMENT_RTOL, IMPORT_AGREEMENT_RTOL_FLOAT32

__all__ = ["from_flax"]


class _Plan(list):
    """The layers as ``(Dense path, BatchNorm path or None, epsilon or None)`` in call order, with the lowest
    compute dtype any of them pins (``dtype``: None when all follow their inputs, float64 here)."""

    dtype = None


def from_flax(variables, activations, batch=None, eps: float | None = None, *, module=None,
              apply_kwargs: Mapping | None = None) -> Network:
    """Convert a Flax linen MLP of Dense (+ BatchNorm) layers (see the module docstring).

    Args:
        variables: ``{"params": ..., "batch_stats": ...}`` as returned by ``module.init`` or kept in a training
            state.
        activations: one activation per Dense layer, in call order (names or :class:`CPAActivation`).
        batch: condition BatchNorm in train mode on it (``(B, d)``, B >= 2); otherwise eval mode with
            ``batch_stats``.
        eps: optional guard: when given, every BatchNorm's own ``epsilon`` must equal it.
        module: the linen module the variables belong to (required): the layer order is traced from one call
            and the import is checked against Flax's forward pass.
        apply_kwargs: keyword arguments of the module's ``__call__``, e.g. ``{"train": True}`` when ``batch`` is
            given and the module's BatchNorm takes ``use_running_average`` from a flag.
    """
    if not isinstance(variables, Mapping):
        raise ArgumentTypeError(f"from_flax needs the variables dict {{'params': ..., 'batch_stats': ...}} returned by "
                                f"model.init / the training state; got {short(variables, 40)}.")
    params = variables.get("params", variables)
    stats = variables.get("batch_stats", {})
    if not isinstance(params, Mapping):
        raise ArgumentTypeError(f"variables['params'] must be a dict of modules; got {short(params, 40)}.")
    if isinstance(activations, (str, CPAActivation)) or not isinstance(activations, (list, tuple)):
        raise ArgumentTypeError(f"activations must be a list with one activation per Dense layer, e.g. "
                                f"['relu', 'identity']; got {short(activations, 40)}.")
    if apply_kwargs is not None and not isinstance(apply_kwargs, Mapping):
        raise ArgumentTypeError(f"apply_kwargs must be a dict of keyword arguments; got {short(apply_kwargs, 40)}.")
    if "mutable" in (apply_kwargs or {}) or "capture_intermediates" in (apply_kwargs or {}):
        raise ArgumentTypeError("apply_kwargs must not set mutable= or capture_intermediates=: from_flax sets them.")
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating, np.integer))):
        raise ArgumentTypeError(f"eps must be a number (each BatchNorm's epsilon) or None; got {short(eps, 40)}.")
    if module is None:
        raise ArgumentTypeError(
            "from_flax needs module=YourModel() (the linen module the variables belong to): Flax numbers Dense and "
            "BatchNorm layers separately and in construction order, so the variables alone do not say how the "
            "layers are composed. With the module the order is traced from one call and the import is checked "
            "against module.apply.")
    kw = dict(apply_kwargs or {})
    plan = _plan_from_calls(module, variables, params, batch, kw, eps)
    if len(activations) != len(plan):
        raise CPAInputError(f"{len(plan)} Dense layers but {len(activations)} activations; give one per Dense layer, "
                            "in call order.")
    mode = "train" if batch is not None else "eval"
    layers = []
    for (dpath, bpath, bn_eps), act in zip(plan, activations):
        p = _at(params, dpath)
        kernel = np.asarray(p["kernel"], dtype=np.float64)
        if kernel.ndim != 2:
            raise CPAInputError(f"Flax Dense {_name(dpath)} has a kernel of shape {kernel.shape}; from_flax reads "
                                "Dense layers on vectors (kernel (in, out)).")
        bias = np.asarray(p.get("bias", np.zeros(kernel.shape[1])), dtype=np.float64)
        bn = None
        if bpath is not None:
            q = _at(params, bpath, default={})
            kwbn = {}
            if mode == "eval":
                s = _at(stats, bpath, default=None)
                if s is None:
                    raise CPAInputError(f"BatchNorm {_name(bpath)} has no batch_stats; pass batch=... for train mode, "
                                        "or the variables with their 'batch_stats'.")
                kwbn = {"running_mean": np.asarray(s["mean"], float), "running_var": np.asarray(s["var"], float)}
            n = kernel.shape[1]
            bn = BatchNorm(n, mode, np.asarray(q.get("scale", np.ones(n)), float),
                           np.asarray(q.get("bias", np.zeros(n)), float), bn_eps, **kwbn)
        layers.append(Layer(kernel.T, bias, act, bn))
    net = Network(layers[0].in_dim, tuple(layers), None if batch is None else np.asarray(batch, dtype=np.float64))
    _check_against_module(net, plan, module, variables, batch, kw)
    return net


# -- the layer plan ----------------------------------------------------------------------------------------------
def _name(path) -> str:
    return "/".join(path)


def _at(tree, path, default=KeyError):
    for k in path:
        if not isinstance(tree, Mapping) or k not in tree:
            if default is KeyError:
                raise NetworkFormatError(f"the variables have no entry {_name(path)!r}; pass the variables of this "
                                         "module (module.init or the training state).")
            return default
        tree = tree[k]
    return tree


def _modules():
    try:
        import flax.linen as nn
    except ImportError as e:  # pragma: no cover - flax is in the test extra
        raise CPAInputError("module= needs flax installed (pip install -e '.[flax]').") from e
    return nn


def _calls(module, variables, x, kw):
    """The module's submodule calls in call order: ``[(path, module instance)]`` (one traced ``apply``)."""
    rec = []

    def record(mdl, method):
        if method == "__call__":
            rec.append((tuple(mdl.path), mdl))
        return False  # record only: nothing is stored in 'intermediates'

    try:
        with _x64():
            module.apply(variables, x, capture_intermediates=record, mutable=True, **kw)
    except Exception as e:  # the user's module: any failure is reported with what to pass
        raise CPAInputError(f"calling the Flax module failed ({type(e).__name__}: {short(str(e), 200)}); from_flax "
                            "calls module.apply(variables, x, **apply_kwargs) with x of shape (B, input dim).") from e
    return rec


def _input_dims(params):
    dims = set()

    def walk(t):
        if isinstance(t, Mapping):
            if "kernel" in t and np.ndim(t["kernel"]) == 2:
                dims.add(int(np.shape(t["kernel"])[0]))
            for v in t.values():
                walk(v)
    walk(params)
    return sorted(dims)


def _plan_from_calls(module, variables, params, batch, kw, eps):
    nn = _modules()
    if not isinstance(module, nn.Module):
        raise ArgumentTypeError(f"module must be a flax.linen Module (the model the variables belong to); got "
                                f"{short(module, 40)}.")
    if batch is not None:
        calls = _calls(module, variables, np.asarray(batch, dtype=np.float64), kw)
    else:  # eval mode: the input dimension is that of the first Dense kernel the call reaches
        calls, errors = None, []
        for d in _input_dims(params):
            try:
                got = _calls(module, variables, np.zeros((2, d)), kw)
            except CPAInputError as e:
                errors.append(e)
                continue
            first = next((m for _, m in got if type(m) is nn.Dense), None)
            if first is not None and np.shape(_at(params, first.path)["kernel"])[0] == d:
                calls = got
                break
        if calls is None:
            raise errors[0] if errors else CPAInputError("the module calls no Dense layer.")
    paths = [p for p, _ in calls]
    prev_kind = None
    leaves = [(p, m) for p, m in calls if not any(len(q) > len(p) and q[:len(p)] == p for q in paths)]
    plan, low = [], []
    for path, m in leaves:
        kind = next((k for k in (nn.Dense, nn.BatchNorm) if isinstance(m, k)), None)
        if kind is not None and type(m).__call__ is not kind.__call__:
            raise CPAInputError(f"Flax module {_name(path)} ({type(m).__name__}) subclasses {kind.__name__} with its "
                                f"own __call__; from_flax reads nn.Dense and nn.BatchNorm as Flax defines them.")
        if kind is not None and getattr(m, "dtype", None) is not None:
            low.append(np.dtype(m.dtype))
        if kind is nn.Dense:
            plan.append([path, None, None])
        elif kind is nn.BatchNorm:
            if not plan or plan[-1][1] is not None or prev_kind is not nn.Dense:
                raise CPAInputError(f"BatchNorm {_name(path)} does not directly follow a Dense layer; from_flax "
                                    "imports Dense → BatchNorm → activation layers.")
            if m.axis not in (-1, 1):
                raise CPAInputError(f"BatchNorm {_name(path)} normalises axis {m.axis}; from_flax reads BatchNorm "
                                    "over the feature axis of Dense outputs (axis=-1).")
            if eps is not None and float(eps) != float(m.epsilon):
                raise CPAInputError(f"eps={eps} but BatchNorm {_name(path)} has epsilon={m.epsilon}; drop eps= "
                                    "(with module= each layer's own epsilon is used).")
            plan[-1][1], plan[-1][2] = path, float(m.epsilon)
        elif _owns_variables(variables, path):
            raise CPAInputError(f"unsupported Flax module {_name(path)} ({type(m).__name__}): from_flax imports "
                                "nn.Dense and nn.BatchNorm layers (parameter-free modules such as Dropout pass); "
                                "convert the other layers first.")
        prev_kind = kind  # None after any other leaf: a BatchNorm must follow its Dense directly
    if not plan:
        raise CPAInputError("the module calls no Dense layer.")
    out = _Plan(tuple(p) for p in plan)
    out.dtype = min(low, key=lambda t: np.finfo(t).bits) if low else None
    if out.dtype is not None and np.finfo(out.dtype).bits < 32:
        raise CPAInputError(f"a layer of the module computes in {out.dtype.name}: at that precision the import check "
                            "cannot tell a wrong import from rounding; build the module with dtype=jnp.float32 (or "
                            "None) for the import — the parameters are the same.")
    return out


def _owns_variables(variables, path) -> bool:
    return any(_at(col, path, default=None) is not None for col in variables.values() if isinstance(col, Mapping))


def _x64():
    import jax

    ctx = getattr(jax, "enable_x64", None)
    if ctx is None:  # older jax
        from jax.experimental import enable_x64 as ctx
    return ctx(True)


def _as_output(out, what) -> np.ndarray:
    try:
        arr = np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise CPAInputError(f"the module returns {type(out).__name__} ({what}); from_flax needs a module whose output "
                            "is one array (B, outputs): pass apply_kwargs (e.g. method=...) that select such a call.") \
            from e
    if arr.ndim == 0 or arr.dtype == object:
        raise CPAInputError(f"the module returns {short(out, 40)} ({what}); from_flax needs one array (B, outputs).")
    return arr


def _apply(module, variables, x, kw, what, mutable=False):
    """``module.apply`` in float64 (variables and inputs upcast) → float64 outputs, failures typed."""
    import jax
    import jax.numpy as jnp

    with _x64():
        v64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=jnp.float64), variables)
        try:
            out = module.apply(v64, jnp.asarray(x, dtype=jnp.float64), mutable=mutable, **kw)
        except Exception as e:  # the user's module
            raise CPAInputError(f"calling the Flax module failed ({what}: {type(e).__name__}: {short(str(e), 200)}); "
                                + ("pass the apply_kwargs of its training call (e.g. {'train': True})."
                                   if mutable else "pass apply_kwargs that select its evaluation path.")) from e
        if mutable:
            out = out[0]
        return _as_output(out, what)


def _hint(train: bool) -> str:
    return ("check the activation list (one per Dense, in call order), that each BatchNorm directly follows its "
            "Dense and precedes the activation, and that apply_kwargs select the matching BatchNorm mode"
            + (" (e.g. {'train': True})." if train else "."))


def _batch_stats(net, plan):
    """Per BatchNorm path: the batch's mean and biased variance of its pre-BN values (the train-mode statistics),
    and the largest (mean² + var)/(var + eps): Flax's batch variance E[z²] − E[z]² loses about u times that,
    relative, so the tolerance on the batch grows by it."""
    from .bn import batch_statistics

    cond = net.condition()
    out, ratio = {}, 1.0
    for i, (_, bpath, eps) in enumerate(plan):
        if bpath is not None:
            L = net.layers[i]
            mean, var = out[bpath] = batch_statistics(cond.batch_inputs(i) @ L.weight.T + L.bias)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = max(ratio, float(np.max((mean ** 2 + var) / (var + eps))))
    return out, ratio


def _with_stats(variables, stats):
    """A copy of ``variables`` whose ``batch_stats`` at the given paths are replaced (plain nested dicts)."""
    def plain(t):
        return {k: plain(v) for k, v in t.items()} if isinstance(t, Mapping) else t

    v = plain(variables)
    col = v.setdefault("batch_stats", {})
    for path, (mean, var) in stats.items():
        node = col
        for k in path:
            node = node.setdefault(k, {})
        node["mean"], node["var"] = mean, var
    return v


def _check_against_module(net, plan, module, variables, batch, kw):
    """The imported network against Flax's forward pass in float64 (:mod:`cpa_theory.import_check`)."""
    tol = IMPORT_AGREEMENT_RTOL if plan.dtype is None or np.finfo(plan.dtype).bits >= 64 else \
        IMPORT_AGREEMENT_RTOL_FLOAT32
    P = probes((net.input_dim,))
    if batch is None:
        err = row_errors(net.forward(P), _apply(module, variables, P, kw, "eval mode"))
        require_agreement(err, "in eval mode at probe points", tol, _hint(False))
        return
    X = np.asarray(batch, dtype=np.float64)
    stats, ratio = _batch_stats(net, plan)
    ref = _apply(module, variables, X, kw, "train mode on the batch", mutable=["batch_stats"])
    require_agreement(row_errors(net.forward(X), ref), "in train mode on the batch", tol * ratio, _hint(True))
    # away from the batch: Flax's evaluation call with running statistics := the batch's (the same function)
    both = np.concatenate([X, P])
    try:
        ref = _apply(module, _with_stats(variables, stats), both, {}, "evaluation call")
    except CPAInputError:
        return  # the module's default call is not an evaluation path: this part of the check does not apply
    err = row_errors(net.forward(both), ref)
    if err[:len(X)].max() <= tol:
        require_agreement(err, "away from the batch (Flax's evaluation call with the batch's statistics)", tol,
                          _hint(False))
