"""Launchers of the CUDA grid-sampling kernels (``grid_sample.cu``): the same functions and argument order as the
Numba twin ``kernels/cpu/grid_sample.py``, plus ``target``.

``target`` is ``"cupy"`` (CuPy arrays, the kernels compiled by NVRTC and run on the GPU) or ``"cuda-host"`` (NumPy
arrays, the same source compiled for the CPU by the host shim). The arrays arrive C-contiguous and of one floating
dtype, already validated by ``functional/grid_sample.py``: these functions only size the launches (one thread per
output pixel) and pass every scalar with an explicit NumPy type (``long long`` = int64).

The input gradient is a scatter (``atomicAdd``: output pixels share taps), whose order of additions varies from run
to run on a GPU. In deterministic mode (``backend.deterministic_algorithms_enabled()``) it comes instead from
``grid_sample_backward_input_planes``, one thread per (n, c) plane adding in a fixed order: bitwise reproducible,
slower (N * C threads, the taps recomputed per channel). The grid gradient has one writer per pixel either way. The
Numba twin needs no such mode: it is deterministic as it is.
"""

from __future__ import annotations

import numpy as np

from ... import backend
from .launcher import get_kernel, launch_config

SOURCE = "grid_sample.cu"


def _sizes(inp, grid, channels_last):
    if channels_last:
        N, H, W, C = inp.shape
    else:
        N, C, H, W = inp.shape
    return tuple(np.int64(s) for s in (N, C, H, W, grid.shape[1], grid.shape[2]))


def channel_lanes_log2(channels: int) -> int:
    """log2 of the threads per output pixel of the channels-last forward: the power of two >= C, at most 32 (a warp
    then covers 32 contiguous channels, or whole pixels when C < 32)."""
    return min(max(int(channels) - 1, 0).bit_length(), 5)


def grid_sample_forward(inp, grid, out, mode, padding_mode, align_corners, channels_last, target):
    """Sample ``inp`` at ``grid`` into the preallocated ``out`` (shapes as in the Numba twin)."""
    pixels = grid.shape[0] * grid.shape[1] * grid.shape[2]
    if pixels == 0 or out.size == 0:
        return
    options = (np.int64(mode), np.int64(padding_mode), np.int64(bool(align_corners)))
    if channels_last:  # several threads per pixel, over its channels: coalesced loads (see the kernel)
        lanes_log2 = channel_lanes_log2(inp.shape[3])
        kern = get_kernel(SOURCE, "grid_sample_forward_channels_last", inp.dtype, target)
        blocks, threads = launch_config(pixels << lanes_log2)
        kern(blocks, threads, (inp, grid, out, *_sizes(inp, grid, True), *options, np.int64(lanes_log2)))
        return
    kern = get_kernel(SOURCE, "grid_sample_forward", inp.dtype, target)
    blocks, threads = launch_config(pixels)
    kern(blocks, threads, (inp, grid, out, *_sizes(inp, grid, False), *options, np.int64(False)))


def grid_sample_backward(grad_out, inp, grid, grad_inp, grad_grid, mode, padding_mode, align_corners,
                         channels_last, target):
    """Gradients into ``grad_inp`` (the shape of ``inp``, zero-filled: the kernel adds into it) and ``grad_grid``;
    pass None for one that is not needed."""
    xp = backend.get_array_module(inp)
    need_grad_inp = grad_inp is not None
    need_grad_grid = grad_grid is not None
    total = grid.shape[0] * grid.shape[1] * grid.shape[2]
    if need_grad_grid and total > 0 and inp.size == 0:  # no channels: nothing to sum, the gradient is 0
        grad_grid[...] = 0
    if total == 0 or inp.size == 0:
        return
    # The kernel takes a pointer for each output; an unneeded one gets a one-element placeholder it never touches.
    if not need_grad_inp:
        grad_inp = xp.empty(1, dtype=inp.dtype)
    if not need_grad_grid:
        grad_grid = xp.empty(1, dtype=grid.dtype)
    options = (np.int64(mode), np.int64(padding_mode), np.int64(bool(align_corners)), np.int64(bool(channels_last)))
    planes = need_grad_inp and backend.deterministic_algorithms_enabled()
    if planes:  # deterministic mode: grad_inp from the planes kernel, no atomics
        kern = get_kernel(SOURCE, "grid_sample_backward_input_planes", inp.dtype, target)
        n_planes = inp.shape[0] * (inp.shape[3] if channels_last else inp.shape[1])  # N * C
        blocks, threads = launch_config(n_planes)
        kern(blocks, threads, (grad_out, grid, grad_inp, *_sizes(inp, grid, channels_last), *options))
        if not need_grad_grid:
            return
        grad_inp = xp.empty(1, dtype=inp.dtype)  # the pixels kernel below then computes only grad_grid
    kern = get_kernel(SOURCE, "grid_sample_backward", inp.dtype, target)
    blocks, threads = launch_config(total)
    kern(blocks, threads, (grad_out, inp, grid, grad_inp, grad_grid, *_sizes(inp, grid, channels_last), *options,
                           np.int64(need_grad_inp and not planes), np.int64(need_grad_grid)))
