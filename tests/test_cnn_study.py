"""The trained-CNN study (issue #14, item 5): the JAX-trained CNN is the ConvNetwork the counter measures; the
conversion fails loudly on a wrong parameter layout; a tiny study run gives certified counts with intervals and
writes its report section and figures through the run directory."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numerics.training_cnn as training_cnn
from cpa_theory.errors import CPAInternalError
from cpa_theory.reproduce.common import SCALES, Context
from cpa_theory.tolerances import TORCH_AGREEMENT_ATOL
from numerics.training_cnn import CNNConfig, checked_convnets, checkpoint_convnets, train_cnn

# the tiny study below uses the same configuration, so the jitted training step is compiled once
TINY = {"cnn_seeds": 2, "cnn_steps": 10, "cnn_checkpoints": (0, 10), "cnn_channels": 2, "cnn_hidden": 4,
        "cnn_slices": 2, "cnn_centres": 3, "cnn_radii": (0.05,), "cnn_test": 60}


@pytest.fixture(scope="module")
def trained():
    from cpa_theory.reproduce.cnn_study import _digits

    # the study's split shapes: the jitted step compiled here is reused by the tiny study
    Xtr, ytr, Xte, yte = _digits(np.random.default_rng(3), TINY["cnn_test"])
    out = {}
    for bn in (True, False):
        cfg = CNNConfig(channels=2, hidden=4, batchnorm=bn, steps=10, checkpoints=(0, 10))
        out[bn] = (cfg, train_cnn(jax.random.key(3), Xtr, ytr, Xte, yte, cfg))
    return Xtr[:64], Xtr[64:128], out  # a batch and 64 other digits (same shape: one compiled forward)


def _jax(ck, cfg, X, mode):
    return np.asarray(training_cnn._jitted_forward(cfg, mode)(ck.params, ck.running, jnp.asarray(X)))


def test_training_moves_the_parameters_and_the_running_statistics(trained):
    _, _, out = trained
    cfg, (c0, c1) = out[True]
    assert c1.loss < c0.loss
    assert np.max(np.abs(c1.params["conv_W"] - c0.params["conv_W"])) > 1e-3
    assert np.max(np.abs(c1.running["bn1_var"] - 1.0)) > 1e-3  # running statistics were updated


@pytest.mark.parametrize("bn", [True, False])
def test_jax_forward_equals_the_convnetwork_in_float64(trained, bn):
    batch, other, out = trained
    cfg, cks = out[bn]
    for ck in cks:
        nets = checkpoint_convnets(ck, cfg, batch)
        if bn:
            # train mode: the ConvNetwork conditioned on the batch is the JAX forward with that batch's statistics
            f_train = nets["train"].condition().forward(batch).reshape(len(batch), -1)
            assert np.max(np.abs(f_train - _jax(ck, cfg, batch, "train"))) <= TORCH_AGREEMENT_ATOL
            # eval mode: running statistics, at points outside the batch too
            for X in (batch, other):
                f_eval = nets["eval"].condition().forward(X).reshape(len(X), -1)
                assert np.max(np.abs(f_eval - _jax(ck, cfg, X, "eval"))) <= TORCH_AGREEMENT_ATOL
            # the two modes are different functions (the comparison can tell them apart)
            assert np.max(np.abs(f_train - nets["eval"].condition().forward(batch).reshape(len(batch), -1))) > 1e-6
        else:
            assert set(nets) == {"plain"}
            for X in (batch, other):
                f = nets["plain"].condition().forward(X).reshape(len(X), -1)
                assert np.max(np.abs(f - _jax(ck, cfg, X, "train"))) <= TORCH_AGREEMENT_ATOL


@pytest.mark.parametrize("bn", [True, False])
def test_conversion_fails_loudly_on_a_transposed_kernel(trained, monkeypatch, bn):
    # negative control: the kernel in the wrong layout (kh ↔ kw) is another function; the check must catch it
    batch, _, out = trained
    cfg, cks = out[bn]
    ck = cks[-1]
    _, errors = checked_convnets(ck, cfg, batch)
    assert max(errors.values()) <= TORCH_AGREEMENT_ATOL
    monkeypatch.setattr(training_cnn, "_conv_kernel", lambda W: np.asarray(W, np.float64).transpose(0, 1, 3, 2))
    wrong = checkpoint_convnets(ck, cfg, batch, verify=False)
    assert max(training_cnn.conversion_error(ck, cfg, m, n, batch) for m, n in wrong.items()) > 1e-6
    with pytest.raises(CPAInternalError, match="parameter layout"):
        checkpoint_convnets(ck, cfg, batch)


def _study(tmp_path, monkeypatch):
    from cpa_theory.reproduce import cnn_study_result
    from cpa_theory.rundir import claim_run_dir

    monkeypatch.setitem(SCALES, "small", {**SCALES["small"], **TINY})
    ctx = Context("small", 0, tmp_path)
    logs = []
    with claim_run_dir(tmp_path, "reproduce", "test-cnn") as run:
        data = cnn_study_result(run, ctx, logs.append)
        again = cnn_study_result(run, ctx, logs.append)  # resumed from the file it wrote
        owned = {p: run.owns(tmp_path / p) for p in ["cnn_study.json", *data["figures"]]}
    return data, again, logs, owned


def test_tiny_study_counts_are_certified_with_intervals_and_written_through_the_run_dir(tmp_path, monkeypatch):
    from cpa_theory.reproduce.report import write_report

    data, again, logs, owned = _study(tmp_path, monkeypatch)
    assert "done earlier" in logs[-1] and again == data
    assert all(owned.values()), owned  # every file is in the run directory's manifest
    assert data["certified"] and data["max_conversion_error"] <= TORCH_AGREEMENT_ATOL
    keys = {(r["measure"], r["radius"], r["step"], r["mode"]) for r in data["rows"]}
    assert keys == {(m, r, s, mode) for m, r in (("slice", None), ("window", 0.05)) for s in (0, 10)
                    for mode in ("train", "eval", "plain")}
    for r in data["rows"]:
        V = np.asarray(r["counts"])
        assert r["certified"] and V.shape == (2, 2 if r["measure"] == "slice" else 3)
        assert V.dtype.kind == "i" and V.min() >= 1
        assert r["mean"] == pytest.approx(V.mean())
        for ci in (r["ci95"], r["ci95_boot"], r["ci95_t_seeds"]):
            assert ci[0] <= r["mean"] <= ci[1]
    for e in data["effects"]:
        assert e["ci95"][0] <= e["mean"] <= e["ci95"][1] and e["p"] <= e["p_holm"] <= 1.0
    # at step 0 eval mode (running mean 0, var 1, γ = 1, β = 0) and the no-BN model share the initial weights
    for r in data["rows"]:
        if r["step"] == 0 and r["mode"] == "eval":
            plain = next(q for q in data["rows"] if q["mode"] == "plain" and q["step"] == 0 and
                         q["measure"] == r["measure"])
            assert plain["counts"] == r["counts"]
    header = {"config": {"scale": "small", "seed": 0}, "dtype": "float64", "backend": "cpu", "device": "cpu",
              "devices": 1, "git_revision": "0" * 12, "versions": {}}
    write_report(tmp_path, header, [], None, [], cnn=data)
    report = (tmp_path / "report.md").read_text()
    assert "## Real data, convolutional" in report and "| slice | — | 10 | train |" in report
    for fig in data["figures"]:
        assert f"![{fig}]({fig})" in report and (tmp_path / fig).stat().st_size > 1000
    json.loads((tmp_path / "cnn_study.json").read_text())


def test_an_uncertified_count_is_an_error_not_a_data_point(tmp_path, monkeypatch):
    import cpa_theory.slices as slices

    real = slices.count_on_slice

    def uncertified(net, sl, **kw):
        from dataclasses import replace

        return replace(real(net, sl, **kw), certified=False)

    monkeypatch.setattr(slices, "count_on_slice", uncertified)
    with pytest.raises(CPAInternalError, match="uncertified"):
        _study(tmp_path, monkeypatch)
    assert not (tmp_path / "cnn_study.json").exists()


def test_forward_and_running_statistics_follow_pytorch(trained):
    # PyTorch semantics of the trained model: logits in train mode and the momentum update of the running
    # statistics (unbiased variance over batch × positions for BatchNorm2d) equal torch's
    torch = pytest.importorskip("torch")
    batch, _, out = trained
    cfg, cks = out[True]
    ck = cks[-1]
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, cfg.channels, 3, padding=1), nn.BatchNorm2d(cfg.channels), nn.ReLU(),
                          nn.AvgPool2d(2), nn.Flatten(), nn.Linear(cfg.flat, cfg.hidden), nn.BatchNorm1d(cfg.hidden),
                          nn.ReLU(), nn.Linear(cfg.hidden, cfg.classes)).double()
    p, r = ck.params, ck.running
    with torch.no_grad():
        for mod, w, b in ((model[0], "conv_W", "conv_b"), (model[5], "fc1_W", "fc1_b"), (model[8], "fc2_W", "fc2_b")):
            mod.weight.copy_(torch.tensor(p[w]))
            mod.bias.copy_(torch.tensor(p[b]))
        for mod, name in ((model[1], "bn1"), (model[6], "bn2")):
            mod.weight.copy_(torch.tensor(p[f"{name}_gamma"]))
            mod.bias.copy_(torch.tensor(p[f"{name}_beta"]))
            mod.running_mean.copy_(torch.tensor(r[f"{name}_mean"]))
            mod.running_var.copy_(torch.tensor(r[f"{name}_var"]))
        model.train()
        ref = model(torch.tensor(np.asarray(batch))).numpy()
    logits, new = training_cnn.forward(p, r, jnp.asarray(batch), cfg, "train")
    assert np.max(np.abs(np.asarray(logits) - ref)) <= TORCH_AGREEMENT_ATOL
    for mod, name in ((model[1], "bn1"), (model[6], "bn2")):
        np.testing.assert_allclose(np.asarray(new[f"{name}_mean"]), mod.running_mean.numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.asarray(new[f"{name}_var"]), mod.running_var.numpy(), rtol=0, atol=1e-12)
