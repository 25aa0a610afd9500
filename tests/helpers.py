"""Small builders shared by the tests."""

from __future__ import annotations

import sys

import numpy as np

from cpa_theory import BatchNorm, Layer, Network, identity, relu


#: ``python -m cpa_theory`` with Ctrl-C at its default disposition and unblocked, for the Ctrl-C tests: a test run
#: started as a background job (``pytest &`` in a non-interactive shell) ignores SIGINT, exec passes that on, and
#: the CLI then sees the signal only inside a JAX call that defers it (the tests failed with exit 0, now and then).
CLI_WITH_CTRL_C = [sys.executable, "-c",
                   "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                   "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
                   "os.execv(sys.executable, [sys.executable, '-m', 'cpa_theory'] + sys.argv[1:])"]


def random_bn_net(rng, widths=(2, 6, 5, 1), mode="train", batch_size=12, offset=0.0, act=relu, gamma=None,
                  beta=None, bias_scale=0.5):
    """A random MLP with BN (train/eval/None) on every hidden layer and an identity output."""
    layers = []
    for i, (m, n) in enumerate(zip(widths[:-1], widths[1:])):
        last = i == len(widths) - 2
        bn = None
        if not last and mode is not None:
            g = rng.uniform(0.5, 2.0, n) * rng.choice([-1, 1], n) if gamma == "random" else gamma
            b = rng.normal(size=n) * 0.5 if beta == "random" else beta
            kw = {}
            if mode == "eval":
                kw = dict(running_mean=rng.normal(size=n), running_var=rng.uniform(0.5, 2.0, n))
            bn = BatchNorm(n, mode, g, b, **kw)
        layers.append(Layer(rng.normal(size=(n, m)) / np.sqrt(m), rng.normal(size=n) * bias_scale,
                            identity() if last else act(), bn))
    batch = rng.normal(size=(batch_size, widths[0])) + offset
    return Network(widths[0], tuple(layers), batch)
