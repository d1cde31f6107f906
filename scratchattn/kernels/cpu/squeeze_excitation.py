"""Numba kernels of the fused squeeze-excitation op: the passes over the big (N, C, H, W) arrays and the excitation.

Squeeze-excitation reads and writes tensors of the size of its input only in four places:

* ``se_squeeze``          z[n, c]  = mean_p x[n, c, p]                    (forward, one read of x)
* ``se_scale``            y[n, c, p] = x[n, c, p] * s[n, c]               (forward, one read of x, one write of y)
* ``se_backward_reduce``  ds[n, c] = sum_p g[n, c, p] * x[n, c, p]        (backward, one read of g and x)
* ``se_backward_input``   dx[n, c, p] = g[n, c, p] * s[n, c] + dz_hw[n, c] (backward, one read of g, one write)

where p runs over the H*W pixels and ``dz_hw = dz / (H W)``. Between the two forward passes sits the excitation, on
(N, C)-sized arrays only:

* ``se_hidden``           r1[n, j] = relu(sum_c z[n, c] w1[j, c] + b1[j])       (j < C_r)
* ``se_gate``             s[n, c]  = sigmoid(sum_j r1[n, j] w2[c, j] + b2[c])

and ``se_forward`` is the whole forward in one call (the function the op calls). Here it works sample by sample:
for each n, squeeze its plane(s), excite, and scale while the sample is still in the core's cache, so that the second
read of x comes from cache rather than memory; the ``prange`` runs over samples. With fewer samples than threads
that would leave threads idle, so it runs the four passes one after another instead; both give the same bits
(tests/functional/test_squeeze_excitation.py checks it). The backward's small matrix products go through
``xp.matmul`` in ``functional/squeeze_excitation.py``.

Each big-array kernel comes in two layouts with the same arguments: ``_nchw`` takes the big arrays viewed as
(N, C, HW), ``_nhwc`` as (N, HW, C) (a reshape, no copy). Outputs are preallocated by the caller; kernels assume
valid, C-contiguous input (the functional validates). A missing bias is passed as a flag (``has_b1``/``has_b2``
False) with any one-element array in its place, which the kernels never read: one compiled kernel serves both cases.

Parallelism is race-free by construction (style rule 6). In NCHW a (n, c) plane is contiguous, so every
``prange`` iteration owns one plane and its single output value. In NHWC the channels of a pixel are contiguous
and a plane is strided, so the reductions split each sample's pixels into fixed blocks of ``PIXEL_BLOCK``; each
``prange`` iteration sums one (n, block) into its own row of a ``partial`` buffer, and a second loop adds the
blocks in a fixed order. The split does not depend on the number of threads, so results are bitwise identical
from run to run and from machine to machine (for one compiled kernel). The per-sample forward uses the same
helpers (``_plane_mean``, ``_sum_pixel_block``, ``_mean_of_blocks``) as the squeeze kernels, so it adds in the
same order.

Sums accumulate in float64 (also for float32 data). The big reductions use ``fastmath={"reassoc"}``: without
permission to reassociate, LLVM must add the pixels one after another and the reduction runs at about a sixth of
memory speed; with it, it keeps several partial sums in SIMD lanes. The order is still fixed by the compiled code.
The excitation's dot products (C or C_r terms) add strictly in index order, as their CUDA twins do, so that the
two members of the pair agree.
"""

from __future__ import annotations

import contextlib
import math

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
# The helpers below are compiled once and inlined by LLVM into every kernel that calls them, each with its own flags:
# the squeeze kernels and the per-sample forward share them, and so add in the same order.
_HELPER_REDUCE = dict(cache=True, error_model="numpy", fastmath={"reassoc"})
_HELPER = dict(cache=True, error_model="numpy")


# =================================================================================================================
# helpers for one sample: _plane_mean, _sum_pixel_block, _mean_of_blocks, _hidden_row, _gate_row
# =================================================================================================================


@njit(**_HELPER_REDUCE)
def _plane_mean(plane):
    """The mean of one contiguous (HW,) plane, summed in float64."""
    hw = plane.shape[0]
    acc = 0.0
    for p in range(hw):
        acc += plane[p]
    return acc / hw


