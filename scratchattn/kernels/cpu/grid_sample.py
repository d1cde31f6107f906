"""Numba kernels of grid sampling: the forward gather and the backward (gradients for the input and the grid).

For every output pixel (n, h, w) the grid holds a point (x, y) in normalised coordinates, [-1, 1] across the
image. The kernels turn it into a pixel coordinate (ix, iy) of the input (``unnormalize``), move that inside the
image when the padding mode says so (``pad_coordinate``: clip for "border", reflect then clip for "reflection";
"zeros" leaves it and reads zeros outside), and interpolate every channel there. docs/derivations.md, section
"Grid sampling", has the formulas and the derivation of the backward; ``functional/grid_sample.py`` holds the op
and validates its input. The CUDA twin ``kernels/cuda/grid_sample.cu`` has the same helpers under the same names
and variable names: read them side by side.

Taps. Every mode is a weighted sum over a few input pixels, the *taps* of the output pixel:

    out[n, c, h, w] = sum_k  weight_k * inp[n, c, tap_k]          (a tap outside the image reads 0)

bilinear has 4 taps (the surrounding pixels), nearest 1, bicubic 16 (a 4 x 4 block, the padding applied to each).
The modes differ only in how they choose taps and weights (``bilinear_taps``, ``nearest_tap``,
``bicubic_taps``), so the backward is one formula for all of them:

    dL/dinp[n, c, tap_k] += weight_k * g[n, c, h, w]                (a scatter)
    dL/dgrid[n, h, w, 0]  = sum_k dweight_k/dx * sum_c g[n, c, h, w] * inp[n, c, tap_k]     (likewise for y)

A tap is stored as its pixel offset ``y * W + x`` inside one image plane, or -1 when it lies outside the image.

Loop order. The output pixels of an image are processed in blocks of BLOCK. For each block the taps are worked
out first, into small tables (``plan_block``): that loop holds all the coordinate arithmetic, has no memory
dependence between pixels and, for bilinear and nearest, vectorises. The channel loops then read the tables. For
NCHW they run plane by plane (channel outer, pixels inner), so that the reads of one channel stay in one plane and
the writes are contiguous; for NHWC they run pixel by pixel (channels inner), where the channels of a tap are one
contiguous vector. The CUDA twin instead gives each output pixel a thread that keeps its taps in registers.

Parallelism is race-free by construction (style rule 6). Forward: ``prange`` over chunks of (image, block) work
items; a chunk writes only its own output pixels and owns its tap tables. Backward: ``prange`` over chunks of
images; a chunk scatters only into the ``grad_inp`` of its images and writes the grid gradient of their output
pixels, each a sum made by one thread. No element is updated from two iterations and every sum runs in an order
fixed by the code, not by the chunking, so results are bitwise identical from run to run and for any number of
threads.

Safety. The kernels trust the shapes, dtypes and contiguity (the functional checks them) but not the coordinates:
a float coordinate becomes an integer index only after it has been clamped into the image, and the index is used
only where a floating-point test has shown the coordinate inside (``pixel_index``); so NaN, Inf and 1e30 can never
become an out-of-bounds read or write (converting them to an integer is undefined behaviour in C and yields
garbage in Numba).

Every constant goes through ``t`` (the scalar type, float32 or float64) because Numba would otherwise promote
float32 arithmetic to float64 at the first Python literal: float32 data is computed in float32, as in PyTorch.

Compile time. Numba compiles a kernel on its first call with a new dtype (and caches the machine code on disk, so
later processes load it in a fraction of a second). Each mode has its own kernel per direction (``FORWARD_KERNELS``
and ``BACKWARD_KERNELS`` at the end), so that a program that samples bilinearly compiles no nearest or bicubic
code. ``@njit(inline="always")`` copies a function into every call site in Numba's own IR, before type inference,
and the cost of that grows faster than the code does: with every helper inlined into one kernel for all modes, the
first call compiled for 30-50 s per dtype. It is kept where a loop must see its options as constants in Numba's IR
(``plan_bilinear``, ``plan_nearest``, ``plan_block``, the kernel bodies) and for small functions that take arrays
and run per pixel (Numba reference-counts arrays across a call). The scalar helpers ``unnormalize``,
``pad_coordinate``, ``pixel_index`` and ``tap_offset`` are plain ``@njit`` functions: called with constant options,
Numba compiles one version per constant value, and LLVM inlines them into the pixel loops, which still vectorise.
"""

from __future__ import annotations

import numpy as np
from numba import get_num_threads, njit, prange, set_num_threads

# Integer codes of the string options; the CUDA twin uses the same numbers.
BILINEAR, NEAREST, BICUBIC = 0, 1, 2
ZEROS, BORDER, REFLECTION = 0, 1, 2
MODES = {"bilinear": BILINEAR, "nearest": NEAREST, "bicubic": BICUBIC}
PADDING_MODES = {"zeros": ZEROS, "border": BORDER, "reflection": REFLECTION}

# The coefficient of Keys' cubic convolution kernel that PyTorch (and OpenCV) use.
CUBIC_A = -0.75

# Work items per thread: more chunks than threads evens out the load, and each chunk allocates its tap table once.
CHUNKS_PER_THREAD = 4
# Below this many (output element x tap) products a call runs on one thread: waking the thread pool costs tens of
# microseconds (milliseconds when the cores are busy with other work), more than such a call takes.
SERIAL_WORK = 1 << 15


# =================================================================================================================
# coordinates: unnormalize, clip, reflect, pad (each with its derivative); pixel_index
# =================================================================================================================


