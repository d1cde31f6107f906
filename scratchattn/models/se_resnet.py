"""SE-ResNets: residual networks whose blocks recalibrate their channels with squeeze-and-excitation.

Hu et al. (CVPR 2018) insert an SE block into every residual block, on the residual branch after its last batch
norm and before the addition of the shortcut:

    out = relu(shortcut(x) + SE(bn_last(conv_last(... x))))

so the identity path stays untouched and the block can only rescale what the branch adds. This file holds

* ``SEBasicBlock`` (two 3x3 convolutions) and ``SEBottleneck`` (1x1 -> 3x3 -> 1x1, 4x wider output), each with
  a projection shortcut (1x1 convolution + batch norm) where the stride or the width changes, and ``use_se=False``
  to get the plain ResNet block;
* ``SEResNet``, the network around them, in two layouts: "imagenet" (7x7 stride-2 stem, max pool, four stages of
  widths 64-128-256-512) and "cifar" (3x3 stem, three stages of widths 16-32-64, for 32x32 images);
* builders ``se_resnet18/34/50`` (ImageNet), ``se_resnet20/32/56`` (CIFAR) and the plain ``resnet20`` (the same
  network without SE, for comparisons).

``reduction`` reaches every block. Each block keeps its SE module as ``block.se`` (None without SE), whose
``last_excitation`` holds the gates (N, C) of the last forward, and ``SEResNet.se_blocks()`` lists them in order,
so an example can plot what each stage attends to.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..nn import BatchNorm2d, Conv2d, Linear, MaxPool2d, Module, ReLU, SEBlock, Sequential, init


def _positive_int(value, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{where}: {name} must be a positive int; got {value!r}")
    return int(value)


def _shortcut(in_channels: int, out_channels: int, stride: int):
    """A projection (1x1 convolution + batch norm) when the shape changes, else None (the identity)."""
    if stride == 1 and in_channels == out_channels:
        return None
    return Sequential(Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), BatchNorm2d(out_channels))


# =================================================================================================================
# residual blocks
# =================================================================================================================


class SEBasicBlock(Module):
    """conv3x3(stride) - BN - ReLU - conv3x3 - BN - SE, plus the shortcut, then ReLU.

    Input (N, in_channels, H, W) -> output (N, channels, H / stride, W / stride). Children: ``conv1``, ``bn1``,
    ``conv2``, ``bn2``, ``se`` (an ``nn.SEBlock``, or None with ``use_se=False``) and ``downsample`` (the
    projection shortcut, or None for the identity), named as in torchvision's ResNet.
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, reduction: int = 16, use_se: bool = True):
        super().__init__()
        in_channels = _positive_int(in_channels, "in_channels", "SEBasicBlock")
        channels = _positive_int(channels, "channels", "SEBasicBlock")
        stride = _positive_int(stride, "stride", "SEBasicBlock")
        self.conv1 = Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = BatchNorm2d(channels)
        self.conv2 = Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = BatchNorm2d(channels)
        self.relu = ReLU()
        self.se = SEBlock(channels, reduction) if use_se else None
        self.downsample = _shortcut(in_channels, channels, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class SEBottleneck(Module):
    """conv1x1 - BN - ReLU - conv3x3(stride) - BN - ReLU - conv1x1 (x4 wider) - BN - SE, plus the shortcut, ReLU.

    Input (N, in_channels, H, W) -> output (N, 4 channels, H / stride, W / stride). The stride sits on the 3x3
    convolution (as in torchvision's "ResNet v1.5"). Children: ``conv1..3``, ``bn1..3``, ``se``, ``downsample``.
    """

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, reduction: int = 16, use_se: bool = True):
        super().__init__()
        in_channels = _positive_int(in_channels, "in_channels", "SEBottleneck")
        channels = _positive_int(channels, "channels", "SEBottleneck")
        stride = _positive_int(stride, "stride", "SEBottleneck")
        out_channels = channels * self.expansion
        self.conv1 = Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = BatchNorm2d(channels)
        self.conv2 = Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = BatchNorm2d(channels)
        self.conv3 = Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = BatchNorm2d(out_channels)
        self.relu = ReLU()
        self.se = SEBlock(out_channels, reduction) if use_se else None
        self.downsample = _shortcut(in_channels, out_channels, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


# =================================================================================================================
# the network
# =================================================================================================================

STEMS = ("imagenet", "cifar")


class SEResNet(Module):
    """A ResNet of ``block`` (SEBasicBlock or SEBottleneck) with ``layers[i]`` blocks in stage i.

    Args:
        block: the residual block class.
        layers: blocks per stage: four numbers for the "imagenet" stem, three for "cifar".
        num_classes: outputs of the final linear layer.
        reduction: SE reduction ratio of every block.
        in_channels: channels of the input images.
        stem: "imagenet" (7x7/2 conv, 3x3/2 max pool; widths 64, 128, 256, 512) or "cifar" (3x3 conv; widths 16,
            32, 64). Every stage after the first halves the resolution.
        use_se: False builds the plain ResNet.

    Input (N, in_channels, H, W) -> logits (N, num_classes). Children: ``conv1``, ``bn1``, (``maxpool``),
    ``layer1`` ... ``layer4`` (``Sequential`` of blocks), ``fc``.
    """

    def __init__(self, block, layers, num_classes: int = 1000, reduction: int = 16, in_channels: int = 3,
                 stem: str = "imagenet", use_se: bool = True):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"SEResNet: stem must be one of {STEMS}; got {stem!r}")
        if block not in (SEBasicBlock, SEBottleneck):
            raise ValueError(f"SEResNet: block must be SEBasicBlock or SEBottleneck; got {block!r}")
        widths = (64, 128, 256, 512) if stem == "imagenet" else (16, 32, 64)
        layers = tuple(layers)
        if len(layers) != len(widths):
            raise ValueError(f"SEResNet: the {stem!r} stem has {len(widths)} stages, so layers needs {len(widths)} "
                             f"block counts; got {layers}")
        layers = tuple(_positive_int(n, "every entry of layers", "SEResNet") for n in layers)
        self.num_classes = _positive_int(num_classes, "num_classes", "SEResNet")
        in_channels = _positive_int(in_channels, "in_channels", "SEResNet")
        _positive_int(reduction, "reduction", "SEResNet")
        self.stem, self.reduction, self.use_se = stem, int(reduction), bool(use_se)

        if stem == "imagenet":
            self.conv1 = Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False)
            self.bn1 = BatchNorm2d(widths[0])
            self.maxpool = MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
            self.bn1 = BatchNorm2d(widths[0])
            self.maxpool = None
        self.relu = ReLU()

        channels = widths[0]
        for stage, (width, count) in enumerate(zip(widths, layers)):
            blocks = []
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(block(channels, width, stride=stride, reduction=reduction, use_se=use_se))
                channels = width * block.expansion
            setattr(self, f"layer{stage + 1}", Sequential(*blocks))
        self.num_stages = len(widths)
        self.fc = Linear(channels, self.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He initialisation for the convolutions (fan_out, as torchvision); batch norms start at scale 1, shift 0."""
        for m in self.modules():
            if isinstance(m, Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, BatchNorm2d):
                init.ones_(m.weight)
                init.zeros_(m.bias)

    def stages(self):
        return [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]

    def se_blocks(self) -> list:
        """The SEBlock of every residual block, in forward order (empty without SE)."""
        return [b.se for stage in self.stages() for b in stage if b.se is not None]

    def features(self, x):
        """The last stage's feature map (N, C, h, w)."""
        x = self.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for stage in self.stages():
            x = stage(x)
        return x

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError(f"SEResNet: input must be 4-D (N, C, H, W); got shape {tuple(x.shape)}")
        return self.fc(F.mean(self.features(x), dim=(2, 3)))

    def extra_repr(self) -> str:
        return f"stem={self.stem!r}, reduction={self.reduction}, use_se={self.use_se}"


# =================================================================================================================
# builders
# =================================================================================================================


def se_resnet18(num_classes: int = 1000, reduction: int = 16, in_channels: int = 3) -> SEResNet:
    """SE-ResNet-18 (ImageNet layout): basic blocks [2, 2, 2, 2]."""
    return SEResNet(SEBasicBlock, (2, 2, 2, 2), num_classes, reduction, in_channels, stem="imagenet")


def se_resnet34(num_classes: int = 1000, reduction: int = 16, in_channels: int = 3) -> SEResNet:
    """SE-ResNet-34 (ImageNet layout): basic blocks [3, 4, 6, 3]."""
    return SEResNet(SEBasicBlock, (3, 4, 6, 3), num_classes, reduction, in_channels, stem="imagenet")


def se_resnet50(num_classes: int = 1000, reduction: int = 16, in_channels: int = 3) -> SEResNet:
    """SE-ResNet-50 (ImageNet layout): bottleneck blocks [3, 4, 6, 3]."""
    return SEResNet(SEBottleneck, (3, 4, 6, 3), num_classes, reduction, in_channels, stem="imagenet")


def _cifar(depth: int, num_classes, reduction, in_channels, use_se) -> SEResNet:
    n = (depth - 2) // 6  # depth = 6 n + 2: three stages of n basic blocks (2 convs each), the stem and the fc
    return SEResNet(SEBasicBlock, (n, n, n), num_classes, reduction, in_channels, stem="cifar", use_se=use_se)


def se_resnet20(num_classes: int = 10, reduction: int = 16, in_channels: int = 3) -> SEResNet:
    """SE-ResNet-20 (CIFAR layout): three stages of 3 basic blocks, widths 16, 32, 64."""
    return _cifar(20, num_classes, reduction, in_channels, use_se=True)


def se_resnet32(num_classes: int = 10, reduction: int = 16, in_channels: int = 3) -> SEResNet:
    """SE-ResNet-32 (CIFAR layout): three stages of 5 basic blocks."""
    return _cifar(32, num_classes, reduction, in_channels, use_se=True)


def se_resnet56(num_classes: int = 10, reduction: int = 16, in_channels: int = 3) -> SEResNet:
    """SE-ResNet-56 (CIFAR layout): three stages of 9 basic blocks."""
    return _cifar(56, num_classes, reduction, in_channels, use_se=True)


def resnet20(num_classes: int = 10, in_channels: int = 3) -> SEResNet:
    """The plain ResNet-20 (CIFAR layout), identical to ``se_resnet20`` without the SE blocks."""
    return _cifar(20, num_classes, 16, in_channels, use_se=False)


__all__ = [
    "SEBasicBlock",
    "SEBottleneck",
    "SEResNet",
    "resnet20",
    "se_resnet18",
    "se_resnet20",
    "se_resnet32",
    "se_resnet34",
    "se_resnet50",
    "se_resnet56",
]
