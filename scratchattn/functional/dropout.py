"""``dropout``: inverted dropout, with its random mask drawn from ``scratchattn.random`` (seed it with
``sa.manual_seed``).

In training each element is kept with probability 1 - p and scaled by 1 / (1 - p), so the expected output
equals the input and evaluation needs no rescaling; outside training the op is the identity.
"""

from __future__ import annotations

import numbers

from .. import backend
from .. import random as sa_random
from ..autograd import Function
from ..autograd.tensor import as_tensor


class Dropout(Function):
    """y = x * mask / (1 - p), mask_i ~ Bernoulli(1 - p);  dx = g * mask / (1 - p).
    Saves the scaled mask (the only thing backward needs)."""

    def __init__(self, p: float):
        self.p = p

    def forward(self, x):
        xp = backend.get_array_module(x)
        if self.p == 1:  # everything dropped; 1/(1-p) would be infinite
            self.scaled_mask = xp.zeros(x.shape, dtype=x.dtype)
        else:
            keep = sa_random.default_rng(xp).random(x.shape, dtype=x.dtype) >= self.p
            self.scaled_mask = keep.astype(x.dtype) * x.dtype.type(1 / (1 - self.p))
        return x * self.scaled_mask

    def backward(self, g):
        return g * self.scaled_mask


def dropout(input, p: float = 0.5, training: bool = True):  # noqa: A002 - torch's argument name
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) when ``training``; else return
    ``input`` unchanged (the same Tensor, as PyTorch)."""
    x = as_tensor(input)
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise ValueError(f"dropout: p must be a probability in [0, 1]; got {p!r}")
    if x.dtype.kind != "f":
        raise TypeError(f"dropout: input must be floating point; got dtype {x.dtype}")
    if not training or p == 0:
        return x
    return Dropout(float(p))(x)
