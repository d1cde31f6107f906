"""SE-Inception: an Inception module whose whole output is recalibrated by one squeeze-and-excitation block.

An Inception module (Szegedy et al., 2015) runs four branches on the same input and concatenates their outputs
along the channels:

    branch1:      1x1 conv                                  -> c1 channels
    branch3:      1x1 conv (c3r) -> 3x3 conv                -> c3 channels
    branch5:      1x1 conv (c5r) -> 5x5 conv                -> c5 channels   (or two 3x3 convs, ``double_3x3``)
    branch_pool:  3x3 max pool (stride 1) -> 1x1 conv       -> pool_proj channels

Each convolution is followed by batch norm and ReLU (the BN-Inception form the SE paper builds on). SE-Inception
(Hu et al., CVPR 2018, figure 2) applies SE to the **concatenated output of the whole module**, so the gates can
weigh the branches against each other: ``y = SE(cat(branches))`` over c1 + c3 + c5 + pool_proj channels.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..nn import BatchNorm2d, Conv2d, MaxPool2d, Module, ReLU, SEBlock, Sequential


class ConvBNReLU(Sequential):
    """Conv2d (no bias; the batch norm's shift plays its part) - BatchNorm2d - ReLU, keeping H x W."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__(
            Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            BatchNorm2d(out_channels),
            ReLU(),
        )


class SEInception(Module):
    """Inception module + SE on its whole output. Input (N, in_channels, H, W) -> (N, out_channels, H, W).

    Args:
        in_channels: channels of the input.
        c1: channels of the 1x1 branch.
        c3r, c3: the 3x3 branch's reduction (1x1) width and output width.
        c5r, c5: the 5x5 branch's reduction width and output width.
        pool_proj: channels of the pooling branch's 1x1 projection.
        reduction: SE reduction ratio (``use_se=False`` leaves SE out: the plain Inception module).
        double_3x3: replace the 5x5 convolution by two 3x3 convolutions (as BN-Inception / Inception v2 do).

    Children: ``branch1``, ``branch3``, ``branch5``, ``branch_pool`` and ``se`` (an ``nn.SEBlock`` over
    ``out_channels = c1 + c3 + c5 + pool_proj``, or None).
    """

    def __init__(self, in_channels: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool_proj: int,
                 reduction: int = 16, double_3x3: bool = False, use_se: bool = True):
        super().__init__()
        sizes = dict(in_channels=in_channels, c1=c1, c3r=c3r, c3=c3, c5r=c5r, c5=c5, pool_proj=pool_proj)
        for name, value in sizes.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"SEInception: {name} must be a positive int; got {value!r}")
        self.in_channels = int(in_channels)
        self.out_channels = int(c1 + c3 + c5 + pool_proj)
        self.branch1 = ConvBNReLU(in_channels, c1, 1)
        self.branch3 = Sequential(ConvBNReLU(in_channels, c3r, 1), ConvBNReLU(c3r, c3, 3))
        if double_3x3:
            self.branch5 = Sequential(ConvBNReLU(in_channels, c5r, 1), ConvBNReLU(c5r, c5, 3), ConvBNReLU(c5, c5, 3))
        else:
            self.branch5 = Sequential(ConvBNReLU(in_channels, c5r, 1), ConvBNReLU(c5r, c5, 5))
        self.branch_pool = Sequential(MaxPool2d(3, stride=1, padding=1), ConvBNReLU(in_channels, pool_proj, 1))
        self.se = SEBlock(self.out_channels, reduction) if use_se else None

    def branches(self, x):
        """The four branch outputs, concatenated: the module's output before SE."""
        return F.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], dim=1)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"SEInception: input must have shape (N, {self.in_channels}, H, W); "
                             f"got {tuple(x.shape)}")
        out = self.branches(x)
        return out if self.se is None else self.se(out)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}"


__all__ = ["ConvBNReLU", "SEInception"]
