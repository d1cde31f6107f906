"""Tests of F.gelu: both forms against NumPy references written here (math.erf for the exact one), float64
gradchecks, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import functional as F


def reference_gelu(x, approximate):
    x = np.asarray(x, dtype=np.float64)
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x.ravel()]).reshape(x.shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_forward_matches_reference(approximate, dtype, device):
    x = np.concatenate([np.linspace(-9, 9, 181), [-30.0, 0.0, 30.0]]).reshape(4, 46).astype(dtype)
    y = F.gelu(sa.tensor(x, device=device), approximate=approximate)
    tol = 2e-6 if dtype == np.float32 else 1e-14
    assert y.dtype == dtype
    np.testing.assert_allclose(y.numpy(), reference_gelu(x, approximate), rtol=tol, atol=tol)


def test_exact_and_tanh_forms_differ_slightly():
    x = sa.tensor(np.linspace(-3, 3, 61))
    diff = np.abs(F.gelu(x).numpy() - F.gelu(x, approximate="tanh").numpy())
    assert 1e-5 < diff.max() < 1e-3


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gradcheck(approximate, device):
    rng = np.random.default_rng(0)
    x = sa.tensor(rng.standard_normal((3, 5)) * 2, requires_grad=True, device=device)
    sa.gradcheck(lambda x: F.gelu(x, approximate=approximate), [x])


def test_bad_input():
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        F.gelu(sa.tensor(np.zeros(3)), approximate="erf")
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        F.gelu(np.zeros(3, dtype=np.int64))
