"""``SGD``: stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay.

The update, for each parameter ``p`` with gradient ``g`` (PyTorch's rule, step for step)::

    g = g + weight_decay * p                       # L2 penalty, folded into the gradient
    if momentum != 0:
        b = g                                      # first step: the buffer starts at the gradient
        b = momentum * b + (1 - dampening) * g     # later steps
        g = g + momentum * b  if nesterov else  b
    p = p - lr * g

Note that the first step copies ``g`` into the buffer without the ``(1 - dampening)`` factor.
"""

from __future__ import annotations

from .optimizer import Optimizer, _check_nonnegative


class SGD(Optimizer):
    """``SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False)``.

    ``params``: an iterable of Parameters, or of dicts (parameter groups with their own options).
    Per-parameter state: ``"momentum_buffer"`` (an array like ``p``) once momentum is used.
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov)
        super().__init__(params, defaults)

    def _check_options(self, group):
        super()._check_options(group)
        for name in ("momentum", "dampening", "weight_decay"):
            _check_nonnegative("SGD", name, group[name])
        if not isinstance(group["nesterov"], bool):
            raise TypeError(f"SGD: nesterov must be a bool; got {type(group['nesterov']).__name__}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                f"SGD: nesterov=True needs momentum > 0 and dampening = 0; got momentum={group['momentum']}, "
                f"dampening={group['dampening']}"
            )

    def _update(self, group):
        lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
        weight_decay, nesterov = group["weight_decay"], group["nesterov"]
        for p in group["params"]:
            if p.grad is None:
                continue
            g = p.grad  # read only: every line below makes a new array or writes into optimiser state
            if weight_decay != 0:
                g = g + weight_decay * p.data
            if momentum != 0:
                state = self.state.setdefault(p, {})
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = g.astype(p.dtype, copy=True)
                else:
                    buf *= momentum
                    buf += (1 - dampening) * g
                g = g + momentum * buf if nesterov else buf
            p.data -= lr * g