@njit
def unnormalize(t, coord, size, align_corners):
    """Pixel coordinate of a normalised coordinate, and its derivative d(pixel)/d(coord).

    align_corners=True:  -1 and +1 are the centres of the first and last pixels:  ix = (coord + 1) / 2 * (size - 1)
    align_corners=False: -1 and +1 are the outer edges of those pixels:          ix = ((coord + 1) * size - 1) / 2
    """
    if align_corners:
        return (coord + t(1)) * t(0.5) * t(size - 1), t(0.5) * t(size - 1)
    return ((coord + t(1)) * t(size) - t(1)) * t(0.5), t(0.5) * t(size)


@njit(inline="always")
def clip_coordinate(t, coord, size):
    """``coord`` clamped to [0, size - 1], and d(clamped)/d(coord).

    The derivative is 0 where the coordinate was clamped, and also exactly on the two borders (as in PyTorch). NaN
    clamps to 0 (as in PyTorch's kernels), so "border" padding turns any coordinate into a pixel of the image.
    """
    if not coord > t(0):  # written with `not` so that NaN lands here too
        return t(0), t(0)
    if coord >= t(size - 1):
        return t(size - 1), t(0)
    return coord, t(1)


@njit(inline="always")
def reflect_coordinate(t, coord, size, align_corners):
    """``coord`` mirrored into [lo, lo + span] at the image edges, and d(reflected)/d(coord), which is +1 or -1.

    The mirrors stand at the centres of the border pixels (lo = 0, span = size - 1) with align_corners, and at
    their outer edges (lo = -0.5, span = size) without. Mirroring at both ends is periodic with period 2 span:
    |coord - lo| is folded into [0, 2 span) by fmod (exact, and defined for any finite value, unlike a count of
    flips in an int), and the second half of the period is mirrored back. Each mirror flips the slope. A single
    pixel with align_corners has span 0: every point maps to it, with derivative 0. Inf and NaN give NaN, which the
    clip that follows sends to 0.
    """
    if align_corners:
        lo, span = t(0), t(size - 1)
    else:
        lo, span = t(-0.5), t(size)
    if span == t(0):
        return t(0), t(0)
    distance = coord - lo
    slope = t(1)
    if distance < t(0):
        distance = -distance
        slope = -slope
    distance = np.fmod(distance, t(2) * span)
    if distance > span:
        distance = t(2) * span - distance
        slope = -slope
    return distance + lo, slope


@njit
def pad_coordinate(t, coord, size, padding_mode, align_corners):
    """Apply the padding mode to a pixel coordinate: returns the coordinate to sample and its derivative.

    zeros: unchanged (points outside the image read zeros); border: clipped into the image; reflection: reflected
    at the edges, then clipped (without align_corners a reflected point can lie up to half a pixel outside).
    """
    if padding_mode == BORDER:
        return clip_coordinate(t, coord, size)
    if padding_mode == REFLECTION:
        coord, slope = reflect_coordinate(t, coord, size, align_corners)
        coord, clip_slope = clip_coordinate(t, coord, size)
        return coord, slope * clip_slope
    return coord, t(1)


@njit
def pixel_index(t, coord, size):
    """``(int(coord), True)`` if the integer-valued float ``coord`` is a pixel of an axis of ``size``, else
    ``(some pixel, False)``. The test is made on the float, and the float is clamped into [0, size - 1] (NaN to 0)
    before the conversion, so NaN, Inf and huge values are never converted. Written without branches, so that the
    loops calling it vectorise."""
    inside = (coord >= t(0)) & (coord <= t(size - 1))
    clamped = coord if coord > t(0) else t(0)  # NaN > 0 is False: NaN becomes 0
    clamped = clamped if clamped < t(size - 1) else t(size - 1)
    return int(clamped), inside


# =================================================================================================================
# cubic convolution weights and their derivatives
# =================================================================================================================


@njit(inline="always")
def cubic_near(t, d):
    """Keys' kernel for a tap at distance d in [0, 1]: (A + 2) d^3 - (A + 3) d^2 + 1."""
    a = t(CUBIC_A)
    return ((a + t(2)) * d - (a + t(3))) * d * d + t(1)


@njit(inline="always")
def cubic_far(t, d):
    """Keys' kernel for a tap at distance d in [1, 2]: A d^3 - 5A d^2 + 8A d - 4A."""
    a = t(CUBIC_A)
    return ((a * d - t(5) * a) * d + t(8) * a) * d - t(4) * a


@njit(inline="always")
def cubic_near_slope(t, d):
    """d/dd of cubic_near: 3 (A + 2) d^2 - 2 (A + 3) d."""
    a = t(CUBIC_A)
    return (t(3) * (a + t(2)) * d - t(2) * (a + t(3))) * d


@njit(inline="always")
def cubic_far_slope(t, d):
    """d/dd of cubic_far: 3A d^2 - 10A d + 8A."""
    a = t(CUBIC_A)
    return (t(3) * a * d - t(10) * a) * d + t(8) * a


@njit(inline="always")
def cubic_weight(t, frac, i):
    """Weight of tap x0 - 1 + i (i = 0..3) for ``frac`` = ix - x0 in [0, 1): the kernel at the distances
    frac + 1, frac, 1 - frac, 2 - frac. The four weights sum to 1."""
    if i == 0:
        return cubic_far(t, frac + t(1))
    if i == 1:
        return cubic_near(t, frac)
    if i == 2:
        return cubic_near(t, t(1) - frac)
    return cubic_far(t, t(2) - frac)


