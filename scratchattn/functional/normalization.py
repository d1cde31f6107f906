"""Normalisation ops, one banner section each: batch_norm here (further normalisations go in sections below).

Batch normalisation follows PyTorch exactly: in training it normalises each channel with the mean and the
*biased* variance of the batch, and blends the batch mean and the *unbiased* variance into the running
statistics, in place, on the arrays the caller passed; in evaluation it normalises with the running statistics.
The training backward is the classic one where every output depends on every input of its channel through the
batch mean and variance; its derivation is in docs/derivations.md, section "Generic ops" (batch normalisation).

On the CPU the big passes run as Numba kernels (``kernels/cpu/normalization.py``): two passes over the data in
each direction instead of about five; the xp code here is the reference and the CuPy path. Measured forward +
backward in training, float32, one thread, as a ratio to PyTorch in the same run: (64, 32, 38, 38) xp 1.1-1.5,
Numba 0.5; (32, 256, 28, 28) xp 1.1-1.4, Numba 0.5-0.65.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from ..autograd import Function
from ..autograd.tensor import Tensor, as_tensor

# =================================================================================================================
# batch_norm
# =================================================================================================================


class BatchNorm(Function):
    """y = w * x_hat + b with x_hat = (x - mu) / sqrt(var + eps), per channel (axis 1) of x (N, C, *spatial).

    Training (mu, var: batch mean and biased variance over the m = N * prod(spatial) values of a channel):

        dx = (w / sigma) * (g - mean(g) - x_hat * mean(g * x_hat)),   sigma = sqrt(var + eps)

    Evaluation (mu, var: the running statistics, constants): dx = (w / sigma) * g.
    Both: dw = sum(g * x_hat), db = sum(g) over every axis but the channel axis.
    Saves the batch or running mean and 1/sigma per channel; x itself is kept by the graph anyway.
    """

    # NumPy input runs the Numba kernels; False runs the xp code below on NumPy too (the tests compare the two).
    cpu_kernels = True

    def __init__(self, running_mean, running_var, training, momentum, eps, has_weight, has_bias):
        self.running_mean, self.running_var = running_mean, running_var
        self.training, self.momentum, self.eps = training, momentum, eps
        self.has_weight, self.has_bias = has_weight, has_bias

    def _use_kernels(self, x):
        return self.cpu_kernels and backend.get_array_module(x) is np and x.size > 0

    def _update_running(self, mean, var, m):
        """r <- (1 - momentum) r + momentum * batch statistic (the unbiased variance), in place."""
        if self.running_mean is None:
            return
        self.running_mean *= 1 - self.momentum
        self.running_mean += (self.momentum * mean).astype(self.running_mean.dtype, copy=False)
        self.running_var *= 1 - self.momentum
        self.running_var += (self.momentum * var * (m / (m - 1))).astype(self.running_var.dtype, copy=False)

    def forward(self, x, *affine):
        xp = backend.get_array_module(x)
        axes = (0,) + tuple(range(2, x.ndim))
        per_channel = (1, x.shape[1]) + (1,) * (x.ndim - 2)  # broadcasts a (C,) vector against x
        weight = affine[0] if self.has_weight else None
        bias = affine[-1] if self.has_bias else None
        if self._use_kernels(x):
            return self._forward_kernels(x, weight, bias)

        if self.training:
            mean = x.mean(axis=axes)
            centered = x - mean.reshape(per_channel)
            var = (centered * centered).mean(axis=axes)  # biased: divides by m
            self._update_running(mean, var, x.size // x.shape[1])
        else:
            mean = self.running_mean.astype(x.dtype, copy=False)
            var = self.running_var.astype(x.dtype, copy=False)
            centered = x - mean.reshape(per_channel)
        inv_std = (1 / xp.sqrt(var + self.eps)).astype(x.dtype, copy=False)

        scale = inv_std if weight is None else inv_std * weight
        y = centered  # reuse the buffer: y = (x - mu) * w / sigma + b, in place
        y *= scale.reshape(per_channel)
        if bias is not None:
            y += bias.reshape(per_channel)
        self.save_for_backward(x, mean, inv_std, weight)
        return y

    def _forward_kernels(self, x, weight, bias):
        """The same forward through two Numba passes (statistics, then the affine map); saves the same arrays,
        except that the mean is float64."""
        from ..kernels.cpu import normalization as kernels

        n, c = x.shape[:2]
        x3 = np.ascontiguousarray(x).reshape(n, c, x.size // (n * c))
        if self.training:
            mean64, var64 = np.empty(c), np.empty(c)
            kernels.batch_norm_stats(x3, mean64, var64)
            self._update_running(mean64, var64, n * x3.shape[2])
        else:
            mean64, var64 = self.running_mean.astype(np.float64), self.running_var.astype(np.float64)
        inv_std = (1 / np.sqrt(var64 + self.eps)).astype(x.dtype)
        scale = inv_std if weight is None else inv_std * weight
        shift = np.zeros(c, dtype=x.dtype) if bias is None else bias
        y = np.empty(x.shape, dtype=x.dtype)
        # The mean stays float64: rounded to float32 it could be off by half an ulp of |mean|, which is a large
        # error in x - mean when the spread is small.
        kernels.batch_norm_apply(x3, mean64, scale, shift, y.reshape(x3.shape))
        self.save_for_backward(x, mean64, inv_std, weight)
        return y

    def _backward_kernels(self, g, x, mean64, inv_std, weight):
        """dx, dw, db through two Numba passes: the two per-channel sums, then dx as one affine map of g and x."""
        from ..kernels.cpu import normalization as kernels

        n, c = x.shape[:2]
        x3 = np.ascontiguousarray(x).reshape(n, c, x.size // (n * c))
        g3 = np.ascontiguousarray(g).reshape(x3.shape)
        m = n * x3.shape[2]
        sum_g, sum_gxc = np.empty(c), np.empty(c)  # float64: sum g and sum g (x - mean)
        kernels.batch_norm_backward_reduce(g3, x3, mean64, sum_g, sum_gxc)
        inv_std64 = inv_std.astype(np.float64)
        sum_g_xhat = sum_gxc * inv_std64
        scale = inv_std if weight is None else inv_std * weight  # w / sigma, x's dtype

        dx = None
        if self.needs_input_grad[0]:
            if self.training:
                # dx = (w/sigma) (g - sum_g/m - x_hat sum_g_xhat/m) = a g + b (x - mean) + k
                a64 = scale.astype(np.float64)
                b = (-a64 * sum_g_xhat * inv_std64 / m).astype(x.dtype)
                k = (-a64 * sum_g / m).astype(x.dtype)
                dx = np.empty(x.shape, dtype=x.dtype)
                kernels.batch_norm_backward_input(g3, x3, mean64, scale, b, k, dx.reshape(x3.shape))
            else:
                per_channel = (1, c) + (1,) * (x.ndim - 2)
                dx = g * scale.reshape(per_channel)
        grads = [dx]
        if self.has_weight:
            grads.append(sum_g_xhat.astype(x.dtype))
        if self.has_bias:
            grads.append(sum_g.astype(x.dtype))
        return tuple(grads)

    def backward(self, g):
        x, mean, inv_std, weight = self.saved_arrays
        if self._use_kernels(x):
            return self._backward_kernels(g, x, mean, inv_std, weight)
        axes = (0,) + tuple(range(2, x.ndim))
        per_channel = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        m = x.size // x.shape[1]
        x_hat = (x - mean.reshape(per_channel)) * inv_std.reshape(per_channel)
        sum_g = g.sum(axis=axes)
        sum_g_xhat = (g * x_hat).sum(axis=axes)
        scale = inv_std if weight is None else inv_std * weight  # w / sigma

        dx = None
        if self.needs_input_grad[0]:
            if self.training:
                # (w/sigma) * (g - sum_g/m - x_hat * sum_g_xhat/m), built in x_hat's buffer.
                dx = x_hat
                dx *= (-sum_g_xhat / m).reshape(per_channel)
                dx += g
                dx -= (sum_g / m).reshape(per_channel)
                dx *= scale.reshape(per_channel)
            else:
                dx = g * scale.reshape(per_channel)
        grads = [dx]
        if self.has_weight:
            grads.append(sum_g_xhat)
        if self.has_bias:
            grads.append(sum_g)
        return tuple(grads)


def _stat(value, name, channels, x):
    if value is None:
        return None
    array = value.data if isinstance(value, Tensor) else value
    if not backend.is_array(array):
        raise TypeError(f"batch_norm: {name} must be an array or a Tensor (it is updated in place); "
                        f"got {type(value).__name__}")
    if array.shape != (channels,):
        raise ValueError(f"batch_norm: {name} must have shape ({channels},); got {tuple(array.shape)}")
    if array.dtype.kind != "f":
        raise TypeError(f"batch_norm: {name} must be floating point; got dtype {array.dtype}")
    if backend.device_of(array) != x.device:
        raise ValueError(f"batch_norm: {name} is on {backend.device_of(array)} but input is on {x.device}")
    return array


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training: bool = False,  # noqa: A002
               momentum: float = 0.1, eps: float = 1e-5):
    """Batch normalisation over the channel axis 1 of (N, C) or (N, C, *spatial), as torch.nn.functional.

    ``running_mean`` / ``running_var`` (C,) arrays or Tensors: in training they are updated in place,
    ``r <- (1 - momentum) r + momentum * batch_stat`` (unbiased variance); in evaluation they normalise. They
    may be None in training (batch statistics only). ``weight`` (gamma) and ``bias`` (beta): (C,) or None.
    """
    op = "batch_norm"
    x = as_tensor(input)
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: input must be floating point; got dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"{op}: input must have shape (N, C) or (N, C, *spatial); got {x.shape}")
    c = x.shape[1]
    rm, rv = _stat(running_mean, "running_mean", c, x), _stat(running_var, "running_var", c, x)
    if (rm is None) != (rv is None):
        raise ValueError(f"{op}: running_mean and running_var must both be given or both be None")
    if not training and rm is None:
        raise ValueError(f"{op}: evaluation (training=False) needs running_mean and running_var; got None")
    if momentum is None:
        raise NotImplementedError(f"{op}: momentum=None (a cumulative average of all batches) is not implemented; "
                                  "pass a float")
    if not isinstance(momentum, numbers.Real) or not 0 <= momentum <= 1:
        raise ValueError(f"{op}: momentum must be a float in [0, 1]; got {momentum!r}")
    if not isinstance(eps, numbers.Real) or eps < 0:
        raise ValueError(f"{op}: eps must be a non-negative float; got {eps!r}")
    m = x.size // c if c else 0
    if training and m <= 1:
        raise ValueError(f"{op}: training needs more than one value per channel to estimate a variance; "
                         f"got input shape {x.shape}")
    affine = []
    for name, p in (("weight", weight), ("bias", bias)):
        if p is None:
            continue
        p = as_tensor(p)
        if p.shape != (c,):
            raise ValueError(f"{op}: {name} must have shape ({c},); got {p.shape}")
        if p.dtype != x.dtype:
            raise TypeError(f"{op}: {name} dtype {p.dtype} differs from input dtype {x.dtype}")
        affine.append(p)
    fn = BatchNorm(rm, rv, bool(training), float(momentum), float(eps), weight is not None, bias is not None)
    return fn(x, *affine)

