"""Launchers of the CUDA squeeze-excitation kernels (``squeeze_excitation.cu``): the same functions, argument order
and variable names as the Numba twin ``kernels/cpu/squeeze_excitation.py``, plus ``target``.

``target`` is ``"cupy"`` (CuPy arrays, the kernels compiled by NVRTC and run on the GPU) or ``"cuda-host"`` (NumPy
arrays, the same source compiled for the CPU by the host shim). The big arrays arrive as C-contiguous 3-D views,
(N, C, HW) for ``*_nchw`` and (N, HW, C) for ``*_nhwc``, of one floating dtype, already validated by
``functional/squeeze_excitation.py``. These functions size the launches, zero the outputs the kernels accumulate
into with atomicAdd, and pass every scalar as ``np.int64`` (``long long``), a bias flag too (``has_b1``: 0 or 1;
without the bias, any one-element array of the dtype stands in for it and is never read).

The two reductions (``se_squeeze_*``, ``se_backward_reduce_*``) add partial sums into each output with atomicAdd,
whose order varies from run to run on a GPU. In deterministic mode (``backend.deterministic_algorithms_enabled()``)
they are launched with one writer per output instead, with no kernel change: ``lanes = 1`` (NCHW: one thread per
plane) and ``pixel_block = hw`` (NHWC: one pixel block per sample), so each atomicAdd adds to the zero the launcher
wrote and the result is the same bit for bit on every run. The cost is parallelism: N * C threads. The Numba twin is
deterministic as it is.
"""

from __future__ import annotations

import numpy as np

from ... import backend
from .launcher import get_kernel, launch_config

SOURCE = "squeeze_excitation.cu"

# Pixels per thread block in the NHWC kernels (the Numba twin uses the same split).
PIXEL_BLOCK = 64
# Aim for at least this many threads in the NCHW kernels, so that a GPU has enough loads in flight.
TARGET_THREADS = 1 << 17


def nchw_lanes(n_batch: int, channels: int, hw: int) -> int:
    """Threads per (n, c) plane in the NCHW kernels: a multiple of 32 (a warp per plane, coalesced), doubled up to
    1024 while the grid has fewer than TARGET_THREADS threads and each thread still gets 32 pixels or more."""
    lanes = 32
    while lanes < 1024 and n_batch * channels * lanes < TARGET_THREADS and 2 * lanes * 32 <= hw:
        lanes *= 2
    return lanes


def _launch_nchw(name, arrays, shape, target, reduction=False):
    n_batch, channels, hw = shape
    if reduction and backend.deterministic_algorithms_enabled():
        lanes = 1  # one writer per output: deterministic
    else:
        lanes = nchw_lanes(n_batch, channels, hw)
    kern = get_kernel(SOURCE, name, arrays[0].dtype, target)
    blocks, threads = launch_config(n_batch * channels * lanes)
    kern(blocks, threads, (*arrays, np.int64(n_batch), np.int64(channels), np.int64(hw), np.int64(lanes)))


def _launch_nhwc(name, arrays, shape, target, reduction=False):
    n_batch, hw, channels = shape
    if reduction and backend.deterministic_algorithms_enabled():
        pixel_block = hw  # one pixel block per sample, so one writer per output: deterministic
    else:
        pixel_block = PIXEL_BLOCK
    n_blocks = (hw + pixel_block - 1) // pixel_block
    kern = get_kernel(SOURCE, name, arrays[0].dtype, target)
    blocks, threads = launch_config(n_batch * n_blocks * channels)
    kern(blocks, threads, (*arrays, np.int64(n_batch), np.int64(hw), np.int64(channels), np.int64(pixel_block)))


# =================================================================================================================
# forward: se_squeeze, se_hidden, se_gate, se_scale, and se_forward (all four)
# =================================================================================================================


def se_squeeze_nchw(x, z, target):
    """z (N, C) = mean over p of x (N, C, HW)."""
    z.fill(0)  # the kernel adds partial sums into z
    if x.size:
        _launch_nchw("se_squeeze_nchw", (x, z), x.shape, target, reduction=True)


def se_squeeze_nhwc(x, z, target):
    """z (N, C) = mean over p of x (N, HW, C)."""
    z.fill(0)
    if x.size:
        _launch_nhwc("se_squeeze_nhwc", (x, z), x.shape, target, reduction=True)


