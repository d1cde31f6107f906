"""GELU, the activation of transformer MLPs: y = x * Phi(x), with Phi the standard normal CDF; backward written out.

Two forms, as in PyTorch: the exact one (``approximate="none"``, the default) and the tanh approximation
(``approximate="tanh"``). NumPy has no ``erf``, so the exact form evaluates Phi with ``math.erfc`` in a small
Numba loop on the CPU and with ``cupyx.scipy.special.erfc`` on the GPU (via erfc rather than erf so that Phi keeps
its relative accuracy far out on the negative side, where 1 + erf(x) would cancel).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .. import backend
from ..autograd import Function, as_tensor

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_TANH_CUBIC = 0.044715


@numba.njit(cache=True)
def _normal_cdf_numba(x, out):
    """out[i] = Phi(x[i]) = erfc(-x / sqrt(2)) / 2 for 1-D arrays (serial: the arrays of a tiny MLP are small)."""
    for i in range(x.shape[0]):
        out[i] = 0.5 * math.erfc(-x[i] * 0.7071067811865476)


def _normal_cdf(x):
    """Phi(x) elementwise, in x's dtype, on x's device."""
    xp = backend.get_array_module(x)
    if xp is np:
        flat = np.ascontiguousarray(x).reshape(-1)
        out = np.empty_like(flat)
        _normal_cdf_numba(flat, out)
        return out.reshape(x.shape)
    from cupyx.scipy.special import erfc  # only reached with CuPy arrays, so CuPy is installed

    return (0.5 * erfc(-x * x.dtype.type(_SQRT_HALF))).astype(x.dtype, copy=False)


class GELU(Function):
    """y = x Phi(x) (exact) or y = x (1 + tanh(u)) / 2 with u = sqrt(2/pi) (x + 0.044715 x^3) (tanh form).

    Backward:  exact:  dx = g (Phi(x) + x phi(x)),  phi(x) = exp(-x^2/2) / sqrt(2 pi)
               tanh:   dx = g ((1 + t) / 2 + x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2) / 2),  t = tanh(u)
    Saved: x (Phi or t is recomputed: cheaper than keeping a second array of activations).
    """

    def __init__(self, approximate: str):
        self.approximate = approximate

    def _tanh_u(self, x, xp):
        return xp.tanh(x.dtype.type(_SQRT_2_OVER_PI) * (x + x.dtype.type(_TANH_CUBIC) * x * x * x))

    def forward(self, x):
        xp = backend.get_array_module(x)
        self.save_for_backward(x)
        if self.approximate == "tanh":
            return x * (1 + self._tanh_u(x, xp)) * x.dtype.type(0.5)
        return x * _normal_cdf(x)

    def backward(self, g):
        (x,) = self.saved_arrays
        xp = backend.get_array_module(x)
        if self.approximate == "tanh":
            t = self._tanh_u(x, xp)
            du = x.dtype.type(_SQRT_2_OVER_PI) * (1 + x.dtype.type(3 * _TANH_CUBIC) * x * x)
            return g * (x.dtype.type(0.5) * (1 + t) + x.dtype.type(0.5) * x * (1 - t * t) * du)
        pdf = xp.exp(x * x * x.dtype.type(-0.5)) * x.dtype.type(_INV_SQRT_2PI)
        return g * (_normal_cdf(x) + x * pdf)


def gelu(x, approximate: str = "none"):
    """Gaussian error linear unit of ``x`` (any shape, float32 or float64): ``x * Phi(x)``, as PyTorch's ``gelu``.

    ``approximate="tanh"`` uses ``x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2`` instead.
    """
    x = as_tensor(x)
    if x.dtype not in backend.FLOAT_DTYPES:
        raise TypeError(f"gelu: x must be float32 or float64; got {x.dtype}")
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh'; got {approximate!r}")
    return GELU(approximate)(x)
