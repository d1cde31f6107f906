"""Losses: cross_entropy (log-softmax and negative log-likelihood fused into one op) and mse_loss.

``cross_entropy`` is one Function rather than ``log_softmax`` followed by indexing because its gradient is so
simple when taken in one piece: d(loss_i)/d(logits_i) = softmax(logits_i) - onehot(target_i). Both losses take
``reduction`` = "mean" | "sum" | "none" as in PyTorch. Derivations: docs/derivations.md, section "Generic ops".
"""

from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function
from ..autograd.tensor import as_tensor

REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction, op: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}; got {reduction!r}")
    return reduction


def _reduce_forward(losses, reduction):
    """Reduce per-element losses; an empty "mean" is NaN (0/0), as PyTorch, without a NumPy warning."""
    xp = backend.get_array_module(losses)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    if losses.size == 0:
        return xp.asarray(np.nan, dtype=losses.dtype)
    return losses.mean()


def _reduce_backward(g, shape, reduction, dtype):
    """The gradient of the reduction w.r.t. each per-element loss, as an array of ``shape``."""
    xp = backend.get_array_module(g)
    if reduction == "none":
        return g
    count = int(np.prod(shape))
    scale = g / count if reduction == "mean" and count > 0 else g
    return xp.broadcast_to(scale.astype(dtype, copy=False), shape)


# =================================================================================================================
# cross_entropy
# =================================================================================================================


class CrossEntropy(Function):
    """loss_i = -log softmax(x_i)[t_i] = logsumexp(x_i) - x_i[t_i] for logits x (N, C), targets t (N,).

    Backward: d(loss_i)/dx_ic = softmax(x_i)_c - [c == t_i], times the incoming gradient of loss_i (which is
    g / N for "mean", g for "sum", g_i for "none"). Saves log-softmax (N, C) and the targets.
    """

    def __init__(self, reduction: str):
        self.reduction = reduction

    def forward(self, logits, target):
        xp = backend.get_array_module(logits)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        rows = xp.arange(logits.shape[0])
        losses = -log_probs[rows, target]
        self.save_for_backward(log_probs, target)
        return _reduce_forward(losses, self.reduction)

    def backward(self, g):
        log_probs, target = self.saved_arrays
        xp = backend.get_array_module(log_probs)
        grad = xp.exp(log_probs)  # softmax
        grad[xp.arange(grad.shape[0]), target] -= 1
        per_sample = _reduce_backward(g, (grad.shape[0],), self.reduction, grad.dtype)
        grad *= per_sample[:, None]
        return grad, None


def cross_entropy(input, target, reduction: str = "mean"):  # noqa: A002 - torch's argument name
    """Cross-entropy between logits ``input`` (N, C) and integer class labels ``target`` (N,) in [0, C).

    Returns a scalar for reduction "mean" (average over the batch) or "sum", and the (N,) losses for "none".
    """
    _check_reduction(reduction, "cross_entropy")
    logits, target = as_tensor(input), as_tensor(target)
    if logits.dtype.kind != "f":
        raise TypeError(f"cross_entropy: input (logits) must be floating point; got dtype {logits.dtype}")
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: input must be logits of shape (N, C); got shape {logits.shape}")
    if target.dtype.kind not in "iu":
        raise TypeError(
            f"cross_entropy: target must hold integer class labels (e.g. int64); got dtype {target.dtype}. "
            "Probability targets are not supported."
        )
    n, c = logits.shape
    if target.shape != (n,):
        raise ValueError(f"cross_entropy: target must have shape ({n},) to match input {logits.shape}; "
                         f"got {target.shape}")
    if n > 0:
        lo, hi = int(target.data.min()), int(target.data.max())
        if lo < 0 or hi >= c:
            bad = lo if lo < 0 else hi
            raise ValueError(f"cross_entropy: target labels must lie in [0, {c - 1}] for {c} classes; "
                             f"found {bad}")
    return CrossEntropy(reduction)(logits, target)


# =================================================================================================================
# mse_loss
# =================================================================================================================


class MSELoss(Function):
    """loss = reduce((x - t)^2);  dx = 2 (x - t) * g_elem,  dt = -dx, with g_elem = g / size for "mean"."""

    def __init__(self, reduction: str):
        self.reduction = reduction

    def forward(self, x, t):
        diff = x - t
        self.save_for_backward(diff)
        return _reduce_forward(diff * diff, self.reduction)

    def backward(self, g):
        (diff,) = self.saved_arrays
        dx = 2 * diff * _reduce_backward(g, diff.shape, self.reduction, diff.dtype)
        return (dx if self.needs_input_grad[0] else None), (-dx if self.needs_input_grad[1] else None)


def mse_loss(input, target, reduction: str = "mean"):  # noqa: A002 - torch's argument name
    """Mean (or summed, or elementwise) squared error; ``input`` and ``target`` must have the same shape."""
    _check_reduction(reduction, "mse_loss")
    x, t = as_tensor(input), as_tensor(target)
    for name, v in (("input", x), ("target", t)):
        if v.dtype.kind != "f":
            raise TypeError(f"mse_loss: {name} must be floating point; got dtype {v.dtype}")
    if x.shape != t.shape:
        raise ValueError(f"mse_loss: target must have the shape of input {x.shape}; got {t.shape}")
    if x.dtype != t.dtype:
        raise TypeError(f"mse_loss: input and target must have one dtype; got {x.dtype} and {t.dtype}")
    return MSELoss(reduction)(x, t)
