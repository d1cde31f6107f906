"""``conv2d`` through im2col and a single matrix product, with its backward through the same product and col2im.

Convolution (really cross-correlation, as in every framework) of x (N, C, H, W) with W (O, C/groups, kh, kw):

    y[n, o, p, q] = b[o] + sum_{c in group(o), i, j} W[o, c, i, j] * xpad[n, c, p*sh + i*dh, q*sw + j*dw]

im2col lays every receptive field out as a column: cols[(c, i, j), (n, p, q)] = xpad[n, c, p*sh + i*dh, ...].
It is one copy out of a strided *view* of the padded input (``as_strided``: no Python loop, and it works the
same on NumPy and CuPy), after which the whole convolution is the product W (O, C*kh*kw) @ cols (C*kh*kw, N*L),
L = H_out*W_out: one BLAS sgemm/dgemm per group. The backward is two more products,

    dW = dY cols^T,        dcols = W^T dY,

and col2im, the adjoint of im2col, which adds each column entry back to the pixel it was copied from: a loop over
the kh*kw kernel offsets, each adding one strided slice of the whole batch at once (overlapping windows
accumulate because the offsets are added one after another). Derivation: docs/derivations.md, "Generic ops".

On the CPU, col2im runs a Numba kernel (``kernels/cpu/im2col.py``) that makes the same additions as plain loops,
1.5 to 3 times faster than the vectorised version here (measured there); the version here is the reference
and the CuPy path. The products themselves are BLAS calls and take most of the time (three products of equal size
per layer), so the code around them avoids extra passes: the bias is added while the output is transposed into
place, and the output gradient is transposed once for both backward products.

A direct nested-loop convolution, for reading and as the reference, is in tests/functional/test_conv.py.
"""

from __future__ import annotations

import numbers
import threading

import numpy as np

from .. import backend
from ..autograd import Function
from ..autograd.tensor import as_tensor


def as_pair(value, name: str, op: str, minimum: int = 0) -> tuple[int, int]:
    """An int or a pair of ints as a (height, width) pair, each checked to be >= ``minimum``."""
    pair = (value, value) if isinstance(value, numbers.Integral) else value
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in pair)
    ):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints; got {value!r}")
    if any(v < minimum for v in pair):
        raise ValueError(f"{op}: {name} must be >= {minimum}; got {value!r}")
    return int(pair[0]), int(pair[1])


def pad_zeros(x, pad_h: tuple[int, int], pad_w: tuple[int, int], value=0):
    """x (N, C, H, W) with (top, bottom) rows and (left, right) columns of ``value`` added; x itself if none."""
    if pad_h == (0, 0) and pad_w == (0, 0):
        return x
    xp = backend.get_array_module(x)
    n, c, h, w = x.shape
    out = xp.full((n, c, h + sum(pad_h), w + sum(pad_w)), value, dtype=x.dtype)
    out[:, :, pad_h[0] : pad_h[0] + h, pad_w[0] : pad_w[0] + w] = x
    return out


def im2col(x, kernel, stride, pad_h, pad_w, dilation, out_size, out=None):
    """Receptive fields of x (N, C, H, W) as columns: (C*kh*kw, N*h_out*w_out), C-contiguous.

    cols[(c, i, j), (n, p, q)] = xpad[n, c, p*sh + i*dh, q*sw + j*dw]. The strided view has the axes in the
    order of the result, so the copy is a single ``ascontiguousarray`` whose inner loop runs along q. ``out``:
    an optional C-contiguous array of the result's shape and x's dtype to copy into.
    """
    xp = backend.get_array_module(x)
    (kh, kw), (sh, sw), (dh, dw), (h_out, w_out) = kernel, stride, dilation, out_size
    xpad = pad_zeros(x, pad_h, pad_w)
    n, c = x.shape[:2]
    s_n, s_c, s_h, s_w = xpad.strides
    windows = xp.lib.stride_tricks.as_strided(
        xpad,
        shape=(c, kh, kw, n, h_out, w_out),
        strides=(s_c, s_h * dh, s_w * dw, s_n, s_h * sh, s_w * sw),
    )
    if out is None:
        return xp.ascontiguousarray(windows).reshape(c * kh * kw, n * h_out * w_out)
    out.reshape(c, kh, kw, n, h_out, w_out)[...] = windows
    return out


