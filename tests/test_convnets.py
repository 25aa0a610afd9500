"""Conv layers, BatchNorm2d (train and eval), pools, residual blocks: against PyTorch in float64 (issue #14)."""

import copy
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from cpa_theory.convnet import ConvNetwork  # noqa: E402
from cpa_theory.importers_torch_fx import DropoutIgnoredWarning, from_torch_convnet  # noqa: E402
from cpa_theory.layers import Conv, MaxPool, UnsupportedLayerError  # noqa: E402
from cpa_theory.tolerances import TORCH_AGREEMENT_ATOL  # noqa: E402

torch.set_default_dtype(torch.float64)


def _randomise_bn(model, gen):
    """Non-trivial γ, β and running statistics so that eval mode and train mode differ from the identity."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.copy_(torch.randn(m.num_features, generator=gen) * 0.5 + 1)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model


def _frozen_stats_forward(model, batch, x):
    """PyTorch's train-mode function conditioned on ``batch``, evaluated at new points ``x``: record each BN's
    batch mean and biased variance on ``batch`` (train mode), then replay them with F.batch_norm."""
    m = copy.deepcopy(model).train()
    stats = {}

    def record(mod, inp, out):
        dims = [0] + list(range(2, inp[0].ndim))
        stats[mod] = (inp[0].mean(dim=dims), inp[0].var(dim=dims, unbiased=False))

    bns = [mod for mod in m.modules() if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d))]
    hs = [b.register_forward_hook(record) for b in bns]
    with torch.no_grad():
        y_batch = m(batch)
    for h in hs:
        h.remove()

    def replay(mod, inp, out):
        mean, var = stats[mod]
        return F.batch_norm(inp[0], mean, var, mod.weight, mod.bias, False, 0.0, mod.eps)

    hs = [b.register_forward_hook(replay) for b in bns]
    with torch.no_grad():
        y = m(x)
    for h in hs:
        h.remove()
    return y_batch.numpy(), y.numpy()


def _assert_close(a, b):
    a, b = np.asarray(a).reshape(len(a), -1), np.asarray(b).reshape(len(b), -1)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=0, atol=TORCH_AGREEMENT_ATOL)


CONV_VARIANTS = [
    dict(cls="Conv2d", cin=2, cout=4, k=3, stride=1, padding=0, dilation=1, groups=1),
    dict(cls="Conv2d", cin=2, cout=4, k=3, stride=2, padding=1, dilation=1, groups=2),
    dict(cls="Conv2d", cin=3, cout=6, k=(2, 3), stride=(1, 2), padding=(2, 1), dilation=(2, 1), groups=3),
    dict(cls="Conv1d", cin=2, cout=3, k=3, stride=2, padding=2, dilation=2, groups=1),
    dict(cls="Conv1d", cin=4, cout=4, k=2, stride=1, padding=1, dilation=1, groups=4),
]


@pytest.mark.parametrize("v", CONV_VARIANTS)
def test_conv_matches_torch_and_matrix_and_jax(v):
    gen = torch.Generator().manual_seed(1)
    cls = getattr(nn, v["cls"])
    mod = cls(v["cin"], v["cout"], v["k"], stride=v["stride"], padding=v["padding"], dilation=v["dilation"],
              groups=v["groups"])
    shape = (v["cin"], 7, 9) if v["cls"] == "Conv2d" else (v["cin"], 11)
    x = torch.randn(5, *shape, generator=gen)
    conv = Conv(mod.weight.detach().numpy(), mod.bias.detach().numpy(), mod.stride, mod.padding, mod.dilation,
                mod.groups)
    with torch.no_grad():
        ref = mod(x).numpy()
    ours = conv(x.numpy())
    assert ours.shape == ref.shape and conv.out_shape(shape) == ref.shape[1:]
    _assert_close(ours, ref)
    M = conv.as_matrix(shape)
    _assert_close(x.numpy().reshape(5, -1) @ M.T + np.repeat(conv.bias, int(np.prod(ref.shape[2:]))), ref)
    _assert_close(np.asarray(conv.jax_forward(x.numpy())), ref)


def _cnn(bn=True):
    torch.manual_seed(3)  # before building: the same weights with and without BN
    layers = [nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3) if bn else nn.Identity(), nn.ReLU(),
              nn.Conv2d(3, 4, 3, stride=2, groups=1), nn.BatchNorm2d(4) if bn else nn.Identity(), nn.LeakyReLU(0.1),
              nn.AvgPool2d(2, padding=1), nn.Flatten(), nn.Linear(16, 6), nn.BatchNorm1d(6) if bn else nn.Identity(),
              nn.Hardtanh(), nn.Linear(6, 3)]
    return _randomise_bn(nn.Sequential(*layers), torch.Generator().manual_seed(4))


def test_train_mode_bn2d_matches_torch_at_batch_and_new_points():
    gen = torch.Generator().manual_seed(5)
    model = _cnn()
    batch = torch.randn(10, 1, 8, 8, generator=gen) + 2.0
    new = torch.randn(4, 1, 8, 8, generator=gen) * 3
    y_batch, y_new = _frozen_stats_forward(model, batch, new)
    net = from_torch_convnet(model, batch).network
    cond = net.condition()
    _assert_close(cond.forward(batch.numpy()), y_batch)
    _assert_close(cond.forward(new.numpy()), y_new)
    # negative control: eval-mode statistics are a different function
    assert np.max(np.abs(from_torch_convnet(model, input_shape=(1, 8, 8)).network.condition().forward(
        new.numpy()) - y_new)) > 1e-3


def test_eval_mode_matches_torch():
    gen = torch.Generator().manual_seed(6)
    model = _cnn().eval()
    x = torch.randn(6, 1, 8, 8, generator=gen)
    with torch.no_grad():
        ref = model(x).numpy()
    _assert_close(from_torch_convnet(model, input_shape=(1, 8, 8)).network.condition().forward(x.numpy()), ref)


def test_bn2d_raw_bias_cancels_per_channel():
    """C10a numerically: changing a conv's raw bias leaves the train-mode conditioned function unchanged."""
    gen = torch.Generator().manual_seed(7)
    model = _cnn()
    batch = torch.randn(8, 1, 8, 8, generator=gen)
    x = torch.randn(3, 1, 8, 8, generator=gen)
    f0 = from_torch_convnet(model, batch).network.condition().forward(x.numpy())
    m2 = copy.deepcopy(model)
    with torch.no_grad():
        m2[0].bias.add_(torch.tensor([5.0, -3.0, 100.0]))
    f1 = from_torch_convnet(m2, batch).network.condition().forward(x.numpy())
    np.testing.assert_allclose(f0, f1, rtol=0, atol=1e-9)
    # negative control: without BN the bias matters
    f2 = from_torch_convnet(_cnn(bn=False), input_shape=(1, 8, 8)).network.condition().forward(x.numpy())
    m3 = _cnn(bn=False)
    with torch.no_grad():
        m3[0].bias.add_(1.0)
    f3 = from_torch_convnet(m3, input_shape=(1, 8, 8)).network.condition().forward(x.numpy())
    assert np.max(np.abs(f2 - f3)) > 1e-3


