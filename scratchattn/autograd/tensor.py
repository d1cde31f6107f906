"""``Tensor``: an array (NumPy or CuPy) with an optional gradient and a link to the op that made it.

A Tensor holds

* ``data``          - the array itself (``numpy.ndarray`` on the CPU, ``cupy.ndarray`` on the GPU);
* ``requires_grad`` - whether gradients flow to it;
* ``grad``          - after ``backward()``, an array of ``data``'s shape on a leaf that requires a gradient;
* ``creator``       - the Function that produced it (None for a leaf), and ``output_index``, which of that
  Function's outputs it is.

Arithmetic operators, indexing and the shape and reduction methods are sugar over the Functions in
``scratchattn.functional``; they are looked up when called, so that this layer imports no op (the only reference
upwards in the package, and it is resolved at call time).
"""

from __future__ import annotations

import numpy as np

from .. import backend
from .engine import run_backward


def _ops():
    from ..functional import basic

    return basic


class Tensor:
    # Makes ``ndarray + Tensor`` call Tensor.__radd__ instead of NumPy's elementwise loop.
    __array_priority__ = 1000

    def __init__(self, data, requires_grad: bool = False):
        if isinstance(data, Tensor):
            data = data.data
        if not backend.is_array(data):
            data = np.asarray(data)
        if requires_grad and data.dtype.kind != "f":
            raise TypeError(
                f"requires_grad=True needs a floating-point array; got dtype {data.dtype} "
                "(convert with .astype(np.float32) first)"
            )
        self.data = data
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self.creator = None
        self.output_index = 0

    # -- description ------------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def device(self) -> str:
        return backend.device_of(self.data)

    @property
    def is_leaf(self) -> bool:
        return self.creator is None

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        body = np.array2string(backend.to_numpy(self.data), precision=4, separator=", ", threshold=20)
        extra = ", requires_grad=True" if self.requires_grad else ""
        dev = ", device='cuda'" if self.device == "cuda" else ""
        return f"tensor({body}, dtype={self.dtype}{dev}{extra})"

    # -- conversion -------------------------------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """A NumPy copy of the data, from either device."""
        return np.array(backend.to_numpy(self.data), copy=True)

    def item(self):
        return backend.to_numpy(self.data).item()

    def detach(self) -> Tensor:
        """A new leaf sharing this tensor's data, cut from the graph."""
        return Tensor(self.data, requires_grad=False)

    def to(self, device: str) -> Tensor:
        """This tensor on ``device`` ("cpu" or "cuda"); differentiable (the gradient is moved back)."""
        if backend.check_device(device) == self.device:
            return self
        return _ops().to_device(self, device)

    def astype(self, dtype) -> Tensor:
        """This tensor cast to ``dtype``; differentiable for floating-point dtypes."""
        return _ops().cast(self, dtype)

    def float(self) -> Tensor:
        return self.astype(np.float32)

    def double(self) -> Tensor:
        return self.astype(np.float64)

    def requires_grad_(self, flag: bool = True) -> Tensor:
        if flag and self.dtype.kind != "f":
            raise TypeError(f"requires_grad needs a floating-point tensor; got dtype {self.dtype}")
        self.requires_grad = bool(flag)
        return self

    def zero_grad(self) -> None:
        self.grad = None

    # -- autodiff ---------------------------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires a gradient.

        ``grad`` is the gradient flowing into this tensor; it may be omitted only for a one-element tensor,
        where it defaults to 1. Saved arrays are freed afterwards unless ``retain_graph`` is True.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad (no input of its graph does)")
        xp = backend.get_array_module(self.data)
        if grad is None:
            if self.size != 1:
                raise ValueError(
                    f"backward() without a grad argument needs a one-element tensor; this one has shape "
                    f"{self.shape}. Pass grad= an array of that shape."
                )
            grad = xp.ones(self.data.shape, dtype=self.dtype)
        else:
            grad = grad.data if isinstance(grad, Tensor) else grad
            grad = xp.asarray(grad, dtype=self.dtype)
            if grad.shape != self.data.shape:
                raise ValueError(f"backward(grad): grad must have shape {self.shape}; got {tuple(grad.shape)}")
        run_backward(self, grad, retain_graph)

    # -- operators --------------------------------------------------------------------------------------------
    def __add__(self, other):
        return _ops().add(self, other)

    def __radd__(self, other):
        return _ops().add(other, self)

    def __sub__(self, other):
        return _ops().sub(self, other)

    def __rsub__(self, other):
        return _ops().sub(other, self)

    def __mul__(self, other):
        return _ops().mul(self, other)

    def __rmul__(self, other):
        return _ops().mul(other, self)

    def __truediv__(self, other):
        return _ops().div(self, other)

    def __rtruediv__(self, other):
        return _ops().div(other, self)

    def __pow__(self, exponent):
        return _ops().pow(self, exponent)

    def __matmul__(self, other):
        return _ops().matmul(self, other)

    def __rmatmul__(self, other):
        return _ops().matmul(other, self)

    def __neg__(self):
        return _ops().neg(self)

    def __getitem__(self, index):
        return _ops().getitem(self, index)

    # Comparisons give plain tensors without a gradient (boolean data).
    def _compare(self, other, op):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor(op(self.data, other))

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b)

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b)

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b)

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b)

    def __eq__(self, other):  # elementwise, as in NumPy and PyTorch
        return self._compare(other, lambda a, b: a == b)

    def __ne__(self, other):
        return self._compare(other, lambda a, b: a != b)

    __hash__ = object.__hash__

    # -- shape and reduction methods ----------------------------------------------------------------------------
    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return _ops().reshape(self, tuple(shape))

    def view(self, *shape):
        return self.reshape(*shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        return _ops().flatten(self, start_dim, end_dim)

    def transpose(self, dim0: int = None, dim1: int = None):
        """Swap two dims (PyTorch) or, with no arguments, reverse them all (NumPy's ``.T``)."""
        if dim0 is None and dim1 is None:
            return _ops().permute(self, tuple(reversed(range(self.ndim))))
        return _ops().transpose(self, dim0, dim1)

    @property
    def T(self):
        return self.transpose()

    def permute(self, *dims):
        dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        return _ops().permute(self, tuple(dims))

    def sum(self, dim=None, keepdim: bool = False):
        return _ops().sum(self, dim=dim, keepdim=keepdim)

    def mean(self, dim=None, keepdim: bool = False):
        return _ops().mean(self, dim=dim, keepdim=keepdim)

    def max(self, dim=None, keepdim: bool = False):
        return _ops().max(self, dim=dim, keepdim=keepdim)

    def exp(self):
        return _ops().exp(self)

    def log(self):
        return _ops().log(self)

    def sqrt(self):
        return _ops().sqrt(self)

    def abs(self):
        return _ops().abs(self)


def as_tensor(x) -> Tensor:
    """``x`` itself if it is a Tensor, else a constant Tensor (no gradient) over ``x``."""
    return x if isinstance(x, Tensor) else Tensor(x)


def tensor(data, requires_grad: bool = False, dtype=None, device: str | None = None) -> Tensor:
    """Make a leaf Tensor. Arrays keep their device; lists and scalars become NumPy arrays.

    Python floats and lists of them become float32 (PyTorch's default) unless ``dtype`` says otherwise.
    """
    data = getattr(data, "data", data) if isinstance(data, Tensor) else data
    if not backend.is_array(data):
        data = np.asarray(data)
        if dtype is None and data.dtype == np.float64:
            data = data.astype(np.float32)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    if device is not None:
        data = backend.to_device(data, device)
    return Tensor(data, requires_grad=requires_grad)
