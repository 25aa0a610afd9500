"""The Flax importer against Flax itself: layer order traced from the module, every import checked against
``module.apply`` in float64, ambiguous variable dicts refused (``cpa_theory.importers_flax``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cpa_theory as cpa
from cpa_theory.errors import ArgumentTypeError, CPAInputError

nn = pytest.importorskip("flax.linen")  # the test extra installs flax: these run in CI


class BNSecondOnly(nn.Module):
    """BatchNorm after the second Dense only: Flax names it BatchNorm_0, next to Dense_0."""

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(nn.Dense(8)(x))
        x = nn.relu(nn.BatchNorm(use_running_average=not train)(nn.Dense(8)(x)))
        return nn.Dense(1)(x)


class SetupNamed(nn.Module):
    """Layers named in setup, a non-default epsilon."""

    def setup(self):
        self.inp = nn.Dense(6)
        self.bn = nn.BatchNorm(epsilon=1e-3)
        self.out = nn.Dense(2)

    def __call__(self, x, train=False):
        return self.out(nn.relu(self.bn(self.inp(x), use_running_average=not train)))


class Block(nn.Module):
    @nn.compact
    def __call__(self, x, train):
        return nn.leaky_relu(nn.BatchNorm(use_running_average=not train, epsilon=1e-2)(nn.Dense(7)(x)), 0.1)


class Nested(nn.Module):
    """Blocks, a Dropout between them (the identity at evaluation), a 3-d input."""

    @nn.compact
    def __call__(self, x, train=False):
        x = Block()(x, train)
        x = nn.Dropout(0.3, deterministic=True)(x)
        x = Block()(x, train)
        return nn.Dense(1)(x)


CASES = [(BNSecondOnly, 2, ["relu", "relu", "identity"]),
         (SetupNamed, 2, ["relu", "identity"]),
         (Nested, 3, [cpa.leaky_relu(0.1), cpa.leaky_relu(0.1), "identity"])]


def trained_variables(module, d, seed=0):
    """Variables after one train-mode step (batch_stats away from their init values)."""
    X = jax.random.normal(jax.random.key(seed + 1), (12, d)) * 1.5 + 0.3
    v = module.init(jax.random.key(seed), X)
    _, upd = module.apply(v, X, train=True, mutable=["batch_stats"])
    return {"params": v["params"], **upd}, np.asarray(X, dtype=np.float64)


def flax64(module, variables, x, train):
    """Flax's own forward in float64 (the test's reference, independent of the importer's check)."""
    with jax.enable_x64(True):
        v = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), variables)
        if train:
            out, _ = module.apply(v, jnp.asarray(x), train=True, mutable=["batch_stats"])
        else:
            out = module.apply(v, jnp.asarray(x))
        return np.asarray(out, dtype=np.float64)


