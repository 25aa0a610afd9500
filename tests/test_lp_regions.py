"""numerics.lp_regions: exact certified counts by LP splitting, against the vertex counter and in 64-d."""

import numpy as np
import pytest

from cpa_theory import hardtanh, relu
from cpa_theory.regions import count_regions
from numerics.lp_regions import count_regions_lp

from helpers import random_bn_net


@pytest.mark.parametrize("act", [relu, hardtanh])
def test_lp_counter_equals_the_vertex_counter(rng, act):
    for widths in ((2, 6, 5, 1), (3, 5, 4, 1)):
        net = random_bn_net(rng, widths=widths, gamma="random", beta="random", act=act)
        for x in net.batch[:2]:
            lp = count_regions_lp(net, x, 0.6)
            assert lp.certified and lp.regions == count_regions(net, x, 0.6).regions


def test_lp_counter_in_64_dimensions_is_certified_and_bounded(rng):
    net = random_bn_net(rng, widths=(64, 16, 8, 1), gamma="random", beta="random")
    res = count_regions_lp(net, net.batch[0], 0.01)
    assert res.certified and res.regions >= 1
    codes = net.condition().activation_code(res.witnesses)  # distinct regions
    assert len({tuple(np.concatenate([c[j] for c in codes])) for j in range(res.regions)}) == res.regions
    with pytest.raises(RuntimeError, match="max_regions"):
        count_regions_lp(net, net.batch[0], 5.0, max_regions=4)


def test_lp_counter_and_vertex_counter_bad_input(rng):
    from cpa_theory.errors import ShapeError, WindowError
    from cpa_theory.regions import count_regions

    net = random_bn_net(rng, widths=(12, 4, 1))
    with pytest.raises(WindowError, match="count_regions_lp"):  # the vertex counter names the way out
        count_regions(net, net.batch[0], 0.1)
    assert count_regions_lp(net, net.batch[0], 1e-3).certified
    with pytest.raises(WindowError, match="> 0"):
        count_regions_lp(net, net.batch[0], 0.0)
    with pytest.raises(ShapeError):
        count_regions_lp(net, net.batch[0][:3], 0.1)
