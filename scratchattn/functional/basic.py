"""Elementary ops: arithmetic with broadcasting, matmul, elementwise functions, shapes, reductions, indexing.

Each op is a ``Function`` subclass with its forward and backward on arrays, and a lowercase wrapper under it.
They are written once against the array module ``xp`` and run on both devices. The Tensor operators
(``+ - * / ** @``, indexing, ``.sum()``, ...) call these wrappers.

Broadcasting: when an input was broadcast in the forward, its gradient is the incoming gradient summed over the
broadcast axes (:func:`unbroadcast`), because each of its elements was used once per position it was broadcast to.

Python scalars take the dtype of the tensor they meet, so ``x * 2`` stays float32 for a float32 ``x``.
"""

from __future__ import annotations

import builtins

import numpy as np

from .. import backend
from ..autograd import Function, Tensor

# =================================================================================================================
# helpers: scalars, broadcasting, axes
# =================================================================================================================


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: the adjoint of broadcasting an array of ``shape`` to ``grad.shape``."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1
    )
    grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def _pair(a, b):
    """Turn the operands of a binary op into Tensors, giving Python scalars the dtype of the Tensor operand."""
    ref = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    if ref is None:  # neither is a Tensor (F.add(array, 2)): NumPy's own promotion
        ref = Tensor(a if backend.is_array(a) else np.asarray(a))
    xp = backend.get_array_module(ref.data)

    def convert(v):
        if isinstance(v, Tensor):
            return v
        if backend.is_array(v):
            return Tensor(v)
        try:
            if v is None:  # np.asarray(None, dtype=float) would be NaN
                raise TypeError
            return Tensor(xp.asarray(v, dtype=ref.dtype))
        except (TypeError, ValueError):
            raise TypeError(f"operands must be Tensors, arrays or numbers; got {type(v).__name__} {v!r:.60}") from None

    return convert(a), convert(b)