def col2im(dcols, x_shape, kernel, stride, pad_h, pad_w, dilation, out_size):
    """The adjoint of :func:`im2col`: dcols (C*kh*kw, N*h_out*w_out) -> dx (N, C, H, W).

    Every column entry is added to the input pixel it was read from. One iteration per kernel offset (i, j)
    adds the slice of all (n, c, p, q) for that offset; within one offset no two (p, q) hit the same pixel, so the
    vectorised ``+=`` is exact, and offsets that share pixels (overlapping windows) add up across iterations.
    This is the reference (and the CuPy path); :func:`col2im_fast` picks the Numba kernel for NumPy arrays.
    """
    xp = backend.get_array_module(dcols)
    (kh, kw), (sh, sw), (dh, dw), (h_out, w_out) = kernel, stride, dilation, out_size
    n, c, h, w = x_shape
    # Accumulate channel-major, (C, N, H, W), the order of dcols' own axes: each offset's block d6[:, i, j] is
    # then read contiguously (about 20% faster than adding transposed views), and one transpose ends it.
    dxpad = xp.zeros((c, n, h + sum(pad_h), w + sum(pad_w)), dtype=dcols.dtype)
    d6 = dcols.reshape(c, kh, kw, n, h_out, w_out)
    for i in range(kh):
        for j in range(kw):
            h0, w0 = i * dh, j * dw
            rows = slice(h0, h0 + sh * (h_out - 1) + 1, sh)
            cols = slice(w0, w0 + sw * (w_out - 1) + 1, sw)
            dxpad[:, :, rows, cols] += d6[:, i, j]
    dx = dxpad[:, :, pad_h[0] : pad_h[0] + h, pad_w[0] : pad_w[0] + w]
    return xp.ascontiguousarray(dx.transpose(1, 0, 2, 3))


def col2im_fast(dcols, x_shape, kernel, stride, pad_h, pad_w, dilation, out_size):
    """:func:`col2im` through the Numba kernel for NumPy arrays (same result, bit for bit); the xp one otherwise."""
    if backend.get_array_module(dcols) is not np:
        return col2im(dcols, x_shape, kernel, stride, pad_h, pad_w, dilation, out_size)
    from ..kernels.cpu import im2col as kernels  # Numba compiles (or loads its cache) on first use only

    (kh, kw), (sh, sw), (dh, dw), (h_out, w_out) = kernel, stride, dilation, out_size
    n, c, h, w = x_shape
    dxpad = np.zeros((n, c, h + sum(pad_h), w + sum(pad_w)), dtype=dcols.dtype)
    kernels.col2im(np.ascontiguousarray(dcols), kh, kw, sh, sw, dh, dw, h_out, w_out, dxpad)
    if pad_h == (0, 0) and pad_w == (0, 0):
        return dxpad
    return np.ascontiguousarray(dxpad[:, :, pad_h[0] : pad_h[0] + h, pad_w[0] : pad_w[0] + w])


class Workspace:
    """Spare NumPy buffers for a convolution's big matrices, handed back when an op is done with them.

    A fresh 46 MB array costs about 2.5 ms of page faults before it is useful (the operating system zeroes each
    page on first touch), more than copying it. A training step allocates the same few shapes every time
    (cols and dcols, C*kh*kw x N*L, and the output-sized products), so ``Conv2d`` gives those arrays back here
    once nothing can read them any more, and takes them from here on the next step. At most ``per_shape`` arrays
    per (shape, dtype) and ``max_bytes`` in all are kept; anything beyond is simply freed. Only NumPy arrays that
    own their memory are kept (CuPy has its own memory pool).
    """

    def __init__(self, max_bytes: int = 256 << 20, per_shape: int = 2):
        self.max_bytes, self.per_shape = max_bytes, per_shape
        self.spare: dict[tuple, list] = {}
        self.bytes = 0
        self.lock = threading.Lock()

    def take(self, shape, dtype) -> np.ndarray:
        """A C-contiguous array of ``shape`` and ``dtype`` with arbitrary contents (a spare one if there is one)."""
        key = (tuple(shape), np.dtype(dtype))
        with self.lock:
            stack = self.spare.get(key)
            if stack:
                array = stack.pop()
                self.bytes -= array.nbytes
                return array
        return np.empty(shape, dtype=dtype)

    def give(self, array) -> None:
        """Keep ``array`` for a later :meth:`take`. The caller promises that nothing reads or writes it any more."""
        if not isinstance(array, np.ndarray) or array.base is not None or not array.flags.c_contiguous:
            return
        key = (array.shape, array.dtype)
        with self.lock:
            stack = self.spare.setdefault(key, [])
            if array.nbytes and len(stack) < self.per_shape and self.bytes + array.nbytes <= self.max_bytes:
                stack.append(array)
                self.bytes += array.nbytes

    def clear(self) -> None:
        with self.lock:
            self.spare.clear()
            self.bytes = 0


