"""Scaled dot-product attention: softmax(Q K^T * scale + mask) V in one Function with its backward written out.

This is the op under every self-attention block of the library (``nn.MultiheadSelfAttention``,
``nn.SelfAttention2d``, ``nn.NonLocalBlock``, the tiny ViT). It is a generic op, written once against the array
module ``xp``, so it runs on NumPy and CuPy alike: the work is three batched matrix products and a row softmax,
which the BLAS behind ``@`` already does well, so there is no hand-written kernel pair for it.

The backward never forms the softmax Jacobian (Lk x Lk per row); it uses the identity
``dS = A * (dA - rowsum(dA * A))``, derived in docs/derivations.md, section 6.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..autograd import Function, Tensor, as_tensor
from .basic import unbroadcast

# =================================================================================================================
# scaled_dot_product_attention
# =================================================================================================================


def _softmax_last_axis(scores, xp):
    """Row softmax of ``scores`` over the last axis, overwriting ``scores``; fully masked rows become all zeros.

    Subtracting the row maximum first keeps every exponent <= 0, so logits of any size give no overflow. A row
    whose scores are all -inf (every key masked out) has maximum -inf; it is shifted by 0 instead, its
    exponentials are all 0, and it is divided by 1 instead of by its zero total, which gives weights 0 (instead of
    the NaN of 0/0).
    """
    row_max = scores.max(axis=-1, keepdims=True)
    row_max = xp.where(xp.isneginf(row_max), 0, row_max)
    scores -= row_max
    xp.exp(scores, out=scores)
    total = scores.sum(axis=-1, keepdims=True)
    scores /= xp.where(total > 0, total, 1)  # total >= 1 on every row that has a finite score
    return scores


class ScaledDotProductAttention(Function):
    """O = softmax(S) V with S = scale * Q K^T (+ mask); optionally also returns the weights A = softmax(S).

    Shapes: q (..., Lq, d), k (..., Lk, d), v (..., Lk, dv), optional mask broadcastable to (..., Lq, Lk);
    the batch dims ``...`` of all of them broadcast. Out: O (..., Lq, dv) and, with ``return_weights``,
    A (..., Lq, Lk).

    Backward (g = dL/dO, gA = dL/dA when the weights are an output too; see docs/derivations.md, section 6):

        dV = A^T g
        dA = g V^T (+ gA)
        dS = A * (dA - rowsum(dA * A))          softmax's vector-Jacobian product, row by row
        dQ = scale * dS K,   dK = scale * dS^T Q
        dmask = dS                              for an additive float mask

    each summed over the batch dims along which its input was broadcast. Saved: q, k, v and A.
    """

    def __init__(self, scale: float, return_weights: bool):
        self.scale = scale
        self.return_weights = return_weights

    def forward(self, q, k, v, mask=None):
        xp = backend.get_array_module(q)
        scores = q @ xp.swapaxes(k, -1, -2)
        scores *= q.dtype.type(self.scale)
        if mask is not None:
            self.mask_shape = mask.shape
            if mask.dtype == np.bool_:
                scores = xp.where(mask, scores, q.dtype.type(-np.inf))
            else:
                scores = scores + mask  # may broadcast scores up to the mask's batch dims
        weights = _softmax_last_axis(scores, xp)
        out = weights @ v
        self.save_for_backward(q, k, v, weights)
        return (out, weights) if self.return_weights else out

    def backward(self, grad_out, grad_weights=None):
        q, k, v, weights = self.saved_arrays
        xp = backend.get_array_module(grad_out)
        has_mask = len(self.needs_input_grad) == 4
        need_q, need_k, need_v = self.needs_input_grad[:3]
        need_mask = has_mask and self.needs_input_grad[3]
        dq = dk = dv = dmask = None
        if need_v:
            dv = unbroadcast(xp.swapaxes(weights, -1, -2) @ grad_out, v.shape)
        if need_q or need_k or need_mask:
            d_weights = grad_out @ xp.swapaxes(v, -1, -2)  # a fresh array, so the steps below work in place
            if grad_weights is not None:
                d_weights += grad_weights
            # Softmax backward per row: dS_j = A_j (dA_j - sum_i dA_i A_i). Masked entries have A = 0, so they
            # get no gradient, and a fully masked row (A = 0 everywhere) gets none at all.
            d_scores = d_weights
            d_scores -= (d_weights * weights).sum(axis=-1, keepdims=True)
            d_scores *= weights
            if need_mask:
                dmask = unbroadcast(d_scores, self.mask_shape)
            d_scores *= q.dtype.type(self.scale)
            if need_q:
                dq = unbroadcast(d_scores @ k, q.shape)
            if need_k:
                dk = unbroadcast(xp.swapaxes(d_scores, -1, -2) @ q, k.shape)
        grads = (dq, dk, dv)
        return (grads + (dmask,)) if has_mask else grads


def scaled_dot_product_attention(q, k, v, mask=None, scale=None, return_weights: bool = False):
    """Attention of queries ``q`` over keys ``k`` and values ``v``: ``softmax(q k^T * scale + mask) v``.

    Args:
        q: (..., Lq, d) queries.  k: (..., Lk, d) keys.  v: (..., Lk, dv) values. All float32 or all float64,
            on one device; the batch dims ``...`` broadcast against each other.
        mask: None, a boolean array/Tensor (True = the query may attend to that key; False = it may not) or a
            float one of q's dtype that is added to the scaled scores (use -inf to forbid). Its shape must
            broadcast to (..., Lq, Lk). A float mask that requires grad receives a gradient. This is PyTorch's
            ``attn_mask``.
        scale: the factor on the scores; default 1 / sqrt(d).
        return_weights: also return the attention weights A = softmax(...), shape (..., Lq, Lk), as a second
            (differentiable) output, so that modules can keep them for inspection.

    Returns:
        (..., Lq, dv) Tensor, or the pair (output, weights) with ``return_weights=True``.

    A fully masked row (a query whose every key is masked out, by False or by -inf) has no defined softmax; here
    its weights are all 0, so its output row is 0 and it passes no gradient to q, k, v or the mask. PyTorch 2.13 on
    the CPU returns the same zeros from ``scaled_dot_product_attention`` (a plain ``torch.softmax`` over an
    all -inf row gives NaN). Rows are stable for logits of any size: the row maximum is subtracted before ``exp``.

    Example:
        >>> x = sa.tensor(np.random.randn(2, 5, 8), requires_grad=True)    # (N, L, d) tokens
        >>> out = F.scaled_dot_product_attention(x, x, x)                   # (2, 5, 8)
    """
    q, k, v = as_tensor(q), as_tensor(k), as_tensor(v)
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dtype not in backend.FLOAT_DTYPES:
            raise TypeError(f"scaled_dot_product_attention: {name} must be float32 or float64; got {t.dtype}")
        if t.ndim < 2:
            raise ValueError(
                f"scaled_dot_product_attention: {name} must have at least 2 dims (..., L, features); "
                f"got shape {t.shape}"
            )
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(
            f"scaled_dot_product_attention: q, k and v must share one dtype; got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"scaled_dot_product_attention: q and k must have the same feature size (last dim); "
            f"got q {q.shape} and k {k.shape}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"scaled_dot_product_attention: k and v must have the same number of keys (dim -2); "
            f"got k {k.shape} and v {v.shape}"
        )
    if k.shape[-2] == 0:
        raise ValueError(f"scaled_dot_product_attention: k must have at least one key (Lk > 0); got k {k.shape}")
    try:
        batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except ValueError:
        raise ValueError(
            f"scaled_dot_product_attention: the batch dims (all but the last two) of q, k and v must broadcast; "
            f"got q {q.shape}, k {k.shape}, v {v.shape}"
        ) from None
    scores_shape = tuple(batch) + (q.shape[-2], k.shape[-2])

    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1]) if q.shape[-1] > 0 else 1.0
    elif isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)):
        raise TypeError(f"scaled_dot_product_attention: scale must be a real number or None; got {scale!r}")
    scale = float(scale)

    inputs = [q, k, v]
    if mask is not None:
        mask = mask if isinstance(mask, Tensor) else Tensor(mask)
        if mask.dtype != np.bool_ and mask.dtype != q.dtype:
            raise TypeError(
                f"scaled_dot_product_attention: mask must be boolean or of q's dtype {q.dtype}; got {mask.dtype}"
            )
        try:
            fits = np.broadcast_shapes(mask.shape, scores_shape) == scores_shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"scaled_dot_product_attention: mask must broadcast to the scores' shape (..., Lq, Lk) = "
                f"{scores_shape}; got mask shape {mask.shape}"
            )
        inputs.append(mask)
    return ScaledDotProductAttention(scale, bool(return_weights))(*inputs)
