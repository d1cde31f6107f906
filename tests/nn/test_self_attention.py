"""Tests of the self-attention blocks: MultiheadSelfAttention, SelfAttention2d and NonLocalBlock.

Each block's forward is compared with a NumPy computation written here from the block's own parameters, its
gradients (input and every parameter) with central differences in float64, and the two image blocks are checked
to be the identity when freshly built.
"""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import nn

# ---------------------------------------------------------------------------------------------------------------
# NumPy references
# ---------------------------------------------------------------------------------------------------------------


def softmax_rows(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def linear_ref(x, layer):
    w = layer.weight.numpy().astype(np.float64)
    b = 0.0 if layer.bias is None else layer.bias.numpy().astype(np.float64)
    return x @ w.T + b


def conv1x1_ref(x, conv):
    w = conv.weight.numpy().astype(np.float64)[:, :, 0, 0]
    b = conv.bias.numpy().astype(np.float64)
    return np.einsum("oc,nchw->nohw", w, x) + b[None, :, None, None]


def mhsa_ref(m, x, mask=None):
    """Head by head and sample by sample, with the block's weights."""
    x = np.asarray(x, dtype=np.float64)
    n, length, dim = x.shape
    hd = dim // m.heads
    q, k, v = linear_ref(x, m.query), linear_ref(x, m.key), linear_ref(x, m.value)
    merged = np.zeros_like(x)
    weights = np.zeros((n, m.heads, length, length))
    for b in range(n):
        for h in range(m.heads):
            cols = slice(h * hd, (h + 1) * hd)
            s = q[b, :, cols] @ k[b, :, cols].T / np.sqrt(hd)
            if mask is not None:
                s = np.where(mask, s, -np.inf)
            weights[b, h] = softmax_rows(s)
            merged[b, :, cols] = weights[b, h] @ v[b, :, cols]
    return linear_ref(merged, m.out), weights


def pixel_attention_ref(q_map, k_map, v_map):
    """softmax over pixels j of q_i . k_j (no scale), applied to v: maps (N, C*, H, W) -> (N, Cv, H, W)."""
    n, _, h, w = q_map.shape
    q = q_map.reshape(n, -1, h * w).transpose(0, 2, 1)
    k = k_map.reshape(n, -1, h * w).transpose(0, 2, 1)
    v = v_map.reshape(n, -1, h * w).transpose(0, 2, 1)
    a = softmax_rows(q @ k.transpose(0, 2, 1))
    return (a @ v).transpose(0, 2, 1).reshape(n, -1, h, w), a


def self_attention2d_ref(m, x):
    o, a = pixel_attention_ref(conv1x1_ref(x, m.query), conv1x1_ref(x, m.key), conv1x1_ref(x, m.value))
    return x + m.gamma.numpy().astype(np.float64)[0] * o, a


def nonlocal_ref_eval(m, x):
    """Evaluation mode: the batch norm uses its running statistics."""
    y, a = pixel_attention_ref(conv1x1_ref(x, m.theta), conv1x1_ref(x, m.phi), conv1x1_ref(x, m.g))
    z = conv1x1_ref(y, m.out_conv)
    bn = m.out_norm
    mean, var = bn.running_mean.numpy()[None, :, None, None], bn.running_var.numpy()[None, :, None, None]
    w, b = bn.weight.numpy()[None, :, None, None], bn.bias.numpy()[None, :, None, None]
    return x + (z - mean) / np.sqrt(var + bn.eps) * w + b, a


# ---------------------------------------------------------------------------------------------------------------
# a gradient check for modules: the input through sa.gradcheck, every parameter by central differences
# ---------------------------------------------------------------------------------------------------------------


def gradcheck_module(module, x, atol=1e-6, rtol=1e-4, eps=1e-6):
    """Check d sum(v * module(x)) / d(x and every parameter) in float64 against central differences."""
    assert sa.gradcheck(lambda t: module(t), [x])
    assert sa.gradcheck(module, [sa.tensor(x.numpy())], eps=eps, atol=atol, rtol=rtol,
                        params=module.named_parameters())


def randomize(module, rng, scale=0.5):
    """Give every parameter random values (the zero initialisations would hide gradients behind them)."""
    for p in module.parameters():
        p.data[...] = (rng.standard_normal(p.shape) * scale).astype(p.dtype)
    return module


# ---------------------------------------------------------------------------------------------------------------
# MultiheadSelfAttention
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mhsa_forward_matches_reference(dtype, device):
    sa.manual_seed(0)
    m = nn.MultiheadSelfAttention(dim=8, heads=2).to(device, dtype)
    x = np.random.default_rng(0).standard_normal((3, 5, 8)).astype(dtype)
    y = m(sa.tensor(x, device=device))
    ref, ref_w = mhsa_ref(m, x)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert y.shape == (3, 5, 8) and y.dtype == dtype
    np.testing.assert_allclose(y.numpy(), ref, rtol=tol, atol=tol)
    assert isinstance(m.last_attention, np.ndarray) and m.last_attention.shape == (3, 2, 5, 5)
    np.testing.assert_allclose(m.last_attention, ref_w, rtol=tol, atol=tol)
    np.testing.assert_allclose(m.last_attention.sum(axis=-1), 1.0, rtol=1e-6)


def test_mhsa_with_causal_mask():
    sa.manual_seed(1)
    m = nn.MultiheadSelfAttention(dim=6, heads=3).double()
    x = np.random.default_rng(1).standard_normal((2, 4, 6))
    causal = np.tril(np.ones((4, 4), dtype=bool))
    y = m(sa.tensor(x), mask=causal)
    ref, _ = mhsa_ref(m, x, causal)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)
    assert (m.last_attention[..., ~causal] == 0).all()


