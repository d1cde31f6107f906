"""Channel-attention blocks: squeeze-and-excitation and three relatives that gate a feature map by learned weights.

Each block maps a feature map to a gated feature map of the same shape, so it can be dropped after any
convolution:

* ``SEBlock(channels, reduction=16)`` - squeeze-and-excitation (Hu et al., 2018): per-channel gates from the
  spatial mean through a C -> C/r -> C bottleneck, computed by the fused op ``F.squeeze_excitation``. NCHW or NHWC.
* ``CBAM(channels, reduction=16, kernel_size=7)`` - Convolutional Block Attention Module (Woo et al., 2018): a
  channel gate from the average- *and* max-pooled descriptors through one shared MLP, then a spatial gate from a
  7x7 convolution over the channel-wise max and mean.
* ``ECA(channels, gamma=2, b=1)`` - Efficient Channel Attention (Wang et al., 2020): SE without the bottleneck; each
  channel's gate sees its k neighbouring descriptors through a 1-D convolution.
* ``scSE(channels, reduction=16)`` - concurrent spatial and channel SE (Roy et al., 2018): the sum of an SE-gated
  and a pixel-gated copy of the input.

The gradients are derived in ``docs/derivations.md``, sections "Squeeze-and-excitation" and "CBAM and ECA". Only
SE has a fused op; the others are compositions of generic ops whose backwards are written in their own files.
``nn.create_attention(name, channels)`` (``nn/registry.py``) builds any of them by name.
"""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..functional.squeeze_excitation import LAYOUTS
from .layers import Conv2d, Linear, ReLU
from .module import Module, Sequential


