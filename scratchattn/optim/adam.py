"""``Adam`` and ``AdamW``: adaptive moment estimation, with L2 or decoupled weight decay.

The update, at step ``t = 1, 2, ...`` for a parameter ``p`` with gradient ``g`` (PyTorch's rule)::

    p = p * (1 - lr * weight_decay)              # AdamW only: decay the weights directly ("decoupled")
    g = g + weight_decay * p                     # Adam only: L2 penalty folded into the gradient
    m = beta1 * m + (1 - beta1) * g              # first moment (m, v start at zero)
    v = beta2 * v + (1 - beta2) * g * g          # second moment
    v_max = max(v_max, v)                        # amsgrad only; then v_max replaces v below
    m_hat_scale = 1 - beta1^t                    # bias corrections: m and v start at 0, so early averages
    v_hat_scale = 1 - beta2^t                    # are too small by these factors
    p = p - (lr / m_hat_scale) * m / (sqrt(v) / sqrt(v_hat_scale) + eps)

``eps`` is added after the bias correction of ``v``, as in PyTorch.
"""

from __future__ import annotations

import math

from .. import backend
from .optimizer import Optimizer, _check_nonnegative


class Adam(Optimizer):
    """``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False)``.

    Per-parameter state: ``"step"`` (int), ``"exp_avg"`` (m), ``"exp_avg_sq"`` (v) and, with amsgrad,
    ``"max_exp_avg_sq"``.
    """

    decoupled_weight_decay = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        super().__init__(params, defaults)

    def _check_options(self, group):
        super()._check_options(group)
        name = type(self).__name__
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2); got {betas!r}")
        group["betas"] = tuple(betas)
        for i, b in enumerate(betas):
            _check_nonnegative(name, f"betas[{i}]", b)
            if not b < 1:
                raise ValueError(f"{name}: betas[{i}] must be in [0, 1); got {b}")
        _check_nonnegative(name, "eps", group["eps"])
        _check_nonnegative(name, "weight_decay", group["weight_decay"])
        if not isinstance(group["amsgrad"], bool):
            raise TypeError(f"{name}: amsgrad must be a bool; got {type(group['amsgrad']).__name__}")

    def _update(self, group):
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        weight_decay, amsgrad = group["weight_decay"], group["amsgrad"]
        for p in group["params"]:
            if p.grad is None:
                continue
            xp = backend.get_array_module(p.data)
            state = self.state.setdefault(p, {})
            if not state:
                state["step"] = 0
                state["exp_avg"] = xp.zeros_like(p.data)
                state["exp_avg_sq"] = xp.zeros_like(p.data)
                if amsgrad:
                    state["max_exp_avg_sq"] = xp.zeros_like(p.data)
            state["step"] += 1
            t = state["step"]
            m, v = state["exp_avg"], state["exp_avg_sq"]

            g = p.grad  # read only
            if weight_decay != 0:
                if self.decoupled_weight_decay:
                    p.data *= 1 - lr * weight_decay
                else:
                    g = g + weight_decay * p.data
            m *= beta1
            m += (1 - beta1) * g
            v *= beta2
            v += (1 - beta2) * (g * g)
            if amsgrad:
                v = state.setdefault("max_exp_avg_sq", xp.zeros_like(p.data))
                xp.maximum(v, state["exp_avg_sq"], out=v)

            step_size = lr / (1 - beta1**t)
            denom = xp.sqrt(v) / math.sqrt(1 - beta2**t) + eps
            p.data -= step_size * (m / denom)


class AdamW(Adam):
    """``AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False)``: Adam whose
    weight decay shrinks the weights directly (``p *= 1 - lr * weight_decay``) instead of adding an L2 term to the
    gradient, so the decay is not rescaled by the adaptive denominator."""

    decoupled_weight_decay = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
