"""Grid generators: ``affine_grid`` (theta (N, 2, 3) -> sampling grid) and ``projective_grid`` (a 3x3 homography ->
sampling grid), each with its gradient w.r.t. its parameters written out.

**The grid-generator contract.** A grid generator maps per-sample parameters to a grid (N, H, W, 2) whose last axis
holds (x, y) in normalised coordinates: x = -1 is the left edge of the input and +1 the right edge, y = -1 the top
and +1 the bottom (``align_corners`` says whether "edge" means the centre of the outermost pixel or its outer
side). ``F.grid_sample`` consumes any such grid and knows nothing of where it came from, so a new generator (a
thin-plate spline, an optical-flow field, ...) is added beside these two without touching the sampler: write a
``Function`` whose forward builds the grid from :func:`base_grid` (or :func:`base_coords`) and whose backward maps
the (N, H, W, 2) grid gradient back to the parameters.

**Base coordinates** (PyTorch's convention, exactly). Output column j of W (and row i of H likewise) sits at

    align_corners=False:  x_j = (2 j + 1) / W - 1          (pixel centres: the grid spans the pixels' outer edges)
    align_corners=True:   x_j = 2 j / (W - 1) - 1          (linspace(-1, 1, W): the grid spans the corner centres)

and a unit-size axis gives 0 in both cases (as PyTorch; linspace(-1, 1, 1) would give -1).

**Affine** (``affine_grid``, a hand-written kernel pair, ``kernels/cpu/affine_grid.py`` and
``kernels/cuda/affine_grid.cu``). With p = (x_j, y_i, 1) the homogeneous base point:

    grid[n, i, j] = theta[n] @ p                               (2-vector)
    d theta[n]    = sum_{i, j} g[n, i, j] (outer) p             (2 x 3; g = dL/dgrid)

**Projective** (``projective_grid``, written once against the array module ``xp``: it is a few matrix products, not
a headline kernel). With (u, v, w) = H[n] @ p:

    grid[n, i, j] = (u / w, v / w)
    d H[n, 0] = sum g_x / w * p,   d H[n, 1] = sum g_y / w * p,   d H[n, 2] = -sum (g_x x' + g_y y') / w * p

Derivations: ``docs/derivations.md``, section "Affine grid generation".
"""

from __future__ import annotations

import functools
import numbers

import numpy as np

from .. import backend
from ..autograd import Function, Tensor, as_tensor
from ..kernels.cpu import affine_grid as cpu_kernels

# =================================================================================================================
# base coordinates: the one place that knows the align_corners convention
# =================================================================================================================


@functools.lru_cache(maxsize=64)
def _base_coords_numpy(size: int, align_corners: bool, dtype: np.dtype) -> np.ndarray:
    # Computed in float64 and rounded once, so float32 coordinates are the correctly rounded exact values.
    if size == 1:
        coords = np.zeros(1)
    elif align_corners:
        coords = 2.0 * np.arange(size) / (size - 1) - 1.0
    else:
        coords = (2.0 * np.arange(size) + 1.0) / size - 1.0
    coords = coords.astype(dtype)
    coords.flags.writeable = False  # shared by every call through the cache
    return coords


@functools.lru_cache(maxsize=64)
def _base_coords_gpu(size: int, align_corners: bool, dtype: np.dtype, device_id: int):
    # A copy to the GPU is synchronous and cost ~30 us a call on the H200 machine: two of them made affine_grid ~5x
    # slower than its kernel. Cached per device like the NumPy arrays; only this module reads them, never writes.
    cupy = backend.cupy_module()
    with cupy.cuda.Device(device_id):
        return cupy.asarray(_base_coords_numpy(size, align_corners, dtype))


def base_coords(size: int, align_corners: bool, xp=np, dtype=np.float32, shared: bool = False):
    """The normalised coordinates (size,) of the pixel centres along one axis of an output of that size.

    ``(2 j + 1) / size - 1`` for ``align_corners=False``, ``2 j / (size - 1) - 1`` for True, and ``[0]`` when
    ``size == 1`` in both cases. Returned on the device of the array module ``xp`` (read-only for NumPy). With
    ``shared=True`` a CuPy result is a cached array that the caller must not modify (the grid generators' own use).
    """
    coords = _base_coords_numpy(int(size), bool(align_corners), np.dtype(dtype))
    if xp is np:
        return coords
    if shared:
        return _base_coords_gpu(int(size), bool(align_corners), np.dtype(dtype), xp.cuda.Device().id)
    return xp.asarray(coords)


def base_grid(h: int, w: int, align_corners: bool, xp=np, dtype=np.float32):
    """The homogeneous base points p[i, j] = (x_j, y_i, 1), shape (H, W, 3), that every grid generator maps."""
    xs = base_coords(w, align_corners, xp, dtype, shared=True)  # read, then copied into the new grid
    ys = base_coords(h, align_corners, xp, dtype, shared=True)
    grid = xp.empty((h, w, 3), dtype=dtype)
    grid[:, :, 0] = xs[None, :]
    grid[:, :, 1] = ys[:, None]
    grid[:, :, 2] = 1
    return grid


