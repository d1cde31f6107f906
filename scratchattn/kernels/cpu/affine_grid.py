"""Numba kernels of the affine grid generator: the forward map theta -> grid and its gradient w.r.t. theta.

The CUDA twin is ``kernels/cuda/affine_grid.cu`` (+ its launcher ``kernels/cuda/affine_grid.py``): same function
names, argument order and variable names. Both work on plain C-contiguous arrays of one floating dtype and know
nothing of Tensors; ``functional/affine_grid.py`` validates the input, builds the base coordinates ``xs``/``ys``
(the align_corners convention lives there, not here) and calls them. The math is in ``docs/derivations.md``,
section "Affine grid generation":

    forward    grid[n, i, j, k] = theta[n, k, 0] * xs[j] + theta[n, k, 1] * ys[i] + theta[n, k, 2]
    backward   grad_theta[n, k, :] = sum_{i, j} grad_grid[n, i, j, k] * (xs[j], ys[i], 1)

The backward is computed in two stages that both twins share, because the sum factorises over rows:

    row_sums[n, i, k, 0] = sum_j grad_grid[n, i, j, k] * xs[j]      (stage 1, one task per row (n, i))
    row_sums[n, i, k, 1] = sum_j grad_grid[n, i, j, k]
    grad_theta[n, k, 0] = sum_i row_sums[n, i, k, 0]                 (stage 2, one task per (n, k, column))
    grad_theta[n, k, 1] = sum_i ys[i] * row_sums[n, i, k, 1]
    grad_theta[n, k, 2] = sum_i row_sums[n, i, k, 1]

Every output element is written by exactly one loop iteration, in a fixed order, so the result is race-free and
bitwise identical across runs and thread counts; summing W terms then H terms (instead of H*W in one chain) also
keeps the float32 rounding error small.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Small problems run serially: waking the thread pool costs tens of microseconds (and, on a loaded machine, up to a
# scheduler time slice per parallel region), more than a few thousand points of work. Each loop body is written
# once, as a per-row function, and driven by a parallel and a serial loop.
PARALLEL_MIN_POINTS = 1 << 15


def _pick(parallel_kernel, serial_kernel, points: int):
    return parallel_kernel if points >= PARALLEL_MIN_POINTS else serial_kernel


# =================================================================================================================
# forward: theta (N, 2, 3) -> grid (N, H, W, 2)
# =================================================================================================================


@njit(cache=True)
def _forward_row(theta, xs, ys, grid, row):
    """Output row (b, i) of the grid: grid[b, i, j] = theta[b] @ (xs[j], ys[i], 1) for every column j."""
    h, w = grid.shape[1], grid.shape[2]
    b = row // h
    i = row - b * h
    # Fold the row's constant part (y term + translation) once per row.
    cx = theta[b, 0, 1] * ys[i] + theta[b, 0, 2]
    cy = theta[b, 1, 1] * ys[i] + theta[b, 1, 2]
    ax = theta[b, 0, 0]
    ay = theta[b, 1, 0]
    for j in range(w):
        grid[b, i, j, 0] = ax * xs[j] + cx
        grid[b, i, j, 1] = ay * xs[j] + cy


@njit(parallel=True, cache=True)
def _forward_parallel(theta, xs, ys, grid):
    for row in prange(grid.shape[0] * grid.shape[1]):  # a gather: each row has one writer
        _forward_row(theta, xs, ys, grid, row)


@njit(cache=True)
def _forward_serial(theta, xs, ys, grid):
    for row in range(grid.shape[0] * grid.shape[1]):
        _forward_row(theta, xs, ys, grid, row)


def affine_grid_forward(theta, xs, ys, grid):
    """grid (N, H, W, 2, preallocated) = theta[n] @ (xs[j], ys[i], 1); rows (n, i) split across threads."""
    _pick(_forward_parallel, _forward_serial, grid.size // 2)(theta, xs, ys, grid)


# =================================================================================================================
# backward: grad_grid (N, H, W, 2) -> grad_theta (N, 2, 3), in two stages (see the module docstring)
# =================================================================================================================


@njit(cache=True)
def _backward_row(grad_grid, xs, row_sums, row):
    """Stage 1 for row (b, i): row_sums[b, i, k] = (sum_j grad_grid[b, i, j, k] xs[j], sum_j grad_grid[b, i, j, k])."""
    h, w = grad_grid.shape[1], grad_grid.shape[2]
    b = row // h
    i = row - b * h
    zero = grad_grid.dtype.type(0)
    sum_gx_x = zero
    sum_gx = zero
    sum_gy_x = zero
    sum_gy = zero
    for j in range(w):
        gx = grad_grid[b, i, j, 0]
        gy = grad_grid[b, i, j, 1]
        sum_gx_x += gx * xs[j]
        sum_gx += gx
        sum_gy_x += gy * xs[j]
        sum_gy += gy
    row_sums[b, i, 0, 0] = sum_gx_x
    row_sums[b, i, 0, 1] = sum_gx
    row_sums[b, i, 1, 0] = sum_gy_x
    row_sums[b, i, 1, 1] = sum_gy


@njit(parallel=True, cache=True)
def _backward_rows_parallel(grad_grid, xs, row_sums):
    for row in prange(grad_grid.shape[0] * grad_grid.shape[1]):  # each row writes its own four numbers
        _backward_row(grad_grid, xs, row_sums, row)


@njit(cache=True)
def _backward_rows_serial(grad_grid, xs, row_sums):
    for row in range(grad_grid.shape[0] * grad_grid.shape[1]):
        _backward_row(grad_grid, xs, row_sums, row)


def affine_grid_backward_rows(grad_grid, xs, row_sums):
    """Stage 1: row_sums (N, H, 2, 2, preallocated); rows (n, i) split across threads."""
    _pick(_backward_rows_parallel, _backward_rows_serial, grad_grid.size // 2)(grad_grid, xs, row_sums)


@njit(cache=True)
def affine_grid_backward_theta(row_sums, ys, grad_theta):
    """Stage 2: grad_theta[n, k] = sum_i (row_sums[n, i, k, 0], ys[i] * row_sums[n, i, k, 1], row_sums[n, i, k, 1]).

    Serial on purpose: it touches N*H*4 numbers (a few thousand), less work than waking the thread pool costs."""
    n, h = row_sums.shape[0], row_sums.shape[1]
    zero = row_sums.dtype.type(0)
    for b in range(n):
        for k in range(2):
            sum_x = zero
            sum_y = zero
            sum_1 = zero
            for i in range(h):
                sum_x += row_sums[b, i, k, 0]
                sum_y += ys[i] * row_sums[b, i, k, 1]
                sum_1 += row_sums[b, i, k, 1]
            grad_theta[b, k, 0] = sum_x
            grad_theta[b, k, 1] = sum_y
            grad_theta[b, k, 2] = sum_1


def affine_grid_backward(grad_grid, xs, ys, grad_theta):
    """grad_theta (N, 2, 3, preallocated) = sum over the grid of grad_grid (x) (xs[j], ys[i], 1): both stages."""
    n, h = grad_grid.shape[0], grad_grid.shape[1]
    row_sums = np.empty((n, h, 2, 2), dtype=grad_grid.dtype)
    affine_grid_backward_rows(grad_grid, xs, row_sums)
    affine_grid_backward_theta(row_sums, ys, grad_theta)
