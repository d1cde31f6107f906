"""Self-attention blocks: multi-head attention over tokens, SAGAN's attention over pixels, and the non-local block.

All three are thin arrangements of projections around ``F.scaled_dot_product_attention``, whose backward is
written out in functional/attention.py; none of them adds a gradient of its own.

* ``MultiheadSelfAttention(dim, heads)`` - tokens (N, L, dim): project to queries, keys and values, split the
  width into ``heads`` heads, attend within each head, merge and project back (the transformer layer).
* ``SelfAttention2d(channels, reduction=8)`` - a feature map (N, C, H, W): every pixel attends to every pixel,
  with 1x1 convolutions as projections and a residual ``x + gamma * attention`` whose ``gamma`` starts at 0
  (Zhang et al., Self-Attention GANs, 2019).
* ``NonLocalBlock(channels)`` - the embedded-Gaussian non-local block (Wang et al., Non-local Neural Networks,
  2018): the same pixel-to-pixel attention at C/2 channels, a 1x1 convolution back to C and a batch norm whose
  scale and shift start at 0, added to the input.

The two image blocks keep the input's shape and are the identity when freshly built, so they can be dropped into a
trained network without changing what it computes. Each keeps the attention weights of its last call, as a NumPy
array, in ``last_attention`` (set ``keep_attention = False`` to skip that copy, e.g. on the GPU in a timed loop).
"""

from __future__ import annotations

import numpy as np

from .. import backend
from .. import functional as F
from .layers import BatchNorm2d, Conv2d, Linear
from .module import Module, Parameter