class Block(nn.Module):
    """A ResNet basic block as a user class: relu(body(x) + shortcut(x))."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                  nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.short = None if cin == cout and stride == 1 else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.body(x) + (x if self.short is None else self.short(x))
        return torch.relu(y)


class IdentityBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Dropout(0.3), nn.Conv2d(c, c, 1))

    def forward(self, x):
        return x + self.f(x)


def _resnet():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), Block(2, 2), Block(2, 3, 2),
                          IdentityBlock(3), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
                          nn.Linear(3, 2))
    return _randomise_bn(model, torch.Generator().manual_seed(9))


def test_residual_blocks_maxpool_train_and_eval_match_torch():
    gen = torch.Generator().manual_seed(10)
    model = _resnet()
    batch = torch.randn(6, 1, 8, 8, generator=gen)
    new = torch.randn(3, 1, 8, 8, generator=gen)
    with pytest.warns(DropoutIgnoredWarning):
        imp = from_torch_convnet(model, batch)
    assert any("Dropout" in n for n in imp.notes)
    # dropout off (p = 0) in the torch reference; BN statistics come from the replay hooks
    y_batch, y_new = _frozen_stats_forward(_eval_dropout(model), batch, new)
    cond = imp.network.condition()
    _assert_close(cond.forward(batch.numpy()), y_batch)
    _assert_close(cond.forward(new.numpy()), y_new)
    with torch.no_grad():
        ref = model.eval()(new).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DropoutIgnoredWarning)
        ours = from_torch_convnet(model, input_shape=(1, 8, 8)).network.condition().forward(new.numpy())
    _assert_close(ours, ref)


def _eval_dropout(model):
    m = copy.deepcopy(model)
    for mod in m.modules():
        if isinstance(mod, nn.Dropout):
            mod.p = 0.0
    return m


def test_affine_map_at_equals_torch_jacobian():
    gen = torch.Generator().manual_seed(11)
    model = _resnet()
    batch = torch.randn(6, 1, 8, 8, generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DropoutIgnoredWarning)
        cond = from_torch_convnet(model, batch).network.condition()
    x = torch.randn(1, 1, 8, 8, generator=gen)
    A, c = cond.affine_map_at(x.numpy(), chunk=7)  # chunks that do not divide d = 64
    np.testing.assert_allclose(A @ x.numpy().reshape(-1) + c, cond.forward(x.numpy())[0], atol=1e-10)
    # the Jacobian by central differences inside the piece (the map is affine there)
    xs = x.numpy().reshape(-1)
    h = 1e-6
    J = np.stack([(cond.forward(xs + h * e)[0] - cond.forward(xs - h * e)[0]) / (2 * h) for e in np.eye(64)], axis=1)
    np.testing.assert_allclose(A, J, atol=1e-6)


def test_maxpool_piece_and_switching():
    """MaxPool is CPA: the output equals the argmax entry; at a tie z_i = z_j both pieces agree."""
    mp = MaxPool(2, nd=2)
    x = np.arange(16.0).reshape(1, 1, 4, 4)[:, :, ::-1].copy()
    with torch.no_grad():
        ref = nn.MaxPool2d(2)(torch.from_numpy(x)).numpy()
    _assert_close(mp(x), ref)
    piece = mp.piece(x)
    np.testing.assert_array_equal(mp.select(x, piece), mp(x))


def test_import_refusals_name_the_module():
    class Cat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return torch.cat([self.a(x), self.a(x)], 1)

    with pytest.raises(UnsupportedLayerError, match="cat"):
        from_torch_convnet(Cat(), input_shape=(1, 5, 5))
    with pytest.raises(UnsupportedLayerError, match=r"1 \(Sigmoid\)"):
        from_torch_convnet(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid()), input_shape=(1, 5, 5))
    with pytest.raises(UnsupportedLayerError, match="padding_mode"):
        from_torch_convnet(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular")),
                           input_shape=(1, 5, 5))
    with pytest.raises(UnsupportedLayerError, match="track_running_stats"):
        from_torch_convnet(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False)),
                           input_shape=(1, 5, 5))


def test_state_dict_loads_into_a_copy():
    model = _cnn()
    other = _cnn()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    before = copy.deepcopy(model.state_dict())
    net = from_torch_convnet(model, input_shape=(1, 8, 8), state_dict=other.state_dict()).network
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # the caller's model is unchanged
    np.testing.assert_array_equal(net.layers[0].weight, other[0].weight.detach().numpy())


def test_convnetwork_needs_batch_for_train_bn():
    from cpa_theory.errors import BatchError

    model = _cnn()
    net = from_torch_convnet(model, torch.randn(4, 1, 8, 8)).network
    with pytest.raises(BatchError):
        ConvNetwork(net.input_shape, net.layers)


def test_jax_forward_equals_numpy_forward():
    import jax

    from cpa_theory.tolerances import FORWARD_AGREEMENT_ATOL

    gen = torch.Generator().manual_seed(12)
    batch = torch.randn(6, 1, 8, 8, generator=gen)
    x = np.random.default_rng(0).normal(size=(4, 1, 8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DropoutIgnoredWarning)
        nets = [from_torch_convnet(_resnet(), batch).network, from_torch_convnet(_cnn(), batch).network]
    nets.append(ConvNetwork((2, 9), (Conv(np.ones((3, 2, 3)), None, 2, 1), MaxPool(2, nd=1)), None))
    for net in nets:
        cond = net.condition()
        xs = x if net.input_shape == (1, 8, 8) else x.reshape(4, -1)[:, :18].reshape(4, 2, 9)
        ref = cond.forward(xs)
        got = np.asarray(jax.jit(cond.forward_jax)(xs))
        np.testing.assert_allclose(got, ref, rtol=0, atol=FORWARD_AGREEMENT_ATOL * max(1.0, np.abs(ref).max()))


def test_maxpool_pieces_exact_lp_vs_fine_grid_2d():
    """Max-pool is CPA with switching sets {z_i = z_j} in a pool: in a 2-D input, the pieces (argmax per pool)
    found on a fine grid are exactly those an LP certifies (max t with z_i ≥ z_j + t inside W, t > 0), and on
    each piece the network equals the affine map read off by affine_map_at (the selected entry's map)."""
    from itertools import product

    from scipy.optimize import linprog

    rng = np.random.default_rng(3)
    conv = Conv(rng.normal(size=(2, 1, 2)), rng.normal(size=2) * 0.5, 1, 1)
    net = ConvNetwork((1, 2), (conv, MaxPool(3, 1, nd=1))).condition()
    r = 2.0
    # z of pool c, entry i, as an affine function of x: rows of the conv matrix
    M = conv.as_matrix((1, 2)).reshape(2, 3, 2)
    b = np.repeat(conv.bias[:, None], 3, axis=1)
    exact = set()
    for code in product(range(3), range(3)):
        A_ub, b_ub = [], []
        for c, i in enumerate(code):
            for j in range(3):
                if j != i:  # z_j − z_i + t ≤ 0
                    A_ub.append([*(M[c, j] - M[c, i]), 1.0])
                    b_ub.append(b[c, i] - b[c, j])
        res = linprog([0, 0, -1.0], A_ub=A_ub, b_ub=b_ub, bounds=[(-r, r), (-r, r), (None, 1.0)], method="highs")
        if res.status == 0 and -res.fun > 1e-9:
            exact.add(code)
    g = np.linspace(-r, r, 401)
    pts = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    (pre,) = net.preactivations(pts)
    pieces = MaxPool(3, 1, nd=1).piece(pre)[:, :, 0]  # (N, 2)
    np.testing.assert_array_equal(net.activation_code(pts)[0][:, :, 0], pieces)
    grid = {tuple(p) for p in pieces}
    assert grid == exact and len(exact) >= 3, (grid, exact)
    # brute force: the piece is the argmax of the explicit pool entries
    np.testing.assert_array_equal(pieces, np.argmax(pre, axis=2))
    # on each piece the map is affine and equals affine_map_at of a member; other pieces' maps differ
    f = net.forward(pts).reshape(len(pts), -1)
    for code in exact:
        members = np.flatnonzero((pieces == code).all(axis=1))
        A, c0 = net.affine_map_at(pts[members[len(members) // 2]])
        np.testing.assert_allclose(pts[members] @ A.T + c0, f[members], atol=1e-10)
        others = np.flatnonzero(~(pieces == code).all(axis=1))
        assert np.max(np.abs(pts[others] @ A.T + c0 - f[others])) > 1e-3


def test_without_batchnorm_equals_torch_without_bn():
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(13))
    with_bn = from_torch_convnet(_cnn(), x).network.without_batchnorm()
    ref = _cnn(bn=False).eval()
    with torch.no_grad():
        _assert_close(with_bn.condition().forward(x.numpy()), ref(x).numpy())


def test_layers_refuse_nonfinite_and_unknown_layers():
    from cpa_theory.errors import NonFiniteError, ShapeError

    with pytest.raises(NonFiniteError, match="conv weight"):
        Conv(np.full((1, 1, 2, 2), np.nan))
    with pytest.raises(ShapeError, match="groups"):
        Conv(np.ones((3, 1, 2, 2)), groups=2)
    with pytest.raises(UnsupportedLayerError, match="not a cpa_theory layer"):
        ConvNetwork((1, 4, 4), (object(),))


def test_state_dict_file_is_read_weights_only(tmp_path):
    model, other = _cnn(), _cnn()
    with torch.no_grad():
        other[0].weight.mul_(2.0)
    path = tmp_path / "sd.pt"
    torch.save(other.state_dict(), path)
    net = from_torch_convnet(model, input_shape=(1, 8, 8), state_dict=path).network
    np.testing.assert_array_equal(net.layers[0].weight, other[0].weight.detach().numpy())
    torch.save({"w": object()}, tmp_path / "evil.pt")  # not loadable with weights_only=True
    from cpa_theory.errors import NetworkFormatError

    with pytest.raises(NetworkFormatError):
        from_torch_convnet(model, input_shape=(1, 8, 8), state_dict=tmp_path / "evil.pt")
