"""Tests of the channel-attention blocks (SEBlock, CBAM, ECA, scSE) and of ``nn.create_attention``.

Each block is compared with a NumPy reference written here from the papers' formulas (weights read from the
module), and its gradient w.r.t. the input and every parameter is checked against central differences in float64.
"""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import nn

# =================================================================================================================
# helpers: NumPy references, randomised parameters, a module gradient check
# =================================================================================================================


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def param(p):
    return p.numpy().astype(np.float64)


def se_reference(x, fc1, fc2):
    """SE on an NCHW array, returning (y, s)."""
    z = x.mean(axis=(2, 3))
    b1 = 0 if fc1.bias is None else param(fc1.bias)
    b2 = 0 if fc2.bias is None else param(fc2.bias)
    s = sigmoid(np.maximum(z @ param(fc1.weight).T + b1, 0) @ param(fc2.weight).T + b2)
    return x * s[:, :, None, None], s


def conv2d_reference(x, w, b, pad_h, pad_w):
    """Stride-1 cross-correlation with zero padding, as a sum of shifted slices: x (N, C, H, W), w (O, C, kh, kw)."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad_h, pad_h), (pad_w, pad_w)))
    out_h, out_w = h + 2 * pad_h - kh + 1, wd + 2 * pad_w - kw + 1
    out = np.zeros((n, o, out_h, out_w))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i : i + out_h, j : j + out_w], w[:, :, i, j])
    return out + (0 if b is None else b[None, :, None, None])


def cbam_reference(x, block):
    lin1, lin2 = block.mlp[0], block.mlp[2]

    def mlp(v):
        return np.maximum(v @ param(lin1.weight).T + param(lin1.bias), 0) @ param(lin2.weight).T + param(lin2.bias)

    s_c = sigmoid(mlp(x.mean(axis=(2, 3))) + mlp(x.max(axis=(2, 3))))
    x1 = x * s_c[:, :, None, None]
    pooled = np.concatenate([x1.max(axis=1, keepdims=True), x1.mean(axis=1, keepdims=True)], axis=1)
    k = block.kernel_size
    s_p = sigmoid(conv2d_reference(pooled, param(block.spatial.weight), param(block.spatial.bias), k // 2, k // 2))
    return x1 * s_p


def eca_reference(x, block):
    z = x.mean(axis=(2, 3))
    w = param(block.conv.weight).reshape(-1)
    k = w.size
    zp = np.pad(z, ((0, 0), (k // 2, k // 2)))
    a = sum(w[j] * zp[:, j : j + z.shape[1]] for j in range(k))
    return x * sigmoid(a)[:, :, None, None]


def scse_reference(x, block):
    y_c, _ = se_reference(x, block.cse.fc1, block.cse.fc2)
    logit = np.einsum("nchw,c->nhw", x, param(block.sse.weight).reshape(-1)) + param(block.sse.bias)[0]
    return y_c + x * sigmoid(logit)[:, None]


def randomize(module, rng, scale=0.5):
    """Give every parameter values of order ``scale`` (default inits put many near zero), keeping its dtype."""
    with sa.no_grad():
        for p in module.parameters():
            p.data[...] = rng.standard_normal(p.shape) * scale
    return module


def gradcheck_module(module, x, eps=1e-6, atol=1e-6, rtol=1e-4):
    """Check d sum(v * module(x)) / d(x and every parameter) in float64 against central differences."""
    assert sa.gradcheck(module, [x], eps=eps, atol=atol, rtol=rtol, params=module.named_parameters())


def feature_map(rng, shape, dtype=np.float64, requires_grad=False):
    return sa.tensor(rng.standard_normal(shape).astype(dtype), requires_grad=requires_grad)


# =================================================================================================================
# SEBlock
# =================================================================================================================


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("bias", [True, False])
def test_se_block_matches_reference(layout, bias):
    rng = np.random.default_rng(0)
    block = randomize(nn.SEBlock(12, reduction=4, bias=bias, layout=layout), rng)
    x_nchw = rng.standard_normal((3, 12, 5, 4)).astype(np.float32)
    x = x_nchw if layout == "NCHW" else np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))
    y = block(sa.tensor(x))
    y_ref, s_ref = se_reference(x_nchw.astype(np.float64), block.fc1, block.fc2)
    if layout == "NHWC":
        y_ref = y_ref.transpose(0, 2, 3, 1)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-5, atol=1e-6)
    assert isinstance(block.last_excitation, np.ndarray) and block.last_excitation.shape == (3, 12)
    np.testing.assert_allclose(block.last_excitation, s_ref, rtol=1e-5, atol=1e-6)


def test_se_block_structure():
    block = nn.SEBlock(64)  # reduction 16 -> 4 hidden units
    assert block.fc1.weight.shape == (4, 64) and block.fc1.bias.shape == (4,)
    assert block.fc2.weight.shape == (64, 4) and block.fc2.bias.shape == (64,)
    assert [name for name, _ in block.named_parameters()] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert nn.SEBlock(4, reduction=16).fc1.weight.shape == (1, 4)  # at least one hidden unit
    assert nn.SEBlock(8, bias=False).fc1.bias is None
    block.keep_excitation = False
    block(sa.tensor(np.ones((1, 64, 2, 2), np.float32)))
    assert block.last_excitation is None


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("bias", [True, False])
def test_se_block_gradcheck(layout, bias):
    rng = np.random.default_rng(1)
    block = randomize(nn.SEBlock(6, reduction=3, bias=bias, layout=layout).double(), rng)
    shape = (2, 6, 3, 2) if layout == "NCHW" else (2, 3, 2, 6)
    gradcheck_module(block, feature_map(rng, shape, requires_grad=True))


def test_se_block_bad_arguments():
    with pytest.raises(ValueError, match="channels must be a positive int"):
        nn.SEBlock(0)
    with pytest.raises(ValueError, match="reduction must be a positive int"):
        nn.SEBlock(8, reduction=0)
    with pytest.raises(ValueError, match="layout must be one of"):
        nn.SEBlock(8, layout="NWHC")
    with pytest.raises(ValueError, match=r"input must have 8 channels, shape \(N, 8, H, W\); got \(1, 4, 3, 3\)"):
        nn.SEBlock(8)(sa.tensor(np.zeros((1, 4, 3, 3), np.float32)))
    with pytest.raises(ValueError, match=r"shape \(N, H, W, 8\); got \(1, 8, 3, 3\)"):
        nn.SEBlock(8, layout="NHWC")(sa.tensor(np.zeros((1, 8, 3, 3), np.float32)))
    with pytest.raises(ValueError, match="input must be 4-D"):
        nn.SEBlock(8)(sa.tensor(np.zeros((1, 8, 3), np.float32)))


def test_se_block_on_device(device):
    rng = np.random.default_rng(2)
    block = randomize(nn.SEBlock(8, reduction=2), rng)
    x = rng.standard_normal((2, 8, 4, 4)).astype(np.float32)
    expected = se_reference(x.astype(np.float64), block.fc1, block.fc2)[0]
    block.to(device)
    y = block(sa.tensor(x).to(device))
    assert y.device == device
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-6)


# =================================================================================================================
# CBAM
# =================================================================================================================


def test_cbam_matches_reference():
    rng = np.random.default_rng(3)
    block = randomize(nn.CBAM(8, reduction=2), rng)
    x = rng.standard_normal((2, 8, 9, 10)).astype(np.float32)
    y = block(sa.tensor(x))
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), cbam_reference(x.astype(np.float64), block), rtol=1e-5, atol=1e-6)


def test_cbam_structure():
    block = nn.CBAM(32)
    names = [name for name, _ in block.named_parameters()]
    assert names == ["mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias", "spatial.weight", "spatial.bias"]
    assert block.mlp[0].weight.shape == (2, 32) and block.spatial.weight.shape == (1, 2, 7, 7)


def test_cbam_gradcheck():
    rng = np.random.default_rng(4)
    block = randomize(nn.CBAM(4, reduction=2, kernel_size=3).double(), rng)
    gradcheck_module(block, feature_map(rng, (2, 4, 3, 4), requires_grad=True))


def test_cbam_bad_arguments():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        nn.CBAM(8, kernel_size=4)
    with pytest.raises(ValueError, match="reduction must be a positive int"):
        nn.CBAM(8, reduction=-1)
    with pytest.raises(ValueError, match=r"input must have 8 channels"):
        nn.CBAM(8)(sa.tensor(np.zeros((1, 3, 5, 5), np.float32)))


# =================================================================================================================
# ECA
# =================================================================================================================


@pytest.mark.parametrize("channels,k", [(1, 1), (4, 1), (8, 3), (16, 3), (64, 3), (256, 5), (512, 5), (2048, 7)])
def test_eca_kernel_size(channels, k):
    # t = int(|(log2 C + 1) / 2|), k = t if t is odd else t + 1, worked out by hand for each C.
    assert nn.eca_kernel_size(channels) == k
    assert nn.ECA(channels).conv.weight.shape == (1, 1, 1, k)


def test_eca_matches_reference():
    rng = np.random.default_rng(5)
    block = randomize(nn.ECA(16), rng)  # k = 3
    x = rng.standard_normal((3, 16, 4, 5)).astype(np.float32)
    y = block(sa.tensor(x))
    assert y.shape == x.shape
    np.testing.assert_allclose(y.numpy(), eca_reference(x.astype(np.float64), block), rtol=1e-5, atol=1e-6)
    assert [name for name, _ in block.named_parameters()] == ["conv.weight"]  # no bias, no reduction


def test_eca_gradcheck():
    rng = np.random.default_rng(6)
    block = randomize(nn.ECA(5, kernel_size=3).double(), rng)
    gradcheck_module(block, feature_map(rng, (2, 5, 2, 3), requires_grad=True))


def test_eca_bad_arguments():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        nn.ECA(8, kernel_size=2)
    with pytest.raises(ValueError, match="gamma must be a positive number"):
        nn.ECA(8, gamma=0)
    with pytest.raises(ValueError, match=r"input must have 8 channels"):
        nn.ECA(8)(sa.tensor(np.zeros((1, 3, 5, 5), np.float32)))


# =================================================================================================================
# scSE
# =================================================================================================================


def test_scse_matches_reference():
    rng = np.random.default_rng(7)
    block = randomize(nn.scSE(8, reduction=4), rng)
    x = rng.standard_normal((2, 8, 3, 5)).astype(np.float32)
    y = block(sa.tensor(x))
    assert y.shape == x.shape
    np.testing.assert_allclose(y.numpy(), scse_reference(x.astype(np.float64), block), rtol=1e-5, atol=1e-6)


def test_scse_gradcheck():
    rng = np.random.default_rng(8)
    block = randomize(nn.scSE(4, reduction=2).double(), rng)
    gradcheck_module(block, feature_map(rng, (2, 4, 3, 2), requires_grad=True))


# =================================================================================================================
# create_attention
# =================================================================================================================


@pytest.mark.parametrize("name,cls", [("se", nn.SEBlock), ("cbam", nn.CBAM), ("eca", nn.ECA), ("scse", nn.scSE)])
def test_create_attention_builds_each_name(name, cls):
    rng = np.random.default_rng(9)
    block = nn.create_attention(name, 16)
    assert type(block) is cls
    x = feature_map(rng, (2, 16, 5, 3), np.float32, requires_grad=True)
    y = block(x)
    assert y.shape == x.shape  # every block keeps the input's shape
    y.sum().backward()
    assert x.grad.shape == x.shape and all(p.grad is not None for p in block.parameters())


def test_create_attention_passes_keywords_and_ignores_case():
    block = nn.create_attention("CBAM", 32, reduction=8, kernel_size=3)
    assert block.mlp[0].weight.shape == (4, 32) and block.spatial.weight.shape == (1, 2, 3, 3)
    assert nn.create_attention("se", 32, reduction=4).fc1.weight.shape == (8, 32)


def test_every_registered_name_builds():
    for name in nn.attention_names():
        block = nn.create_attention(name, 8)
        assert isinstance(block, nn.Module), name


def test_create_attention_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError) as info:
        nn.create_attention("squeeze", 8)
    for name in ("se", "cbam", "eca", "scse"):
        assert name in str(info.value)
    with pytest.raises(TypeError, match="name must be a str"):
        nn.create_attention(None, 8)


def test_register_attention():
    nn.register_attention("TestOnlyIdentity", lambda channels: nn.Identity())
    try:
        assert isinstance(nn.create_attention("testonlyidentity", 4), nn.Identity)
    finally:
        del nn.ATTENTION_BLOCKS["testonlyidentity"]