def _check_positive_int(value, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{where}: {name} must be a positive int; got {value!r}")
    return int(value)


def _check_feature_map(x, channels: int, where: str):
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{where}: input must have shape (N, {channels}, H, W); got {tuple(x.shape)}")


def _pixels_as_tokens(feature_map):
    """(N, C, H, W) -> (N, H*W, C): one token per pixel, its channels as features."""
    n, c, h, w = feature_map.shape
    return feature_map.reshape(n, c, h * w).transpose(1, 2)


def _tokens_as_pixels(tokens, h: int, w: int):
    """(N, H*W, C) -> (N, C, H, W), the inverse of :func:`_pixels_as_tokens`."""
    n, _, c = tokens.shape
    return tokens.transpose(1, 2).reshape(n, c, h, w)


class _KeepsAttention(Module):
    """Base of the three blocks: attention that keeps a NumPy copy of its weights when ``keep_attention`` is True."""

    def _attend(self, q, k, v, **kw):
        if not self.keep_attention:  # no second output: its (zero) gradient need not be made in backward
            self.last_attention = None
            return F.scaled_dot_product_attention(q, k, v, **kw)
        out, weights = F.scaled_dot_product_attention(q, k, v, return_weights=True, **kw)
        self.last_attention = backend.to_numpy(weights.data).copy()
        return out


# =================================================================================================================
# MultiheadSelfAttention
# =================================================================================================================


class MultiheadSelfAttention(_KeepsAttention):
    """Multi-head self-attention over a sequence of tokens.

    Args:
        dim: token width; must be divisible by ``heads``.
        heads: number of heads; each attends with ``dim // heads`` features and scale ``1/sqrt(dim // heads)``.
        bias: whether the projections have biases.

    Shape: x (N, L, dim) -> (N, L, dim). ``mask`` (optional) is passed to ``F.scaled_dot_product_attention``:
    boolean (True = may attend) or additive float, broadcastable to (N, heads, L, L).

    Computation, per head h with W_q^h the rows of ``query.weight`` that belong to it (likewise for k, v):

        Q^h = x W_q^h^T + b_q^h,  K^h = ...,  V^h = ...           (N, L, dim/heads) each
        O^h = softmax(Q^h K^h^T / sqrt(dim/heads)) V^h
        out = concat_h(O^h) W_out^T + b_out

    Children ``query``, ``key``, ``value``, ``out``: ``nn.Linear(dim, dim)``. After each call ``last_attention``
    holds the weights, a NumPy array of shape (N, heads, L, L) whose rows sum to 1.
    """

    def __init__(self, dim: int, heads: int, bias: bool = True):
        super().__init__()
        dim = _check_positive_int(dim, "dim", "MultiheadSelfAttention")
        heads = _check_positive_int(heads, "heads", "MultiheadSelfAttention")
        if dim % heads:
            raise ValueError(f"MultiheadSelfAttention: dim must be divisible by heads; got dim {dim}, heads {heads}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.query = Linear(dim, dim, bias=bias)
        self.key = Linear(dim, dim, bias=bias)
        self.value = Linear(dim, dim, bias=bias)
        self.out = Linear(dim, dim, bias=bias)
        self.keep_attention = True
        self.last_attention = None

    def _split_heads(self, t):
        """(N, L, dim) -> (N, heads, L, dim/heads)."""
        n, length, _ = t.shape
        return t.reshape(n, length, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x, mask=None):
        if x.ndim != 3 or x.shape[2] != self.dim:
            raise ValueError(f"MultiheadSelfAttention: input must have shape (N, L, {self.dim}); got {x.shape}")
        n, length, _ = x.shape
        q = self._split_heads(self.query(x))
        k = self._split_heads(self.key(x))
        v = self._split_heads(self.value(x))
        o = self._attend(q, k, v, mask=mask)
        o = o.transpose(1, 2).reshape(n, length, self.dim)  # merge the heads back into the width
        return self.out(o)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, heads={self.heads}"


# =================================================================================================================
# SelfAttention2d (SAGAN)
# =================================================================================================================


class SelfAttention2d(_KeepsAttention):
    """Self-attention over the pixels of a feature map, as in SAGAN.

    Args:
        channels: C, the input's channels.
        reduction: queries and keys have ``max(1, C // reduction)`` channels; values keep all C.

    Shape: (N, C, H, W) -> (N, C, H, W). With pixels i, j in 0..H*W-1 and 1x1 convolutions f, g, h:

        s_ij   = f(x)_i . g(x)_j                      (no 1/sqrt(d) scale, as in the paper)
        a_ij   = exp(s_ij) / sum_j' exp(s_ij')        pixel i's weights over all pixels j
        o_i    = sum_j a_ij h(x)_j
        out    = x + gamma * o                        gamma: a scalar Parameter, initialised to 0

    So the block is the identity at initialisation and learns how much non-local evidence to mix in.
    ``last_attention`` holds the (N, H*W, H*W) weights of the last call.
    """

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        channels = _check_positive_int(channels, "channels", "SelfAttention2d")
        reduction = _check_positive_int(reduction, "reduction", "SelfAttention2d")
        inner = max(1, channels // reduction)
        self.channels, self.inner_channels = channels, inner
        self.query = Conv2d(channels, inner, 1)  # f in the paper
        self.key = Conv2d(channels, inner, 1)  # g
        self.value = Conv2d(channels, channels, 1)  # h
        self.gamma = Parameter(np.zeros(1, dtype=np.float32))
        self.keep_attention = True
        self.last_attention = None

    def forward(self, x):
        _check_feature_map(x, self.channels, "SelfAttention2d")
        h, w = x.shape[2], x.shape[3]
        q = _pixels_as_tokens(self.query(x))
        k = _pixels_as_tokens(self.key(x))
        v = _pixels_as_tokens(self.value(x))
        o = self._attend(q, k, v, scale=1.0)
        return x + self.gamma * _tokens_as_pixels(o, h, w)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, inner_channels={self.inner_channels}"


# =================================================================================================================
# NonLocalBlock (embedded Gaussian)
# =================================================================================================================


class NonLocalBlock(_KeepsAttention):
    """The embedded-Gaussian non-local block.

    Args:
        channels: C, the input's channels.
        inter_channels: width of the embeddings; default ``max(1, C // 2)``.

    Shape: (N, C, H, W) -> (N, C, H, W). With 1x1 convolutions theta, phi, g (C -> C') and W (C' -> C):

        y_i = sum_j softmax_j(theta(x)_i . phi(x)_j) g(x)_j     (no 1/sqrt(d) scale, as in the paper)
        z   = BN(W(y)) + x

    The batch norm's weight and bias start at 0, so z = x at initialisation (in training and evaluation mode
    alike). Children: ``theta``, ``phi``, ``g``, ``out_conv`` (W) and ``out_norm`` (the batch norm). The paper's
    optional subsampling of phi and g by max pooling is not included. ``last_attention`` holds the
    (N, H*W, H*W) weights of the last call.
    """

    def __init__(self, channels: int, inter_channels: int | None = None):
        super().__init__()
        channels = _check_positive_int(channels, "channels", "NonLocalBlock")
        inter = max(1, channels // 2) if inter_channels is None else inter_channels
        inter = _check_positive_int(inter, "inter_channels", "NonLocalBlock")
        self.channels, self.inter_channels = channels, inter
        self.theta = Conv2d(channels, inter, 1)
        self.phi = Conv2d(channels, inter, 1)
        self.g = Conv2d(channels, inter, 1)
        self.out_conv = Conv2d(inter, channels, 1)
        self.out_norm = BatchNorm2d(channels)
        # Zero scale and shift: the block starts as the identity (the paper's initialisation).
        self.out_norm.weight.data[...] = 0
        self.out_norm.bias.data[...] = 0
        self.keep_attention = True
        self.last_attention = None

    def forward(self, x):
        _check_feature_map(x, self.channels, "NonLocalBlock")
        h, w = x.shape[2], x.shape[3]
        q = _pixels_as_tokens(self.theta(x))
        k = _pixels_as_tokens(self.phi(x))
        v = _pixels_as_tokens(self.g(x))
        y = self._attend(q, k, v, scale=1.0)
        return x + self.out_norm(self.out_conv(_tokens_as_pixels(y, h, w)))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, inter_channels={self.inter_channels}"
