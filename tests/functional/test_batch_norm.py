"""Tests of ``F.batch_norm``: training and evaluation values against a per-channel loop written here, the running
statistics (biased variance to normalise, unbiased into the running estimate, updated in place), gradients by
gradcheck for (N, C), (N, C, L) and (N, C, H, W) with and without the affine parameters, and the input errors."""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend
from scratchattn import functional as F

SHAPES = [(6, 3), (4, 3, 5), (2, 3, 4, 5)]


def ref_batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps):
    """Returns y and the new running statistics, one channel at a time."""
    x = x.astype(np.float64)
    c = x.shape[1]
    y = np.empty_like(x)
    new_mean, new_var = running_mean.astype(np.float64).copy(), running_var.astype(np.float64).copy()
    for k in range(c):
        values = x[:, k].ravel()
        if training:
            mu = values.mean()
            var = ((values - mu) ** 2).sum() / len(values)
            unbiased = ((values - mu) ** 2).sum() / (len(values) - 1)
            new_mean[k] = (1 - momentum) * running_mean[k] + momentum * mu
            new_var[k] = (1 - momentum) * running_var[k] + momentum * unbiased
        else:
            mu, var = running_mean[k], running_var[k]
        gamma = 1.0 if weight is None else weight[k]
        beta = 0.0 if bias is None else bias[k]
        y[:, k] = gamma * (x[:, k] - mu) / np.sqrt(var + eps) + beta
    return y, new_mean, new_var


def _on(device, a, dtype=np.float64):
    return backend.to_device(np.asarray(a).astype(dtype), device)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_values_and_running_statistics(shape, training, dtype, device):
    rng = np.random.default_rng(len(shape))
    c = shape[1]
    x_np = rng.standard_normal(shape) * 2 + 3
    w_np, b_np = rng.standard_normal(c), rng.standard_normal(c)
    rm_np, rv_np = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    running_mean, running_var = _on(device, rm_np, dtype), _on(device, rv_np, dtype)
    ids = id(running_mean), id(running_var)
    y = F.batch_norm(sa.tensor(_on(device, x_np, dtype)), running_mean, running_var,
                     sa.tensor(_on(device, w_np, dtype)), sa.tensor(_on(device, b_np, dtype)),
                     training=training, momentum=0.2, eps=1e-3)
    q = lambda a: a.astype(dtype).astype(np.float64)  # noqa: E731 - the inputs as the op saw them
    want, want_mean, want_var = ref_batch_norm(q(x_np), q(rm_np), q(rv_np), q(w_np), q(b_np), training, 0.2, 1e-3)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(y.numpy(), want, **tol)
    # updated in place: the same array objects hold the new values
    assert (id(running_mean), id(running_var)) == ids
    np.testing.assert_allclose(backend.to_numpy(running_mean), want_mean, **tol)
    np.testing.assert_allclose(backend.to_numpy(running_var), want_var, **tol)


