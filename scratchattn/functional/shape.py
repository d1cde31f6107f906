"""Ops that assemble or extend tensors: cat (alias concat), stack and pad.

Their backwards only move gradient around: cat and stack hand each input its own slice of the output gradient;
pad hands back the interior, and for the reflect / replicate / circular modes also adds the gradient of every
padded position to the input position it copied.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from ..autograd import Function
from ..autograd.tensor import as_tensor
from .basic import normalize_axes

# =================================================================================================================
# cat / concat, stack
# =================================================================================================================


class Cat(Function):
    """y = [x_0, x_1, ...] joined along ``dim``;  dx_k = the slice of g that x_k occupies."""

    def __init__(self, dim: int):
        self.dim = dim

    def forward(self, *arrays):
        self.sizes = [a.shape[self.dim] for a in arrays]
        return backend.get_array_module(*arrays).concatenate(arrays, axis=self.dim)

    def backward(self, g):
        grads, start = [], 0
        for size in self.sizes:
            index = [slice(None)] * g.ndim
            index[self.dim] = slice(start, start + size)
            grads.append(g[tuple(index)])
            start += size
        return tuple(grads)


class Stack(Function):
    """y = the inputs stacked along a new axis ``dim``;  dx_k = g taken at index k of that axis."""

    def __init__(self, dim: int):
        self.dim = dim

    def forward(self, *arrays):
        return backend.get_array_module(*arrays).stack(arrays, axis=self.dim)

    def backward(self, g):
        index = [slice(None)] * g.ndim
        grads = []
        for k in range(g.shape[self.dim]):
            index[self.dim] = k
            grads.append(g[tuple(index)])
        return tuple(grads)


def _check_sequence(tensors, op: str):
    if not isinstance(tensors, (list, tuple)) or len(tensors) == 0:
        raise ValueError(f"{op}: tensors must be a non-empty list or tuple of tensors; got {tensors!r}")
    tensors = [as_tensor(t) for t in tensors]
    dtype = tensors[0].dtype
    for k, t in enumerate(tensors):
        if t.dtype != dtype:
            raise TypeError(f"{op}: all tensors must have one dtype; tensors[0] is {dtype}, tensors[{k}] is {t.dtype}")
    return tensors


def cat(tensors, dim: int = 0):
    """Join tensors along an existing axis ``dim``; all other dims must agree."""
    tensors = _check_sequence(tensors, "cat")
    first = tensors[0]
    if first.ndim == 0:
        raise ValueError("cat: zero-dimensional tensors cannot be concatenated (use stack)")
    axis = normalize_axes(dim, first.ndim)[0]
    for k, t in enumerate(tensors):
        if t.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != axis):
            raise ValueError(f"cat: tensors[{k}] has shape {t.shape}, which does not match tensors[0] {first.shape} "
                             f"outside dim {dim}")
    return Cat(axis)(*tensors)


concat = cat


def stack(tensors, dim: int = 0):
    """Join equally shaped tensors along a new axis inserted at ``dim``."""
    tensors = _check_sequence(tensors, "stack")
    first = tensors[0]
    for k, t in enumerate(tensors):
        if t.shape != first.shape:
            raise ValueError(f"stack: tensors[{k}] has shape {t.shape}; tensors[0] has {first.shape}")
    axis = normalize_axes(dim, first.ndim + 1)[0]
    return Stack(axis)(*tensors)


# =================================================================================================================
# pad
# =================================================================================================================

PAD_MODES = ("constant", "reflect", "replicate", "circular")


def source_index(size: int, before: int, after: int, mode: str) -> np.ndarray:
    """For each of the ``before + size + after`` output positions along one axis, the input position it copies.

    reflect: mirror about the edge pixels (…, 2, 1 | 0, 1, 2, … | n-2, …); replicate: repeat the edge pixel;
    circular: wrap around.
    """
    i = np.arange(-before, size + after)
    if mode == "reflect":
        i = np.abs(i)
        return np.where(i > size - 1, 2 * (size - 1) - i, i)
    if mode == "replicate":
        return np.clip(i, 0, size - 1)
    return i % size  # circular


class Pad(Function):
    """Pad (or, with negative amounts in constant mode, crop) the axes listed in ``pads`` = ((axis, before,
    after), ...). Backward: constant mode takes the interior of g; the other modes fold every padded position's
    gradient back onto the input position it copied (see :func:`source_index`)."""

    def __init__(self, pads, mode, value):
        self.pads, self.mode, self.value = pads, mode, value

    def _constant_slices(self, shape):
        """Matching (input, output) index tuples of the region that is copied in constant mode."""
        src, dst = [slice(None)] * len(shape), [slice(None)] * len(shape)
        for axis, before, after in self.pads:
            start, stop = max(0, -before), shape[axis] - max(0, -after)
            src[axis] = slice(start, stop)
            dst[axis] = slice(max(0, before), max(0, before) + max(0, stop - start))
        return tuple(src), tuple(dst)

    def forward(self, x):
        xp = backend.get_array_module(x)
        self.x_shape = x.shape
        if self.mode == "constant":
            shape = list(x.shape)
            for axis, before, after in self.pads:
                shape[axis] += before + after
            y = xp.full(shape, self.value, dtype=x.dtype)
            src, dst = self._constant_slices(x.shape)
            y[dst] = x[src]
            return y
        y = x
        for axis, before, after in self.pads:
            y = xp.take(y, xp.asarray(source_index(y.shape[axis], before, after, self.mode)), axis=axis)
        return y

    def backward(self, g):
        xp = backend.get_array_module(g)
        if self.mode == "constant":
            dx = xp.zeros(self.x_shape, dtype=g.dtype)
            src, dst = self._constant_slices(self.x_shape)
            dx[src] = g[dst]
            return dx
        for axis, before, after in reversed(self.pads):  # undo the forward's per-axis takes in reverse order
            size = self.x_shape[axis]
            g = xp.moveaxis(g, axis, 0)
            folded = g[before : before + size].copy()  # the interior maps onto itself
            index = source_index(size, before, after, self.mode)
            for j in list(range(before)) + list(range(before + size, before + size + after)):
                folded[index[j]] += g[j]
            g = xp.moveaxis(folded, 0, axis)
        return xp.ascontiguousarray(g)


def pad(input, pad, mode: str = "constant", value: float = 0.0):  # noqa: A002 - torch's argument names
    """Pad the last ``len(pad) // 2`` dims, in PyTorch's order: ``pad = (left, right, top, bottom, ...)`` gives
    (before, after) for the last dim, then the one before it, and so on.

    ``mode``: "constant" (fill with ``value``; negative amounts crop), "reflect" (mirror, edge not repeated;
    each amount < that dim's size), "replicate" (repeat the edge) or "circular" (wrap; amount <= size).
    """
    op = "pad"
    x = as_tensor(input)
    if mode not in PAD_MODES:
        raise ValueError(f"{op}: mode must be one of {PAD_MODES}; got {mode!r}")
    if (
        not isinstance(pad, (tuple, list))
        or len(pad) % 2
        or not all(isinstance(p, numbers.Integral) and not isinstance(p, bool) for p in pad)
    ):
        raise TypeError(f"{op}: pad must be a tuple of an even number of ints; got {pad!r}")
    if len(pad) // 2 > x.ndim:
        raise ValueError(f"{op}: pad {tuple(pad)} covers {len(pad) // 2} dims but the input has only {x.ndim}")
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: value must be a real number; got {value!r}")
    pads = []
    for k in range(len(pad) // 2):
        axis = x.ndim - 1 - k
        before, after, size = int(pad[2 * k]), int(pad[2 * k + 1]), x.shape[axis]
        if mode == "constant":
            if size + before + after < 0:
                raise ValueError(f"{op}: pad ({before}, {after}) would give dim {axis} (size {size}) a negative size")
        elif before < 0 or after < 0:
            raise ValueError(f"{op}: mode {mode!r} needs non-negative pad amounts; got {tuple(pad)}")
        elif mode == "reflect" and max(before, after) >= size:
            raise ValueError(f"{op}: reflect padding ({before}, {after}) must be smaller than dim {axis}'s size {size}")
        elif mode == "replicate" and size == 0 and before + after > 0:
            raise ValueError(f"{op}: replicate padding of the empty dim {axis}")
        elif mode == "circular" and max(before, after) > size:
            raise ValueError(f"{op}: circular padding ({before}, {after}) must be at most dim {axis}'s size {size}")
        if before or after:
            pads.append((axis, before, after))
    if not pads:
        return Pad((), "constant", 0)(x)  # still a new tensor, as PyTorch
    return Pad(tuple(pads), mode, value)(x)
