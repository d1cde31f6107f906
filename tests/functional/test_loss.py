"""Tests of cross_entropy and mse_loss: values against loops written here, every reduction, gradients by gradcheck
and against the closed form softmax - onehot, and the input errors."""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend
from scratchattn import functional as F

RNG = np.random.default_rng(11)
REDUCTIONS = ["mean", "sum", "none"]


def on(device, a, dtype=None):
    a = np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype)
    return backend.to_device(a, device)


def ref_cross_entropy(logits, target, reduction):
    logits = logits.astype(np.float64)
    losses = np.empty(len(target))
    for i, t in enumerate(target):
        losses[i] = np.log(np.sum(np.exp(logits[i]))) - logits[i, t]
    return {"mean": losses.mean(), "sum": losses.sum(), "none": losses}[reduction]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_values(reduction, dtype, device):
    logits = RNG.standard_normal((7, 5)) * 2
    target = RNG.integers(0, 5, 7)
    got = F.cross_entropy(sa.tensor(on(device, logits, dtype)), sa.tensor(on(device, target)), reduction=reduction)
    assert got.dtype == dtype
    assert got.shape == ((7,) if reduction == "none" else ())
    tol = 2e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(got.numpy(), ref_cross_entropy(logits.astype(dtype), target, reduction), rtol=tol)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_gradients(reduction, device):
    logits = sa.tensor(on(device, RNG.standard_normal((6, 4))), requires_grad=True)
    target = on(device, RNG.integers(0, 4, 6).astype(np.int32))
    assert sa.gradcheck(lambda x: F.cross_entropy(x, target, reduction=reduction), [logits])


def test_cross_entropy_gradient_is_softmax_minus_onehot_over_n():
    logits_np = RNG.standard_normal((5, 3))
    target = np.array([0, 2, 2, 1, 0])
    logits = sa.tensor(logits_np, requires_grad=True)
    F.cross_entropy(logits, target).backward()
    p = np.exp(logits_np) / np.exp(logits_np).sum(1, keepdims=True)
    np.testing.assert_allclose(logits.grad, (p - np.eye(3)[target]) / 5, rtol=1e-12, atol=1e-15)


def test_cross_entropy_is_finite_for_huge_logits():
    logits = sa.tensor(np.array([[1e4, 0.0], [0.0, 1e4]]), requires_grad=True)
    loss = F.cross_entropy(logits, np.array([1, 1]), reduction="none")
    np.testing.assert_allclose(loss.numpy(), [1e4, 0.0])
    loss.sum().backward()
    np.testing.assert_allclose(logits.grad, [[1.0, -1.0], [0.0, 0.0]])


def test_cross_entropy_of_an_empty_batch():
    empty = sa.tensor(np.zeros((0, 3)))
    target = np.zeros(0, dtype=np.int64)
    assert np.isnan(F.cross_entropy(empty, target).item())
    assert F.cross_entropy(empty, target, reduction="sum").item() == 0.0


def test_cross_entropy_input_errors():
    logits = sa.tensor(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="target must hold integer class labels.*float64"):
        F.cross_entropy(logits, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"in \[0, 2\] for 3 classes; found 3"):
        F.cross_entropy(logits, np.array([0, 3]))
    with pytest.raises(ValueError, match="found -1"):
        F.cross_entropy(logits, np.array([-1, 0]))
    with pytest.raises(ValueError, match=r"target must have shape \(2,\)"):
        F.cross_entropy(logits, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"logits of shape \(N, C\)"):
        F.cross_entropy(sa.tensor(np.zeros(3)), np.array([0]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.cross_entropy(logits, np.array([0, 1]), reduction="average")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mse_values(reduction, dtype, device):
    x, t = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 4))
    got = F.mse_loss(sa.tensor(on(device, x, dtype)), sa.tensor(on(device, t, dtype)), reduction=reduction)
    sq = (x.astype(dtype).astype(np.float64) - t.astype(dtype).astype(np.float64)) ** 2
    want = {"mean": sq.mean(), "sum": sq.sum(), "none": sq}[reduction]
    assert got.dtype == dtype
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_gradients_for_both_arguments(reduction, device):
    x = sa.tensor(on(device, RNG.standard_normal((2, 3, 2))), requires_grad=True)
    t = sa.tensor(on(device, RNG.standard_normal((2, 3, 2))), requires_grad=True)
    assert sa.gradcheck(lambda a, b: F.mse_loss(a, b, reduction=reduction), [x, t])


def test_mse_input_errors():
    with pytest.raises(ValueError, match=r"shape of input \(2, 3\); got \(3,\)"):
        F.mse_loss(sa.tensor(np.zeros((2, 3))), sa.tensor(np.zeros(3)))
    with pytest.raises(TypeError, match="target must be floating point"):
        F.mse_loss(sa.tensor(np.zeros(3)), np.array([1, 2, 3]))
