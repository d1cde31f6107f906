"""Tests of SEInception: branch shapes, SE applied to the whole concatenated output (and actually called), gradients."""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import models


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def randomize(module, rng):
    with sa.no_grad():
        for p in module.parameters():
            p.data[...] = rng.standard_normal(p.shape) * 0.5
    return module


@pytest.mark.parametrize("double_3x3", [False, True])
def test_output_shape_and_children(double_3x3):
    block = models.SEInception(6, c1=2, c3r=3, c3=4, c5r=2, c5=3, pool_proj=1, reduction=2, double_3x3=double_3x3)
    assert block.out_channels == 10 and block.se.channels == 10
    assert block.se.fc1.weight.shape == (5, 10)
    x = sa.tensor(np.random.default_rng(0).standard_normal((2, 6, 7, 5)).astype(np.float32))
    y = block(x)
    assert y.shape == (2, 10, 7, 5) and y.dtype == np.float32
    kernel = block.branch5[-1][0].weight.shape[-1]
    assert kernel == (3 if double_3x3 else 5)
    assert len(block.branch5) == (3 if double_3x3 else 2)


def test_se_is_applied_to_the_whole_concatenated_output():
    rng = np.random.default_rng(1)
    block = randomize(models.SEInception(4, c1=2, c3r=2, c3=3, c5r=2, c5=2, pool_proj=2, reduction=3), rng).eval()
    with sa.no_grad():
        block.se.fc2.bias.data[...] = np.linspace(-3, 1, 9)  # gates well away from 1
    x = sa.tensor(rng.standard_normal((2, 4, 5, 6)).astype(np.float32))
    with sa.no_grad():
        y = block(x).numpy()
        before = block.branches(x).numpy().astype(np.float64)
    # The reference gates, from the SE weights, over all 9 channels of the concatenation.
    se = block.se
    w1, b1, w2, b2 = (p.numpy().astype(np.float64) for p in (se.fc1.weight, se.fc1.bias, se.fc2.weight, se.fc2.bias))
    s = sigmoid(np.maximum(before.mean(axis=(2, 3)) @ w1.T + b1, 0) @ w2.T + b2)
    np.testing.assert_allclose(y, before * s[:, :, None, None], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(se.last_excitation, s, rtol=1e-5, atol=1e-6)
    # SE really changes the output (a port that builds the SE layer but never calls it would fail here).
    assert np.abs(y - before).max() > 0.1

    plain = models.SEInception(4, c1=2, c3r=2, c3=3, c5r=2, c5=2, pool_proj=2, use_se=False).eval()
    assert plain.se is None
    plain.load_state_dict({k: v for k, v in block.state_dict().items() if not k.startswith("se.")})
    with sa.no_grad():
        np.testing.assert_allclose(plain(x).numpy(), before, rtol=1e-6, atol=1e-6)


def test_gradcheck():
    rng = np.random.default_rng(2)
    block = randomize(models.SEInception(2, c1=1, c3r=1, c3=2, c5r=1, c5=1, pool_proj=1, reduction=2), rng)
    block = block.double()  # training mode: batch statistics, whose gradient is part of the check
    x = sa.tensor(rng.standard_normal((2, 2, 4, 3)), requires_grad=True)
    assert sa.gradcheck(lambda t: block(t), [x], atol=1e-6, rtol=1e-4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="c5 must be a positive int"):
        models.SEInception(4, 2, 2, 2, 2, 0, 2)
    with pytest.raises(ValueError, match=r"input must have shape \(N, 4, H, W\)"):
        models.SEInception(4, 2, 2, 2, 2, 2, 2)(sa.tensor(np.zeros((1, 3, 5, 5), np.float32)))
