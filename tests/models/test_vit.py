"""Tests of models.TinyViT: shapes and parameters, a float64 gradient check of a tiny instance (input and every
parameter), agreement of its pieces with NumPy references, and a short overfit run in which the loss must fall."""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import functional as F
from scratchattn import optim
from scratchattn.models.vit import TinyViT


def tiny(**kw):
    config = dict(image_size=4, patch_size=2, in_channels=1, num_classes=3, dim=4, depth=1, heads=2, mlp_ratio=1)
    config.update(kw)
    return TinyViT(**config)


def test_default_forward_shape_and_parameters(device):
    sa.manual_seed(0)
    m = TinyViT().to(device)
    x = np.random.default_rng(0).random((5, 1, 28, 28)).astype(np.float32)
    logits = m(sa.tensor(x, device=device))
    assert logits.shape == (5, 10) and logits.dtype == np.float32 and logits.device == device
    assert m.num_patches == 16
    assert m.cls_token.shape == (1, 1, 64) and m.pos_embed.shape == (1, 17, 64)
    names = set(dict(m.named_parameters()))
    for name in ("patch_embed.proj.weight", "blocks.0.attn.query.weight", "blocks.1.mlp.fc2.bias", "norm.weight",
                 "head.weight"):
        assert name in names, name
    assert m.patch_embed.proj.weight.shape == (64, 1, 7, 7)
    assert m.blocks[0].mlp.fc1.weight.shape == (128, 64)
    maps = m.attention_maps()
    assert len(maps) == 2 and all(a.shape == (5, 4, 17, 17) for a in maps)
    np.testing.assert_allclose(maps[1].sum(axis=-1), 1.0, rtol=1e-5)


def test_other_configuration():
    m = TinyViT(image_size=12, patch_size=4, in_channels=3, num_classes=5, dim=12, depth=3, heads=3, mlp_ratio=4)
    out = m(sa.tensor(np.zeros((2, 3, 12, 12), dtype=np.float32)))
    assert out.shape == (2, 5)
    assert len(m.blocks) == 3 and m.blocks[2].mlp.fc1.weight.shape == (48, 12)


def test_patch_embedding_orders_patches_row_major():
    m = tiny(dim=2).double()
    w = np.zeros((2, 1, 2, 2))
    w[0, 0, 0, 0] = 1.0  # token feature 0 = top-left pixel of its patch
    w[1, 0, 1, 1] = 1.0  # token feature 1 = bottom-right pixel
    m.patch_embed.proj.weight.data[...] = w
    m.patch_embed.proj.bias.data[...] = 0
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    tokens = m.patch_embed(sa.tensor(x)).numpy()
    np.testing.assert_array_equal(tokens[0], [[0, 5], [2, 7], [8, 13], [10, 15]])


def test_block_matches_numpy_reference():
    """One pre-norm block, recomputed here from its parameters with plain NumPy."""
    sa.manual_seed(1)
    m = tiny(dim=6, heads=3, mlp_ratio=2).double()
    block = m.blocks[0]
    rng = np.random.default_rng(1)
    for p in block.parameters():
        p.data[...] = rng.standard_normal(p.shape) * 0.5
    t = rng.standard_normal((2, 5, 6))

    def ln(x, mod):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * mod.weight.numpy() + mod.bias.numpy()

    def lin(x, mod):
        return x @ mod.weight.numpy().T + mod.bias.numpy()

    def attn(x, mod):
        q, k, v = (lin(x, getattr(mod, n)).reshape(2, 5, 3, 2).transpose(0, 2, 1, 3) for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(2)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        return lin((a @ v).transpose(0, 2, 1, 3).reshape(2, 5, 6), mod.out)

    from math import erf, sqrt

    gelu = np.vectorize(lambda z: 0.5 * z * (1 + erf(z / sqrt(2))))
    h = t + attn(ln(t, block.norm1), block.attn)
    ref = h + lin(gelu(lin(ln(h, block.norm2), block.mlp.fc1)), block.mlp.fc2)
    np.testing.assert_allclose(block(sa.tensor(t)).numpy(), ref, rtol=1e-12, atol=1e-12)


def test_gradcheck_tiny_vit():
    """Input through sa.gradcheck; every parameter (cls token and position embedding included) by central
    differences of sum(v * logits)."""
    sa.manual_seed(2)
    rng = np.random.default_rng(2)
    m = tiny().double()
    for p in m.parameters():
        p.data[...] = rng.standard_normal(p.shape) * 0.5
    x = sa.tensor(rng.standard_normal((2, 1, 4, 4)), requires_grad=True)
    sa.gradcheck(lambda t: m(t), [x])

    assert sa.gradcheck(m, [sa.tensor(x.numpy())], eps=1e-6, atol=1e-6, rtol=1e-4, params=m.named_parameters())


def test_overfits_a_few_synthetic_images():
    """Eight 28x28 images of four classes (a bright bar in a class-dependent place, plus noise): the training
    loss must fall well below its start within 40 Adam steps."""
    sa.manual_seed(3)
    rng = np.random.default_rng(3)
    labels = np.arange(8) % 4
    images = rng.random((8, 1, 28, 28)).astype(np.float32) * 0.3
    for i, c in enumerate(labels):
        images[i, 0, 7 * c : 7 * c + 7, :] += 1.0  # a horizontal band in row block c
    m = TinyViT(dim=32, depth=1, heads=2, num_classes=4)
    opt = optim.Adam(m.parameters(), lr=3e-3)
    x = sa.tensor(images)
    losses = []
    for _ in range(40):
        loss = F.cross_entropy(m(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 1.0, losses[:3]
    assert losses[-1] < 0.25 * losses[0], f"loss went from {losses[0]:.3f} to {losses[-1]:.3f}"
    with sa.no_grad():
        assert (m(x).numpy().argmax(axis=1) == labels).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="image_size must be a multiple of patch_size"):
        TinyViT(image_size=28, patch_size=5)
    with pytest.raises(ValueError, match="heads must be a positive int"):
        TinyViT(heads=0)
    with pytest.raises(ValueError, match="dim must be divisible by heads"):
        TinyViT(dim=10, heads=4)
    with pytest.raises(ValueError, match=r"input must have shape \(N, 1, 28, 28\)"):
        TinyViT()(sa.tensor(np.zeros((2, 1, 32, 32), dtype=np.float32)))