def test_mhsa_without_bias_and_without_keeping_attention():
    m = nn.MultiheadSelfAttention(dim=4, heads=1, bias=False)
    assert sorted(m.state_dict()) == ["key.weight", "out.weight", "query.weight", "value.weight"]
    m.keep_attention = False
    m(sa.tensor(np.zeros((1, 3, 4), dtype=np.float32)))
    assert m.last_attention is None


def test_mhsa_gradcheck():
    rng = np.random.default_rng(2)
    m = randomize(nn.MultiheadSelfAttention(dim=4, heads=2).double(), rng)
    x = sa.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    gradcheck_module(m, x)


def test_mhsa_bad_arguments():
    with pytest.raises(ValueError, match="dim must be divisible by heads"):
        nn.MultiheadSelfAttention(dim=10, heads=3)
    with pytest.raises(ValueError, match="heads must be a positive int"):
        nn.MultiheadSelfAttention(dim=8, heads=0)
    with pytest.raises(ValueError, match=r"input must have shape \(N, L, 8\)"):
        nn.MultiheadSelfAttention(dim=8, heads=2)(sa.tensor(np.zeros((2, 3, 4), dtype=np.float32)))


# ---------------------------------------------------------------------------------------------------------------
# SelfAttention2d
# ---------------------------------------------------------------------------------------------------------------


