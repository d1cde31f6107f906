"""Activations: relu, sigmoid, tanh, softmax and log_softmax, each a Function with its backward beside it.

All are written once against the array module ``xp`` and keep the dtype of their input. Sigmoid, softmax and
log_softmax are computed in forms that never overflow ``exp``: sigmoid through ``exp(-|x|)``, the softmaxes
after subtracting the maximum along ``dim``. Each backward is expressed through the forward's *output*, which
the graph holds anyway, so these ops save nothing extra. Derivations: docs/derivations.md, section "Generic ops".
"""

from __future__ import annotations

from .. import backend
from ..autograd import Function
from ..autograd.tensor import as_tensor
from .basic import normalize_axes


def _float_tensor(x, op: str, name: str = "input"):
    x = as_tensor(x)
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be a floating-point tensor; got dtype {x.dtype}")
    return x


def _single_dim(dim, ndim: int, op: str) -> int:
    if dim is None or not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"{op}: dim must be an int; got {dim!r}")
    return normalize_axes(dim, ndim, "dim")[0]


# =================================================================================================================
# relu, sigmoid, tanh
# =================================================================================================================


class ReLU(Function):
    """y = max(x, 0);  dx = g where y > 0, else 0 (the subgradient at 0 is taken as 0, as PyTorch)."""

    def forward(self, x):
        y = backend.get_array_module(x).maximum(x, 0)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        (y,) = self.saved_arrays
        return g * (y > 0)


class Sigmoid(Function):
    """y = 1 / (1 + e^-x);  dx = g * y * (1 - y).

    Forward uses e = exp(-|x|) <= 1, so nothing overflows: y = 1/(1+e) for x >= 0 and e/(1+e) for x < 0
    (the second is the first multiplied through by e^x).
    """

    def forward(self, x):
        xp = backend.get_array_module(x)
        e = xp.exp(-xp.abs(x))
        y = xp.where(x >= 0, 1, e) / (1 + e)
        y = y.astype(x.dtype, copy=False)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        (y,) = self.saved_arrays
        return g * y * (1 - y)


class Tanh(Function):
    """y = tanh(x);  dx = g * (1 - y^2)."""

    def forward(self, x):
        y = backend.get_array_module(x).tanh(x)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        (y,) = self.saved_arrays
        return g * (1 - y * y)


def relu(x):
    """max(x, 0) elementwise."""
    return ReLU()(_float_tensor(x, "relu"))


def sigmoid(x):
    """1 / (1 + exp(-x)) elementwise, exact and finite for every finite x (no overflow for large |x|)."""
    return Sigmoid()(_float_tensor(x, "sigmoid"))


def tanh(x):
    """tanh(x) elementwise."""
    return Tanh()(_float_tensor(x, "tanh"))


# =================================================================================================================
# softmax, log_softmax
# =================================================================================================================


class Softmax(Function):
    """y_i = exp(x_i - m) / sum_j exp(x_j - m) along ``dim`` (m = max_j x_j, which cancels);
    dx = y * (g - sum_j g_j y_j)."""

    def __init__(self, dim: int):
        self.dim = dim

    def forward(self, x):
        xp = backend.get_array_module(x)
        e = xp.exp(x - x.max(axis=self.dim, keepdims=True))
        y = e / e.sum(axis=self.dim, keepdims=True)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        (y,) = self.saved_arrays
        gy = g * y
        return gy - y * gy.sum(axis=self.dim, keepdims=True)


class LogSoftmax(Function):
    """y_i = x_i - m - log sum_j exp(x_j - m) along ``dim``;  dx = g - softmax(x) * sum_j g_j,
    with softmax(x) = exp(y)."""

    def __init__(self, dim: int):
        self.dim = dim

    def forward(self, x):
        xp = backend.get_array_module(x)
        shifted = x - x.max(axis=self.dim, keepdims=True)
        y = shifted - xp.log(xp.exp(shifted).sum(axis=self.dim, keepdims=True))
        self.save_for_backward(y)
        return y

    def backward(self, g):
        (y,) = self.saved_arrays
        xp = backend.get_array_module(y)
        return g - xp.exp(y) * g.sum(axis=self.dim, keepdims=True)


def softmax(x, dim: int = -1):
    """Softmax along ``dim`` (an int; PyTorch's implicit-dim rule is not reproduced, the default is the last)."""
    x = _float_tensor(x, "softmax")
    return Softmax(_single_dim(dim, x.ndim, "softmax"))(x)


def log_softmax(x, dim: int = -1):
    """log(softmax(x)) along ``dim``, computed without forming softmax (finite even where softmax underflows)."""
    x = _float_tensor(x, "log_softmax")
    return LogSoftmax(_single_dim(dim, x.ndim, "log_softmax"))(x)
