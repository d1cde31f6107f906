"""Tests of ``F.linear``: values against an explicit sum, gradients by gradcheck with and without bias and for 1-D,
2-D and 3-D inputs, and the input errors."""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend
from scratchattn import functional as F

RNG = np.random.default_rng(5)


def leaf(device, a, dtype=np.float64, requires_grad=True):
    return sa.tensor(backend.to_device(np.asarray(a, dtype=dtype), device), requires_grad=requires_grad)


def ref_linear(x, w, b):
    x, w = x.astype(np.float64), w.astype(np.float64)
    flat = x.reshape(-1, x.shape[-1])
    out = np.zeros((flat.shape[0], w.shape[0]))
    for r in range(flat.shape[0]):
        for o in range(w.shape[0]):
            out[r, o] = sum(flat[r, i] * w[o, i] for i in range(w.shape[1])) + (0.0 if b is None else b[o])
    return out.reshape(x.shape[:-1] + (w.shape[0],))


@pytest.mark.parametrize("x_shape", [(5,), (4, 5), (2, 3, 5)], ids=str)
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_values(x_shape, with_bias, dtype, device):
    x, w, b = RNG.standard_normal(x_shape), RNG.standard_normal((3, 5)), RNG.standard_normal(3)
    bias = leaf(device, b, dtype, False) if with_bias else None
    got = F.linear(leaf(device, x, dtype, False), leaf(device, w, dtype, False), bias)
    assert got.dtype == dtype and got.shape == x_shape[:-1] + (3,)
    want = ref_linear(x.astype(dtype), w.astype(dtype), b.astype(dtype) if with_bias else None)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


@pytest.mark.parametrize("x_shape", [(5,), (4, 5), (2, 3, 5)], ids=str)
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_gradients(x_shape, with_bias, device):
    x, w = leaf(device, RNG.standard_normal(x_shape)), leaf(device, RNG.standard_normal((3, 5)))
    inputs = [x, w] + ([leaf(device, RNG.standard_normal(3))] if with_bias else [])
    assert sa.gradcheck(F.linear, inputs)


def test_linear_with_only_weight_requiring_grad():
    x = leaf("cpu", RNG.standard_normal((4, 5)), requires_grad=False)
    w = leaf("cpu", RNG.standard_normal((3, 5)))
    F.linear(x, w).sum().backward()
    np.testing.assert_allclose(w.grad, np.tile(x.numpy().sum(0), (3, 1)), rtol=1e-12)


def test_linear_errors():
    x = sa.tensor(np.zeros((4, 5)))
    with pytest.raises(ValueError, match="in_features 6"):
        F.linear(x, sa.tensor(np.zeros((3, 6))))
    with pytest.raises(ValueError, match=r"weight must have shape \(out_features, in_features\)"):
        F.linear(x, sa.tensor(np.zeros(5)))
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        F.linear(x, sa.tensor(np.zeros((3, 5))), sa.tensor(np.zeros(4)))
    with pytest.raises(TypeError, match="weight dtype float32 differs from input dtype float64"):
        F.linear(x, sa.tensor(np.zeros((3, 5), dtype=np.float32)))