WORKSPACE = Workspace()


class Conv2d(Function):
    """y = conv(x, W) + b; see the module docstring. x (N, C, H, W), W (O, C/groups, kh, kw), b (O,).

    Per group (channels and output channels split into ``groups`` equal blocks), with G the output gradient
    laid out as (O, N*L):  dW = G cols^T,  dcols = W^T G -> col2im -> dx,  db = sum of G over (n, p, q).
    Saves cols (for dW) and W (for dx). On the CPU the big scratch matrices come from and go back to
    :data:`WORKSPACE` (see :class:`Workspace`).
    """

    # NumPy input runs col2im through the Numba kernel; False runs the xp reference (the tests compare the two).
    cpu_kernels = True

    def __init__(self, stride, pad_h, pad_w, dilation, groups):
        self.stride, self.pad_h, self.pad_w, self.dilation, self.groups = stride, pad_h, pad_w, dilation, groups

    def _geometry(self, x_shape, w_shape):
        kernel = w_shape[2:]
        out = []
        for size, pad, k, s, d in zip(x_shape[2:], (self.pad_h, self.pad_w), kernel, self.stride, self.dilation):
            out.append((size + sum(pad) - d * (k - 1) - 1) // s + 1)
        return kernel, tuple(out)

    def _scratch(self, xp, shape, dtype):
        """A workspace array on the CPU fast path; None elsewhere, meaning "allocate" (CuPy pools memory itself)."""
        return WORKSPACE.take(shape, dtype) if xp is np and self.cpu_kernels else None

    def _done_with(self, xp, array):
        if array is not None and xp is np and self.cpu_kernels:
            WORKSPACE.give(array)

    def forward(self, x, weight, bias=None):
        xp = backend.get_array_module(x)
        n, c = x.shape[:2]
        o = weight.shape[0]
        og = o // self.groups
        kernel, out_size = self._geometry(x.shape, weight.shape)
        n_l = n * out_size[0] * out_size[1]
        cols_buffer = self._scratch(xp, (c * kernel[0] * kernel[1], n_l), x.dtype)
        cols = im2col(x, kernel, self.stride, self.pad_h, self.pad_w, self.dilation, out_size, out=cols_buffer)
        cols3 = cols.reshape(self.groups, cols.shape[0] // self.groups, n_l)  # (groups, C/groups*kh*kw, N*L)
        w3 = weight.reshape(self.groups, og, -1)
        y_buffer = self._scratch(xp, (o, n_l), x.dtype)
        if self.groups == 1:  # a plain 2-D product: exactly one BLAS call
            y_onl = _matmul(w3[0], cols3[0], y_buffer)
        else:
            y_onl = _matmul(w3, cols3, None if y_buffer is None else y_buffer.reshape(self.groups, og, n_l))
        # (O, N*L) -> (O, N, h_out, w_out) -> (N, O, h_out, w_out); the bias is added during the transposing copy,
        # which saves a pass over the output.
        y_view = y_onl.reshape(o, n, *out_size).transpose(1, 0, 2, 3)
        y = xp.empty((n, o, *out_size), dtype=x.dtype)
        if bias is None:
            y[...] = y_view
        else:
            xp.add(y_view, bias.reshape(1, o, 1, 1), out=y)
        self._done_with(xp, y_buffer)
        self.save_for_backward(cols, weight)
        self.x_shape = x.shape
        return y

    def release(self):
        # The engine calls this once no backward can run through the op again: cols can go back to the workspace.
        saved = getattr(self, "saved_arrays", None)
        if saved is not None:
            self._done_with(backend.get_array_module(saved[0]), saved[0])
        super().release()

    def backward(self, g):
        cols, weight = self.saved_arrays
        xp = backend.get_array_module(g)
        n, o = g.shape[:2]
        og = o // self.groups
        kernel, out_size = self._geometry(self.x_shape, weight.shape)
        # G laid out as (groups, O/groups, N*L), matching the forward product.
        n_l = n * g.shape[2] * g.shape[3]  # explicit, not -1: N may be 0
        g_buffer = self._scratch(xp, (o, n_l), g.dtype)
        if g_buffer is None:
            g_onl = xp.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(o, n_l)
        else:
            g_buffer.reshape(o, n, *out_size)[...] = g.transpose(1, 0, 2, 3)
            g_onl = g_buffer
        g3 = g_onl.reshape(self.groups, og, n_l)
        cols3 = cols.reshape(self.groups, cols.shape[0] // self.groups, n_l)
        needs = self.needs_input_grad
        dx = dw = db = None
        if needs[0]:
            w3 = weight.reshape(self.groups, og, -1)
            dcols_buffer = self._scratch(xp, cols.shape, g.dtype)
            if self.groups == 1:
                dcols = _matmul(w3[0].T, g3[0], dcols_buffer)
            else:
                out = None if dcols_buffer is None else dcols_buffer.reshape(cols3.shape)
                dcols = _matmul(w3.transpose(0, 2, 1), g3, out).reshape(cols.shape)
            scatter = col2im_fast if self.cpu_kernels else col2im
            dx = scatter(dcols, self.x_shape, kernel, self.stride, self.pad_h, self.pad_w, self.dilation, out_size)
            self._done_with(xp, dcols_buffer)
        if needs[1]:
            if self.groups == 1:
                dw = (g3[0] @ cols3[0].T).reshape(weight.shape)
            else:
                dw = (g3 @ cols3.transpose(0, 2, 1)).reshape(weight.shape)
        if len(needs) > 2 and needs[2]:
            db = g3.sum(axis=2).reshape(o)
        self._done_with(xp, g_buffer)
        return (dx, dw) if len(needs) == 2 else (dx, dw, db)


def _matmul(a, b, out):
    """a @ b (2-D, or batched over a leading axis), written into ``out`` when one is given."""
    return a @ b if out is None else np.matmul(a, b, out=out)


def _conv_padding(padding, kernel, dilation):
    """``padding`` (int, pair, "valid" or "same") as ((top, bottom), (left, right))."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        # Total d*(k-1) per axis; the odd pixel goes to the bottom/right, as PyTorch does for even kernels.
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    ph, pw = as_pair(padding, "padding", "conv2d", minimum=0)
    return (ph, ph), (pw, pw)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1):  # noqa: A002
    """2-D convolution (cross-correlation), as ``torch.nn.functional.conv2d``.

    input (N, C, H, W), weight (O, C/groups, kh, kw), bias (O,) or None -> (N, O, H_out, W_out) with
    H_out = (H + pad_top + pad_bottom - dilation*(kh-1) - 1) // stride + 1 (and likewise W_out).
    ``stride``, ``dilation``: int or pair; ``padding``: int, pair, "valid" or "same" (stride 1 only).
    """
    op = "conv2d"
    x, w = as_tensor(input), as_tensor(weight)
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: input must be floating point; got dtype {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"{op}: input must have shape (N, C, H, W); got {x.shape}")
    if w.ndim != 4:
        raise ValueError(f"{op}: weight must have shape (out_channels, in_channels/groups, kh, kw); got {w.shape}")
    if w.dtype != x.dtype:
        raise TypeError(f"{op}: weight dtype {w.dtype} differs from input dtype {x.dtype}")
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int; got {groups!r}")
    n, c, h, wid = x.shape
    o, cg, kh, kw = w.shape
    if c % groups or o % groups:
        raise ValueError(f"{op}: in_channels {c} and out_channels {o} must both be divisible by groups {groups}")
    if cg != c // groups:
        raise ValueError(f"{op}: weight has {cg} input channels per group; input has {c} channels in {groups} "
                         f"group(s), so weight.shape[1] must be {c // groups}")
    if kh < 1 or kw < 1:
        raise ValueError(f"{op}: kernel size must be at least 1x1; weight shape {w.shape}")
    stride = as_pair(stride, "stride", op, minimum=1)
    dilation = as_pair(dilation, "dilation", op, minimum=1)
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            raise ValueError(f"{op}: padding string must be 'valid' or 'same'; got {padding!r}")
        if padding == "same" and stride != (1, 1):
            raise ValueError(f"{op}: padding='same' needs stride 1; got stride {stride}")
    pad_h, pad_w = _conv_padding(padding, (kh, kw), dilation)
    for axis, size, pad, k, d in (("height", h, pad_h, kh, dilation[0]), ("width", wid, pad_w, kw, dilation[1])):
        if size + sum(pad) < d * (k - 1) + 1:
            raise ValueError(f"{op}: the dilated kernel ({d * (k - 1) + 1}) is larger than the padded input "
                             f"{axis} ({size + sum(pad)}); input {x.shape}, weight {w.shape}")
    fn = Conv2d(stride, pad_h, pad_w, dilation, int(groups))
    if bias is None:
        return fn(x, w)
    b = as_tensor(bias)
    if b.shape != (o,):
        raise ValueError(f"{op}: bias must have shape ({o},); got {b.shape}")
    if b.dtype != x.dtype:
        raise TypeError(f"{op}: bias dtype {b.dtype} differs from input dtype {x.dtype}")
    return fn(x, w, b)
