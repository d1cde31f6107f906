"""Weight initialisation, in place on Parameters (PyTorch's ``torch.nn.init`` names and formulas).

Every function fills ``tensor.data`` in place (keeping its dtype and device) and returns the tensor. Random values
come from ``scratchattn.random.default_rng`` for the tensor's array module, so ``sa.manual_seed`` makes them
reproducible. Fans, for a weight of shape ``(out, in, *kernel)``:

    fan_in  = in  * prod(kernel)         fan_out = out * prod(kernel)

The default initialisation of ``Linear`` and ``Conv2d`` is ``kaiming_uniform_(w, a=sqrt(5))``, whose bound works
out to ``gain * sqrt(3 / fan_in)`` with ``gain = sqrt(2 / (1 + 5)) = sqrt(1/3)``, i.e. ``1 / sqrt(fan_in)``:
the same ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` as their biases.
"""

from __future__ import annotations

import math

from .. import backend, random
from ..autograd import Tensor, no_grad


def _check_tensor(tensor, fn: str) -> Tensor:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{fn}: tensor must be a Tensor (a Parameter); got {type(tensor).__name__}")
    if tensor.dtype.kind != "f":
        raise TypeError(f"{fn}: tensor must be floating point; got dtype {tensor.dtype}")
    return tensor


def _fill(tensor: Tensor, values) -> Tensor:
    with no_grad():
        tensor.data[...] = values.astype(tensor.dtype, copy=False)
    return tensor


def calculate_fan_in_and_fan_out(tensor) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of shape ``(out, in, *kernel)``; needs at least 2 dims."""
    shape = tensor.shape
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need a tensor with at least 2 dims; got shape {tuple(shape)}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The factor by which a nonlinearity scales the standard deviation to keep (PyTorch's table)."""
    if nonlinearity in ("linear", "identity", "sigmoid", "conv1d", "conv2d", "conv3d"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise TypeError(f"calculate_gain: the leaky_relu slope must be a number; got {slope!r}")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _fan(tensor, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out'; got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    if fan == 0:
        raise ValueError(f"cannot initialise a tensor with a zero {mode} (shape {tensor.shape})")
    return fan


def _rng(tensor):
    return random.default_rng(backend.get_array_module(tensor.data))


# =================================================================================================================
# constant and plain random fills
# =================================================================================================================


def zeros_(tensor):
    _check_tensor(tensor, "zeros_")
    return _fill(tensor, backend.get_array_module(tensor.data).zeros(tensor.shape))


def ones_(tensor):
    _check_tensor(tensor, "ones_")
    return _fill(tensor, backend.get_array_module(tensor.data).ones(tensor.shape))


def constant_(tensor, value: float):
    _check_tensor(tensor, "constant_")
    return _fill(tensor, backend.get_array_module(tensor.data).full(tensor.shape, float(value)))


def uniform_(tensor, a: float = 0.0, b: float = 1.0):
    """Fill with ``U(a, b)``."""
    _check_tensor(tensor, "uniform_")
    if not a <= b:
        raise ValueError(f"uniform_: needs a <= b; got a={a}, b={b}")
    return _fill(tensor, _rng(tensor).uniform(a, b, size=tensor.shape))


def normal_(tensor, mean: float = 0.0, std: float = 1.0):
    """Fill with ``N(mean, std^2)``."""
    _check_tensor(tensor, "normal_")
    if not std >= 0:
        raise ValueError(f"normal_: std must be >= 0; got {std}")
    return _fill(tensor, mean + std * _rng(tensor).standard_normal(tensor.shape))


# =================================================================================================================
# fan-scaled fills
# =================================================================================================================


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
    """He initialisation: ``U(-bound, bound)``, ``bound = gain * sqrt(3 / fan)``, so that the variance
    ``gain^2 / fan`` keeps activations' scale through a layer followed by ``nonlinearity`` (slope ``a``)."""
    _check_tensor(tensor, "kaiming_uniform_")
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / _fan(tensor, mode))
    return _fill(tensor, _rng(tensor).uniform(-bound, bound, size=tensor.shape))


def kaiming_normal_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
    """He initialisation with ``N(0, std^2)``, ``std = gain / sqrt(fan)``."""
    _check_tensor(tensor, "kaiming_normal_")
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return _fill(tensor, std * _rng(tensor).standard_normal(tensor.shape))


def xavier_uniform_(tensor, gain: float = 1.0):
    """Glorot initialisation: ``U(-bound, bound)``, ``bound = gain * sqrt(6 / (fan_in + fan_out))``."""
    _check_tensor(tensor, "xavier_uniform_")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return _fill(tensor, _rng(tensor).uniform(-bound, bound, size=tensor.shape))


def xavier_normal_(tensor, gain: float = 1.0):
    """Glorot initialisation with ``N(0, std^2)``, ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    _check_tensor(tensor, "xavier_normal_")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return _fill(tensor, std * _rng(tensor).standard_normal(tensor.shape))


__all__ = [
    "calculate_fan_in_and_fan_out",
    "calculate_gain",
    "constant_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "normal_",
    "ones_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]