@njit(inline="always")
def cubic_weight_slope(t, frac, i):
    """d/d(frac) of ``cubic_weight``: the distances of taps 2 and 3 shrink as frac grows, hence their minus signs."""
    if i == 0:
        return cubic_far_slope(t, frac + t(1))
    if i == 1:
        return cubic_near_slope(t, frac)
    if i == 2:
        return -cubic_near_slope(t, t(1) - frac)
    return -cubic_far_slope(t, t(2) - frac)


# Pixels per tap table. A compile-time constant, so that LLVM can see that the rows of a table do not overlap:
# with it the coordinate loop of bilinear sampling vectorises.
BLOCK = 256


# =================================================================================================================
# the taps of one output pixel, per mode
# =================================================================================================================
#
# For the output pixel whose grid point is (gx, gy), each function gives, per tap: its offset (y * W + x, or -1
# outside the image), its weight, and the weight's derivatives with respect to the two grid coordinates,
# dweight_dx and dweight_dy, the chain through unnormalize and padding included. A tap table holds them for BLOCK
# pixels: tap k of the block's pixel p at index k * BLOCK + p. Bilinear and nearest return tuples that their loop
# stores, rather than writing into the tables: Numba reference-counts arrays passed down through inlined
# functions, and those calls in the loop over pixels would stop LLVM from vectorising it.


@njit
def tap_offset(y, x, inside, W):
    return y * W + x if inside else -1


@njit(inline="always")
def bilinear_taps(t, gx, gy, H, W, padding_mode, align_corners):
    """The corners (y0, x0), (y0, x1), (y1, x0), (y1, x1) around (ix, iy), x0 = floor(ix), x1 = x0 + 1 (likewise
    y), with weights (1-wx)(1-wy), wx(1-wy), (1-wx)wy, wx wy for wx = ix - x0, wy = iy - y0."""
    ix, dix = unnormalize(t, gx, W, align_corners)
    iy, diy = unnormalize(t, gy, H, align_corners)
    ix, pad_slope = pad_coordinate(t, ix, W, padding_mode, align_corners)
    dix *= pad_slope
    iy, pad_slope = pad_coordinate(t, iy, H, padding_mode, align_corners)
    diy *= pad_slope
    x0f = np.floor(ix)
    y0f = np.floor(iy)
    wx = ix - x0f
    wy = iy - y0f
    x0, in_x0 = pixel_index(t, x0f, W)
    x1, in_x1 = pixel_index(t, x0f + t(1), W)
    y0, in_y0 = pixel_index(t, y0f, H)
    y1, in_y1 = pixel_index(t, y0f + t(1), H)
    offsets = (tap_offset(y0, x0, in_y0 & in_x0, W), tap_offset(y0, x1, in_y0 & in_x1, W),
               tap_offset(y1, x0, in_y1 & in_x0, W), tap_offset(y1, x1, in_y1 & in_x1, W))
    weights = ((t(1) - wx) * (t(1) - wy), wx * (t(1) - wy), (t(1) - wx) * wy, wx * wy)
    # d wx/d gx = dix and d wy/d gy = diy, so that e.g. d[(1-wx)(1-wy)]/d gx = -(1-wy) dix.
    dweights_dx = (-(t(1) - wy) * dix, (t(1) - wy) * dix, -wy * dix, wy * dix)
    dweights_dy = (-(t(1) - wx) * diy, -wx * diy, (t(1) - wx) * diy, wx * diy)
    return offsets, weights, dweights_dx, dweights_dy


@njit(inline="always")
def nearest_tap(t, gx, gy, H, W, padding_mode, align_corners):
    """The pixel (rint(iy), rint(ix)), rounding halves to even, with weight 1. The output is piecewise constant in
    the grid, so the derivatives are 0."""
    ix, _ = unnormalize(t, gx, W, align_corners)
    iy, _ = unnormalize(t, gy, H, align_corners)
    ix, _ = pad_coordinate(t, ix, W, padding_mode, align_corners)
    iy, _ = pad_coordinate(t, iy, H, padding_mode, align_corners)
    x, in_x = pixel_index(t, np.rint(ix), W)
    y, in_y = pixel_index(t, np.rint(iy), H)
    return tap_offset(y, x, in_y & in_x, W), t(1), t(0), t(0)


@njit(inline="always")
def axis_index(t, coord, size, padding_mode, align_corners):
    """Index of the integer-valued tap coordinate ``coord`` after padding, or -1 when it lies outside the axis."""
    coord, _ = pad_coordinate(t, coord, size, padding_mode, align_corners)
    index, inside = pixel_index(t, coord, size)
    return index if inside else -1


@njit(inline="always")
def bicubic_taps(t, gx, gy, H, W, padding_mode, align_corners, p, offset, weight, dweight_dx, dweight_dy,
                 need_dweights):
    """The 4 x 4 taps (pad(y0 - 1 + j), pad(x0 - 1 + i)) around the *unpadded* (ix, iy), x0 = floor(ix), with
    weights cubic_weight(fy, j) * cubic_weight(fx, i) for the fractions fx = ix - x0, fy = iy - y0, written into
    column p of the tables (rows k = 4 j + i). The padding moves whole tap indices, which are integers: it has no
    derivative; only unnormalize has. (Not vectorised, unlike the other modes: the 16 taps are written in place.)"""
    ix, dix = unnormalize(t, gx, W, align_corners)
    iy, diy = unnormalize(t, gy, H, align_corners)
    x0f = np.floor(ix)
    y0f = np.floor(iy)
    fx = ix - x0f
    fy = iy - y0f
    for j in range(4):
        y = axis_index(t, y0f + t(j - 1), H, padding_mode, align_corners)
        wy = cubic_weight(t, fy, j)
        dwy = cubic_weight_slope(t, fy, j) * diy
        for i in range(4):
            x = axis_index(t, x0f + t(i - 1), W, padding_mode, align_corners)
            wx = cubic_weight(t, fx, i)
            k = (4 * j + i) * BLOCK + p
            offset[k] = y * W + x if y >= 0 and x >= 0 else -1
            weight[k] = wy * wx
            if need_dweights:
                dweight_dx[k] = wy * cubic_weight_slope(t, fx, i) * dix
                dweight_dy[k] = dwy * wx