@njit(**_HELPER_REDUCE)
def _sum_pixel_block(x_n, start, acc):
    """acc[c] += x_n[p, c] over the (at most PIXEL_BLOCK) pixels p of the block from ``start``;  x_n (HW, C)."""
    hw, channels = x_n.shape
    for q in range(min(PIXEL_BLOCK, hw - start)):
        pixel = x_n[start + q]
        for c in range(channels):
            acc[c] += pixel[c]


@njit(**_HELPER_REDUCE)
def _mean_of_blocks(partial_n, hw, z_n):
    """z_n[c] = (sum over blocks of partial_n[block, c]) / hw, adding the blocks in order;  partial_n (blocks, C)."""
    n_blocks, channels = partial_n.shape
    for c in range(channels):
        total = 0.0
        for block in range(n_blocks):
            total += partial_n[block, c]
        z_n[c] = total / hw


@njit(**_HELPER)
def _hidden_row(z_n, w1, b1, has_b1, r1_n):
    """r1_n[j] = relu(sum_c z_n[c] w1[j, c] + b1[j]) for one sample;  z_n (C,), w1 (C_r, C), r1_n (C_r,).

    Each sum adds c = 0, 1, ... in order, like one thread of the CUDA se_hidden. The loop over c is the outer one so
    that the C_r sums advance side by side: one sum at a time would wait on every addition before the next.
    """
    hidden, channels = w1.shape
    acc = np.zeros(hidden, dtype=np.float64)
    for c in range(channels):
        z_c = z_n[c]
        for j in range(hidden):
            acc[j] += z_c * w1[j, c]
    for j in range(hidden):
        a1 = acc[j] + b1[j] if has_b1 else acc[j]
        r1_n[j] = 0.0 if a1 < 0.0 else a1  # relu; a NaN passes through, as with xp.maximum


@njit(**_HELPER)
def _gate_row(r1_n, w2, b2, has_b2, s_n):
    """s_n[c] = sigmoid(sum_j r1_n[j] w2[c, j] + b2[c]) for one sample;  r1_n (C_r,), w2 (C, C_r), s_n (C,)."""
    channels, hidden = w2.shape
    for c in range(channels):
        acc = 0.0
        for j in range(hidden):
            acc += r1_n[j] * w2[c, j]
        a2 = acc + b2[c] if has_b2 else acc
        # 1 / (1 + e^-a) overflows e^-a for very negative a; the tanh form is the same function and never does.
        s_n[c] = 0.5 * (1.0 + math.tanh(0.5 * a2))


# =================================================================================================================
# forward: se_squeeze, se_hidden, se_gate, se_scale, and se_forward (all four)
# =================================================================================================================


@njit(**_REDUCE)
def se_squeeze_nchw(x, z):
    """z[n, c] = mean over p of x[n, c, p];  x (N, C, HW), z (N, C)."""
    n_batch, channels, hw = x.shape
    for nc in prange(n_batch * channels):
        n = nc // channels
        c = nc - n * channels
        z[n, c] = _plane_mean(x[n, c])


@njit(**_REDUCE)
def se_squeeze_nhwc(x, z):
    """z[n, c] = mean over p of x[n, p, c];  x (N, HW, C), z (N, C). Blocked over pixels, see the module notes."""
    n_batch, hw, channels = x.shape
    n_blocks = (hw + PIXEL_BLOCK - 1) // PIXEL_BLOCK
    partial = np.zeros((n_batch, n_blocks, channels), dtype=np.float64)
    for task in prange(n_batch * n_blocks):
        n = task // n_blocks
        block = task - n * n_blocks
        _sum_pixel_block(x[n], block * PIXEL_BLOCK, partial[n, block])
    for n in prange(n_batch):
        _mean_of_blocks(partial[n], hw, z[n])


# se_hidden and se_gate do N C C_r multiply-adds, microseconds of work: a parallel launch would cost more than it
# saves, so they run on the calling thread.
@njit(**_HELPER)
def se_hidden(z, w1, b1, r1, has_b1):
    """r1 = relu(z W1^T + b1);  z (N, C), w1 (C_r, C), b1 (C_r,), r1 (N, C_r). Without b1: has_b1 False."""
    for n in range(z.shape[0]):
        _hidden_row(z[n], w1, b1, has_b1, r1[n])


