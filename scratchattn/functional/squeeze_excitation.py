"""Squeeze-and-excitation as one fused op with a hand-derived backward, and its primitive twin.

``squeeze_excitation(x, w1, b1, w2, b2)`` rescales every channel of ``x`` by a gate computed from the whole
feature map (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018):

    z  = mean over H, W of x              (N, C)     squeeze
    a1 = z W1^T + b1,   r1 = relu(a1)     (N, C_r)   excitation, first layer
    a2 = r1 W2^T + b2,  s = sigmoid(a2)   (N, C)     excitation, second layer
    y  = x * s[:, :, None, None]          (N, C, H, W)

The fused op touches the big tensors four times in all (two passes forward, two backward, through the Numba or
CUDA kernel pair in ``kernels/*/squeeze_excitation.*``) and never writes a full-size intermediate. The whole forward
is one call to the pair's ``se_forward``: the excitation's two small matrix products run in kernels of the pair too
(``se_hidden``, ``se_gate``), since on a GPU each extra array operation costs a launch; on the CPU the Numba kernel
works one sample at a time so that the second read of x hits the cache. The backward's small matrix products go
through ``xp.matmul``. ``squeeze_excitation_simple`` builds the same block from generic ops (mean, linear, relu,
sigmoid, broadcasting multiply); the tests check the fused backward against it and against numerical gradients,
and the benchmarks time one against the other.

The derivation of the backward is in ``docs/derivations.md``, section "Squeeze-and-excitation".
"""

from __future__ import annotations

import functools
import math

from .. import backend
from ..autograd import Function, as_tensor

LAYOUTS = ("NCHW", "NHWC")


def _kernel_module(path: str):
    """The module holding the kernels of ``path``: the Numba one, or the CUDA launchers (both CUDA paths)."""
    if path == "numba":
        from ..kernels.cpu import squeeze_excitation as kernels
    else:
        from ..kernels.cuda import squeeze_excitation as kernels
    return kernels


def _call_serially(kernels, kernel, *arrays):
    # Small arrays: one thread is as fast, and immune to waiting for a descheduled second thread.
    with kernels.single_thread():
        kernel(*arrays)


def _contiguous(a, xp):
    # The kernels take C-contiguous arrays; a weight is one unless the caller passed a view (checked cheaply, since on
    # a GPU every call into CuPy costs host time).
    return a if a.flags.c_contiguous else xp.ascontiguousarray(a)