@njit(inline="always")
def n_taps(mode):
    return 4 if mode == BILINEAR else (1 if mode == NEAREST else 16)


@njit(inline="always")
def plan_bilinear(grid_block, count, H, W, padding_mode, align_corners, offset, weight, dweight_dx, dweight_dy,
                  need_dweights):
    t = weight.dtype.type
    for p in range(count):
        offsets, weights, dweights_dx, dweights_dy = bilinear_taps(t, grid_block[2 * p], grid_block[2 * p + 1],
                                                                   H, W, padding_mode, align_corners)
        for k in range(4):
            offset[k * BLOCK + p] = offsets[k]
            weight[k * BLOCK + p] = weights[k]
            if need_dweights:
                dweight_dx[k * BLOCK + p] = dweights_dx[k]
                dweight_dy[k * BLOCK + p] = dweights_dy[k]


@njit(inline="always")
def plan_nearest(grid_block, count, H, W, padding_mode, align_corners, offset, weight, dweight_dx, dweight_dy,
                 need_dweights):
    t = weight.dtype.type
    for p in range(count):
        o, w, dx, dy = nearest_tap(t, grid_block[2 * p], grid_block[2 * p + 1], H, W, padding_mode, align_corners)
        offset[p] = o
        weight[p] = w
        if need_dweights:
            dweight_dx[p] = dx
            dweight_dy[p] = dy


@njit
def plan_bilinear_block(grid_block, count, H, W, padding_mode, align_corners, offset, weight, dweight_dx,
                        dweight_dy, need_dweights):
    """``plan_bilinear`` with the padding mode (and, but for reflection, align_corners) as a constant: each call
    below inlines its own copy of the loop, in which the other modes' branches are dropped, so that it vectorises.
    One function per mode (not one for all), so that a kernel compiles only its own mode's loops."""
    if padding_mode == ZEROS:
        if align_corners:
            plan_bilinear(grid_block, count, H, W, ZEROS, True, offset, weight, dweight_dx, dweight_dy, need_dweights)
        else:
            plan_bilinear(grid_block, count, H, W, ZEROS, False, offset, weight, dweight_dx, dweight_dy, need_dweights)
    elif padding_mode == BORDER:
        if align_corners:
            plan_bilinear(grid_block, count, H, W, BORDER, True, offset, weight, dweight_dx, dweight_dy, need_dweights)
        else:
            plan_bilinear(grid_block, count, H, W, BORDER, False, offset, weight, dweight_dx, dweight_dy, need_dweights)
    else:
        plan_bilinear(grid_block, count, H, W, REFLECTION, align_corners, offset, weight, dweight_dx,
                      dweight_dy, need_dweights)


@njit
def plan_nearest_block(grid_block, count, H, W, padding_mode, align_corners, offset, weight, dweight_dx,
                       dweight_dy, need_dweights):
    """``plan_nearest`` with the padding mode as a constant, as in ``plan_bilinear_block``."""
    if padding_mode == ZEROS:
        plan_nearest(grid_block, count, H, W, ZEROS, align_corners, offset, weight, dweight_dx,
                     dweight_dy, need_dweights)
    elif padding_mode == BORDER:
        plan_nearest(grid_block, count, H, W, BORDER, align_corners, offset, weight, dweight_dx,
                     dweight_dy, need_dweights)
    else:
        plan_nearest(grid_block, count, H, W, REFLECTION, align_corners, offset, weight, dweight_dx,
                     dweight_dy, need_dweights)


@njit
def plan_bicubic_block(grid_block, count, H, W, padding_mode, align_corners, offset, weight, dweight_dx,
                       dweight_dy, need_dweights):
    t = weight.dtype.type
    for p in range(count):
        bicubic_taps(t, grid_block[2 * p], grid_block[2 * p + 1], H, W, padding_mode, align_corners, p, offset,
                     weight, dweight_dx, dweight_dy, need_dweights)


@njit(inline="always")
def plan_block(grid_block, count, H, W, mode, padding_mode, align_corners, offset, weight, dweight_dx, dweight_dy,
               need_dweights):
    """Fill the tap tables of ``count`` <= BLOCK consecutive output pixels of one image; ``grid_block`` holds their
    grid points (x, y) one after the other. Tap k of pixel p goes to row k, column p: index k * BLOCK + p. The
    derivative tables dweight_dx, dweight_dy only when ``need_dweights`` (the backward; a constant, so that the
    forward's loops drop that work: 8-10% of the forward at 16 channels or fewer).

    Each mode has its own planning function, and bilinear and nearest sampling one loop per padding mode
    (bilinear: and align_corners), each with the options as constants: with the tests inside, the loop would keep
    the reflection's fmod call and branches, and LLVM would not vectorise it. Inlined into the kernel bodies, whose
    ``mode`` is a constant there, so that the other modes' branches are dropped before Numba types them.
    """
    if mode == BILINEAR:
        plan_bilinear_block(grid_block, count, H, W, padding_mode, align_corners, offset, weight, dweight_dx,
                            dweight_dy, need_dweights)
    elif mode == NEAREST:
        plan_nearest_block(grid_block, count, H, W, padding_mode, align_corners, offset, weight, dweight_dx,
                           dweight_dy, need_dweights)
    else:
        plan_bicubic_block(grid_block, count, H, W, padding_mode, align_corners, offset, weight, dweight_dx,
                           dweight_dy, need_dweights)


