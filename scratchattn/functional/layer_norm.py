"""Layer normalisation: normalise each sample over its trailing dims, then scale and shift; backward written out.

``layer_norm`` is what the pre-norm blocks of the tiny ViT use in front of attention and MLP. Unlike batch norm it
has no running statistics and behaves the same in training and evaluation: each sample's statistics are its own.
Like the other generic ops it is written once against the array module ``xp`` and runs on NumPy and CuPy.
The derivation of the backward is in docs/derivations.md, section 6.
"""

from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function, as_tensor


class LayerNorm(Function):
    """y = x_hat * weight + bias,  x_hat = (x - mu) / sigma,  mu and sigma^2 = mean and (biased) variance of x
    over the normalised (trailing) axes, sigma = sqrt(var + eps).

    Shapes: x (..., *normalized_shape); weight, bias (*normalized_shape) or absent. Out: like x.

    Backward (g = dL/dy, means over the normalised axes; see docs/derivations.md, section 6):

        g_hat   = g * weight                  (g itself without a weight)
        dx      = (g_hat - mean(g_hat) - x_hat * mean(g_hat * x_hat)) / sigma
        dweight = sum of g * x_hat over the leading (sample) axes
        dbias   = sum of g over the leading axes

    Saved: x_hat, 1/sigma and the weight; x itself is not needed.
    """

    def __init__(self, num_axes: int, eps: float, has_weight: bool, has_bias: bool):
        self.num_axes, self.eps = num_axes, eps
        self.has_weight, self.has_bias = has_weight, has_bias

    def forward(self, x, *params):
        xp = backend.get_array_module(x)
        axes = tuple(range(x.ndim - self.num_axes, x.ndim))
        weight = params[0] if self.has_weight else None
        bias = params[-1] if self.has_bias else None
        centered = x - x.mean(axis=axes, keepdims=True)
        variance = (centered * centered).mean(axis=axes, keepdims=True)
        inv_sigma = 1 / xp.sqrt(variance + x.dtype.type(self.eps))
        x_hat = centered * inv_sigma
        y = x_hat * weight if weight is not None else x_hat.copy()
        if bias is not None:
            y += bias
        self.save_for_backward(x_hat, inv_sigma, weight)
        return y

    def backward(self, g):
        x_hat, inv_sigma, weight = self.saved_arrays
        axes = tuple(range(g.ndim - self.num_axes, g.ndim))
        sample_axes = tuple(range(g.ndim - self.num_axes))
        grads = []
        if self.needs_input_grad[0]:
            g_hat = g * weight if weight is not None else g
            mean_g = g_hat.mean(axis=axes, keepdims=True)
            mean_gx = (g_hat * x_hat).mean(axis=axes, keepdims=True)
            grads.append((g_hat - mean_g - x_hat * mean_gx) * inv_sigma)
        else:
            grads.append(None)
        if self.has_weight:
            grads.append((g * x_hat).sum(axis=sample_axes) if self.needs_input_grad[1] else None)
        if self.has_bias:
            grads.append(g.sum(axis=sample_axes) if self.needs_input_grad[-1] else None)
        return tuple(grads)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    """Normalise ``x`` over its last ``len(normalized_shape)`` dims, then scale by ``weight`` and add ``bias``.

    Args:
        x: (..., *normalized_shape) float32 or float64 Tensor.
        normalized_shape: an int or a tuple of ints: the trailing shape of ``x`` to normalise over.
        weight, bias: optional Tensors of shape ``normalized_shape`` and x's dtype (PyTorch's elementwise affine).
        eps: added to the variance before the square root.

    Returns:
        A Tensor of x's shape: ``(x - mean) / sqrt(var + eps) * weight + bias``, with the biased variance, as
        ``torch.nn.functional.layer_norm``.
    """
    x = as_tensor(x)
    if x.dtype not in backend.FLOAT_DTYPES:
        raise TypeError(f"layer_norm: x must be float32 or float64; got {x.dtype}")
    if isinstance(normalized_shape, (int, np.integer)) and not isinstance(normalized_shape, bool):
        normalized_shape = (int(normalized_shape),)
    try:
        if isinstance(normalized_shape, str) or any(isinstance(n, bool) for n in normalized_shape):
            raise TypeError
        normalized_shape = tuple(int(n) for n in normalized_shape)
    except (TypeError, ValueError):
        raise TypeError(
            f"layer_norm: normalized_shape must be an int or a tuple of ints; got {normalized_shape!r}"
        ) from None
    if not normalized_shape or any(n <= 0 for n in normalized_shape):
        raise ValueError(f"layer_norm: normalized_shape must be non-empty with sizes > 0; got {normalized_shape}")
    if x.ndim < len(normalized_shape) or x.shape[x.ndim - len(normalized_shape) :] != normalized_shape:
        raise ValueError(
            f"layer_norm: x's trailing dims must equal normalized_shape {normalized_shape}; got x shape {x.shape}"
        )
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)) or not eps >= 0:
        raise ValueError(f"layer_norm: eps must be a number >= 0; got {eps!r}")
    params = []
    for name, p in (("weight", weight), ("bias", bias)):
        if p is None:
            continue
        p = as_tensor(p)
        if p.shape != normalized_shape:
            raise ValueError(f"layer_norm: {name} must have shape normalized_shape {normalized_shape}; got {p.shape}")
        if p.dtype != x.dtype:
            raise TypeError(f"layer_norm: {name} must have x's dtype {x.dtype}; got {p.dtype}")
        params.append(p)
    op = LayerNorm(len(normalized_shape), float(eps), weight is not None, bias is not None)
    return op(x, *params)