class SqueezeExcitation(Function):
    """The fused SE op. Inputs ``(x, w1, [b1], w2, [b2])`` (a bias is left out when None); outputs ``(y, s)``.

    Shapes: x (N, C, H, W) for layout "NCHW" or (N, H, W, C) for "NHWC"; w1 (C_r, C); b1 (C_r,); w2 (C, C_r);
    b2 (C,); y like x; s (N, C) the excitations. The forward is the kernel se_forward (se_squeeze, se_hidden,
    se_gate and se_scale of the module docstring's formulas; sigmoid written as (1 + tanh(a/2)) / 2, which cannot
    overflow). With g = dL/dy, g_s = dL/ds (zero unless s is used), HW = H W
    and sums over p running over the H W pixels, the backward is:

        ds  = sum_p g * x + g_s            (N, C)     kernel se_backward_reduce, one pass over g and x
        da2 = ds * s * (1 - s)             (N, C)     sigmoid' = s (1 - s)
        dW2 = da2^T r1,   db2 = sum_n da2
        da1 = (da2 W2) * [a1 > 0]          (N, C_r)   relu' ([a1 > 0] = [r1 > 0])
        dW1 = da1^T z,    db1 = sum_n da1
        dz  = da1 W1                       (N, C)
        dx  = g * s + dz / HW              (N, C, H, W) kernel se_backward_input, one pass over g

    Saved for backward: x (a reference, not a copy), w1, w2, z, r1 and s: the only (N, C)-sized or larger things
    the formulas read. a1's sign is read from r1; a2 is not needed because sigmoid' is written with s.

    Why two passes over g: dx needs dz, dz needs ds, and ds is a sum over every pixel of g * x. So g must be read
    once to finish ds before any element of dx can be written. A single pass would have to hold each sample's g in
    cache between the two uses; the kernels keep to two simple passes, and the matrix products between them run
    once for the whole batch through xp.matmul.
    """

    def __init__(self, layout: str, has_b1: bool, has_b2: bool):
        self.layout = layout
        self.has_b1, self.has_b2 = has_b1, has_b2

    # -- kernels, chosen once in forward --------------------------------------------------------------------------
    def _kernel(self, name: str):
        kernel = getattr(self.kernels, f"{name}_{self.layout.lower()}")
        if self.path != "numba":
            return functools.partial(kernel, target=self.path)
        if math.prod(self.shape) < self.kernels.SERIAL_BELOW:
            return functools.partial(_call_serially, self.kernels, kernel)
        return kernel

    def _big_view(self, a):
        """``a`` as the 3-D view the kernels take: (N, C, HW) for NCHW, (N, HW, C) for NHWC."""
        n, d1, d2, d3 = self.shape
        return a.reshape((n, d1, d2 * d3) if self.layout == "NCHW" else (n, d1 * d2, d3))

    def forward(self, x, w1, *rest):
        xp = backend.get_array_module(x)
        rest = list(rest)
        b1 = rest.pop(0) if self.has_b1 else None
        w2 = rest.pop(0)
        b2 = rest.pop(0) if self.has_b2 else None

        self.path = backend.kernel_path(x)
        self.kernels = _kernel_module(self.path)
        x = xp.ascontiguousarray(x)
        self.shape = x.shape
        n, channels = x.shape[0], w1.shape[1]
        self.hw = x.shape[2] * x.shape[3] if self.layout == "NCHW" else x.shape[1] * x.shape[2]

        w1, w2 = _contiguous(w1, xp), _contiguous(w2, xp)
        # A missing bias: the kernels get a flag and a one-element placeholder they never read.
        b1 = xp.empty(1, dtype=x.dtype) if b1 is None else _contiguous(b1, xp)
        b2 = xp.empty(1, dtype=x.dtype) if b2 is None else _contiguous(b2, xp)

        z = xp.empty((n, channels), dtype=x.dtype)
        r1 = xp.empty((n, w1.shape[0]), dtype=x.dtype)
        s = xp.empty((n, channels), dtype=x.dtype)
        y = xp.empty_like(x)
        self._kernel("se_forward")(self._big_view(x), w1, b1, w2, b2, z, r1, s, self._big_view(y), self.has_b1,
                                   self.has_b2)

        self.save_for_backward(x, w1, w2, z, r1, s)
        return y, s

    def backward(self, g, g_s):
        x, w1, w2, z, r1, s = self.saved_arrays
        xp = backend.get_array_module(g)
        g = xp.ascontiguousarray(g)

        ds = xp.empty_like(s)
        self._kernel("se_backward_reduce")(self._big_view(g), self._big_view(x), ds)
        ds += g_s
        da2 = ds * s * (1 - s)
        da1 = (da2 @ w2) * (r1 > 0)

        need = iter(self.needs_input_grad)
        need_x, need_w1 = next(need), next(need)
        need_b1 = next(need) if self.has_b1 else False
        need_w2 = next(need)
        need_b2 = next(need) if self.has_b2 else False

        dx = None
        if need_x:
            dz_hw = xp.ascontiguousarray((da1 @ w1) / self.hw)
            dx = xp.empty_like(g)
            self._kernel("se_backward_input")(self._big_view(g), s, dz_hw, self._big_view(dx))
        grads = [dx, da1.T @ z if need_w1 else None]
        if self.has_b1:
            grads.append(da1.sum(axis=0) if need_b1 else None)
        grads.append(da2.T @ r1 if need_w2 else None)
        if self.has_b2:
            grads.append(da2.sum(axis=0) if need_b2 else None)
        return tuple(grads)


# =================================================================================================================
# validation
# =================================================================================================================


def _check_param(name, t, shape, x):
    if t.dtype != x.dtype:
        raise TypeError(f"squeeze_excitation: {name} must have x's dtype {x.dtype}; got {t.dtype}")
    if t.device != x.device:
        raise ValueError(f"squeeze_excitation: {name} must be on x's device {x.device!r}; got {t.device!r}")
    if t.shape != shape:
        raise ValueError(f"squeeze_excitation: {name} must have shape {shape}; got {t.shape}")


