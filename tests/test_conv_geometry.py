"""C10 numerically (cpa_theory/conv_geometry.py): distances of BN2d reference sets from the centroid image."""

import jax
import numpy as np
import pytest

from cpa_theory.bn import BatchNorm
from cpa_theory.conv_geometry import digits_c10, reference_distances, torch_reference_check
from cpa_theory.layers import Conv


def test_distances_match_dense_geometry(rng):
    """Against the dense picture: row (c, p) of the conv matrix is P_pᵀw_c; the reference hyperplane is
    {aᵀx = aᵀx̄ − offset}; its distance from x̄ is |offset|/‖a‖₂, and the mean patch is the batch × position
    average of the patches."""
    batch = rng.normal(size=(6, 2, 5, 5)) + rng.normal(size=(1, 2, 5, 5))
    conv = Conv(rng.normal(size=(4, 1, 3, 3)), rng.normal(size=4), stride=2, padding=1, groups=2)
    bn = BatchNorm(4, "train", rng.normal(1, .2, 4), rng.normal(0, .2, 4))
    geo = reference_distances(conv, bn, batch)
    M = conv.as_matrix(batch.shape[1:])  # (C_out·P, d)
    patches = conv.patches(batch)  # (B, G, P, K)
    mbar = patches.mean(axis=(0, 2))
    np.testing.assert_allclose(geo.mean_patch, mbar, atol=1e-12)
    np.testing.assert_allclose(geo.norm.reshape(-1), np.linalg.norm(M, axis=1), atol=1e-12)
    xbar = batch.mean(axis=0).reshape(-1)
    W = conv.flat_weight()
    P = patches.shape[2]
    wm = np.repeat(np.einsum("gok,gk->go", W, mbar).reshape(-1), P)
    np.testing.assert_allclose(geo.offset.reshape(-1), M @ xbar - wm, atol=1e-12)


def test_torch_bn2d_train_mode_agrees(rng):
    pytest.importorskip("torch")
    batch = rng.normal(size=(5, 3, 6, 6))
    conv = Conv(rng.normal(size=(6, 1, 2, 3)), rng.normal(size=6), (1, 2), (1, 0), (2, 1), 3)
    bn = BatchNorm(6, "train", rng.normal(1, .2, 6), rng.normal(0, .2, 6))
    assert torch_reference_check(conv, bn, batch) < 1e-10


def test_digits_distances_and_constant_centroid_control():
    key = jax.random.key(0)
    real = digits_c10(key=key, n_images=64)
    ctrl = digits_c10(key=key, n_images=64, constant_centroid=True)
    # digits: the centroid image is not stationary, so references miss x̄ (C10b's "not in general")
    assert real["frac_nonzero"] > 0.9 and real["median"] > 1e-2
    # negative control: constant centroid image, valid conv → every reference passes through x̄
    assert ctrl["frac_nonzero"] == 0.0 and ctrl["max"] < 1e-12
    if real["torch_max_abs_diff"] is not None:
        assert real["torch_max_abs_diff"] < 1e-10 and ctrl["torch_max_abs_diff"] < 1e-10
    # zero padding breaks stationarity at the border even for a constant centroid (m̄ averages padded patches)
    padded = digits_c10(key=key, n_images=64, padding=1, constant_centroid=True)
    assert padded["max"] > 1e-3
