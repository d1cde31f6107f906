"""Tests of relu, sigmoid, tanh, softmax and log_softmax: values against NumPy formulas written here (float32 and
float64), stability for large inputs, gradients by gradcheck along every dim."""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend
from scratchattn import functional as F

RNG = np.random.default_rng(7)


def leaf(device, a, dtype=np.float64, requires_grad=True):
    return sa.tensor(backend.to_device(np.asarray(a, dtype=dtype), device), requires_grad=requires_grad)


def ref_softmax(x, axis):
    x = x.astype(np.float64)
    out = np.empty_like(x)
    # one slice at a time, straight from the definition exp(x_i) / sum_j exp(x_j) (inputs here are moderate)
    for index in np.ndindex(*[n for i, n in enumerate(x.shape) if i != axis % x.ndim]):
        full = list(index)
        full.insert(axis % x.ndim, slice(None))
        row = x[tuple(full)]
        out[tuple(full)] = np.exp(row) / np.exp(row).sum()
    return out


ELEMENTWISE = {
    "relu": (F.relu, lambda x: np.where(x > 0, x, 0.0)),
    "sigmoid": (F.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    "tanh": (F.tanh, np.tanh),
}


@pytest.mark.parametrize("name", list(ELEMENTWISE))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elementwise_values(name, dtype, device):
    op, ref = ELEMENTWISE[name]
    x_np = RNG.standard_normal((3, 7)) * 3
    y = op(leaf(device, x_np, dtype, requires_grad=False))
    assert y.dtype == dtype and y.shape == (3, 7)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(y.numpy(), ref(x_np.astype(dtype).astype(np.float64)), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_gradients(name, device):
    op, _ = ELEMENTWISE[name]
    x_np = RNG.uniform(0.1, 2.0, (4, 5)) * RNG.choice([-1, 1], (4, 5))  # relu's kink at 0 is avoided
    assert sa.gradcheck(op, [leaf(device, x_np)])


def test_relu_gradient_is_zero_at_and_below_zero():
    x = leaf("cpu", [-1.0, 0.0, 2.0])
    F.relu(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 1.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_finite_and_exact_for_large_inputs(dtype):
    x = leaf("cpu", [-1e4, -800.0, -100.0, -30.0, 0.0, 30.0, 100.0, 800.0, 1e4], dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        y = F.sigmoid(x)
        y.sum().backward()
    assert np.all(np.isfinite(y.numpy())) and np.all(np.isfinite(x.grad))
    np.testing.assert_array_equal(y.numpy()[[0, 1, -2, -1]], [0.0, 0.0, 1.0, 1.0])
    assert y.numpy()[4] == 0.5
    # sigmoid(-30) = e^-30 / (1 + e^-30): tiny but representable, and not rounded to 0
    np.testing.assert_allclose(y.numpy()[3], np.exp(-30.0), rtol=1e-6)


@pytest.mark.parametrize("op_name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, 1, 2, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_values(op_name, dim, dtype, device):
    x_np = RNG.standard_normal((2, 3, 5)) * 2
    y = getattr(F, op_name)(leaf(device, x_np, dtype, requires_grad=False), dim=dim)
    want = ref_softmax(x_np.astype(dtype), dim)
    if op_name == "log_softmax":
        want = np.log(want)
    assert y.dtype == dtype
    tol = 2e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(y.numpy(), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("op_name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_gradients(op_name, dim, device):
    x = leaf(device, RNG.standard_normal((3, 4, 2)))
    assert sa.gradcheck(lambda t: getattr(F, op_name)(t, dim=dim), [x])


def test_softmax_and_log_softmax_are_stable_for_huge_logits():
    x = leaf("cpu", [[1000.0, 0.0, -1000.0], [-5e4, -5e4, -5e4]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p = F.softmax(x, dim=1).numpy()
        logp = F.log_softmax(x, dim=1).numpy()
    np.testing.assert_allclose(p, [[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-15)
    np.testing.assert_allclose(logp, [[0.0, -1000.0, -2000.0], [-np.log(3)] * 3], rtol=1e-14)


def test_errors_name_the_problem():
    with pytest.raises(TypeError, match="floating-point"):
        F.relu(sa.tensor(np.array([1, 2])))
    with pytest.raises(ValueError, match="out of range"):
        F.softmax(sa.tensor(np.ones((2, 3))), dim=2)
    with pytest.raises(TypeError, match="dim must be an int"):
        F.log_softmax(sa.tensor(np.ones((2, 3))), dim=None)
