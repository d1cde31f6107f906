"""``nn.LayerNorm``: the module around ``F.layer_norm`` (its explicit backward lives in functional/layer_norm.py).

Batch norm, which keeps running statistics, is a separate layer (``nn.BatchNorm2d``); layer norm keeps none and
behaves the same in training and evaluation.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .module import Module, Parameter


class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape`` dims of the input, then scale and shift (PyTorch's names).

    Args:
        normalized_shape: int or tuple of ints, the trailing shape normalised over (e.g. the token width ``dim``).
        eps: added to the variance before the square root.
        elementwise_affine: learn a per-element ``weight`` (initialised to 1) and ``bias`` (initialised to 0).
        bias: with ``elementwise_affine``, whether to learn the bias too.

    Shape: (..., *normalized_shape) -> the same.
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True):
        super().__init__()
        if isinstance(normalized_shape, (int, np.integer)) and not isinstance(normalized_shape, bool):
            normalized_shape = (int(normalized_shape),)
        if isinstance(normalized_shape, str) or not all(
            isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0 for n in normalized_shape
        ):
            raise ValueError(f"LayerNorm: normalized_shape must be positive int(s); got {normalized_shape!r}")
        self.normalized_shape = tuple(int(n) for n in normalized_shape)
        self.eps = float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        ones, zeros = np.ones(self.normalized_shape, np.float32), np.zeros(self.normalized_shape, np.float32)
        self.register_parameter("weight", Parameter(ones) if self.elementwise_affine else None)
        self.register_parameter("bias", Parameter(zeros) if self.elementwise_affine and bias else None)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
