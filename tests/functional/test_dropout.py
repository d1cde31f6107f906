"""Tests of ``F.dropout`` and ``sa.manual_seed``: the mask is reproducible from the seed, drops about p of the
elements, scales the rest by 1/(1-p), is the same mask in backward; evaluation and p=0 are the identity, p=1 zeros
everything; gradcheck with the seed reset before every forward so all evaluations use one mask."""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend
from scratchattn import functional as F
from scratchattn import random as sa_random


def _x(device, shape, dtype=np.float64, requires_grad=True):
    return sa.tensor(backend.to_device(np.ones(shape, dtype=dtype), device), requires_grad=requires_grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_keeps_and_scales(dtype, device):
    sa.manual_seed(0)
    x = _x(device, (200, 100), dtype)
    y = F.dropout(x, p=0.3)
    out = y.numpy()
    assert y.dtype == dtype
    kept = out != 0
    np.testing.assert_allclose(out[kept], 1 / 0.7, rtol=1e-6)
    # 20,000 Bernoulli(0.7) draws: the kept fraction is within 5 standard deviations (0.016) of 0.7
    assert abs(kept.mean() - 0.7) < 0.016
    y.backward(backend.to_device(np.full((200, 100), 2.0, dtype=dtype), device))
    np.testing.assert_allclose(backend.to_numpy(x.grad), np.where(kept, 2 / 0.7, 0.0), rtol=1e-6)


def test_manual_seed_makes_the_mask_reproducible():
    x = _x("cpu", (50,), requires_grad=False)
    sa.manual_seed(123)
    a = F.dropout(x).numpy()
    b = F.dropout(x).numpy()
    sa.manual_seed(123)
    c = F.dropout(x).numpy()
    np.testing.assert_array_equal(a, c)
    assert np.any(a != b)  # the stream moves on between calls


def test_default_rng_is_per_array_module():
    sa.manual_seed(5)
    first = sa_random.default_rng(np).random(3)
    sa.manual_seed(5)
    np.testing.assert_array_equal(sa_random.default_rng().random(3), first)
    with pytest.raises(TypeError, match="numpy or cupy"):
        sa_random.default_rng(object())
    with pytest.raises(ValueError, match=">= 0"):
        sa.manual_seed(-1)
    with pytest.raises(TypeError, match="must be an int"):
        sa.manual_seed(1.5)


def test_evaluation_and_p0_are_the_identity_and_p1_zeros():
    x = _x("cpu", (4, 3))
    assert F.dropout(x, p=0.5, training=False) is x
    assert F.dropout(x, p=0.0) is x
    y = F.dropout(x, p=1.0)
    np.testing.assert_array_equal(y.numpy(), np.zeros((4, 3)))
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.zeros((4, 3)))


def test_dropout_gradcheck(device):
    x = sa.tensor(backend.to_device(np.random.default_rng(0).standard_normal((5, 6)), device), requires_grad=True)

    def fn(t):
        sa.manual_seed(42)  # the same mask in every evaluation gradcheck makes
        return F.dropout(t, p=0.4)

    assert sa.gradcheck(fn, [x])


def test_dropout_errors():
    x = _x("cpu", (3,))
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\]; got 1.5"):
        F.dropout(x, p=1.5)
    with pytest.raises(TypeError, match="floating point"):
        F.dropout(sa.tensor(np.ones(3, dtype=np.int64)))