def se_hidden(z, w1, b1, r1, has_b1, target):
    """r1 (N, C_r) = relu(z W1^T + b1) for z (N, C), w1 (C_r, C), b1 (C_r,); has_b1 False: b1 is a placeholder."""
    n_batch, channels = z.shape
    hidden = w1.shape[0]
    if r1.size:
        kern = get_kernel(SOURCE, "se_hidden", z.dtype, target)
        blocks, threads = launch_config(n_batch * hidden)
        kern(blocks, threads, (z, w1, b1, r1, np.int64(n_batch), np.int64(channels), np.int64(hidden),
                               np.int64(bool(has_b1))))


def se_gate(r1, w2, b2, s, has_b2, target):
    """s (N, C) = sigmoid(r1 W2^T + b2) for r1 (N, C_r), w2 (C, C_r), b2 (C,); has_b2 False: b2 is a placeholder."""
    n_batch, hidden = r1.shape
    channels = w2.shape[0]
    if s.size:
        kern = get_kernel(SOURCE, "se_gate", r1.dtype, target)
        blocks, threads = launch_config(n_batch * channels)
        kern(blocks, threads, (r1, w2, b2, s, np.int64(n_batch), np.int64(channels), np.int64(hidden),
                               np.int64(bool(has_b2))))


def se_scale_nchw(x, s, y, target):
    """y (N, C, HW) = x * s[:, :, None]."""
    if x.size:
        _launch_nchw("se_scale_nchw", (x, s, y), x.shape, target)


def se_scale_nhwc(x, s, y, target):
    """y (N, HW, C) = x * s[:, None, :]."""
    if x.size:
        _launch_nhwc("se_scale_nhwc", (x, s, y), x.shape, target)


# A GPU wants the four passes (each spreads over the whole grid), so se_forward is simply them in order; the Numba
# twin works sample by sample instead, to keep each sample in the CPU's cache.
def se_forward_nchw(x, w1, b1, w2, b2, z, r1, s, y, has_b1, has_b2, target):
    """The whole forward: z (N, C), r1 (N, C_r), s (N, C) and y (N, C, HW) from x (N, C, HW) and the weights."""
    se_squeeze_nchw(x, z, target)
    se_hidden(z, w1, b1, r1, has_b1, target)
    se_gate(r1, w2, b2, s, has_b2, target)
    se_scale_nchw(x, s, y, target)


def se_forward_nhwc(x, w1, b1, w2, b2, z, r1, s, y, has_b1, has_b2, target):
    """The whole forward: z (N, C), r1 (N, C_r), s (N, C) and y (N, HW, C) from x (N, HW, C) and the weights."""
    se_squeeze_nhwc(x, z, target)
    se_hidden(z, w1, b1, r1, has_b1, target)
    se_gate(r1, w2, b2, s, has_b2, target)
    se_scale_nhwc(x, s, y, target)


# =================================================================================================================
# backward: se_backward_reduce, se_backward_input
# =================================================================================================================


def se_backward_reduce_nchw(g, x, ds, target):
    """ds (N, C) = sum over p of g * x, for g, x (N, C, HW)."""
    ds.fill(0)
    if x.size:
        _launch_nchw("se_backward_reduce_nchw", (g, x, ds), x.shape, target, reduction=True)


def se_backward_reduce_nhwc(g, x, ds, target):
    """ds (N, C) = sum over p of g * x, for g, x (N, HW, C)."""
    ds.fill(0)
    if x.size:
        _launch_nhwc("se_backward_reduce_nhwc", (g, x, ds), x.shape, target, reduction=True)


def se_backward_input_nchw(g, s, dz_hw, dx, target):
    """dx (N, C, HW) = g * s[:, :, None] + dz_hw[:, :, None]."""
    if g.size:
        _launch_nchw("se_backward_input_nchw", (g, s, dz_hw, dx), g.shape, target)


def se_backward_input_nhwc(g, s, dz_hw, dx, target):
    """dx (N, HW, C) = g * s[:, None, :] + dz_hw[:, None, :]."""
    if g.size:
        _launch_nhwc("se_backward_input_nhwc", (g, s, dz_hw, dx), g.shape, target)