def test_wrong_activations_are_caught_away_from_the_batch_and_the_unit_ball():
    """relu6 read as relu differs only beyond 6 (the eval probes reach it at scales 10–1000); hard_tanh read as
    identity after train-mode BN on 2 points agrees on the batch (BN outputs ±1) and differs off it (Flax's
    evaluation call with the batch's statistics checks there)."""

    class Relu6(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            return nn.Dense(1)(nn.relu6(nn.Dense(8)(x)))

    module = Relu6()
    variables, _ = trained_variables(module, 3)
    cpa.from_flax(variables, ["relu6", "identity"], module=module)
    with pytest.raises(CPAInputError, match="eval mode at probe points"):
        cpa.from_flax(variables, ["relu", "identity"], module=module)

    class Clip(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            x = nn.BatchNorm(use_running_average=not train, use_scale=False, use_bias=False)(nn.Dense(8)(x))
            return nn.Dense(1)(nn.hard_tanh(x))

    module = Clip()
    X = np.random.default_rng(2).standard_normal((2, 3))
    variables = module.init(jax.random.key(0), X)
    cpa.from_flax(variables, ["hardtanh", "identity"], batch=X, module=module, apply_kwargs={"train": True})
    with pytest.raises(CPAInputError, match="away from the batch"):
        cpa.from_flax(variables, ["identity", "identity"], batch=X, module=module, apply_kwargs={"train": True})


def test_correct_imports_are_not_refused_for_flax_rounding():
    """A float32 layer, and Flax's batch variance E[z²] − E[z]² at |mean| ≈ 1e5 (it loses ~1e-6 relative): both
    imports are right and must pass; bfloat16 is refused by name."""

    def mlp(dtype=None, bias=0.0):
        class M(nn.Module):
            @nn.compact
            def __call__(self, x, train=False):
                x = nn.Dense(8, dtype=dtype, bias_init=nn.initializers.constant(bias))(x)
                return nn.Dense(1, dtype=dtype)(nn.relu(nn.BatchNorm(use_running_average=not train)(x)))
        return M()

    X = np.random.default_rng(0).standard_normal((12, 3))
    for module in (mlp(jnp.float32), mlp(bias=1e5)):
        variables = module.init(jax.random.key(0), X)
        cpa.from_flax(variables, ["relu", "identity"], batch=X, module=module, apply_kwargs={"train": True})
        cpa.from_flax(variables, ["relu", "identity"], module=module)
    module = mlp(jnp.bfloat16)
    with pytest.raises(CPAInputError, match="bfloat16"):
        cpa.from_flax(module.init(jax.random.key(0), X), ["relu", "identity"], module=module)


def test_a_module_that_does_not_return_one_array_gets_a_typed_error():
    class Pair(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            h = nn.Dense(4)(x)
            return {"out": nn.Dense(1)(nn.relu(h)), "hidden": h}

    module = Pair()
    variables = module.init(jax.random.key(0), jnp.ones((3, 2)))
    with pytest.raises(CPAInputError, match="one array"):
        cpa.from_flax(variables, ["relu", "identity"], module=module)


@pytest.mark.parametrize("M,d,acts", CASES, ids=[c[0].__name__ for c in CASES])
def test_traced_import_equals_flax_in_train_and_eval_mode(M, d, acts, rng):
    module = M()
    variables, X = trained_variables(module, d)
    train = cpa.from_flax(variables, acts, batch=X, module=module, apply_kwargs={"train": True})
    evaln = cpa.from_flax(variables, acts, module=module)
    np.testing.assert_allclose(train.forward(X), flax64(module, variables, X, True), rtol=0, atol=1e-10)
    x = rng.normal(size=(20, d))
    np.testing.assert_allclose(evaln.forward(x), flax64(module, variables, x, False), rtol=0, atol=1e-10)
    # train-mode BN at other points: normalised with the batch's statistics, as Flax does inside a batch
    both = np.concatenate([X, x[:1]])
    assert not np.allclose(train.forward(x[:1]), flax64(module, variables, both, True)[-1:], atol=1e-6)


def test_variables_alone_are_refused_and_the_call_order_is_traced():
    """Flax numbers layers in construction order: in ``nn.Dense(1)(relu(nn.Dense(4)(x)))`` the outer layer is
    Dense_0. The old importer composed Dense_0 first (and paired BatchNorm_k with Dense_k): wrong networks, no
    error. Now the variables alone are refused, and the traced order is right."""

    class OneLiner(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            return nn.Dense(3)(nn.relu(nn.BatchNorm(use_running_average=not train)(nn.Dense(3)(x))))

    module = OneLiner()
    variables, X = trained_variables(module, 3)
    assert np.shape(variables["params"]["Dense_0"]["kernel"]) == (3, 3)  # both 3×3: shapes cannot tell
    for kw in ({}, {"batch": X}):
        with pytest.raises(ArgumentTypeError, match="module="):
            cpa.from_flax(variables, ["relu", "identity"], **kw)
    net = cpa.from_flax(variables, ["relu", "identity"], batch=X, module=module, apply_kwargs={"train": True})
    np.testing.assert_allclose(net.forward(X), flax64(module, variables, X, True), atol=1e-10)
    np.testing.assert_array_equal(net.layers[0].weight, np.asarray(variables["params"]["Dense_1"]["kernel"]).T)


def test_batchnorm_without_scale_and_bias_is_read_from_the_module():
    """Such a BatchNorm has no parameters, only batch_stats: a reader of params alone drops it."""

    class NoAffine(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            x = nn.BatchNorm(use_running_average=not train, use_scale=False, use_bias=False)(nn.Dense(5)(x))
            return nn.Dense(1, use_bias=False)(nn.relu(x))

    module = NoAffine()
    variables, X = trained_variables(module, 2)
    assert "BatchNorm_0" not in variables["params"]
    net = cpa.from_flax(variables, ["relu", "identity"], batch=X, module=module, apply_kwargs={"train": True})
    assert net.layers[0].batchnorm is not None
    np.testing.assert_allclose(net.forward(X), flax64(module, variables, X, True), atol=1e-10)


def test_the_import_check_rejects_a_network_that_differs_from_the_module():
    module = SetupNamed()
    variables, X = trained_variables(module, 2)
    with pytest.raises(CPAInputError, match="differs from the model"):  # wrong activation
        cpa.from_flax(variables, ["identity", "identity"], module=module)
    with pytest.raises(CPAInputError, match=r"\{'train': True\}"):  # BN left in eval mode on a train import
        cpa.from_flax(variables, ["relu", "identity"], batch=X, module=module)

    class AfterActivation(nn.Module):  # Dense → relu → BatchNorm: not the Dense → BN → activation layer
        @nn.compact
        def __call__(self, x, train=False):
            x = nn.BatchNorm(use_running_average=not train)(nn.relu(nn.Dense(4)(x)))
            return nn.Dense(1)(x)

    module = AfterActivation()
    variables, X = trained_variables(module, 2)
    with pytest.raises(CPAInputError, match="differs from the model"):
        cpa.from_flax(variables, ["relu", "identity"], batch=X, module=module, apply_kwargs={"train": True})


def test_unsupported_flax_modules_are_named():
    class WithLayerNorm(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(1)(nn.relu(nn.LayerNorm()(nn.Dense(4)(x))))

    class Doubling(nn.Dense):
        def __call__(self, x):
            return 2 * super().__call__(x)

    class WithSubclass(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(1)(nn.relu(Doubling(4)(x)))

    class BNFirst(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            return nn.Dense(1)(nn.BatchNorm(use_running_average=not train)(x))

    for M, match in ((WithLayerNorm, "LayerNorm_0"), (WithSubclass, "Doubling_0"), (BNFirst, "BatchNorm_0")):
        v = M().init(jax.random.key(0), jnp.ones((3, 2)))
        with pytest.raises(CPAInputError, match=match):
            cpa.from_flax(v, ["relu", "identity"][-1 if M is BNFirst else 0:], module=M())


def test_flax_and_torch_imports_of_the_same_weights_give_the_same_network_and_count(rng):
    """Two frameworks, one function: the same weights in torch and Flax import to the same network (forward to
    1e-12) and the same exact region count, in train and eval mode."""
    torch = pytest.importorskip("torch")
    from cpa_theory.regions import count_regions

    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(2, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Linear(6, 1))
    tm = tm.double()
    X = rng.normal(size=(10, 2))
    tm.train()
    tm(torch.tensor(X))
    tm[1].weight.data.uniform_(0.5, 2.0)
    tm[1].bias.data.uniform_(-0.5, 0.5)

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            x = nn.relu(nn.BatchNorm(use_running_average=not train)(nn.Dense(6)(x)))
            return nn.Dense(1)(x)

    g = {k: v.detach().numpy() for k, v in tm.state_dict().items() if v.dtype.is_floating_point}
    variables = {"params": {"Dense_0": {"kernel": g["0.weight"].T, "bias": g["0.bias"]},
                            "BatchNorm_0": {"scale": g["1.weight"], "bias": g["1.bias"]},
                            "Dense_1": {"kernel": g["3.weight"].T, "bias": g["3.bias"]}},
                 "batch_stats": {"BatchNorm_0": {"mean": g["1.running_mean"], "var": g["1.running_var"]}}}
    pairs = [(cpa.from_torch(tm, batch=X), cpa.from_flax(variables, ["relu", "identity"], batch=X, module=MLP(),
                                                          apply_kwargs={"train": True}))]
    tm.eval()
    pairs.append((cpa.from_torch(tm), cpa.from_flax(variables, ["relu", "identity"], module=MLP())))
    x = rng.normal(size=(15, 2))
    for a, b in pairs:
        np.testing.assert_allclose(a.forward(x), b.forward(x), rtol=0, atol=1e-12)
        ra, rb = count_regions(a, [0.1, -0.2], 0.8, linear=False), count_regions(b, [0.1, -0.2], 0.8, linear=False)
        assert ra.certified and rb.certified and ra.regions == rb.regions > 1


def test_the_import_runs_when_the_user_keeps_jax_in_float32():
    module = SetupNamed()
    variables, X = trained_variables(module, 2)
    with jax.enable_x64(False):
        net = cpa.from_flax(variables, ["relu", "identity"], batch=X, module=module, apply_kwargs={"train": True})
    np.testing.assert_allclose(net.forward(X), flax64(module, variables, X, True), atol=1e-10)
