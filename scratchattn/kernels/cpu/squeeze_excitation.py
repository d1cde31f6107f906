"""Numba kernels of the fused squeeze-excitation op: the four passes over the big (N, C, H, W) arrays.

Squeeze-excitation reads and writes tensors of the size of its input only in four places; everything else works
on (N, C) descriptors and goes through ``xp.matmul`` in ``functional/squeeze_excitation.py``:

* ``se_squeeze``          z[n, c]  = mean_p x[n, c, p]                    (forward, one read of x)
* ``se_scale``            y[n, c, p] = x[n, c, p] * s[n, c]               (forward, one read of x, one write of y)
* ``se_backward_reduce``  ds[n, c] = sum_p g[n, c, p] * x[n, c, p]        (backward, one read of g and x)
* ``se_backward_input``   dx[n, c, p] = g[n, c, p] * s[n, c] + dz_hw[n, c] (backward, one read of g, one write)

where p runs over the H*W pixels and ``dz_hw = dz / (H W)``. Each kernel comes in two layouts with the same
arguments: ``_nchw`` takes the big arrays viewed as (N, C, HW), ``_nhwc`` as (N, HW, C) (a reshape, no copy).
Outputs are preallocated by the caller; kernels assume valid, C-contiguous input (the functional validates).

Parallelism is race-free by construction (style rule 6). In NCHW a (n, c) plane is contiguous, so every
``prange`` iteration owns one plane and its single output value. In NHWC the channels of a pixel are contiguous
and a plane is strided, so the reductions split each sample's pixels into fixed blocks of ``PIXEL_BLOCK``; each
``prange`` iteration sums one (n, block) into its own row of a ``partial`` buffer, and a second loop adds the
blocks in a fixed order. The split does not depend on the number of threads, so results are bitwise identical
from run to run and from machine to machine (for one compiled kernel).

Sums accumulate in float64 (also for float32 data) and use ``fastmath={"reassoc"}``: without permission to
reassociate, LLVM must add the pixels one after another and the reduction runs at about a sixth of memory speed;
with it, it keeps several partial sums in SIMD lanes. The order is still fixed by the compiled code.
"""

from __future__ import annotations

import contextlib

import numba
import numpy as np
from numba import njit, prange

# Pixels per block in the NHWC reductions: large enough that the per-block overhead is small, small enough that a
# sample of a 7x7 or 14x14 map still splits into a few blocks for the two threads.
PIXEL_BLOCK = 64

# Below this many elements the caller runs a kernel on one thread (see single_thread).
SERIAL_BELOW = 1 << 16


@contextlib.contextmanager
def single_thread():
    """Run the kernels called inside on one thread.

    A parallel loop ends with every thread waiting for the slowest; on a busy machine one descheduled thread makes
    a microsecond kernel take milliseconds. For small arrays one thread is as fast as two, so the functional runs
    them serially. (The kernels are the same compiled functions; only Numba's thread count for this caller changes.)
    """
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)

_REDUCE = dict(parallel=True, cache=True, error_model="numpy", fastmath={"reassoc"})
_ELEMENTWISE = dict(parallel=True, cache=True, error_model="numpy")


# =================================================================================================================
# forward: se_squeeze, se_scale
# =================================================================================================================


@njit(**_REDUCE)
def se_squeeze_nchw(x, z):
    """z[n, c] = mean over p of x[n, c, p];  x (N, C, HW), z (N, C)."""
    n_batch, channels, hw = x.shape
    for nc in prange(n_batch * channels):
        n = nc // channels
        c = nc - n * channels
        plane = x[n, c]
        acc = 0.0
        for p in range(hw):
            acc += plane[p]
        z[n, c] = acc / hw


@njit(**_REDUCE)
def se_squeeze_nhwc(x, z):
    """z[n, c] = mean over p of x[n, p, c];  x (N, HW, C), z (N, C). Blocked over pixels, see the module notes."""
    n_batch, hw, channels = x.shape
    n_blocks = (hw + PIXEL_BLOCK - 1) // PIXEL_BLOCK
    partial = np.zeros((n_batch, n_blocks, channels), dtype=np.float64)
    for task in prange(n_batch * n_blocks):
        n = task // n_blocks
        block = task - n * n_blocks
        acc = partial[n, block]
        start = block * PIXEL_BLOCK
        for q in range(min(PIXEL_BLOCK, hw - start)):
            pixel = x[n, start + q]
            for c in range(channels):
                acc[c] += pixel[c]
    for n in prange(n_batch):
        for c in range(channels):
            total = 0.0
            for block in range(n_blocks):
                total += partial[n, block, c]
            z[n, c] = total / hw


