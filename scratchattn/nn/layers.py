"""The standard layers: ``Linear``, ``Conv2d``, ``BatchNorm1d``/``BatchNorm2d``, activations, pooling, ``Flatten``,
``Dropout`` and ``Identity``.

Each layer holds its parameters and settings and calls one op of ``scratchattn.functional`` in ``forward``; the
gradients are those ops' hand-written backwards. Constructor arguments, names, defaults and initialisations are
PyTorch's, so a state dict moves between the two frameworks key for key:

* ``Linear`` / ``Conv2d``: weight ``kaiming_uniform_(a=sqrt(5))``, i.e. ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``,
  and bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, where ``fan_in`` is the number of inputs feeding one output;
* ``BatchNorm``: weight 1, bias 0, ``running_mean`` 0, ``running_var`` 1, ``num_batches_tracked`` 0.

Parameters are created in float32 on the CPU from ``scratchattn.random`` (seed with ``sa.manual_seed``); use
``.double()`` or ``.to("cuda")`` on the model afterwards.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import functional as F
from . import init
from .module import Module, Parameter

# =================================================================================================================
# argument checks
# =================================================================================================================


def _positive_int(value, name: str, layer: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{layer}: {name} must be {kind}; got {value!r}")
    return int(value)


def _pair(value, name: str, layer: str, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints as a (height, width) tuple, each >= ``minimum``."""
    pair = (value, value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(f"{layer}: {name} must be an int or a pair of ints; got {value!r}")
    return tuple(_positive_int(v, name, layer, minimum) for v in pair)


def _bool(value, name: str, layer: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{layer}: {name} must be a bool; got {value!r}")
    return value


def _probability(value, name: str, layer: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{layer}: {name} must be a number in [0, 1]; got {value!r}")
    return float(value)


def _empty(*shape) -> Parameter:
    """A float32 Parameter of ``shape``, to be filled by an initialiser."""
    return Parameter(np.zeros(shape, dtype=np.float32))


# =================================================================================================================
# Linear, Conv2d
# =================================================================================================================


class Linear(Module):
    """``y = x W^T + b``: input (..., in_features) -> (..., out_features).

    Parameters: ``weight`` (out_features, in_features), ``bias`` (out_features,) unless ``bias=False``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features", "Linear")
        self.out_features = _positive_int(out_features, "out_features", "Linear")
        self.weight = _empty(self.out_features, self.in_features)
        self.bias = _empty(self.out_features) if _bool(bias, "bias", "Linear") else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: weight and bias both ``U(-1/sqrt(in_features), 1/sqrt(in_features))``."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    """2-D convolution: input (N, in_channels, H, W) -> (N, out_channels, H_out, W_out), with
    ``H_out = (H + 2 padding - dilation (kh - 1) - 1) // stride + 1`` (likewise W_out).

    Parameters: ``weight`` (out_channels, in_channels // groups, kh, kw), ``bias`` (out_channels,).
    ``kernel_size``, ``stride``, ``dilation``: int or pair; ``padding``: int, pair, ``"valid"`` or ``"same"``
    (stride 1 only). ``groups`` splits the channels into independent convolutions; both channel counts must be
    divisible by it.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True):
        super().__init__()
        self.in_channels = _positive_int(in_channels, "in_channels", "Conv2d")
        self.out_channels = _positive_int(out_channels, "out_channels", "Conv2d")
        self.kernel_size = _pair(kernel_size, "kernel_size", "Conv2d")
        self.stride = _pair(stride, "stride", "Conv2d")
        self.dilation = _pair(dilation, "dilation", "Conv2d")
        self.groups = _positive_int(groups, "groups", "Conv2d")
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(f"Conv2d: padding must be an int, a pair, 'valid' or 'same'; got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"Conv2d: padding='same' needs stride 1; got stride {self.stride}")
            self.padding = padding
        else:
            self.padding = _pair(padding, "padding", "Conv2d", minimum=0)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"Conv2d: in_channels ({self.in_channels}) and out_channels ({self.out_channels}) "
                             f"must both be divisible by groups ({self.groups})")
        self.weight = _empty(self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        self.bias = _empty(self.out_channels) if _bool(bias, "bias", "Conv2d") else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: weight and bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, fan_in = (C/groups) kh kw."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init.calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding!r}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


# =================================================================================================================
# batch normalisation
# =================================================================================================================


class _BatchNorm(Module):
    """Normalise each channel (axis 1) by batch statistics in training and by running statistics in evaluation,
    then scale by ``weight`` and shift by ``bias``.

    In training the running statistics move towards the batch's: ``r <- (1 - momentum) r + momentum * stat``
    (the variance unbiased), and ``num_batches_tracked`` counts the batches; with ``momentum=None`` the running
    statistics are the plain average of all batches so far (momentum ``1 / num_batches_tracked``).
    ``track_running_stats=False`` keeps no running statistics and uses batch statistics in evaluation too.
    """

    _name = "BatchNorm"
    _input_dims: tuple[int, ...] = ()
    _input_layout = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True):
        super().__init__()
        name = self._name
        self.num_features = _positive_int(num_features, "num_features", name)
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0:
            raise ValueError(f"{name}: eps must be a number >= 0; got {eps!r}")
        self.eps = float(eps)
        self.momentum = None if momentum is None else _probability(momentum, "momentum", name)
        self.affine = _bool(affine, "affine", name)
        self.track_running_stats = _bool(track_running_stats, "track_running_stats", name)
        c = self.num_features
        self.weight = Parameter(np.ones(c, dtype=np.float32)) if affine else None
        self.bias = Parameter(np.zeros(c, dtype=np.float32)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, dtype=np.float32))
            self.register_buffer("running_var", np.ones(c, dtype=np.float32))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def forward(self, x):
        if x.ndim not in self._input_dims or x.shape[1] != self.num_features:
            raise ValueError(f"{self._name}({self.num_features}): input must have shape {self._input_layout} with "
                             f"C = {self.num_features}; got {x.shape}")
        momentum = self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if momentum is None:  # cumulative moving average
                momentum = 1.0 / int(self.num_batches_tracked.data)
        use_batch_stats = self.training or not self.track_running_stats
        return F.batch_norm(
            x,
            self.running_mean if not self.training or self.track_running_stats else None,
            self.running_var if not self.training or self.track_running_stats else None,
            self.weight,
            self.bias,
            training=use_batch_stats,
            momentum=0.0 if momentum is None else momentum,
            eps=self.eps,
        )

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L) inputs (statistics per channel over N, and L)."""

    _name, _input_dims, _input_layout = "BatchNorm1d", (2, 3), "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) inputs (statistics per channel over N, H and W)."""

    _name, _input_dims, _input_layout = "BatchNorm2d", (4,), "(N, C, H, W)"


# =================================================================================================================
# activations, pooling, reshaping, dropout
# =================================================================================================================


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Identity(Module):
    """Returns its input; a placeholder where a layer is optional (any constructor arguments are ignored)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class MaxPool2d(Module):
    """Max over kernel_size windows of (N, C, H, W); ``stride`` defaults to ``kernel_size``."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size", "MaxPool2d")
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride", "MaxPool2d")
        self.padding = _pair(padding, "padding", "MaxPool2d", minimum=0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"MaxPool2d: padding must be at most half the kernel size; got padding {self.padding} "
                             f"for kernel_size {self.kernel_size}")

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(Module):
    """Mean over kernel_size windows of (N, C, H, W); ``stride`` defaults to ``kernel_size``."""

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad: bool = True):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size", "AvgPool2d")
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride", "AvgPool2d")
        self.padding = _pair(padding, "padding", "AvgPool2d", minimum=0)
        self.count_include_pad = _bool(count_include_pad, "count_include_pad", "AvgPool2d")
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"AvgPool2d: padding must be at most half the kernel size; got padding {self.padding} "
                             f"for kernel_size {self.kernel_size}")

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.count_include_pad)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average-pool (N, C, H, W) to (N, C, *output_size) with PyTorch's bins; ``AdaptiveAvgPool2d(1)`` is global
    average pooling. ``output_size``: an int or a pair whose entries may be None (keep that input size)."""

    def __init__(self, output_size):
        super().__init__()
        sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
        if len(sizes) != 2:
            raise TypeError(f"AdaptiveAvgPool2d: output_size must be an int or a pair; got {output_size!r}")
        for s in sizes:
            if s is not None:
                _positive_int(s, "output_size", "AdaptiveAvgPool2d")
        self.output_size = output_size if not isinstance(output_size, list) else tuple(output_size)

    def forward(self, x):
        if self.output_size in (1, (1, 1)):
            return F.global_avg_pool2d(x)  # one reduction instead of two pooling matrices
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class Flatten(Module):
    """Flatten dims ``start_dim..end_dim`` into one: (N, C, H, W) -> (N, C*H*W) by default."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        for name, d in (("start_dim", start_dim), ("end_dim", end_dim)):
            if isinstance(d, bool) or not isinstance(d, numbers.Integral):
                raise TypeError(f"Flatten: {name} must be an int; got {d!r}")
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, x):
        return F.flatten(x, self.start_dim, self.end_dim)  # F.flatten: a NumPy array is accepted as every layer does

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Dropout(Module):
    """In training, zero each element with probability ``p`` and scale the rest by ``1/(1-p)``; in evaluation,
    the identity. Masks come from ``scratchattn.random``."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = _probability(p, "p", "Dropout")

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
