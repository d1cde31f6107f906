"""``SpatialTransformer``: the spatial-attention block of Spatial Transformer Networks (Jaderberg et al., 2015).

The block learns *where to look*. A small localisation network reads the input and predicts, per sample, an affine
map theta (2 x 3); ``F.affine_grid`` turns theta into a sampling grid (the output pixel positions mapped into the
input) and ``F.grid_sample`` reads the input at those points with bilinear interpolation. Every step is
differentiable, so the task loss trains the localisation network through the sampler and the grid generator with
no supervision of theta. The localisation network's last ``nn.Linear`` starts at the identity transform (zero
weight, bias (1, 0, 0, 0, 1, 0)), so an untrained block passes its input through unchanged and training moves it
away from the identity only as far as the loss asks.

Other grid generators (``F.projective_grid``, a thin-plate spline) fit the same place: only the number of
parameters the localisation network predicts and the generator call change; the sampler does not.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from .. import functional as F
from ..autograd import Tensor
from .layers import Linear
from .module import Module

# The identity affine map as the 6 outputs of the localisation network, row by row: [[1, 0, 0], [0, 1, 0]].
IDENTITY_THETA = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)

SAMPLING_MODES = ("bilinear", "nearest", "bicubic")
PADDING_MODES = ("zeros", "border", "reflection")


def _last_linear(localization: Module):
    """The last ``nn.Linear`` of ``localization`` in registration order (for a Sequential: the one nearest the
    output), or None when it has none."""
    found = None
    for module in localization.modules():
        if isinstance(module, Linear):
            found = module
    return found


class SpatialTransformer(Module):
    """Localisation network -> theta (N, 2, 3) -> affine grid -> sampled input.

    Args:
        localization: a Module mapping the input (N, C, H, W) to (N, 6) (or (N, 2, 3)): theta row by row. Its last
            ``nn.Linear`` (which must have 6 outputs and a bias) is initialised to the identity transform. A module
            without any ``nn.Linear`` is used as it is: it must then start near the identity by itself.
        out_size: (H_out, W_out) of the output; None keeps the input's height and width.
        align_corners, mode, padding_mode: passed to ``F.affine_grid`` / ``F.grid_sample`` (PyTorch semantics).

    Shapes: input (N, C, H, W) -> output (N, C, H_out, W_out). After each forward, ``last_theta`` holds a NumPy copy
    (N, 2, 3) of the transforms used, for inspection and plotting.

    Example::

        loc = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 32), nn.ReLU(), nn.Linear(32, 6))
        stn = nn.SpatialTransformer(loc, out_size=(28, 28))
        y = stn(x)                         # (N, 1, 28, 28); at initialisation y == x up to rounding
    """

    def __init__(self, localization, out_size=None, align_corners: bool = False, mode: str = "bilinear",
                 padding_mode: str = "zeros"):
        super().__init__()
        if not isinstance(localization, Module):
            raise TypeError(f"SpatialTransformer: localization must be an nn.Module; got {type(localization).__name__}")
        if out_size is not None:
            if (
                not isinstance(out_size, (tuple, list))
                or len(out_size) != 2
                or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in out_size)
            ):
                raise ValueError(
                    f"SpatialTransformer: out_size must be None or (H_out, W_out), two positive ints; got {out_size!r}"
                )
            out_size = (int(out_size[0]), int(out_size[1]))
        if not isinstance(align_corners, (bool, np.bool_)):
            raise TypeError(f"SpatialTransformer: align_corners must be a bool; got {align_corners!r}")
        if mode not in SAMPLING_MODES:
            raise ValueError(f"SpatialTransformer: mode must be one of {SAMPLING_MODES}; got {mode!r}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"SpatialTransformer: padding_mode must be one of {PADDING_MODES}; got {padding_mode!r}")

        self.localization = localization
        self.out_size = out_size
        self.align_corners = bool(align_corners)
        self.mode = mode
        self.padding_mode = padding_mode
        self.last_theta = None
        self.reset_to_identity()

    def reset_to_identity(self) -> None:
        """Set the localisation network's last ``nn.Linear`` to output the identity transform for every input."""
        fc = _last_linear(self.localization)
        if fc is None:
            return
        if fc.weight.shape[0] != 6:
            raise ValueError(
                "SpatialTransformer: the last nn.Linear of localization must have 6 outputs (theta, row by row); "
                f"got weight of shape {fc.weight.shape}"
            )
        if fc.bias is None:
            raise ValueError("SpatialTransformer: the last nn.Linear of localization needs a bias (it holds the "
                             "identity transform at initialisation); build it with bias=True")
        xp = backend.get_array_module(fc.weight.data)
        # Replace the arrays, keep the Parameter objects: an optimiser built earlier still holds them.
        fc.weight.data = xp.zeros_like(fc.weight.data)
        fc.bias.data = xp.asarray(np.array(IDENTITY_THETA, dtype=fc.bias.dtype))

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"SpatialTransformer: input must be a Tensor (N, C, H, W); got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"SpatialTransformer: input must have shape (N, C, H, W); got shape {x.shape}")
        n, c, h, w = x.shape
        theta = self.localization(x)
        if not isinstance(theta, Tensor) or theta.shape not in ((n, 6), (n, 2, 3)):
            got = theta.shape if isinstance(theta, Tensor) else type(theta).__name__
            raise ValueError(f"SpatialTransformer: localization must return (N, 6) = ({n}, 6) for theta; got {got}")
        theta = theta.reshape(n, 2, 3)
        self.last_theta = theta.numpy()
        h_out, w_out = self.out_size if self.out_size is not None else (h, w)
        grid = F.affine_grid(theta, (n, c, h_out, w_out), align_corners=self.align_corners)
        return F.grid_sample(x, grid, mode=self.mode, padding_mode=self.padding_mode,
                             align_corners=self.align_corners)

    def extra_repr(self) -> str:
        return (f"out_size={self.out_size}, align_corners={self.align_corners}, mode={self.mode!r}, "
                f"padding_mode={self.padding_mode!r}")