def test_running_statistics_can_be_tensors_and_are_updated_in_place():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 2))
    mean_buf, var_buf = sa.tensor(np.zeros(2)), sa.tensor(np.ones(2))
    data_mean = mean_buf.data
    F.batch_norm(sa.tensor(x), mean_buf, var_buf, training=True)
    assert mean_buf.data is data_mean
    np.testing.assert_allclose(mean_buf.numpy(), 0.1 * x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(var_buf.numpy(), 0.9 + 0.1 * x.var(0, ddof=1), rtol=1e-12)


def test_training_without_running_statistics_and_normalised_output():
    x = np.random.default_rng(1).standard_normal((5, 3, 4)) * 4 - 2
    y = F.batch_norm(sa.tensor(x), None, None, training=True, eps=0.0).numpy()
    np.testing.assert_allclose(y.mean(axis=(0, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2)), 1, rtol=1e-12)  # biased variance normalises


def test_float32_running_stats_with_float64_input_keep_their_dtype():
    rm, rv = np.zeros(3, dtype=np.float32), np.ones(3, dtype=np.float32)
    F.batch_norm(sa.tensor(np.random.default_rng(2).standard_normal((4, 3))), rm, rv, training=True)
    assert rm.dtype == np.float32 and rv.dtype == np.float32 and np.any(rm != 0)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", ["both", "weight", "bias", "none"])
def test_batch_norm_gradcheck(shape, training, affine, device):
    rng = np.random.default_rng(10 + len(shape))
    c = shape[1]
    x = sa.tensor(_on(device, rng.standard_normal(shape) * 1.5 + 0.5), requires_grad=True)
    weight = sa.tensor(_on(device, rng.standard_normal(c)), requires_grad=True) if affine in ("both", "weight") \
        else None
    bias = sa.tensor(_on(device, rng.standard_normal(c)), requires_grad=True) if affine in ("both", "bias") else None
    rm, rv = _on(device, rng.standard_normal(c)), _on(device, rng.uniform(0.5, 2.0, c))

    def fn(t, w, b):
        # fresh copies: the training forward updates its running statistics every call
        return F.batch_norm(t, rm.copy(), rv.copy(), w, b, training=training)

    assert sa.gradcheck(fn, [x, weight, bias])


def test_batch_norm_errors():
    x = sa.tensor(np.zeros((4, 3)))
    rm, rv = np.zeros(3), np.ones(3)
    with pytest.raises(ValueError, match=r"running_mean must have shape \(3,\); got \(4,\)"):
        F.batch_norm(x, np.zeros(4), rv)
    with pytest.raises(ValueError, match="evaluation .* needs running_mean and running_var"):
        F.batch_norm(x, None, None, training=False)
    with pytest.raises(ValueError, match="both be given or both be None"):
        F.batch_norm(x, rm, None, training=True)
    with pytest.raises(ValueError, match="more than one value per channel"):
        F.batch_norm(sa.tensor(np.zeros((1, 3))), rm, rv, training=True)
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        F.batch_norm(x, rm, rv, weight=sa.tensor(np.ones(2)))
    with pytest.raises(TypeError, match="bias dtype float32 differs"):
        F.batch_norm(x, rm, rv, bias=sa.tensor(np.ones(3, dtype=np.float32)))
    with pytest.raises(ValueError, match=r"input must have shape \(N, C\)"):
        F.batch_norm(sa.tensor(np.zeros(3)), rm, rv)
    with pytest.raises(TypeError, match="updated in place"):
        F.batch_norm(x, [0.0, 0.0, 0.0], rv)
    with pytest.raises(NotImplementedError, match="momentum=None"):
        F.batch_norm(x, rm, rv, training=True, momentum=None)
    with pytest.raises(ValueError, match="momentum must be a float in"):
        F.batch_norm(x, rm, rv, training=True, momentum=1.5)


# =================================================================================================================
# the CPU fast path (Numba kernels) against the xp reference path
# =================================================================================================================


def _run_batch_norm(x_np, dtype, training, affine, fast, monkeypatch, g_np):
    from scratchattn.functional.normalization import BatchNorm

    monkeypatch.setattr(BatchNorm, "cpu_kernels", fast)
    c = x_np.shape[1]
    rng = np.random.default_rng(4)
    rm, rv = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2.0, c).astype(dtype)
    x = sa.tensor(x_np.astype(dtype), requires_grad=True)
    params = [sa.tensor(rng.standard_normal(c).astype(dtype), requires_grad=True) for _ in range(2)] if affine \
        else [None, None]
    y = F.batch_norm(x, rm, rv, *params, training=training, momentum=0.3, eps=1e-4)
    y.backward(g_np.astype(dtype))
    grads = [x.grad] + [p.grad for p in params if p is not None]
    return y.numpy(), rm, rv, grads


@pytest.mark.parametrize("shape", [(7, 3), (5, 4, 9), (3, 5, 7, 6), (1, 2, 3, 3)], ids=str)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_cpu_kernels_match_the_xp_path(shape, training, affine, dtype, monkeypatch):
    rng = np.random.default_rng(sum(shape))
    x_np = rng.standard_normal(shape) * 3 - 2
    g_np = rng.standard_normal(shape)
    fast = _run_batch_norm(x_np, dtype, training, affine, True, monkeypatch, g_np)
    slow = _run_batch_norm(x_np, dtype, training, affine, False, monkeypatch, g_np)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
    for name, a, b in (("y", fast[0], slow[0]), ("running_mean", fast[1], slow[1]), ("running_var", fast[2], slow[2])):
        assert a.dtype == dtype, name
        np.testing.assert_allclose(a, b, **tol, err_msg=name)
    assert len(fast[3]) == len(slow[3])
    for a, b in zip(fast[3], slow[3]):
        assert a.dtype == dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, **tol)


def test_batch_norm_cpu_kernels_keep_precision_when_the_mean_dwarfs_the_spread():
    """float32 data with mean 1000 and std 0.01: a one-pass variance without a shift would lose every digit."""
    rng = np.random.default_rng(12)
    x_np = (1000 + 0.01 * rng.standard_normal((8, 2, 6, 6))).astype(np.float32)
    g_np = rng.standard_normal(x_np.shape).astype(np.float32)
    x = sa.tensor(x_np, requires_grad=True)
    y = F.batch_norm(x, None, None, training=True, eps=0.0)
    y.backward(g_np)
    want, _, _ = ref_batch_norm(x_np.astype(np.float64), np.zeros(2), np.ones(2), None, None, True, 0.1, 0.0)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-3, atol=1e-3)  # x itself is rounded to ~6e-5 of 0.01
    x64 = sa.tensor(x_np.astype(np.float64), requires_grad=True)
    F.batch_norm(x64, None, None, training=True, eps=0.0).backward(g_np.astype(np.float64))
    np.testing.assert_allclose(x.grad, x64.grad, rtol=1e-3, atol=1e-3 * np.abs(x64.grad).max())


def test_batch_norm_cpu_kernels_propagate_nan():
    x_np = np.arange(24.0).reshape(2, 3, 4)
    x_np[1, 1, 2] = np.nan
    y = F.batch_norm(sa.tensor(x_np), None, None, training=True).numpy()
    assert np.isnan(y[:, 1]).all() and np.isfinite(y[:, [0, 2]]).all()
