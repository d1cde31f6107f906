"""An independent, slow, obviously correct NumPy reference of grid sampling and its two gradients, for the tests.

It is written from PyTorch's documented semantics and imports nothing from scratchattn. Where the library's kernels
pick a few taps around each point (floor, corners, offsets), this reference sums over *every* input pixel with an
interpolation kernel K, one output pixel at a time, in float64:

    out[n, :, h, w] = sum_{i, j} Ky(iy - i) Kx(ix - j) img[n, :, i, j]

* bilinear: the tent K(d) = max(0, 1 - |d|), applied to the padded coordinates;
* bicubic:  Keys' kernel (A = -0.75) on the unpadded coordinates, the padding applied to each integer tap;
* nearest:  the pixel at the padded coordinates rounded half to even.

The padding functions below are written differently from the kernels' as well: reflection as a triangle wave
with ``np.mod``. Only finite grids are supported (the tests check NaN and Inf separately).
"""

from __future__ import annotations

import numpy as np

A = -0.75  # Keys' coefficient


def unnormalize(x, size, align_corners):
    """(pixel coordinate, d pixel / d x) of the normalised coordinate x."""
    if align_corners:
        return (x + 1) / 2 * (size - 1), (size - 1) / 2
    return ((x + 1) * size - 1) / 2, size / 2


def clip(ix, size):
    """ix clamped to [0, size - 1]; slope 1 strictly inside, 0 where clamped (and on the borders)."""
    slope = 1.0 if 0 < ix < size - 1 else 0.0
    return min(max(ix, 0.0), size - 1.0), slope


def reflect(ix, size, align_corners):
    """ix mirrored at the edges as a triangle wave, and its slope (+1 or -1)."""
    if align_corners:
        if size == 1:
            return 0.0, 0.0
        period, top = 2.0 * (size - 1), size - 1.0
        m = np.mod(ix, period)
        return (m, 1.0) if m <= top else (period - m, -1.0)
    period, top = 2.0 * size, float(size)
    m = np.mod(ix + 0.5, period)
    return (m - 0.5, 1.0) if m <= top else (period - m - 0.5, -1.0)


def pad(ix, size, padding_mode, align_corners):
    """The coordinate to sample after padding, and d(padded)/d(ix)."""
    if padding_mode == "zeros":
        return ix, 1.0
    if padding_mode == "border":
        return clip(ix, size)
    r, slope = reflect(ix, size, align_corners)
    r, clip_slope = clip(r, size)
    return r, slope * clip_slope


def tent(d):
    return np.maximum(0.0, 1.0 - np.abs(d))


def tent_slope(d):
    """d/dd of the tent: -sign(d) inside (-1, 1), 0 outside."""
    return np.where(np.abs(d) < 1, -np.sign(d), 0.0)


def keys(d):
    d = np.abs(d)
    near = ((A + 2) * d - (A + 3)) * d * d + 1
    far = ((A * d - 5 * A) * d + 8 * A) * d - 4 * A
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def keys_slope(d):
    s, d = np.sign(d), np.abs(d)
    near = 3 * (A + 2) * d * d - 2 * (A + 3) * d
    far = 3 * A * d * d - 10 * A * d + 8 * A
    return s * np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def axis_weights(coord, size, mode, padding_mode, align_corners):
    """Weights (size,) of the input pixels along one axis and their derivatives d/d(normalised coordinate).

    For bicubic, a tap k outside the image lands (after padding) on pixel pad(k), or nowhere for zeros padding.
    """
    ix, d_ix = unnormalize(coord, size, align_corners)
    pixels = np.arange(size)
    weights = np.zeros(size)
    slopes = np.zeros(size)
    if mode == "bicubic":
        for k in range(int(np.floor(ix)) - 1, int(np.floor(ix)) + 3):
            target, _ = pad(float(k), size, padding_mode, align_corners)
            if padding_mode == "zeros" and not 0 <= target <= size - 1:
                continue
            target = int(round(target))
            weights[target] += keys(ix - k)
            slopes[target] += keys_slope(ix - k) * d_ix
        return weights, slopes
    ix, pad_slope = pad(ix, size, padding_mode, align_corners)
    if mode == "nearest":
        j = int(np.rint(ix))  # round half to even
        if 0 <= j < size:
            weights[j] = 1.0
        return weights, slopes
    return tent(ix - pixels), tent_slope(ix - pixels) * d_ix * pad_slope


def grid_sample_reference(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False):
    """out (N, C, H_out, W_out), float64, of img (N, C, H, W) sampled at grid (N, H_out, W_out, 2)."""
    img = np.asarray(img, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    N, C, H, W = img.shape
    _, H_out, W_out, _ = grid.shape
    out = np.zeros((N, C, H_out, W_out))
    for n in range(N):
        for h in range(H_out):
            for w in range(W_out):
                wx, _ = axis_weights(grid[n, h, w, 0], W, mode, padding_mode, align_corners)
                wy, _ = axis_weights(grid[n, h, w, 1], H, mode, padding_mode, align_corners)
                out[n, :, h, w] = np.einsum("cij,i,j->c", img[n], wy, wx)
    return out


def grid_sample_reference_backward(img, grid, grad_out, mode="bilinear", padding_mode="zeros",
                                   align_corners=False):
    """(dL/dimg, dL/dgrid) in float64 for the upstream gradient grad_out (N, C, H_out, W_out)."""
    img = np.asarray(img, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    grad_out = np.asarray(grad_out, dtype=np.float64)
    N, C, H, W = img.shape
    _, H_out, W_out, _ = grid.shape
    grad_img = np.zeros_like(img)
    grad_grid = np.zeros_like(grid)
    for n in range(N):
        for h in range(H_out):
            for w in range(W_out):
                wx, dwx = axis_weights(grid[n, h, w, 0], W, mode, padding_mode, align_corners)
                wy, dwy = axis_weights(grid[n, h, w, 1], H, mode, padding_mode, align_corners)
                g = grad_out[n, :, h, w]
                grad_img[n] += np.einsum("c,i,j->cij", g, wy, wx)
                grad_grid[n, h, w, 0] = np.einsum("c,cij,i,j->", g, img[n], wy, dwx)
                grad_grid[n, h, w, 1] = np.einsum("c,cij,i,j->", g, img[n], dwy, wx)
    return grad_img, grad_grid
