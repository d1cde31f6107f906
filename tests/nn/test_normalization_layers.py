"""Tests of nn.LayerNorm: parameters and their initial values, forward against a NumPy reference written here,
a float64 gradcheck through the module (input and parameters), and bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import nn


def reference_layer_norm(x, weight, bias, eps):
    x = np.asarray(x, dtype=np.float64)
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * weight + bias


def backend_array(a, device):
    return sa.tensor(np.asarray(a, dtype=np.float32), device=device).data


def test_parameters_start_at_one_and_zero():
    m = nn.LayerNorm(6)
    assert list(m.state_dict()) == ["weight", "bias"]
    assert m.weight.dtype == np.float32 and m.weight.shape == (6,)
    np.testing.assert_array_equal(m.weight.numpy(), 1.0)
    np.testing.assert_array_equal(m.bias.numpy(), 0.0)
    assert list(nn.LayerNorm(6, bias=False).state_dict()) == ["weight"]
    assert list(nn.LayerNorm((2, 3), elementwise_affine=False).state_dict()) == []


def test_forward_matches_reference(device):
    rng = np.random.default_rng(0)
    m = nn.LayerNorm(8, eps=1e-4).to(device)
    m.weight.data[...] = backend_array(rng.standard_normal(8), device)
    m.bias.data[...] = backend_array(rng.standard_normal(8), device)
    x = rng.standard_normal((3, 5, 8)).astype(np.float32) * 4 + 2
    y = m(sa.tensor(x, device=device))
    ref = reference_layer_norm(x, m.weight.numpy(), m.bias.numpy(), 1e-4)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-5, atol=1e-5)


def test_gradcheck_through_the_module():
    rng = np.random.default_rng(1)
    m = nn.LayerNorm((2, 3)).double()
    m.weight.data[...] = rng.standard_normal((2, 3))
    m.bias.data[...] = rng.standard_normal((2, 3))
    x = sa.tensor(rng.standard_normal((4, 2, 3)), requires_grad=True)
    sa.gradcheck(lambda x, w, b: sa.functional.layer_norm(x, (2, 3), w, b), [x, m.weight, m.bias])
    # and through the module call itself, for the input
    sa.gradcheck(lambda x: m(x), [x])


def test_bad_arguments():
    with pytest.raises(ValueError, match="normalized_shape must be positive"):
        nn.LayerNorm(0)
    with pytest.raises(ValueError, match="normalized_shape must be positive"):
        nn.LayerNorm("8")
    with pytest.raises(ValueError, match="trailing dims must equal normalized_shape"):
        nn.LayerNorm(4)(sa.tensor(np.zeros((2, 5), dtype=np.float32)))