@njit(**_ELEMENTWISE)
def se_scale_nchw(x, s, y):
    """y[n, c, p] = x[n, c, p] * s[n, c];  x, y (N, C, HW), s (N, C)."""
    n_batch, channels, hw = x.shape
    for nc in prange(n_batch * channels):
        n = nc // channels
        c = nc - n * channels
        gate = s[n, c]
        plane_x = x[n, c]
        plane_y = y[n, c]
        for p in range(hw):
            plane_y[p] = plane_x[p] * gate


@njit(**_ELEMENTWISE)
def se_scale_nhwc(x, s, y):
    """y[n, p, c] = x[n, p, c] * s[n, c];  x, y (N, HW, C), s (N, C)."""
    n_batch, hw, channels = x.shape
    for row in prange(n_batch * hw):
        n = row // hw
        p = row - n * hw
        gate = s[n]
        pixel_x = x[n, p]
        pixel_y = y[n, p]
        for c in range(channels):
            pixel_y[c] = pixel_x[c] * gate[c]


# =================================================================================================================
# backward: se_backward_reduce, se_backward_input
# =================================================================================================================


@njit(**_REDUCE)
def se_backward_reduce_nchw(g, x, ds):
    """ds[n, c] = sum over p of g[n, c, p] * x[n, c, p];  g, x (N, C, HW), ds (N, C)."""
    n_batch, channels, hw = x.shape
    for nc in prange(n_batch * channels):
        n = nc // channels
        c = nc - n * channels
        plane_g = g[n, c]
        plane_x = x[n, c]
        acc = 0.0
        for p in range(hw):
            acc += plane_g[p] * plane_x[p]
        ds[n, c] = acc


@njit(**_REDUCE)
def se_backward_reduce_nhwc(g, x, ds):
    """ds[n, c] = sum over p of g[n, p, c] * x[n, p, c];  g, x (N, HW, C), ds (N, C). Blocked over pixels."""
    n_batch, hw, channels = x.shape
    n_blocks = (hw + PIXEL_BLOCK - 1) // PIXEL_BLOCK
    partial = np.zeros((n_batch, n_blocks, channels), dtype=np.float64)
    for task in prange(n_batch * n_blocks):
        n = task // n_blocks
        block = task - n * n_blocks
        acc = partial[n, block]
        start = block * PIXEL_BLOCK
        for q in range(min(PIXEL_BLOCK, hw - start)):
            pixel_g = g[n, start + q]
            pixel_x = x[n, start + q]
            for c in range(channels):
                acc[c] += pixel_g[c] * pixel_x[c]
    for n in prange(n_batch):
        for c in range(channels):
            total = 0.0
            for block in range(n_blocks):
                total += partial[n, block, c]
            ds[n, c] = total


@njit(**_ELEMENTWISE)
def se_backward_input_nchw(g, s, dz_hw, dx):
    """dx[n, c, p] = g[n, c, p] * s[n, c] + dz_hw[n, c];  g, dx (N, C, HW), s, dz_hw (N, C)."""
    n_batch, channels, hw = g.shape
    for nc in prange(n_batch * channels):
        n = nc // channels
        c = nc - n * channels
        gate = s[n, c]
        shift = dz_hw[n, c]
        plane_g = g[n, c]
        plane_dx = dx[n, c]
        for p in range(hw):
            plane_dx[p] = plane_g[p] * gate + shift


@njit(**_ELEMENTWISE)
def se_backward_input_nhwc(g, s, dz_hw, dx):
    """dx[n, p, c] = g[n, p, c] * s[n, c] + dz_hw[n, c];  g, dx (N, HW, C), s, dz_hw (N, C)."""
    n_batch, hw, channels = g.shape
    for row in prange(n_batch * hw):
        n = row // hw
        p = row - n * hw
        gate = s[n]
        shift = dz_hw[n]
        pixel_g = g[n, p]
        pixel_dx = dx[n, p]
        for c in range(channels):
            pixel_dx[c] = pixel_g[c] * gate[c] + shift[c]
