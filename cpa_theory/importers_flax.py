"""Import Flax (linen) MLPs of Dense (+ BatchNorm) layers into :class:`Network`, checked against the module.

``from_flax(variables, activations, batch=None, *, module=None, apply_kwargs=None)``. Flax numbers ``Dense_k`` and
``BatchNorm_k`` separately and stores parameters in sorted order, so the variables alone do not say which Dense
a BatchNorm follows, nor what the layers are called when a module names them in ``setup``. With ``module=`` (the
linen module the variables belong to) the layer order is *traced*: one ``module.apply`` records every submodule
call in call order (``capture_intermediates`` with a recording filter; nothing is stored), the leaf calls give
the Dense → BatchNorm chain (each BatchNorm's own ``epsilon``, ``use_scale``, ``use_bias``), and the imported
network is then compared with ``module.apply`` in float64 — on the batch in train mode (``mutable=["batch_stats"]``,
so BatchNorm uses the batch's statistics), on fixed probe points in eval mode. A disagreement beyond
:data:`cpa_theory.tolerances.IMPORT_AGREEMENT_RTOL` is a :class:`CPAInputError` that says what to check (the
activation list, where BatchNorm sits, ``apply_kwargs`` such as ``{"train": True}``); nothing wrong is returned.

Without ``module`` only what the names and shapes determine is read: top-level ``Dense_k`` and ``BatchNorm_k``
(Dense → BatchNorm → activation), each BatchNorm after the one Dense that the widths allow (BatchNorm_i follows
an earlier Dense than BatchNorm_{i+1}, and its feature count is that Dense's width); when the widths fit more
than one order the import is refused with the fix (pass ``module=``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from .activations import CPAActivation
from .bn import BatchNorm
from .errors import ArgumentTypeError, CPAInputError, NetworkFormatError
from .inputs import short
from .network import Layer, Network
from .tolerances import IMPORT_AGREEMENT_RTOL

__all__ = ["from_flax"]

#: eval-mode probe points for the import check: explicit seed, standard normal, this many rows
_PROBE_SEED, _PROBE_ROWS = 20261203, 16
_FLAX_DEFAULT_EPS = 1e-5


def from_flax(variables, activations, batch=None, eps: float | None = None, *, module=None,
              apply_kwargs: Mapping | None = None) -> Network:
    """Convert Flax variables of Dense (+ BatchNorm) layers.

    Args:
        variables: ``{"params": ..., "batch_stats": ...}`` as returned by ``module.init`` or kept in a training
            state.
        activations: one activation per Dense layer, in call order (names or :class:`CPAActivation`).
        batch: condition BatchNorm in train mode on it (``(B, d)``, B >= 2); otherwise eval mode with
            ``batch_stats``.
        eps: BatchNorm epsilon when no ``module`` is given (Flax's default 1e-5); with ``module`` each layer's
            own ``epsilon`` is used.
        module: the linen module (recommended): the layer order is traced from one call, and the import is
            checked against ``module.apply`` in float64 (see the module docstring).
        apply_kwargs: keyword arguments of the module's ``__call__`` for that check, e.g. ``{"train": True}``
            when ``batch`` is given and the module's BatchNorm takes ``use_running_average`` from a flag.
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
    if module is None:
        if apply_kwargs:
            raise ArgumentTypeError("apply_kwargs is used only with module=: pass the linen module too.")
        plan = _plan_from_names(params, _FLAX_DEFAULT_EPS if eps is None else eps)
    else:
        plan = _plan_from_calls(module, variables, params, batch, dict(apply_kwargs or {}), eps)
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
            kw = {}
            if mode == "eval":
                s = _at(stats, bpath, default=None)
                if s is None:
                    raise CPAInputError(f"BatchNorm {_name(bpath)} has no batch_stats; pass batch=... for train mode, "
                                        "or the variables with their 'batch_stats'.")
                kw = {"running_mean": np.asarray(s["mean"], float), "running_var": np.asarray(s["var"], float)}
            n = kernel.shape[1]
            bn = BatchNorm(n, mode, np.asarray(q.get("scale", np.ones(n)), float),
                           np.asarray(q.get("bias", np.zeros(n)), float), bn_eps, **kw)
        layers.append(Layer(kernel.T, bias, act, bn))
    net = Network(layers[0].in_dim, tuple(layers), None if batch is None else np.asarray(batch, dtype=np.float64))
    if module is not None:
        _check_against_module(net, module, variables, batch, dict(apply_kwargs or {}))
    return net


# -- the layer plan: (Dense path, BatchNorm path or None, epsilon) per layer -------------------------------------
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


def _plan_from_names(params, eps):
    names = [str(k) for k in params]
    unknown = [k for k in names if not re.fullmatch(r"(Dense|BatchNorm)_\d+", k)]
    if unknown:
        raise CPAInputError(f"unsupported or user-named Flax modules {unknown[:5]}: without module= from_flax reads "
                            "top-level Dense_k and BatchNorm_k only; pass module=YourModel() to trace the layers.")
    dense = sorted((k for k in names if k.startswith("Dense_")), key=lambda k: int(k.split("_")[1]))
    bns = sorted((k for k in names if k.startswith("BatchNorm_")), key=lambda k: int(k.split("_")[1]))
    if not dense:
        raise CPAInputError("the variables have no Dense layer.")
    if dense != [f"Dense_{k}" for k in range(len(dense))] or bns != [f"BatchNorm_{k}" for k in range(len(bns))]:
        raise CPAInputError(f"the Dense / BatchNorm numbering has gaps ({dense + bns}); pass module=YourModel().")
    for name in dense:
        if not isinstance(params[name], Mapping) or "kernel" not in params[name]:
            raise NetworkFormatError(f"Flax module {name} has no 'kernel'; pass the variables of nn.Dense layers.")
    width = [int(np.shape(params[d]["kernel"])[-1]) for d in dense]
    feats = [_bn_features(params[b]) for b in bns]
    follows = _unique_assignment(feats, width)
    if follows is None:
        raise CPAInputError(f"{len(bns)} BatchNorm and {len(dense)} Dense layers whose widths fit more than one order: "
                            "Flax numbers the two kinds separately, so which Dense each BatchNorm follows cannot be read "
                            "from the variables alone. Pass module=YourModel() (and apply_kwargs, e.g. {'train': True}): "
                            "the layer order is traced from one call and the import is checked against module.apply.")
    owner = dict(zip(follows, bns))
    return [((d,), (owner[k],) if k in owner else None, eps) for k, d in enumerate(dense)]


def _bn_features(p) -> int | None:
    for key in ("scale", "bias"):
        if isinstance(p, Mapping) and key in p:
            return int(np.shape(p[key])[-1])
    return None  # neither scale nor bias: any width fits


def _unique_assignment(feats, width):
    """The one way to place BatchNorm_0, BatchNorm_1, … after an increasing sequence of Dense layers whose output
    widths equal their feature counts (``None`` fits any width), as Dense indices; None when there are none or
    several (Flax numbers BatchNorm layers in call order, each follows one Dense)."""
    nb, nd = len(feats), len(width)
    ways = [[0] * (nd + 1) for _ in range(nb + 1)]  # ways[i][j]: BatchNorm i.. after Dense j..
    for j in range(nd + 1):
        ways[nb][j] = 1
    for i in range(nb - 1, -1, -1):
        for j in range(nd - 1, -1, -1):
            fits = feats[i] is None or feats[i] == width[j]
            ways[i][j] = min(2, ways[i][j + 1] + (ways[i + 1][j + 1] if fits else 0))
    if ways[0][0] != 1:
        return None
    out, j = [], 0
    for i in range(nb):
        while not ((feats[i] is None or feats[i] == width[j]) and ways[i + 1][j + 1] == 1):
            j += 1
        out.append(j)
        j += 1
    return out


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
    plan = []
    for path, m in leaves:
        kind = next((k for k in (nn.Dense, nn.BatchNorm) if isinstance(m, k)), None)
        if kind is not None and type(m).__call__ is not kind.__call__:
            raise CPAInputError(f"Flax module {_name(path)} ({type(m).__name__}) subclasses {kind.__name__} with its "
                                f"own __call__; from_flax reads nn.Dense and nn.BatchNorm as Flax defines them.")
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
    return [tuple(p) for p in plan]


def _owns_variables(variables, path) -> bool:
    return any(_at(col, path, default=None) is not None for col in variables.values() if isinstance(col, Mapping))


def _x64():
    import jax

    ctx = getattr(jax, "enable_x64", None)
    if ctx is None:  # older jax
        from jax.experimental import enable_x64 as ctx
    return ctx(True)


def _check_against_module(net, module, variables, batch, kw):
    """The imported network against ``module.apply`` in float64 (see the module docstring)."""
    import jax
    import jax.numpy as jnp

    if batch is not None:
        x = np.asarray(batch, dtype=np.float64)
    else:
        x = np.random.default_rng(_PROBE_SEED).standard_normal((_PROBE_ROWS, net.input_dim))
    with _x64():
        v64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=jnp.float64), variables)
        try:
            if batch is not None:
                ref, _ = module.apply(v64, jnp.asarray(x), mutable=["batch_stats"], **kw)
            else:
                ref = module.apply(v64, jnp.asarray(x), **kw)
        except Exception as e:
            hint = ("in eval mode the module must not update batch_stats: pass apply_kwargs that select its "
                    "evaluation path" if batch is None else "pass the apply_kwargs of its training call")
            raise CPAInputError(f"calling the Flax module failed ({type(e).__name__}: {short(str(e), 200)}); "
                                f"{hint}.") from e
        ref = np.asarray(ref, dtype=np.float64)
    ours = np.asarray(net.forward(x), dtype=np.float64)
    if ours.size != ref.size:
        raise CPAInputError(f"the module's output has shape {ref.shape}, the imported network's {ours.shape}; the "
                            "module does more than Dense / BatchNorm / activation layers.")
    ours = ours.reshape(ref.shape)
    err = float(np.max(np.abs(ours - ref)))
    scale = max(1.0, float(np.max(np.abs(ref))))
    if not err <= IMPORT_AGREEMENT_RTOL * scale:
        mode = "train mode on the batch" if batch is not None else "eval mode on probe points"
        raise CPAInputError(
            f"the imported network differs from module.apply by {err:.3g} ({mode}); check the activation list "
            f"(one per Dense, in call order), that each BatchNorm directly follows its Dense and precedes the "
            f"activation, and that apply_kwargs select the matching BatchNorm mode"
            + (" (e.g. {'train': True})." if batch is not None else "."))