def test_self_attention2d_is_identity_at_init(device):
    sa.manual_seed(3)
    m = nn.SelfAttention2d(16).to(device)
    assert m.inner_channels == 2 and m.gamma.numpy().tolist() == [0.0]
    x = np.random.default_rng(3).standard_normal((2, 16, 5, 3)).astype(np.float32)
    y = m(sa.tensor(x, device=device))
    assert y.shape == x.shape
    np.testing.assert_array_equal(y.numpy(), x)
    assert m.last_attention.shape == (2, 15, 15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_self_attention2d_forward_matches_reference(dtype, device):
    rng = np.random.default_rng(4)
    sa.manual_seed(4)
    m = nn.SelfAttention2d(8, reduction=4).to(device, dtype)
    m.gamma.data[...] = 0.8
    x = rng.standard_normal((2, 8, 3, 4)).astype(dtype)
    y = m(sa.tensor(x, device=device))
    ref, ref_a = self_attention2d_ref(m, x.astype(np.float64))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y.numpy(), ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(m.last_attention, ref_a, rtol=tol, atol=tol)
    np.testing.assert_allclose(m.last_attention.sum(axis=-1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("keep_attention", [True, False])
def test_self_attention2d_gradcheck(keep_attention):
    rng = np.random.default_rng(5)
    m = randomize(nn.SelfAttention2d(4, reduction=2).double(), rng)
    m.keep_attention = keep_attention  # False: the op is called without its weights output
    x = sa.tensor(rng.standard_normal((2, 4, 2, 3)), requires_grad=True)
    gradcheck_module(m, x)


def test_self_attention2d_bad_input():
    with pytest.raises(ValueError, match=r"input must have shape \(N, 8, H, W\)"):
        nn.SelfAttention2d(8)(sa.tensor(np.zeros((1, 4, 3, 3), dtype=np.float32)))
    with pytest.raises(ValueError, match="reduction must be a positive int"):
        nn.SelfAttention2d(8, reduction=0)


# ---------------------------------------------------------------------------------------------------------------
# NonLocalBlock
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("training", [True, False])
def test_nonlocal_is_identity_at_init(training, device):
    sa.manual_seed(6)
    m = nn.NonLocalBlock(6).to(device)
    m.train(training)
    assert m.inter_channels == 3
    x = np.random.default_rng(6).standard_normal((2, 6, 4, 3)).astype(np.float32)
    y = m(sa.tensor(x, device=device))
    assert y.shape == x.shape
    np.testing.assert_array_equal(y.numpy(), x)
    assert m.last_attention.shape == (2, 12, 12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nonlocal_forward_matches_reference_in_eval_mode(dtype, device):
    rng = np.random.default_rng(7)
    m = randomize(nn.NonLocalBlock(4, inter_channels=3), rng).to(device, dtype)  # filled on the CPU, then moved
    m.out_norm.running_mean.data[...] = sa.tensor(rng.standard_normal(4).astype(dtype), device=device).data
    m.out_norm.running_var.data[...] = sa.tensor(rng.random(4).astype(dtype) + 0.5, device=device).data
    m.eval()
    x = rng.standard_normal((2, 4, 3, 3)).astype(dtype)
    y = m(sa.tensor(x, device=device))
    ref, ref_a = nonlocal_ref_eval(m, x.astype(np.float64))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y.numpy(), ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(m.last_attention, ref_a, rtol=tol, atol=tol)


@pytest.mark.parametrize("training", [True, False])
def test_nonlocal_gradcheck(training):
    rng = np.random.default_rng(8)
    m = randomize(nn.NonLocalBlock(4, inter_channels=2).double(), rng)
    m.train(training)
    x = sa.tensor(rng.standard_normal((2, 4, 2, 2)), requires_grad=True)
    gradcheck_module(m, x)


def test_nonlocal_bad_input():
    with pytest.raises(ValueError, match=r"input must have shape \(N, 4, H, W\)"):
        nn.NonLocalBlock(4)(sa.tensor(np.zeros((1, 4, 3), dtype=np.float32)))
    with pytest.raises(ValueError, match="inter_channels must be a positive int"):
        nn.NonLocalBlock(4, inter_channels=0)


# ---------------------------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,cls", [("self_attention2d", "SelfAttention2d"), ("nonlocal", "NonLocalBlock")])
def test_registered_in_create_attention(name, cls):
    if not hasattr(nn, "create_attention"):
        pytest.fail("nn.create_attention does not exist yet (scratchattn/nn/registry.py)")
    block = nn.create_attention(name, 16)
    assert type(block).__name__ == cls
    x = np.random.default_rng(9).standard_normal((1, 16, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(block(sa.tensor(x)).numpy(), x)  # both start as the identity