# =================================================================================================================
# affine_grid
# =================================================================================================================


def _cuda_kernels():
    # Imported on first use: the CUDA launchers need the launcher module (and, on a GPU, CuPy), the Numba path not.
    from ..kernels.cuda import affine_grid as cuda_kernels

    return cuda_kernels


class AffineGrid(Function):
    """grid (N, H, W, 2) = theta (N, 2, 3) applied to the base points; see the module docstring for the math.

    Saves nothing but the kernel path: the backward needs only the base coordinates, which it recomputes.
    """

    def __init__(self, h: int, w: int, align_corners: bool):
        self.h, self.w, self.align_corners = h, w, align_corners

    def forward(self, theta):
        xp = backend.get_array_module(theta)
        theta = xp.ascontiguousarray(theta)
        xs = base_coords(self.w, self.align_corners, xp, theta.dtype, shared=True)
        ys = base_coords(self.h, self.align_corners, xp, theta.dtype, shared=True)
        grid = xp.empty((theta.shape[0], self.h, self.w, 2), dtype=theta.dtype)
        self.path = backend.kernel_path(theta)
        if self.path == "numba":
            cpu_kernels.affine_grid_forward(theta, xs, ys, grid)
        else:
            _cuda_kernels().affine_grid_forward(theta, xs, ys, grid, target=self.path)
        return grid

    def backward(self, grad_grid):
        xp = backend.get_array_module(grad_grid)
        grad_grid = xp.ascontiguousarray(grad_grid)
        xs = base_coords(self.w, self.align_corners, xp, grad_grid.dtype, shared=True)
        ys = base_coords(self.h, self.align_corners, xp, grad_grid.dtype, shared=True)
        grad_theta = xp.empty((grad_grid.shape[0], 2, 3), dtype=grad_grid.dtype)
        if self.path == "numba":
            cpu_kernels.affine_grid_backward(grad_grid, xs, ys, grad_theta)
        else:
            _cuda_kernels().affine_grid_backward(grad_grid, xs, ys, grad_theta, target=self.path)
        return grad_theta


def _check_params(op: str, name: str, params, tail: tuple, meaning: str) -> Tensor:
    """``params`` as a Tensor of a floating dtype with shape (N, *tail), else a TypeError/ValueError naming it."""
    if not isinstance(params, Tensor) and not backend.is_array(params):
        raise TypeError(f"{op}: {name} must be a Tensor of shape (N, {', '.join(map(str, tail))}); "
                        f"got {type(params).__name__}")
    params = as_tensor(params)
    if params.dtype not in backend.FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must be float32 or float64; got dtype {params.dtype}")
    if params.ndim != 1 + len(tail) or params.shape[1:] != tail:
        raise ValueError(f"{op}: {name} must have shape (N, {', '.join(map(str, tail))}) ({meaning}); "
                         f"got shape {params.shape}")
    return params


def _check_size(op: str, size, batch: int) -> tuple[int, int]:
    """``size`` = (N, C, H, W) with N == ``batch``, C, H, W >= 1: returns (H, W)."""
    if not isinstance(size, (tuple, list)) or not all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in size
    ):
        raise TypeError(f"{op}: size must be a tuple or list of ints (N, C, H, W); got {size!r}")
    if len(size) == 5:
        raise NotImplementedError(
            f"{op}: 3-D (volumetric) grids are not supported; size must be (N, C, H, W), got the 5 entries {size!r}"
        )
    if len(size) != 4:
        raise ValueError(f"{op}: size must have 4 entries (N, C, H, W); got {len(size)}: {size!r}")
    n, c, h, w = (int(s) for s in size)
    if n != batch:
        raise ValueError(f"{op}: size[0] (N) must equal the batch of the parameters ({batch}); got size {size!r}")
    if c < 1 or h < 1 or w < 1:
        raise ValueError(f"{op}: size entries C, H and W must be positive; got size {size!r}")
    return h, w


def _check_align_corners(op: str, align_corners) -> bool:
    if not isinstance(align_corners, (bool, np.bool_)):
        raise TypeError(f"{op}: align_corners must be a bool; got {align_corners!r}")
    return bool(align_corners)


