"""A tiny vision transformer (Dosovitskiy et al., An Image is Worth 16x16 Words, 2021) small enough to train on
28x28 digits on a CPU in seconds per epoch.

The image is cut into non-overlapping patches by a strided convolution, each patch becomes a token of width
``dim``, a learned class token is put in front, a learned position embedding is added, and the sequence goes
through ``depth`` pre-norm transformer blocks:

    t = t + MHSA(LayerNorm(t))
    t = t + MLP(LayerNorm(t))          MLP: Linear(dim, mlp_ratio * dim) -> GELU -> Linear(mlp_ratio * dim, dim)

The class token's final state, after one more LayerNorm, is classified by a linear head. Every gradient comes from
the explicit backwards of ``F.scaled_dot_product_attention``, ``F.layer_norm``, ``F.gelu`` and the generic ops.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .. import random
from ..nn import Conv2d, LayerNorm, Linear, Module, ModuleList, MultiheadSelfAttention, Parameter


class PatchEmbedding(Module):
    """(N, C, H, W) -> (N, H/p * W/p, dim): a ``p x p`` convolution with stride ``p`` is a linear map of each
    patch, and the patches, in row-major order, become the tokens."""

    def __init__(self, in_channels: int, dim: int, patch_size: int):
        super().__init__()
        self.proj = Conv2d(in_channels, dim, patch_size, stride=patch_size)

    def forward(self, x):
        t = self.proj(x)  # (N, dim, H/p, W/p)
        n, dim, h, w = t.shape
        return t.reshape(n, dim, h * w).transpose(1, 2)


class MLP(Module):
    """The transformer's per-token feed-forward net: fc2(gelu(fc1(t)))."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = Linear(dim, hidden)
        self.fc2 = Linear(hidden, dim)

    def forward(self, t):
        return self.fc2(F.gelu(self.fc1(t)))


class TransformerBlock(Module):
    """Pre-norm block: t + MHSA(LN(t)), then + MLP(LN(.)). Shape (N, L, dim) -> (N, L, dim)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = MultiheadSelfAttention(dim, heads)
        self.norm2 = LayerNorm(dim)
        self.mlp = MLP(dim, int(mlp_ratio * dim))

    def forward(self, t):
        t = t + self.attn(self.norm1(t))
        return t + self.mlp(self.norm2(t))


class TinyViT(Module):
    """A small vision transformer classifier.

    Args:
        image_size: side of the square input images; must be a multiple of ``patch_size``.
        patch_size: side of the square patches; (image_size / patch_size)^2 patch tokens.
        in_channels: channels of the input images.
        num_classes: outputs of the head (logits).
        dim: token width.  depth: number of transformer blocks.  heads: attention heads per block.
        mlp_ratio: hidden width of each MLP as a multiple of ``dim``.

    Shape: (N, in_channels, image_size, image_size) -> (N, num_classes) logits.

    Parameters beyond the layers: ``cls_token`` (1, 1, dim) and ``pos_embed`` (1, 1 + patches, dim), both drawn
    from N(0, 0.02^2) as in the paper's reference code. After a call, :meth:`attention_maps` returns each block's
    attention weights (N, heads, 1 + patches, 1 + patches); row 0 is what the class token looked at.
    """

    def __init__(self, image_size: int = 28, patch_size: int = 7, in_channels: int = 1, num_classes: int = 10,
                 dim: int = 64, depth: int = 2, heads: int = 4, mlp_ratio: float = 2):
        super().__init__()
        for name, value in (("image_size", image_size), ("patch_size", patch_size), ("in_channels", in_channels),
                            ("num_classes", num_classes), ("dim", dim), ("depth", depth), ("heads", heads)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"TinyViT: {name} must be a positive int; got {value!r}")
        if image_size % patch_size:
            raise ValueError(
                f"TinyViT: image_size must be a multiple of patch_size; got image_size {image_size}, "
                f"patch_size {patch_size}"
            )
        if not mlp_ratio > 0:
            raise ValueError(f"TinyViT: mlp_ratio must be > 0; got {mlp_ratio!r}")
        self.image_size, self.in_channels, self.dim = image_size, in_channels, dim
        self.num_patches = (image_size // patch_size) ** 2
        self.patch_embed = PatchEmbedding(in_channels, dim, patch_size)
        rng = random.default_rng()
        self.cls_token = Parameter((0.02 * rng.standard_normal((1, 1, dim))).astype(np.float32))
        self.pos_embed = Parameter((0.02 * rng.standard_normal((1, 1 + self.num_patches, dim))).astype(np.float32))
        self.blocks = ModuleList([TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = LayerNorm(dim)
        self.head = Linear(dim, num_classes)

    def forward(self, x):
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"TinyViT: input must have shape (N, {', '.join(map(str, expected))}); got {x.shape}")
        n = x.shape[0]
        patches = self.patch_embed(x)  # (N, P, dim)
        cls = F.broadcast_to(self.cls_token, (n, 1, self.dim))
        t = F.cat([cls, patches], dim=1) + self.pos_embed  # (N, 1 + P, dim)
        for block in self.blocks:
            t = block(t)
        return self.head(self.norm(t[:, 0]))  # classify the class token (LayerNorm acts per token)

    def attention_maps(self) -> list:
        """Each block's attention weights from the last call: NumPy arrays (N, heads, 1 + P, 1 + P)."""
        return [block.attn.last_attention for block in self.blocks]