# =================================================================================================================
# one block of output pixels, all channels: NCHW (plane by plane) and NHWC (pixel by pixel)
# =================================================================================================================
#
# The kernels view the arrays as matrices whose rows are what one loop walks along: NCHW planes[n * C + c, pixel]
# and NHWC pixels[n * H * W + pixel, c]. Then the innermost index is always the loop counter, which Numba knows to
# be non-negative; a computed flat index would carry a negative-index check that stops LLVM from vectorising.


@njit(inline="always")
def gather_planar(t, inp_planes, plane, offset, weight, p, K):
    """sum_k weight[k, p] * inp[plane, tap_k] over the K taps of pixel p.

    Branch-free: the read uses the tap index clamped to 0, always valid, and its value is dropped for a tap
    outside the image (so an Inf there cannot turn into 0 * Inf = NaN)."""
    acc = t(0)
    for k in range(K):
        o = offset[k * BLOCK + p]
        v = inp_planes[plane, max(o, 0)]
        acc += weight[k * BLOCK + p] * v if o >= 0 else t(0)
    return acc


@njit(inline="always")
def gather_planar4(t, inp_planes, out_planes, plane, col, offset, weight, p, K):
    """``gather_planar`` for the four planes plane .. plane + 3 at once, written to column ``col`` of out: the taps
    are read once for four channels."""
    acc0 = acc1 = acc2 = acc3 = t(0)
    for k in range(K):
        o = offset[k * BLOCK + p]
        wt = weight[k * BLOCK + p]
        oc = max(o, 0)
        inside = o >= 0
        acc0 += wt * inp_planes[plane, oc] if inside else t(0)
        acc1 += wt * inp_planes[plane + 1, oc] if inside else t(0)
        acc2 += wt * inp_planes[plane + 2, oc] if inside else t(0)
        acc3 += wt * inp_planes[plane + 3, oc] if inside else t(0)
    out_planes[plane, col] = acc0
    out_planes[plane + 1, col] = acc1
    out_planes[plane + 2, col] = acc2
    out_planes[plane + 3, col] = acc3


@njit(inline="always")
def forward_planes(t, inp_planes, out_planes, n, C, start, count, offset, weight, K):
    grouped = C - C % 4  # channels that go four at a time
    for c in range(0, grouped, 4):
        for p in range(count):
            gather_planar4(t, inp_planes, out_planes, n * C + c, start + p, offset, weight, p, K)
    for c in range(grouped, C):
        for p in range(count):
            out_planes[n * C + c, start + p] = gather_planar(t, inp_planes, n * C + c, offset, weight, p, K)


@njit
def forward_block_nchw(inp_planes, out_planes, n, C, start, count, offset, weight, mode):
    """out[n, c, start + p] = sum_k weight[k, p] * inp[n, c, tap_k] for each channel c and pixel p of the block.

    Channels go four at a time (the tap tables are read once per four planes: 30-40% faster), then one at a time.
    ``mode`` is a compile-time constant (each kernel passes its own, and Numba compiles this function for each), so
    the number of taps K is one too, and the loops over taps unroll."""
    t = out_planes.dtype.type
    forward_planes(t, inp_planes, out_planes, n, C, start, count, offset, weight, n_taps(mode))


@njit
def forward_block_nhwc(inp_pixels, out_pixels, n, HW, P_out, start, count, offset, weight):
    """out[n, start + p, :] = sum_k weight[k, p] * inp[n, tap_k, :]: one contiguous channel vector per tap."""
    t = out_pixels.dtype.type
    C = out_pixels.shape[1]
    K = offset.shape[0] // BLOCK
    for p in range(count):
        q = n * P_out + start + p
        if K == 4 and offset[p] >= 0 and offset[BLOCK + p] >= 0 and offset[2 * BLOCK + p] >= 0 \
                and offset[3 * BLOCK + p] >= 0:
            # All four bilinear corners inside the image, the common case: one pass over the channels.
            r0, r1 = n * HW + offset[p], n * HW + offset[BLOCK + p]
            r2, r3 = n * HW + offset[2 * BLOCK + p], n * HW + offset[3 * BLOCK + p]
            w0, w1, w2, w3 = weight[p], weight[BLOCK + p], weight[2 * BLOCK + p], weight[3 * BLOCK + p]
            for c in range(C):
                out_pixels[q, c] = (w0 * inp_pixels[r0, c] + w1 * inp_pixels[r1, c] + w2 * inp_pixels[r2, c]
                                    + w3 * inp_pixels[r3, c])
            continue
        for c in range(C):
            out_pixels[q, c] = t(0)
        for k in range(K):
            o = offset[k * BLOCK + p]
            if o >= 0:
                r = n * HW + o
                wt = weight[k * BLOCK + p]
                for c in range(C):
                    out_pixels[q, c] += wt * inp_pixels[r, c]


