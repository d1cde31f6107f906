"""Spatial pooling over (N, C, H, W): max_pool2d, avg_pool2d, adaptive_avg_pool2d and global_avg_pool2d.

max and average pooling walk the kh*kw offsets of the window: for offset (i, j), the slice
``xpad[:, :, i::sh, j::sw]`` (cut to H_out x W_out) holds that offset's element of every window of the batch,
so each step is one vectorised operation over the whole tensor and the Python loop has only kh*kw iterations.
Backward walks the same offsets and adds each slice's share of the output gradient back (windows that overlap
accumulate across iterations). Max pooling remembers, per output, which offset won (ties go to the first in
row-major window order, NaN wins, as in PyTorch) and sends the whole gradient there.

On the CPU, max pooling runs Numba kernels (``kernels/cpu/pooling.py``) with the same rule, one pass over the
input instead of several over the output per offset; the xp code here is the reference and the CuPy path.
The 2x2, stride 2 case has kernels of its own, which vectorise; see the numbers in ``kernels/cpu/pooling.py``.

Adaptive average pooling averages over the rectangles PyTorch uses (start = floor(a*H/H_out),
end = ceil((a+1)*H/H_out)); an average over a rectangle is separable, so it is two small matrix products,
y = P_h x P_w^T, and its adjoint is dx = P_h^T g P_w. Derivations: docs/derivations.md, section "Generic ops".
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from ..autograd import Function
from ..autograd.tensor import as_tensor
from .conv import as_pair, pad_zeros


def _check_input(x, op: str):
    x = as_tensor(x)
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: input must be floating point; got dtype {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"{op}: input must have shape (N, C, H, W); got {x.shape}")
    return x


def _window_geometry(x, kernel_size, stride, padding, op: str):
    """Checked kernel, stride, padding and output size of a sliding-window pooling (floor mode)."""
    kernel = as_pair(kernel_size, "kernel_size", op, minimum=1)
    stride = kernel if stride is None else as_pair(stride, "stride", op, minimum=1)
    padding = as_pair(padding, "padding", op, minimum=0)
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise ValueError(f"{op}: padding must be at most half the kernel size; got padding {padding} for "
                         f"kernel_size {kernel}")
    out = []
    for axis, size, k, s, p in zip(("height", "width"), x.shape[2:], kernel, stride, padding):
        if size + 2 * p < k:
            raise ValueError(f"{op}: kernel_size {kernel} is larger than the padded input {axis} {size + 2 * p} "
                             f"(input {x.shape}, padding {padding})")
        out.append((size + 2 * p - k) // s + 1)
    return kernel, stride, padding, tuple(out)


def _offset_slices(i, j, stride, out_size):
    """The (rows, cols) slices of the padded input holding kernel offset (i, j) of every window."""
    (sh, sw), (h_out, w_out) = stride, out_size
    return slice(i, i + sh * (h_out - 1) + 1, sh), slice(j, j + sw * (w_out - 1) + 1, sw)


def _unpad(dxpad, x_shape, padding):
    if dxpad.shape == tuple(x_shape):
        return dxpad
    ph, pw = padding
    h, w = x_shape[2:]
    return backend.get_array_module(dxpad).ascontiguousarray(dxpad[:, :, ph : ph + h, pw : pw + w])


# =================================================================================================================
# max_pool2d
# =================================================================================================================


class MaxPool2d(Function):
    """y[n, c, p, q] = max over the window of xpad (padding is -inf, so it never wins);
    dx[n, c, argmax] += g[n, c, p, q]. Saves only the winning offset per output (uint8 for small windows)."""

    # NumPy input runs the Numba kernels; False runs the xp code below on NumPy too (the tests compare the two).
    cpu_kernels = True

    def __init__(self, kernel, stride, padding, out_size):
        self.kernel, self.stride, self.padding, self.out_size = kernel, stride, padding, out_size

    def _is_2x2(self):
        """The common 2x2, stride 2, unpadded case, which has its own (vectorised) Numba kernels."""
        return self.kernel == (2, 2) and self.stride == (2, 2) and self.padding == (0, 0)

    def forward(self, x):
        xp = backend.get_array_module(x)
        kh, kw = self.kernel
        ph, pw = self.padding
        xpad = pad_zeros(x, (ph, ph), (pw, pw), value=-np.inf)
        index_dtype = np.dtype(np.uint8 if kh * kw <= 256 else np.int32)
        self.x_shape = x.shape
        if xp is np and self.cpu_kernels:
            from ..kernels.cpu import pooling as kernels

            y = np.empty(x.shape[:2] + self.out_size, dtype=x.dtype)
            self.argmax = np.empty(y.shape, dtype=index_dtype)
            if self._is_2x2():
                kernels.max_pool2d_forward_2x2(np.ascontiguousarray(x), y, self.argmax)
            else:
                kernels.max_pool2d_forward(np.ascontiguousarray(xpad), kh, kw, *self.stride, y, self.argmax)
            return y
        y = argmax = None
        for i in range(kh):
            for j in range(kw):
                v = xpad[(slice(None), slice(None), *_offset_slices(i, j, self.stride, self.out_size))]
                if y is None:
                    y = v.copy()
                    argmax = xp.zeros(y.shape, dtype=index_dtype)
                    continue
                better = v > y  # strict '>': a tie keeps the earlier offset
                better |= v != v  # a NaN wins (and y becomes NaN below), as in PyTorch
                y = xp.maximum(y, v)  # maximum propagates NaN
                # offsets are visited in increasing order, so "argmax = k where better" is a maximum too:
                # branch-free, unlike where() on a random mask
                argmax = xp.maximum(argmax, better * index_dtype.type(i * kw + j))
        self.argmax = argmax
        return y

    def backward(self, g):
        xp = backend.get_array_module(g)
        kh, kw = self.kernel
        (ph, pw), (n, c, h, w) = self.padding, self.x_shape
        if xp is np and self.cpu_kernels and self._is_2x2():
            from ..kernels.cpu import pooling as kernels

            dx = np.empty(self.x_shape, dtype=g.dtype)
            kernels.max_pool2d_backward_2x2(np.ascontiguousarray(g), self.argmax, dx)
            return dx
        dxpad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=g.dtype)
        if xp is np and self.cpu_kernels:
            from ..kernels.cpu import pooling as kernels

            kernels.max_pool2d_backward(np.ascontiguousarray(g), self.argmax, kh, kw, *self.stride, dxpad)
            return _unpad(dxpad, self.x_shape, self.padding)
        for i in range(kh):
            for j in range(kw):
                rows, cols = _offset_slices(i, j, self.stride, self.out_size)
                dxpad[:, :, rows, cols] += g * (self.argmax == i * kw + j)
        return _unpad(dxpad, self.x_shape, self.padding)


def max_pool2d(input, kernel_size, stride=None, padding=0):  # noqa: A002 - torch's argument name
    """Max over kh x kw windows of (N, C, H, W); ``stride`` defaults to ``kernel_size``; implicit -inf padding.

    H_out = (H + 2*padding - kh) // stride + 1 (PyTorch's ceil_mode=False). The gradient goes to the window's
    maximum; among equal maxima, to the first in row-major order, as PyTorch.
    """
    x = _check_input(input, "max_pool2d")
    kernel, stride, padding, out = _window_geometry(x, kernel_size, stride, padding, "max_pool2d")
    return MaxPool2d(kernel, stride, padding, out)(x)


# =================================================================================================================
# avg_pool2d
# =================================================================================================================


class AvgPool2d(Function):
    """y[n, c, p, q] = (sum over the window of xpad) / count[p, q];  each window pixel gets g / count.

    count is kh*kw (count_include_pad=True: zero padding counts) or the number of real pixels in the window,
    count_h[p] * count_w[q] (count_include_pad=False).
    """

    def __init__(self, kernel, stride, padding, out_size, count_include_pad):
        self.kernel, self.stride, self.padding, self.out_size = kernel, stride, padding, out_size
        self.count_include_pad = count_include_pad

    def _inverse_count(self, xp, x_shape, dtype):
        kh, kw = self.kernel
        if self.count_include_pad:
            return dtype.type(1.0 / (kh * kw))
        counts = []
        for size, k, s, p, n_out in zip(x_shape[2:], self.kernel, self.stride, self.padding, self.out_size):
            start = np.arange(n_out) * s - p
            counts.append(np.minimum(start + k, size) - np.maximum(start, 0))
        inv = 1.0 / (counts[0][:, None] * counts[1][None, :])
        return xp.asarray(inv.astype(dtype))

    def forward(self, x):
        xp = backend.get_array_module(x)
        kh, kw = self.kernel
        ph, pw = self.padding
        xpad = pad_zeros(x, (ph, ph), (pw, pw))
        total = None
        for i in range(kh):
            for j in range(kw):
                v = xpad[(slice(None), slice(None), *_offset_slices(i, j, self.stride, self.out_size))]
                total = v.copy() if total is None else total + v
        self.x_shape = x.shape
        return total * self._inverse_count(xp, x.shape, x.dtype)

    def backward(self, g):
        xp = backend.get_array_module(g)
        kh, kw = self.kernel
        (ph, pw), (n, c, h, w) = self.padding, self.x_shape
        share = g * self._inverse_count(xp, self.x_shape, g.dtype)
        dxpad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=g.dtype)
        for i in range(kh):
            for j in range(kw):
                rows, cols = _offset_slices(i, j, self.stride, self.out_size)
                dxpad[:, :, rows, cols] += share
        return _unpad(dxpad, self.x_shape, self.padding)


def avg_pool2d(input, kernel_size, stride=None, padding=0, count_include_pad: bool = True):  # noqa: A002
    """Mean over kh x kw windows of (N, C, H, W); ``stride`` defaults to ``kernel_size``; zero padding.

    With ``count_include_pad=True`` (PyTorch's default) every window divides by kh*kw, padding included;
    with False, by the number of real input pixels it covers. Floor mode (ceil_mode=False).
    """
    x = _check_input(input, "avg_pool2d")
    kernel, stride, padding, out = _window_geometry(x, kernel_size, stride, padding, "avg_pool2d")
    return AvgPool2d(kernel, stride, padding, out, bool(count_include_pad))(x)


# =================================================================================================================
# adaptive_avg_pool2d, global_avg_pool2d
# =================================================================================================================


def adaptive_pool_matrix(size: int, out: int, dtype) -> np.ndarray:
    """P (out, size) with P[a, h] = 1/(end_a - start_a) for start_a <= h < end_a, PyTorch's bins:
    start_a = floor(a*size/out), end_a = ceil((a+1)*size/out)."""
    p = np.zeros((out, size), dtype=dtype)
    for a in range(out):
        start, end = (a * size) // out, -((-(a + 1) * size) // out)
        p[a, start:end] = 1.0 / (end - start)
    return p


def _separable(x, a_h, a_w):
    """z[n, c, a, b] = sum_{h, w} a_h[a, h] * a_w[b, w] * x[n, c, h, w], as two 2-D matrix products."""
    xp = backend.get_array_module(x)
    n, c, h, w = x.shape
    rows, cols = a_h.shape[0], a_w.shape[0]
    t = (x.reshape(-1, w) @ a_w.T).reshape(n * c, h, cols)  # contract w
    t = xp.ascontiguousarray(t.transpose(0, 2, 1)).reshape(-1, h) @ a_h.T  # contract h -> (n*c*cols, rows)
    return xp.ascontiguousarray(t.reshape(n, c, cols, rows).transpose(0, 1, 3, 2))


class AdaptiveAvgPool2d(Function):
    """y = P_h x P_w^T per (n, c) plane;  dx = P_h^T g P_w (see :func:`adaptive_pool_matrix`)."""

    def __init__(self, out_size):
        self.out_size = out_size

    def _matrices(self, xp, shape, dtype):
        return tuple(xp.asarray(adaptive_pool_matrix(s, o, dtype)) for s, o in zip(shape[2:], self.out_size))

    def forward(self, x):
        self.x_shape = x.shape
        p_h, p_w = self._matrices(backend.get_array_module(x), x.shape, x.dtype)
        return _separable(x, p_h, p_w)

    def backward(self, g):
        p_h, p_w = self._matrices(backend.get_array_module(g), self.x_shape, g.dtype)
        return _separable(g, p_h.T, p_w.T)


def adaptive_avg_pool2d(input, output_size):  # noqa: A002 - torch's argument name
    """Average-pool (N, C, H, W) to (N, C, *output_size) with PyTorch's bins; ``output_size`` is an int or a
    pair whose entries may be None (keep that input size)."""
    op = "adaptive_avg_pool2d"
    x = _check_input(input, op)
    sizes = (output_size, output_size) if isinstance(output_size, numbers.Integral) or output_size is None \
        else output_size
    if not isinstance(sizes, (tuple, list)) or len(sizes) != 2:
        raise TypeError(f"{op}: output_size must be an int or a pair of ints/None; got {output_size!r}")
    out = []
    for s, size in zip(sizes, x.shape[2:]):
        if s is None:
            s = size
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
            raise ValueError(f"{op}: output_size entries must be positive ints (or None); got {output_size!r}")
        out.append(int(s))
    if 0 in x.shape[2:]:
        raise ValueError(f"{op}: input must have non-empty spatial dims; got {x.shape}")
    return AdaptiveAvgPool2d(tuple(out))(x)


class GlobalAvgPool2d(Function):
    """y[n, c, 0, 0] = mean_{h, w} x[n, c, h, w];  dx = g / (H*W) at every pixel."""

    def forward(self, x):
        self.x_shape = x.shape
        n, c, h, w = x.shape
        return x.reshape(n, c, h * w).mean(axis=2).reshape(n, c, 1, 1)  # h * w, not -1: N or C may be 0

    def backward(self, g):
        xp = backend.get_array_module(g)
        h, w = self.x_shape[2:]
        return xp.broadcast_to(g / (h * w), self.x_shape).copy()


def global_avg_pool2d(input):  # noqa: A002
    """Mean over H and W: (N, C, H, W) -> (N, C, 1, 1) (adaptive_avg_pool2d(x, 1), in one reduction)."""
    x = _check_input(input, "global_avg_pool2d")
    if 0 in x.shape[2:]:
        raise ValueError(f"global_avg_pool2d: input must have non-empty spatial dims; got {x.shape}")
    return GlobalAvgPool2d()(x)