@njit(**_HELPER)
def se_gate(r1, w2, b2, s, has_b2):
    """s = sigmoid(r1 W2^T + b2);  r1 (N, C_r), w2 (C, C_r), b2 (C,), s (N, C). Without b2: has_b2 False."""
    for n in range(r1.shape[0]):
        _gate_row(r1[n], w2, b2, has_b2, s[n])


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


@njit(**_REDUCE)
def se_forward_per_sample_nchw(x, w1, b1, w2, b2, z, r1, s, y, has_b1, has_b2):
    """se_squeeze, se_hidden, se_gate and se_scale for one sample after another;  x, y (N, C, HW).

    A sample's planes are read twice (squeeze, then scale) while they are still in cache (C HW elements: 0.8 MB at
    C=256 28x28 in float32). The prange runs over samples, so with N below the thread count some threads idle.
    """
    n_batch, channels, hw = x.shape
    for n in prange(n_batch):
        for c in range(channels):
            z[n, c] = _plane_mean(x[n, c])
        _hidden_row(z[n], w1, b1, has_b1, r1[n])
        _gate_row(r1[n], w2, b2, has_b2, s[n])
        for c in range(channels):
            gate = s[n, c]
            plane_x = x[n, c]
            plane_y = y[n, c]
            for p in range(hw):
                plane_y[p] = plane_x[p] * gate


@njit(**_REDUCE)
def se_forward_per_sample_nhwc(x, w1, b1, w2, b2, z, r1, s, y, has_b1, has_b2):
    """se_squeeze, se_hidden, se_gate and se_scale for one sample after another;  x, y (N, HW, C)."""
    n_batch, hw, channels = x.shape
    n_blocks = (hw + PIXEL_BLOCK - 1) // PIXEL_BLOCK
    for n in prange(n_batch):
        partial_n = np.zeros((n_blocks, channels), dtype=np.float64)  # this sample's pixel-block sums
        for block in range(n_blocks):
            _sum_pixel_block(x[n], block * PIXEL_BLOCK, partial_n[block])
        _mean_of_blocks(partial_n, hw, z[n])
        _hidden_row(z[n], w1, b1, has_b1, r1[n])
        _gate_row(r1[n], w2, b2, has_b2, s[n])
        gate = s[n]
        for p in range(hw):
            pixel_x = x[n, p]
            pixel_y = y[n, p]
            for c in range(channels):
                pixel_y[c] = pixel_x[c] * gate[c]


def _forward(per_sample, squeeze, scale, x, w1, b1, w2, b2, z, r1, s, y, has_b1, has_b2):
    if x.shape[0] >= numba.get_num_threads():  # every thread gets a sample: keep each sample in cache
        per_sample(x, w1, b1, w2, b2, z, r1, s, y, has_b1, has_b2)
    else:  # too few samples to share out: each pass spreads over all threads
        squeeze(x, z)
        se_hidden(z, w1, b1, r1, has_b1)
        se_gate(r1, w2, b2, s, has_b2)
        scale(x, s, y)


def se_forward_nchw(x, w1, b1, w2, b2, z, r1, s, y, has_b1, has_b2):
    """The whole forward: z, r1, s (see above) and y (N, C, HW) from x (N, C, HW) and the weights."""
    _forward(se_forward_per_sample_nchw, se_squeeze_nchw, se_scale_nchw, x, w1, b1, w2, b2, z, r1, s, y, has_b1,
             has_b2)


def se_forward_nhwc(x, w1, b1, w2, b2, z, r1, s, y, has_b1, has_b2):
    """The whole forward: z, r1, s (see above) and y (N, HW, C) from x (N, HW, C) and the weights."""
    _forward(se_forward_per_sample_nhwc, se_squeeze_nhwc, se_scale_nhwc, x, w1, b1, w2, b2, z, r1, s, y, has_b1,
             has_b2)


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