@njit(inline="always")
def scatter_planar(t, grad_out_planes, inp_planes, grad_inp_planes, plane, start, p, offset, weight, dweight_dx,
                   dweight_dy, gx_acc, gy_acc, K, need_grad_inp, need_dots):
    """For the K taps of pixel p: grad_inp[plane, tap] += weight * g, and gx_acc[p] += sum_k dweight_dx * g *
    inp[plane, tap] (likewise y), with g = grad_out[plane, start + p]."""
    g = grad_out_planes[plane, start + p]
    gx = t(0)
    gy = t(0)
    for k in range(K):
        o = offset[k * BLOCK + p]
        if o >= 0:
            if need_dots:
                gv = g * inp_planes[plane, o]
                gx += dweight_dx[k * BLOCK + p] * gv
                gy += dweight_dy[k * BLOCK + p] * gv
            if need_grad_inp:
                grad_inp_planes[plane, o] += weight[k * BLOCK + p] * g
    gx_acc[p] += gx
    gy_acc[p] += gy


@njit(inline="always")
def scatter_planar4(t, grad_out_planes, inp_planes, grad_inp_planes, plane, start, p, offset, weight, dweight_dx,
                    dweight_dy, gx_acc, gy_acc, K, need_grad_inp, need_dots):
    """``scatter_planar`` for the four planes plane .. plane + 3 at once."""
    col = start + p
    g0, g1 = grad_out_planes[plane, col], grad_out_planes[plane + 1, col]
    g2, g3 = grad_out_planes[plane + 2, col], grad_out_planes[plane + 3, col]
    gx = t(0)
    gy = t(0)
    for k in range(K):
        o = offset[k * BLOCK + p]
        if o >= 0:
            if need_dots:
                gv = (g0 * inp_planes[plane, o] + g1 * inp_planes[plane + 1, o]
                      + g2 * inp_planes[plane + 2, o] + g3 * inp_planes[plane + 3, o])
                gx += dweight_dx[k * BLOCK + p] * gv
                gy += dweight_dy[k * BLOCK + p] * gv
            if need_grad_inp:
                wt = weight[k * BLOCK + p]
                grad_inp_planes[plane, o] += wt * g0
                grad_inp_planes[plane + 1, o] += wt * g1
                grad_inp_planes[plane + 2, o] += wt * g2
                grad_inp_planes[plane + 3, o] += wt * g3
    gx_acc[p] += gx
    gy_acc[p] += gy


@njit(inline="always")
def backward_planes(t, grad_out_planes, inp_planes, grad_inp_planes, n, C, start, count, offset, weight, dweight_dx,
                    dweight_dy, gx_acc, gy_acc, K, need_grad_inp, need_dots):
    grouped = C - C % 4
    for c in range(0, grouped, 4):
        for p in range(count):
            scatter_planar4(t, grad_out_planes, inp_planes, grad_inp_planes, n * C + c, start, p, offset, weight,
                            dweight_dx, dweight_dy, gx_acc, gy_acc, K, need_grad_inp, need_dots)
    for c in range(grouped, C):
        for p in range(count):
            scatter_planar(t, grad_out_planes, inp_planes, grad_inp_planes, n * C + c, start, p, offset, weight,
                           dweight_dx, dweight_dy, gx_acc, gy_acc, K, need_grad_inp, need_dots)


@njit
def backward_block_nchw(grad_out_planes, inp_planes, grad_inp_planes, n, C, start, count, offset, weight,
                        dweight_dx, dweight_dy, gx_acc, gy_acc, need_grad_inp, need_dots, mode):
    """The scatter into grad_inp[n, c] and the grid-gradient sums of ``scatter_planar``, channels four at a time
    and then one at a time as in the forward; the sums over channels accumulate in gx_acc, gy_acc (zeroed here).
    ``mode`` is a compile-time constant, as in ``forward_block_nchw``."""
    t = inp_planes.dtype.type
    for p in range(count):
        gx_acc[p] = t(0)
        gy_acc[p] = t(0)
    backward_planes(t, grad_out_planes, inp_planes, grad_inp_planes, n, C, start, count, offset, weight,
                    dweight_dx, dweight_dy, gx_acc, gy_acc, n_taps(mode), need_grad_inp, need_dots)


# reassoc lets LLVM keep the channel dot products in SIMD lanes (25% faster); the order of the sum is still fixed
# by the compiled code, so the result stays the same from run to run.
@njit(fastmath={"reassoc"})
def backward_block_nhwc(grad_out_pixels, inp_pixels, grad_inp_pixels, n, HW, P_out, start, count, offset, weight,
                        dweight_dx, dweight_dy, gx_acc, gy_acc, need_grad_inp, need_dots):
    """The sums of backward_block_nchw, pixel by pixel: per tap, the channel dot product g . inp[n, tap, :] and the
    scatter of weight * g into grad_inp[n, tap, :], each a loop over one contiguous vector."""
    t = inp_pixels.dtype.type
    C = inp_pixels.shape[1]
    K = offset.shape[0] // BLOCK
    for p in range(count):
        q = n * P_out + start + p
        gx = t(0)
        gy = t(0)
        for k in range(K):
            o = offset[k * BLOCK + p]
            if o < 0:
                continue
            r = n * HW + o
            if need_dots:
                dot = t(0)
                for c in range(C):
                    dot += grad_out_pixels[q, c] * inp_pixels[r, c]
                gx += dweight_dx[k * BLOCK + p] * dot
                gy += dweight_dy[k * BLOCK + p] * dot
            if need_grad_inp:
                wt = weight[k * BLOCK + p]
                for c in range(C):
                    grad_inp_pixels[r, c] += wt * grad_out_pixels[q, c]
        gx_acc[p] = gx
        gy_acc[p] = gy