def _positive_int(value, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{where}: {name} must be a positive int; got {value!r}")
    return int(value)


def _hidden_size(channels: int, reduction, where: str) -> int:
    """Width of the bottleneck: channels // reduction, at least 1 (so tiny layers keep a gate)."""
    reduction = _positive_int(reduction, "reduction", where)
    return max(1, channels // reduction)


def _check_input(x, channels: int, layout: str, where: str) -> None:
    axes = "(N, C, H, W)" if layout == "NCHW" else "(N, H, W, C)"
    if x.ndim != 4:
        raise ValueError(f"{where}: input must be 4-D {axes}; got shape {tuple(x.shape)}")
    got = x.shape[1] if layout == "NCHW" else x.shape[3]
    if got != channels:
        expected = f"(N, {channels}, H, W)" if layout == "NCHW" else f"(N, H, W, {channels})"
        raise ValueError(f"{where}: input must have {channels} channels, shape {expected}; got {tuple(x.shape)}")


# =================================================================================================================
# SEBlock
# =================================================================================================================


class SEBlock(Module):
    """Squeeze-and-excitation: ``y = x * sigmoid(fc2(relu(fc1(mean_hw(x)))))`` per channel.

    Args:
        channels: C, the input's channel count.
        reduction: r; the bottleneck has ``max(1, C // r)`` units.
        bias: whether fc1 and fc2 have biases (the paper's ResNets use them; some ports do not).
        layout: "NCHW" (input (N, C, H, W)) or "NHWC" (input (N, H, W, C)).

    Children ``fc1`` (``Linear(C, C_r)``) and ``fc2`` (``Linear(C_r, C)``) hold the weights in (out, in)
    convention, so a PyTorch SE layer's state dict loads directly. The forward calls the fused op
    ``F.squeeze_excitation``, which writes no full-size intermediate.

    After each call, ``last_excitation`` holds the gates s (N, C) as a NumPy copy, for plotting what the block
    attends to; set ``keep_excitation = False`` to skip the copy (it synchronises with the GPU).
    """

    def __init__(self, channels: int, reduction: int = 16, bias: bool = True, layout: str = "NCHW"):
        super().__init__()
        self.channels = _positive_int(channels, "channels", "SEBlock")
        hidden = _hidden_size(self.channels, reduction, "SEBlock")
        if layout not in LAYOUTS:
            raise ValueError(f"SEBlock: layout must be one of {LAYOUTS}; got {layout!r}")
        self.reduction = int(reduction)
        self.layout = layout
        self.fc1 = Linear(self.channels, hidden, bias=bias)
        self.fc2 = Linear(hidden, self.channels, bias=bias)
        self.keep_excitation = True
        self.last_excitation = None

    def forward(self, x):
        _check_input(x, self.channels, self.layout, "SEBlock")
        y, s = F.squeeze_excitation(x, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias,
                                    layout=self.layout, return_excitation=True)
        if self.keep_excitation:
            self.last_excitation = s.numpy()
        return y

    def extra_repr(self) -> str:
        return f"channels={self.channels}, reduction={self.reduction}, layout={self.layout!r}"


# =================================================================================================================
# CBAM
# =================================================================================================================


class CBAM(Module):
    """Convolutional Block Attention Module: a channel gate, then a spatial gate. Input and output (N, C, H, W).

        s_c = sigmoid(mlp(avg_hw(x)) + mlp(max_hw(x)))         (N, C)      one MLP for both descriptors
        x1  = x * s_c[:, :, None, None]
        s_p = sigmoid(spatial([max_c(x1), mean_c(x1)]))         (N, 1, H, W)
        y   = x1 * s_p

    Children: ``mlp`` = Sequential(Linear(C, C_r), ReLU(), Linear(C_r, C)) and ``spatial`` = Conv2d(2, 1,
    kernel_size, padding=kernel_size // 2) (with a bias, standing in for the batch norm some versions put there).
    ``kernel_size`` must be odd so that the spatial map keeps its size.
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.channels = _positive_int(channels, "channels", "CBAM")
        hidden = _hidden_size(self.channels, reduction, "CBAM")
        kernel_size = _positive_int(kernel_size, "kernel_size", "CBAM")
        if kernel_size % 2 == 0:
            raise ValueError(f"CBAM: kernel_size must be odd (the spatial gate keeps H x W); got {kernel_size}")
        self.reduction, self.kernel_size = int(reduction), kernel_size
        self.mlp = Sequential(Linear(self.channels, hidden), ReLU(), Linear(hidden, self.channels))
        self.spatial = Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x):
        _check_input(x, self.channels, "NCHW", "CBAM")
        n, c = x.shape[0], x.shape[1]
        channel_gate = F.sigmoid(self.mlp(F.mean(x, dim=(2, 3))) + self.mlp(F.max(x, dim=(2, 3))))
        x1 = x * F.reshape(channel_gate, (n, c, 1, 1))
        pooled = F.cat([F.max(x1, dim=1, keepdim=True), F.mean(x1, dim=1, keepdim=True)], dim=1)
        spatial_gate = F.sigmoid(self.spatial(pooled))
        return x1 * spatial_gate

    def extra_repr(self) -> str:
        return f"channels={self.channels}, reduction={self.reduction}, kernel_size={self.kernel_size}"


# =================================================================================================================
# ECA
# =================================================================================================================


def eca_kernel_size(channels: int, gamma: float = 2, b: float = 1) -> int:
    """ECA's adaptive kernel size: the odd number nearest (log2(C) + b) / gamma, rounding up from an even one.

    t = int(|(log2 C + b) / gamma|); k = t if t is odd else t + 1. C = 64 -> 3, C = 256 -> 5, C = 2048 -> 7.
    """
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
        raise ValueError(f"eca_kernel_size: channels must be a positive int; got {channels!r}")
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


class ECA(Module):
    """Efficient Channel Attention: ``y = x * sigmoid(conv1d_k(mean_hw(x)))`` per channel. Input (N, C, H, W).

    The 1-D convolution runs across the channel axis of the pooled descriptor (zero-padded, no bias), so each gate
    depends on the k nearest channels and the block has only k parameters; there is no dimensionality reduction.
    k comes from :func:`eca_kernel_size` unless ``kernel_size`` is given (it must be odd). The convolution is
    ``F.conv2d`` on the descriptor viewed as an image (N, 1, 1, C) with a (1, 1, 1, k) kernel: child ``conv``.
    """

    def __init__(self, channels: int, gamma: float = 2, b: float = 1, kernel_size: int | None = None):
        super().__init__()
        self.channels = _positive_int(channels, "channels", "ECA")
        if not isinstance(gamma, (int, float, np.number)) or isinstance(gamma, bool) or not gamma > 0:
            raise ValueError(f"ECA: gamma must be a positive number; got {gamma!r}")
        if not isinstance(b, (int, float, np.number)) or isinstance(b, bool):
            raise ValueError(f"ECA: b must be a number; got {b!r}")
        if kernel_size is None:
            kernel_size = eca_kernel_size(self.channels, gamma, b)
        kernel_size = _positive_int(kernel_size, "kernel_size", "ECA")
        if kernel_size % 2 == 0:
            raise ValueError(f"ECA: kernel_size must be odd (centred on each channel); got {kernel_size}")
        self.kernel_size = kernel_size
        self.conv = Conv2d(1, 1, (1, kernel_size), padding=(0, kernel_size // 2), bias=False)

    def forward(self, x):
        _check_input(x, self.channels, "NCHW", "ECA")
        n, c = x.shape[0], x.shape[1]
        descriptor = F.reshape(F.mean(x, dim=(2, 3)), (n, 1, 1, c))
        gate = F.sigmoid(F.reshape(self.conv(descriptor), (n, c, 1, 1)))
        return x * gate

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel_size={self.kernel_size}"


# =================================================================================================================
# scSE
# =================================================================================================================


class scSE(Module):  # noqa: N801 - the name the paper and the segmentation libraries use
    """Concurrent spatial and channel squeeze-and-excitation: ``y = cse(x) + x * sigmoid(sse(x))``.

    Children: ``cse`` = SEBlock(C, reduction) (the channel gate; ``cse(x) = x * s_c``) and ``sse`` =
    Conv2d(C, 1, 1) (the spatial gate's 1x1 convolution to one logit per pixel). Input and output (N, C, H, W).
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.channels = _positive_int(channels, "channels", "scSE")
        _hidden_size(self.channels, reduction, "scSE")
        self.cse = SEBlock(self.channels, reduction)
        self.sse = Conv2d(self.channels, 1, 1)

    def forward(self, x):
        _check_input(x, self.channels, "NCHW", "scSE")
        return self.cse(x) + x * F.sigmoid(self.sse(x))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, reduction={self.cse.reduction}"


__all__ = ["CBAM", "ECA", "SEBlock", "eca_kernel_size", "scSE"]
