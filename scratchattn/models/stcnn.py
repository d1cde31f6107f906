"""The classifiers of the Spatial Transformer digits experiment: a plain CNN baseline and the ST-CNN, which puts a
spatial transformer in front of the same CNN (Jaderberg et al., "Spatial Transformer Networks", 2015, section 4.1).

Both are small LeNet-style networks for single-channel digit images::

    CNN:    conv(k5) - relu - maxpool2 - conv(k5) - relu - maxpool2 - flatten - linear - relu - linear(classes)
    STCNN:  SpatialTransformer(localisation net, out_size) -> CNN on the transformer's output

The localisation network reads the full (distorted) input and regresses the six numbers of an affine map; its
last linear layer starts at the identity transform (``nn.SpatialTransformer`` sets it), so at initialisation the
ST-CNN's backbone sees the whole input resampled to the transformer's output size, and training moves the
transform only as far as the loss asks. The
transformer may output a smaller image than its input (the paper's RTS setting: 42x42 in, 28x28 out), which also
makes the ST-CNN's backbone cheaper than the baseline's on the large canvas.
"""

from __future__ import annotations

import numbers

from .. import nn


def _conv_pool_size(size: int, kernel: int = 5) -> int:
    """Side of the feature map after two (valid conv k, maxpool 2) stages on a ``size`` x ``size`` input."""
    for _ in range(2):
        size = (size - kernel + 1) // 2
    return size


def _check_positive_ints(owner: str, name: str, value, count: int) -> tuple[int, ...]:
    if count == 1:
        values = (value,)
    elif isinstance(value, (tuple, list)):
        values = tuple(value)
    else:
        values = ()
    if len(values) != count or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in values
    ):
        raise ValueError(f"{owner}: {name} must be {count} positive int(s); got {value!r}")
    return tuple(int(v) for v in values)


def _two_stage_features(in_channels: int, widths: tuple[int, int], kernel: int = 5) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, widths[0], kernel), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(widths[0], widths[1], kernel), nn.ReLU(), nn.MaxPool2d(2),
    )


class CNN(nn.Module):
    """Two conv-relu-pool stages and a two-layer classifier head.

    Args:
        in_size: side of the square input (the feature map after the two stages is
            ``((in_size - 4) // 2 - 4) // 2`` pixels wide; it must be at least 1, so ``in_size >= 16``).
        in_channels, num_classes: input channels and number of classes.
        widths: output channels of the two convolutions (5x5, no padding).
        hidden: width of the hidden linear layer.

    Shapes: (N, in_channels, in_size, in_size) -> logits (N, num_classes).
    """

    def __init__(self, in_size: int = 28, in_channels: int = 1, num_classes: int = 10, widths=(32, 64),
                 hidden: int = 128):
        super().__init__()
        (in_size,) = _check_positive_ints("CNN", "in_size", in_size, 1)
        (in_channels,) = _check_positive_ints("CNN", "in_channels", in_channels, 1)
        (num_classes,) = _check_positive_ints("CNN", "num_classes", num_classes, 1)
        widths = _check_positive_ints("CNN", "widths", widths, 2)
        (hidden,) = _check_positive_ints("CNN", "hidden", hidden, 1)
        side = _conv_pool_size(in_size)
        if side < 1:
            raise ValueError(f"CNN: in_size must be >= 16 (two 5x5 convolutions and two 2x2 pools); got {in_size}")
        self.in_size = in_size
        self.features = _two_stage_features(in_channels, widths)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(widths[1] * side * side, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def localization_net(in_size: int, in_channels: int = 1, widths=(20, 20), hidden: int = 50) -> nn.Sequential:
    """The ST-CNN's localisation network: two conv-relu-pool stages, linear-relu, and a linear layer with 6 outputs
    (theta row by row), which ``nn.SpatialTransformer`` initialises to the identity."""
    widths = _check_positive_ints("localization_net", "widths", widths, 2)
    (hidden,) = _check_positive_ints("localization_net", "hidden", hidden, 1)
    side = _conv_pool_size(in_size)
    if side < 1:
        raise ValueError(f"localization_net: in_size must be >= 16; got {in_size}")
    return nn.Sequential(
        _two_stage_features(in_channels, widths),
        nn.Flatten(), nn.Linear(widths[1] * side * side, hidden), nn.ReLU(), nn.Linear(hidden, 6),
    )


class STCNN(nn.Module):
    """A spatial transformer (affine, bilinear) in front of a :class:`CNN`.

    Args:
        in_size: side of the square input the localisation network reads (42 for the RTS digits).
        out_size: side of the transformer's output, the backbone's input (28).
        in_channels, num_classes, widths, hidden: the backbone, as in :class:`CNN`.
        loc_widths, loc_hidden: the localisation network (:func:`localization_net`).
        align_corners: the transformer's coordinate convention (PyTorch's meaning).

    Shapes: (N, in_channels, in_size, in_size) -> logits (N, num_classes). After a forward, :attr:`last_theta`
    holds the transforms used, (N, 2, 3) NumPy; :meth:`rectify` returns the transformer's output alone.

    The two parts are reachable as ``stcnn.transformer`` (its ``localization`` inside) and ``stcnn.backbone``;
    train the localisation network with a smaller learning rate (a parameter group of
    ``stcnn.transformer.parameters()``), or it can collapse to one fixed transform for every input.
    """

    def __init__(self, in_size: int = 42, out_size: int = 28, in_channels: int = 1, num_classes: int = 10,
                 widths=(32, 64), hidden: int = 128, loc_widths=(20, 20), loc_hidden: int = 50,
                 align_corners: bool = False):
        super().__init__()
        (in_size,) = _check_positive_ints("STCNN", "in_size", in_size, 1)
        (out_size,) = _check_positive_ints("STCNN", "out_size", out_size, 1)
        localization = localization_net(in_size, in_channels, loc_widths, loc_hidden)
        self.transformer = nn.SpatialTransformer(localization, out_size=(out_size, out_size),
                                                 align_corners=align_corners)
        self.backbone = CNN(out_size, in_channels, num_classes, widths, hidden)

    @property
    def last_theta(self):
        return self.transformer.last_theta

    def rectify(self, x):
        """The transformer's output (N, in_channels, out_size, out_size): what the backbone sees."""
        return self.transformer(x)

    def forward(self, x):
        return self.backbone(self.transformer(x))