# =================================================================================================================
# the kernels: flat arrays and explicit sizes, like their CUDA twins
# =================================================================================================================


@njit(inline="always")
def grid_sample_forward_kernel(inp, grid, out, N, C, H, W, H_out, W_out, mode, padding_mode, align_corners,
                               channels_last, n_chunks):
    """out = inp sampled at grid. inp (N*C*H*W,), grid (N*H_out*W_out*2,), out (N*C*H_out*W_out,): flat views of
    the NCHW or (``channels_last``) NHWC arrays. The (image, block) work items are split into ``n_chunks``
    parallel chunks; each chunk has its own tap tables."""
    P_out = H_out * W_out
    blocks_per_image = (P_out + BLOCK - 1) // BLOCK
    items = N * blocks_per_image
    n_chunks = max(1, min(items, n_chunks))
    K = n_taps(mode)
    # Matrix views whose rows the channel loops walk along (see "one block of output pixels" above).
    inp_pixels, out_pixels = inp.reshape((N * H * W, C)), out.reshape((N * P_out, C))  # NHWC
    inp_planes, out_planes = inp.reshape((N * C, H * W)), out.reshape((N * C, P_out))  # NCHW
    for chunk in prange(n_chunks):
        offset = np.empty(K * BLOCK, np.int64)
        weight = np.empty(K * BLOCK, out.dtype)
        dweight_dx = np.empty(K * BLOCK, out.dtype)
        dweight_dy = np.empty(K * BLOCK, out.dtype)
        for item in range(chunk * items // n_chunks, (chunk + 1) * items // n_chunks):
            n = item // blocks_per_image
            start = (item - n * blocks_per_image) * BLOCK
            count = min(BLOCK, P_out - start)
            first = n * P_out + start  # flat index of the block's first output pixel
            plan_block(grid[2 * first: 2 * (first + count)], count, H, W, mode, padding_mode, align_corners,
                       offset, weight, dweight_dx, dweight_dy, False)
            if channels_last:
                forward_block_nhwc(inp_pixels, out_pixels, n, H * W, P_out, start, count, offset, weight)
            else:
                forward_block_nchw(inp_planes, out_planes, n, C, start, count, offset, weight, mode)


@njit(inline="always")
def grid_sample_backward_kernel(grad_out, inp, grid, grad_inp, grad_grid, N, C, H, W, H_out, W_out, mode,
                                padding_mode, align_corners, channels_last, need_grad_inp, need_grad_grid, n_chunks):
    """grad_inp (zeroed by the caller) += the scatter of grad_out; grad_grid = dL/dgrid. Flat arrays as in the
    forward; an output whose ``need_`` flag is False is not touched (it may be an empty array). The images are
    split into ``n_chunks`` parallel chunks: a chunk is the only writer of its images' grad_inp."""
    P_out = H_out * W_out
    need_dots = need_grad_grid and mode != NEAREST  # nearest: the grid gradient is 0
    n_chunks = max(1, min(N, n_chunks))
    K = n_taps(mode)
    grad_out_pixels, inp_pixels = grad_out.reshape((N * P_out, C)), inp.reshape((N * H * W, C))  # NHWC
    grad_out_planes, inp_planes = grad_out.reshape((N * C, P_out)), inp.reshape((N * C, H * W))  # NCHW
    # grad_inp may be an empty placeholder: -1 lets it take any size.
    grad_inp_pixels, grad_inp_planes = grad_inp.reshape((-1, C)), grad_inp.reshape((-1, H * W))
    for chunk in prange(n_chunks):
        offset = np.empty(K * BLOCK, np.int64)
        weight = np.empty(K * BLOCK, inp.dtype)
        dweight_dx = np.empty(K * BLOCK, inp.dtype)
        dweight_dy = np.empty(K * BLOCK, inp.dtype)
        gx_acc = np.zeros(BLOCK, inp.dtype)
        gy_acc = np.zeros(BLOCK, inp.dtype)
        for n in range(chunk * N // n_chunks, (chunk + 1) * N // n_chunks):
            for start in range(0, P_out, BLOCK):
                count = min(BLOCK, P_out - start)
                first = n * P_out + start
                plan_block(grid[2 * first: 2 * (first + count)], count, H, W, mode, padding_mode, align_corners,
                           offset, weight, dweight_dx, dweight_dy, True)
                if channels_last:
                    backward_block_nhwc(grad_out_pixels, inp_pixels, grad_inp_pixels, n, H * W, P_out, start,
                                        count, offset, weight, dweight_dx, dweight_dy, gx_acc, gy_acc,
                                        need_grad_inp, need_dots)
                else:
                    backward_block_nchw(grad_out_planes, inp_planes, grad_inp_planes, n, C, start, count, offset,
                                        weight, dweight_dx, dweight_dy, gx_acc, gy_acc, need_grad_inp, need_dots,
                                        mode)
                if need_grad_grid:
                    for p in range(count):
                        grad_grid[2 * (first + p)] = gx_acc[p]
                        grad_grid[2 * (first + p) + 1] = gy_acc[p]


# One compiled kernel per mode and direction, each compiled on its first call (and cached on disk), so that a
# program that samples bilinearly never compiles bicubic code. Each passes its mode as a constant to the shared
# body above, which is inlined: the branches of the other modes are dropped before Numba compiles anything.


@njit(parallel=True, cache=True)
def grid_sample_forward_bilinear(inp, grid, out, N, C, H, W, H_out, W_out, padding_mode, align_corners,
                                 channels_last, n_chunks):
    grid_sample_forward_kernel(inp, grid, out, N, C, H, W, H_out, W_out, BILINEAR, padding_mode, align_corners,
                               channels_last, n_chunks)


@njit(parallel=True, cache=True)
def grid_sample_forward_nearest(inp, grid, out, N, C, H, W, H_out, W_out, padding_mode, align_corners,
                                channels_last, n_chunks):
    grid_sample_forward_kernel(inp, grid, out, N, C, H, W, H_out, W_out, NEAREST, padding_mode, align_corners,
                               channels_last, n_chunks)


@njit(parallel=True, cache=True)
def grid_sample_forward_bicubic(inp, grid, out, N, C, H, W, H_out, W_out, padding_mode, align_corners,
                                channels_last, n_chunks):
    grid_sample_forward_kernel(inp, grid, out, N, C, H, W, H_out, W_out, BICUBIC, padding_mode, align_corners,
                               channels_last, n_chunks)


@njit(parallel=True, cache=True)
def grid_sample_backward_bilinear(grad_out, inp, grid, grad_inp, grad_grid, N, C, H, W, H_out, W_out,
                                  padding_mode, align_corners, channels_last, need_grad_inp, need_grad_grid,
                                  n_chunks):
    grid_sample_backward_kernel(grad_out, inp, grid, grad_inp, grad_grid, N, C, H, W, H_out, W_out, BILINEAR,
                                padding_mode, align_corners, channels_last, need_grad_inp, need_grad_grid, n_chunks)


@njit(parallel=True, cache=True)
def grid_sample_backward_nearest(grad_out, inp, grid, grad_inp, grad_grid, N, C, H, W, H_out, W_out,
                                 padding_mode, align_corners, channels_last, need_grad_inp, need_grad_grid,
                                 n_chunks):
    grid_sample_backward_kernel(grad_out, inp, grid, grad_inp, grad_grid, N, C, H, W, H_out, W_out, NEAREST,
                                padding_mode, align_corners, channels_last, need_grad_inp, need_grad_grid, n_chunks)


@njit(parallel=True, cache=True)
def grid_sample_backward_bicubic(grad_out, inp, grid, grad_inp, grad_grid, N, C, H, W, H_out, W_out,
                                 padding_mode, align_corners, channels_last, need_grad_inp, need_grad_grid,
                                 n_chunks):
    grid_sample_backward_kernel(grad_out, inp, grid, grad_inp, grad_grid, N, C, H, W, H_out, W_out, BICUBIC,
                                padding_mode, align_corners, channels_last, need_grad_inp, need_grad_grid, n_chunks)


FORWARD_KERNELS = {BILINEAR: grid_sample_forward_bilinear, NEAREST: grid_sample_forward_nearest,
                   BICUBIC: grid_sample_forward_bicubic}
BACKWARD_KERNELS = {BILINEAR: grid_sample_backward_bilinear, NEAREST: grid_sample_backward_nearest,
                    BICUBIC: grid_sample_backward_bicubic}


# =================================================================================================================
# public functions (the CUDA launcher module has the same ones)
# =================================================================================================================


def _sizes(inp, grid, channels_last):
    if channels_last:
        N, H, W, C = inp.shape
    else:
        N, C, H, W = inp.shape
    return N, C, H, W, grid.shape[1], grid.shape[2]


def _launch(kernel, work, *args):
    """Call ``kernel(*args, n_chunks)`` on all threads, or on one for a small ``work``."""
    threads = get_num_threads()
    if work >= SERIAL_WORK or threads == 1:
        kernel(*args, CHUNKS_PER_THREAD * threads)
        return
    set_num_threads(1)
    try:
        kernel(*args, 1)
    finally:
        set_num_threads(threads)


def grid_sample_forward(inp, grid, out, mode, padding_mode, align_corners, channels_last):
    """Sample ``inp`` at ``grid`` into the preallocated ``out``.

    inp (N, C, H, W), or (N, H, W, C) when ``channels_last``; grid (N, H_out, W_out, 2); out (N, C, H_out, W_out)
    or (N, H_out, W_out, C). All C-contiguous and of one float dtype, H, W >= 1; ``mode`` and ``padding_mode`` are
    the integer codes above.
    """
    sizes = _sizes(inp, grid, channels_last)
    work = out.size * n_taps.py_func(mode) + grid.size
    _launch(FORWARD_KERNELS[mode], work, inp.reshape(-1), grid.reshape(-1), out.reshape(-1), *sizes, padding_mode,
            bool(align_corners), bool(channels_last))


def grid_sample_backward(grad_out, inp, grid, grad_inp, grad_grid, mode, padding_mode, align_corners,
                         channels_last):
    """Gradients of grid sampling into the preallocated ``grad_inp`` (the shape of ``inp``, zero-filled) and
    ``grad_grid`` (the shape of ``grid``); pass None for one that is not needed."""
    need_grad_inp = grad_inp is not None
    need_grad_grid = grad_grid is not None
    # An output that is not needed becomes an empty placeholder, which the kernel never touches.
    grad_inp = grad_inp.reshape(-1) if need_grad_inp else np.empty(0, inp.dtype)
    grad_grid = grad_grid.reshape(-1) if need_grad_grid else np.empty(0, grid.dtype)
    work = grad_out.size * n_taps.py_func(mode) + grid.size
    _launch(BACKWARD_KERNELS[mode], work, grad_out.reshape(-1), inp.reshape(-1), grid.reshape(-1), grad_inp,
            grad_grid, *_sizes(inp, grid, channels_last), padding_mode, bool(align_corners), bool(channels_last),
            need_grad_inp, need_grad_grid)
