"""scratchattn: attention mechanisms for vision on a from-scratch NumPy/CuPy autodiff.

    import scratchattn as sa
    from scratchattn import functional as F, nn, optim
"""

from . import backend, cuda, functional, models, nn, optim
from .autograd import Function, GradcheckError, Tensor, enable_grad, gradcheck, is_grad_enabled, no_grad, tensor
from .backend import use_deterministic_algorithms
from .random import manual_seed
from .serialization import load, save

__version__ = "0.1.0"

__all__ = [
    "Function",
    "GradcheckError",
    "Tensor",
    "backend",
    "cuda",
    "enable_grad",
    "gradcheck",
    "is_grad_enabled",
    "load",
    "manual_seed",
    "functional",
    "models",
    "nn",
    "no_grad",
    "optim",
    "save",
    "tensor",
    "use_deterministic_algorithms",
]
