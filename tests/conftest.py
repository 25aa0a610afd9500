import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

jax.config.update("jax_enable_x64", True)

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")

#: one seed for every test's randomness (explicit keys, never unseeded).
SEED = 20260506


@pytest.fixture
def rng():
    return np.random.default_rng(SEED)


@pytest.fixture
def key():
    return jax.random.key(SEED)
