"""Tests of F.layer_norm: forward against a NumPy reference written here, float64 gradchecks with and without the
affine parameters, invariants of the normalised output and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import functional as F


def reference_layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Per sample: flatten the normalised dims, subtract the mean, divide by sqrt(biased variance + eps)."""
    x = np.asarray(x, dtype=np.float64)
    n = int(np.prod(normalized_shape))
    rows = x.reshape(-1, n)
    out = np.empty_like(rows)
    for i, row in enumerate(rows):
        mu = row.sum() / n
        var = ((row - mu) ** 2).sum() / n
        out[i] = (row - mu) / np.sqrt(var + eps)
    out = out.reshape(x.shape)
    if weight is not None:
        out = out * np.asarray(weight, dtype=np.float64)
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float64)
    return out


def make(rng, shape, dtype=np.float64, device="cpu", requires_grad=False, loc=0.0):
    data = (rng.standard_normal(shape) + loc).astype(dtype)
    return sa.tensor(data, requires_grad=requires_grad, device=device)


CASES = [((4, 7), (7,)), ((2, 3, 5), (5,)), ((2, 3, 4, 5), (4, 5)), ((6,), (6,))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("shape,normalized", CASES, ids=str)
def test_forward_matches_reference(shape, normalized, affine, dtype, device):
    rng = np.random.default_rng(0)
    x = make(rng, shape, dtype, device, loc=3.0)  # an offset mean, so that centring matters
    w = make(rng, normalized, dtype, device) if affine else None
    b = make(rng, normalized, dtype, device) if affine else None
    y = F.layer_norm(x, normalized, w, b, eps=1e-5)
    ref = reference_layer_norm(
        x.numpy(), normalized, None if w is None else w.numpy(), None if b is None else b.numpy()
    )
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(y.numpy(), ref, rtol=tol, atol=tol)


def test_normalised_rows_have_zero_mean_unit_variance():
    rng = np.random.default_rng(1)
    x = make(rng, (5, 3, 16), loc=-2.0) * 10.0
    y = F.layer_norm(x, 16, eps=0.0).numpy()
    np.testing.assert_allclose(y.mean(axis=-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=-1), 1.0, rtol=1e-12)


def test_eps_matters_for_constant_rows():
    x = sa.tensor(np.full((2, 4), 3.0))
    y = F.layer_norm(x, 4).numpy()
    np.testing.assert_array_equal(y, 0.0)  # x - mean = 0 exactly; no NaN thanks to eps


@pytest.mark.parametrize("with_weight,with_bias", [(False, False), (True, True), (True, False), (False, True)])
@pytest.mark.parametrize("shape,normalized", [((3, 5), (5,)), ((2, 2, 3, 4), (3, 4))], ids=str)
def test_gradcheck(shape, normalized, with_weight, with_bias, device):
    rng = np.random.default_rng(2)
    x = make(rng, shape, device=device, requires_grad=True, loc=1.0)
    params = []
    if with_weight:
        params.append(make(rng, normalized, device=device, requires_grad=True))
    if with_bias:
        params.append(make(rng, normalized, device=device, requires_grad=True))

    def fn(x, *p):
        w = p[0] if with_weight else None
        b = p[-1] if with_bias else None
        return F.layer_norm(x, normalized, w, b, eps=1e-3)

    sa.gradcheck(fn, [x, *params])


def test_gradcheck_only_parameters_require_grad():
    rng = np.random.default_rng(3)
    x = make(rng, (4, 6))
    w, b = make(rng, (6,), requires_grad=True), make(rng, (6,), requires_grad=True)
    sa.gradcheck(lambda w, b: F.layer_norm(x, 6, w, b), [w, b])


def test_bad_input_raises_naming_the_argument():
    x = sa.tensor(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="trailing dims must equal normalized_shape"):
        F.layer_norm(x, 3)
    with pytest.raises(ValueError, match="trailing dims must equal normalized_shape"):
        F.layer_norm(x, (1, 2, 3, 4))
    with pytest.raises(ValueError, match="normalized_shape must be non-empty"):
        F.layer_norm(x, ())
    with pytest.raises(TypeError, match="normalized_shape must be an int"):
        F.layer_norm(x, "4")
    with pytest.raises(ValueError, match="weight must have shape"):
        F.layer_norm(x, 4, weight=np.ones(3))
    with pytest.raises(TypeError, match="bias must have x's dtype"):
        F.layer_norm(x, 4, bias=np.ones(4, dtype=np.float32))
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        F.layer_norm(np.zeros((2, 4), dtype=np.int32), 4)
    with pytest.raises(ValueError, match="eps must be a number >= 0"):
        F.layer_norm(x, 4, eps=-1.0)