def normalize_axes(dim, ndim: int, name: str = "dim"):
    """``dim`` (None, an int or a sequence) as a sorted tuple of non-negative axes, checked against ``ndim``."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    out = []
    for d in dims:
        if not isinstance(d, (int, np.integer)):
            raise TypeError(f"{name} must be an int or a tuple of ints; got {dim!r}")
        if not -ndim <= d < builtins.max(ndim, 1):
            raise ValueError(f"{name} {d} is out of range for a tensor with {ndim} dims")
        out.append(int(d) % builtins.max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{name} repeats an axis: {dim!r}")
    return tuple(sorted(out))


# =================================================================================================================
# add, sub, mul, div, neg, pow
# =================================================================================================================


class Add(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, g):
        sa, sb = self.shapes
        return unbroadcast(g, sa), unbroadcast(g, sb)


class Sub(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, g):
        sa, sb = self.shapes
        return unbroadcast(g, sa), unbroadcast(-g, sb)


class Mul(Function):
    """y = a * b;  da = g * b,  db = g * a (each summed over its broadcast axes)."""

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a * b

    def backward(self, g):
        a, b = self.saved_arrays
        da = unbroadcast(g * b, a.shape) if self.needs_input_grad[0] else None
        db = unbroadcast(g * a, b.shape) if self.needs_input_grad[1] else None
        return da, db


class Div(Function):
    """y = a / b;  da = g / b,  db = -g * a / b^2 = -g * y / b."""

    def forward(self, a, b):
        y = a / b
        self.save_for_backward(b, y)
        self.shape_a = a.shape
        return y

    def backward(self, g):
        b, y = self.saved_arrays
        da = unbroadcast(g / b, self.shape_a) if self.needs_input_grad[0] else None
        db = unbroadcast(-g * y / b, b.shape) if self.needs_input_grad[1] else None
        return da, db


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, g):
        return -g


class Pow(Function):
    """y = x^p for a constant exponent p;  dx = g * p * x^(p-1)."""

    def __init__(self, exponent):
        self.exponent = exponent

    def forward(self, x):
        self.save_for_backward(x)
        return x**self.exponent

    def backward(self, g):
        (x,) = self.saved_arrays
        p = self.exponent
        return g * (p * x ** (p - 1)).astype(x.dtype, copy=False)


def add(a, b):
    return Add()(*_pair(a, b))


def sub(a, b):
    return Sub()(*_pair(a, b))


def mul(a, b):
    return Mul()(*_pair(a, b))


def div(a, b):
    return Div()(*_pair(a, b))


def neg(x):
    return Neg()(x)


def pow(x, exponent):  # noqa: A001 - the name torch uses
    """``x ** exponent`` for a constant (Python number) exponent."""
    if isinstance(exponent, Tensor) or backend.is_array(exponent):
        raise TypeError("pow: exponent must be a Python number (tensor exponents are not differentiated here)")
    return Pow(exponent)(x)


# =================================================================================================================
# exp, log, sqrt, abs
# =================================================================================================================


class Exp(Function):
    """y = e^x;  dx = g * y."""

    def forward(self, x):
        y = backend.get_array_module(x).exp(x)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        (y,) = self.saved_arrays
        return g * y


class Log(Function):
    """y = ln x;  dx = g / x."""

    def forward(self, x):
        self.save_for_backward(x)
        return backend.get_array_module(x).log(x)

    def backward(self, g):
        (x,) = self.saved_arrays
        return g / x


class Sqrt(Function):
    """y = sqrt(x);  dx = g / (2 y)."""

    def forward(self, x):
        y = backend.get_array_module(x).sqrt(x)
        self.save_for_backward(y)
        return y

    def backward(self, g):
        (y,) = self.saved_arrays
        return g / (2 * y)


class Abs(Function):
    """y = |x|;  dx = g * sign(x) (0 at x = 0, as PyTorch)."""

    def forward(self, x):
        self.save_for_backward(x)
        return backend.get_array_module(x).abs(x)

    def backward(self, g):
        (x,) = self.saved_arrays
        return g * backend.get_array_module(x).sign(x)


def exp(x):
    return Exp()(x)


def log(x):
    return Log()(x)


def sqrt(x):
    return Sqrt()(x)


def abs(x):  # noqa: A001
    return Abs()(x)


# =================================================================================================================
# matmul
# =================================================================================================================


class MatMul(Function):
    """Y = A @ B with NumPy's rules (1-D operands, batch dims broadcast).

    For 2-D: dA = G B^T, dB = A^T G. Batched operands use the same formulas on the last two dims, then sum over
    the batch dims an operand was broadcast along. A 1-D operand is treated as a row (A) or column (B) vector.
    """

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a @ b

    def backward(self, g):
        a, b = self.saved_arrays
        xp = backend.get_array_module(g)
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        # g with the unit dims of 1-D operands restored: the shape of a2 @ b2 (also for 1-D @ 1-D, where g is 0-d)
        g2 = g.reshape(np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]) + (a2.shape[-2], b2.shape[-1]))
        da = db = None
        if self.needs_input_grad[0]:
            da = g2 @ xp.swapaxes(b2, -1, -2)
            da = unbroadcast(da, a2.shape).reshape(a.shape)
        if self.needs_input_grad[1]:
            db = xp.swapaxes(a2, -1, -2) @ g2
            db = unbroadcast(db, b2.shape).reshape(b.shape)
        return da, db


def matmul(a, b):
    a, b = _pair(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both operands need at least 1 dim; got shapes {a.shape} and {b.shape}")
    ka = a.shape[-1]
    kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if ka != kb:
        raise ValueError(f"matmul: inner dims differ: a {a.shape} has {ka}, b {b.shape} has {kb}")
    return MatMul()(a, b)


# =================================================================================================================
# dtype and device
# =================================================================================================================


class Cast(Function):
    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    def forward(self, x):
        self.src = x.dtype
        return x.astype(self.dtype)

    def backward(self, g):
        return g.astype(self.src) if self.src.kind == "f" else None


class ToDevice(Function):
    """Move to another device; the gradient moves back."""

    def __init__(self, device):
        self.device = device

    def forward(self, x):
        self.src = backend.device_of(x)
        return backend.to_device(x, self.device)

    def backward(self, g):
        return backend.to_device(g, self.src)


def cast(x, dtype):
    return Cast(dtype)(x)


def to_device(x, device):
    return ToDevice(backend.check_device(device))(x)


# =================================================================================================================
# shapes: reshape, flatten, transpose, permute, indexing, broadcast_to
# =================================================================================================================


class Reshape(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.src = x.shape
        return x.reshape(self.shape)

    def backward(self, g):
        return g.reshape(self.src)


class Permute(Function):
    """y = x.transpose(dims); its adjoint permutes back with the inverse permutation."""

    def __init__(self, dims):
        self.dims = dims

    def forward(self, x):
        return x.transpose(self.dims)

    def backward(self, g):
        return g.transpose(tuple(np.argsort(self.dims)))


class GetItem(Function):
    """y = x[index]. The gradient goes back to the selected positions.

    Basic indices (ints, slices, None, Ellipsis) select each element at most once, so the gradient is written in
    place; advanced (array) indices may repeat an element, so they scatter with ``add.at``, which accumulates.
    """

    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.src = x.shape, x.dtype
        return x[self.index]

    def backward(self, g):
        shape, dtype = self.src
        xp = backend.get_array_module(g)
        dx = xp.zeros(shape, dtype=dtype)
        parts = self.index if isinstance(self.index, tuple) else (self.index,)
        if all(p is None or p is Ellipsis or isinstance(p, (int, np.integer, slice)) for p in parts):
            dx[self.index] = g
        else:
            xp.add.at(dx, self.index, g)
        return dx


class BroadcastTo(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.src = x.shape
        return backend.get_array_module(x).broadcast_to(x, self.shape).copy()

    def backward(self, g):
        return unbroadcast(g, self.src)


def reshape(x, shape):
    shape = tuple(int(s) for s in shape)
    return Reshape(shape)(x)


def flatten(x, start_dim: int = 0, end_dim: int = -1):
    if x.ndim == 0:
        return reshape(x, (1,))
    s = normalize_axes(start_dim, x.ndim, "start_dim")[0]
    e = normalize_axes(end_dim, x.ndim, "end_dim")[0]
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for {x.ndim} dims")
    shape = x.shape
    return reshape(x, shape[:s] + (int(np.prod(shape[s : e + 1])),) + shape[e + 1 :])


def permute(x, dims):
    dims = tuple(int(d) % builtins.max(x.ndim, 1) for d in dims)
    if sorted(dims) != list(range(x.ndim)):
        raise ValueError(f"permute: dims must be a permutation of 0..{x.ndim - 1}; got {dims}")
    return Permute(dims)(x)


def transpose(x, dim0: int, dim1: int):
    dims = list(range(x.ndim))
    d0, d1 = normalize_axes(dim0, x.ndim, "dim0")[0], normalize_axes(dim1, x.ndim, "dim1")[0]
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return Permute(tuple(dims))(x)


def getitem(x, index):
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetItem(index)(x)


def broadcast_to(x, shape):
    return BroadcastTo(tuple(shape))(x)


# =================================================================================================================
# reductions: sum, mean, max
# =================================================================================================================


class Sum(Function):
    """y = sum of x over ``axes``;  dx = g broadcast back over those axes."""

    def __init__(self, axes, keepdim):
        self.axes, self.keepdim = axes, keepdim

    def forward(self, x):
        self.src = x.shape
        return x.sum(axis=self.axes, keepdims=self.keepdim)

    def backward(self, g):
        xp = backend.get_array_module(g)
        if not self.keepdim:
            g = xp.expand_dims(g, self.axes) if self.axes else g
        return xp.broadcast_to(g, self.src).copy()


class Mean(Function):
    """y = mean of x over ``axes``;  dx = g / count, broadcast back."""

    def __init__(self, axes, keepdim):
        self.axes, self.keepdim = axes, keepdim

    def forward(self, x):
        self.src = x.shape
        return x.mean(axis=self.axes, keepdims=self.keepdim)

    def backward(self, g):
        xp = backend.get_array_module(g)
        count = int(np.prod([self.src[a] for a in self.axes])) if self.axes else 1
        if not self.keepdim:
            g = xp.expand_dims(g, self.axes) if self.axes else g
        return xp.broadcast_to(g / count, self.src).copy()


class Max(Function):
    """y = max of x over ``axes``. The gradient goes to the maximal elements; ties share it equally."""

    def __init__(self, axes, keepdim):
        self.axes, self.keepdim = axes, keepdim

    def forward(self, x):
        y = x.max(axis=self.axes, keepdims=True)
        self.save_for_backward(x, y)
        return y if self.keepdim else y.reshape([n for i, n in enumerate(y.shape) if i not in self.axes])

    def backward(self, g):
        x, y = self.saved_arrays
        mask = (x == y).astype(x.dtype)
        mask /= mask.sum(axis=self.axes, keepdims=True)
        return mask * g.reshape(y.shape)


def _reduce(cls, x, dim, keepdim):
    axes = normalize_axes(dim, x.ndim)
    return cls(axes, bool(keepdim))(x)


def sum(x, dim=None, keepdim: bool = False):  # noqa: A001
    return _reduce(Sum, x, dim, keepdim)


def mean(x, dim=None, keepdim: bool = False):
    return _reduce(Mean, x, dim, keepdim)


def max(x, dim=None, keepdim: bool = False):  # noqa: A001
    """Maximum over ``dim`` (all dims when None). Returns the values only (not the indices)."""
    axes = normalize_axes(dim, x.ndim)
    if any(x.shape[a] == 0 for a in axes):  # an empty batch (N = 0) reduced over other axes is fine
        raise ValueError(f"max: cannot reduce over an empty axis; got shape {tuple(x.shape)} and dim {dim!r}")
    return _reduce(Max, x, dim, keepdim)