def _validate(x, w1, b1, w2, b2, layout):
    """Tensors for every non-None argument, after checking shapes, dtypes, devices and the layout."""
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise ValueError(f"squeeze_excitation: layout must be one of {LAYOUTS}; got {layout!r}")
    x, w1, w2 = as_tensor(x), as_tensor(w1), as_tensor(w2)
    b1 = None if b1 is None else as_tensor(b1)
    b2 = None if b2 is None else as_tensor(b2)
    if x.dtype not in backend.FLOAT_DTYPES:
        raise TypeError(f"squeeze_excitation: x must be float32 or float64; got {x.dtype}")
    if x.ndim != 4:
        axes = "(N, C, H, W)" if layout == "NCHW" else "(N, H, W, C)"
        raise ValueError(f"squeeze_excitation: x must be 4-D {axes} for layout {layout!r}; got shape {x.shape}")
    channels = x.shape[1] if layout == "NCHW" else x.shape[3]
    hw = x.shape[2] * x.shape[3] if layout == "NCHW" else x.shape[1] * x.shape[2]
    if channels == 0 or hw == 0:
        raise ValueError(f"squeeze_excitation: x needs at least one channel and one pixel; got shape {x.shape}")
    if w1.ndim != 2 or w1.shape[0] == 0:
        raise ValueError(f"squeeze_excitation: w1 must be 2-D (C_r, C) with C_r >= 1; got shape {w1.shape}")
    hidden = w1.shape[0]
    _check_param("w1", w1, (hidden, channels), x)
    _check_param("w2", w2, (channels, hidden), x)
    if b1 is not None:
        _check_param("b1", b1, (hidden,), x)
    if b2 is not None:
        _check_param("b2", b2, (channels,), x)
    return x, w1, b1, w2, b2


# =================================================================================================================
# squeeze_excitation (fused) and squeeze_excitation_simple (primitive twin)
# =================================================================================================================


def squeeze_excitation(x, w1, b1, w2, b2, layout: str = "NCHW", return_excitation: bool = False):
    """Fused squeeze-and-excitation: ``y = x * sigmoid(relu(mean_hw(x) W1^T + b1) W2^T + b2)`` per channel.

    Args:
        x: (N, C, H, W), or (N, H, W, C) with ``layout="NHWC"``; float32 or float64.
        w1: (C_r, C), the first excitation layer in (out, in) convention (as ``nn.Linear.weight``).
        b1: (C_r,) or None.
        w2: (C, C_r).
        b2: (C,) or None.
        layout: "NCHW" or "NHWC"; y has x's shape and layout.
        return_excitation: also return the gates s (N, C) (a differentiable output).

    Returns:
        y, or (y, s) with ``return_excitation=True``.

    Example::

        x = sa.tensor(np.random.rand(2, 8, 5, 5), requires_grad=True)
        y = F.squeeze_excitation(x, w1, b1, w2, b2)      # w1 (2, 8), w2 (8, 2)
    """
    x, w1, b1, w2, b2 = _validate(x, w1, b1, w2, b2, layout)
    inputs = [x, w1] + ([b1] if b1 is not None else []) + [w2] + ([b2] if b2 is not None else [])
    y, s = SqueezeExcitation(layout, b1 is not None, b2 is not None)(*inputs)
    return (y, s) if return_excitation else y


def squeeze_excitation_simple(x, w1, b1, w2, b2, layout: str = "NCHW", return_excitation: bool = False):
    """The same block as :func:`squeeze_excitation`, built from generic differentiable ops (style rule 5).

    Every intermediate is a Tensor recorded by autograd, so its backward is the chain of the generic ops'
    backwards: a reference for the fused op in the tests and the baseline it is timed against.
    """
    from .. import functional as F  # the generic ops live in sibling modules, looked up at call time

    x, w1, b1, w2, b2 = _validate(x, w1, b1, w2, b2, layout)
    spatial = (2, 3) if layout == "NCHW" else (1, 2)
    z = F.mean(x, dim=spatial)
    s = F.sigmoid(F.linear(F.relu(F.linear(z, w1, b1)), w2, b2))
    n, channels = s.shape
    gate = F.reshape(s, (n, channels, 1, 1) if layout == "NCHW" else (n, 1, 1, channels))
    y = x * gate
    return (y, s) if return_excitation else y


__all__ = ["LAYOUTS", "SqueezeExcitation", "squeeze_excitation", "squeeze_excitation_simple"]
