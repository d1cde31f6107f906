"""Launchers of the CUDA affine grid kernels (``affine_grid.cu``): the same functions, argument order and variable
names as the Numba twin ``kernels/cpu/affine_grid.py``, plus ``target``.

``target`` is ``"cupy"`` (CuPy arrays, the kernels compiled by NVRTC and run on the GPU) or ``"cuda-host"`` (NumPy
arrays, the same source compiled for the CPU by the host shim). The arrays arrive C-contiguous and of one floating
dtype, already validated by ``functional/affine_grid.py``: these functions only size the launches and pass every
scalar with an explicit NumPy type (``long long`` = int64).
"""

from __future__ import annotations

import numpy as np

from ... import backend
from .launcher import get_kernel, launch_config

SOURCE = "affine_grid.cu"


def affine_grid_forward(theta, xs, ys, grid, target):
    """grid (N, H, W, 2, preallocated) = theta[n] @ (xs[j], ys[i], 1); one thread per grid point."""
    n, h, w = grid.shape[0], grid.shape[1], grid.shape[2]
    total = n * h * w
    if total == 0:  # a launch with zero blocks is an error in CUDA
        return
    kern = get_kernel(SOURCE, "affine_grid_forward", grid.dtype, target)
    blocks, threads = launch_config(total)
    kern(blocks, threads, (theta, xs, ys, grid, np.int64(n), np.int64(h), np.int64(w)))


def affine_grid_backward(grad_grid, xs, ys, grad_theta, target):
    """grad_theta (N, 2, 3, preallocated) = sum over the grid of grad_grid (x) (xs[j], ys[i], 1), in two stages:
    ``affine_grid_backward_rows`` (one thread per row) then ``affine_grid_backward_theta`` (one per entry)."""
    n, h, w = grad_grid.shape[0], grad_grid.shape[1], grad_grid.shape[2]
    if n == 0:
        return
    xp = backend.get_array_module(grad_grid)
    row_sums = xp.empty((n, h, 2, 2), dtype=grad_grid.dtype)

    kern = get_kernel(SOURCE, "affine_grid_backward_rows", grad_grid.dtype, target)
    blocks, threads = launch_config(n * h)
    kern(blocks, threads, (grad_grid, xs, row_sums, np.int64(n), np.int64(h), np.int64(w)))

    kern = get_kernel(SOURCE, "affine_grid_backward_theta", grad_grid.dtype, target)
    blocks, threads = launch_config(n * 6)
    kern(blocks, threads, (row_sums, ys, grad_theta, np.int64(n), np.int64(h)))