def affine_grid(theta, size, align_corners: bool = False) -> Tensor:
    """The sampling grid of a batch of 2-D affine transforms (PyTorch's ``affine_grid``, same conventions).

    Args:
        theta: Tensor (N, 2, 3), float32 or float64, CPU or CUDA; maps output base points to input coordinates.
        size: (N, C, H, W), the size of the output image the grid samples (C is not used). N may be 0.
        align_corners: whether -1 and +1 are the centres of the corner pixels (True) or their outer edges (False).

    Returns:
        grid: Tensor (N, H, W, 2) of (x, y), ``grid[n, i, j] = theta[n] @ (x_j, y_i, 1)`` with the base coordinates
        of the module docstring; differentiable w.r.t. theta:
        ``d theta[n] = sum_{i, j} g[n, i, j] (outer) (x_j, y_i, 1)``.

    Derivation: ``docs/derivations.md``, section "Affine grid generation".

    Example::

        theta = sa.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])     # identity
        F.affine_grid(theta, (1, 3, 2, 2)).numpy()[0, :, :, 0]     # [[-0.5, 0.5], [-0.5, 0.5]]
    """
    op = "affine_grid"
    if isinstance(size, (tuple, list)) and len(size) == 5:
        _check_size(op, size, 0)  # raises the NotImplementedError for 3-D grids before theta's shape complains
    theta = _check_params(op, "theta", theta, (2, 3), "one 2 x 3 affine matrix per sample")
    h, w = _check_size(op, size, theta.shape[0])
    return AffineGrid(h, w, _check_align_corners(op, align_corners))(theta)


# =================================================================================================================
# projective_grid
# =================================================================================================================


class ProjectiveGrid(Function):
    """grid (N, H, W, 2) = the dehomogenised images of the base points under homographies (N, 3, 3).

    With p the base point and (u, v, w) = H[n] @ p: grid = (x', y') = (u / w, v / w). Backward (q = dL/d(u, v, w)):

        q_u = g_x / w,   q_v = g_y / w,   q_w = -(g_x x' + g_y y') / w,    d H[n] = sum_{i, j} q (outer) p

    Saves the homographies only (N x 9 numbers) and recomputes u, v, w in the backward: they cost one small matrix
    product, while saving them would keep an (N, H, W, 3) array alive.
    """

    def __init__(self, h: int, w: int, align_corners: bool):
        self.h, self.w, self.align_corners = h, w, align_corners

    def _project(self, homography):
        """(points (H*W, 3), uvw (N, H*W, 3)) for the base points p and their images H @ p."""
        xp = backend.get_array_module(homography)
        points = base_grid(self.h, self.w, self.align_corners, xp, homography.dtype).reshape(-1, 3)
        uvw = points @ homography.transpose(0, 2, 1)  # (N, H*W, 3): row r is H[n] @ points[r]
        return points, uvw

    def forward(self, homography):
        self.save_for_backward(homography)
        _, uvw = self._project(homography)
        grid = uvw[:, :, :2] / uvw[:, :, 2:]
        return grid.reshape(homography.shape[0], self.h, self.w, 2)

    def backward(self, grad_grid):
        (homography,) = self.saved_arrays
        xp = backend.get_array_module(homography)
        points, uvw = self._project(homography)
        inv_w = 1 / uvw[:, :, 2]
        g = grad_grid.reshape(homography.shape[0], self.h * self.w, 2)  # not -1: N may be 0
        gx, gy = g[:, :, 0], g[:, :, 1]
        q = xp.empty_like(uvw)  # dL/d(u, v, w) at each point
        q[:, :, 0] = gx * inv_w
        q[:, :, 1] = gy * inv_w
        q[:, :, 2] = -(gx * uvw[:, :, 0] + gy * uvw[:, :, 1]) * inv_w * inv_w  # -(g . x') / w, with x' = u / w
        return q.transpose(0, 2, 1) @ points  # (N, 3, 3): sum over points of q (outer) p


def projective_grid(homography, size, align_corners: bool = False) -> Tensor:
    """The sampling grid of a batch of 2-D projective transforms (homographies), in normalised coordinates.

    Args:
        homography: Tensor (N, 3, 3), float32 or float64; maps output base points (x, y, 1) to input points.
            ``[[theta], [0, 0, 1]]`` gives exactly ``affine_grid(theta)``.
        size: (N, C, H, W) of the output (C is not used).
        align_corners: the base-coordinate convention, as in :func:`affine_grid`.

    Returns:
        grid: Tensor (N, H, W, 2), ``grid[n, i, j] = (u / w, v / w)`` with ``(u, v, w) = homography[n] @ (x_j, y_i,
        1)``; differentiable w.r.t. the homography (see :class:`ProjectiveGrid`). Where w = 0 the point maps to
        infinity and the grid holds inf or NaN (the sampler treats such points as outside the image); where w < 0
        the point lies "behind the camera" and is mapped as the formula says.

    Derivation: ``docs/derivations.md``, section "Affine grid generation" (projective grids).
    """
    op = "projective_grid"
    homography = _check_params(op, "homography", homography, (3, 3), "one 3 x 3 homography per sample")
    h, w = _check_size(op, size, homography.shape[0])
    return ProjectiveGrid(h, w, _check_align_corners(op, align_corners))(homography)
