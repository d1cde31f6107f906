"""Numba helper of ``conv2d`` on the CPU: ``col2im``, the scatter-add at the end of the convolution's backward.

``functional/conv.py`` builds the convolution from im2col, one matrix product, and (in the backward) col2im. Its
plain ``xp`` versions of both run on NumPy and CuPy and are the reference. For NumPy arrays, col2im runs this
kernel instead, because the measurement said so (2-core AVX-512 machine, float32, batch 64, 5x5 kernels, one
thread; the xp version / this kernel):

    (64, 32, 19, 19) input, dcols 46 MB     8.1 ms / 5.3 ms
    (64, 32, 12, 12) input                  4.9 ms / 1.6 ms
    (64, 1, 42, 42) input                   1.1 ms / 0.4 ms

The xp version adds one strided block per kernel offset, a NumPy call whose inner loop is a 15-element row; the
kernel walks the same additions as plain loops over rows. im2col itself (a single strided copy in NumPy) was not
faster as a Numba loop and stays in ``functional/conv.py``.

Layouts, as in ``functional/conv.py``: ``dcols`` (C*kh*kw, N*h_out*w_out), rows ordered (c, i, j) and columns
(n, p, q); ``dxpad`` (N, C, H + pad, W + pad), zeroed by the caller. Each ``prange`` iteration owns one input
channel c, i.e. the slab ``dxpad[:, c]``, and reads only the kh*kw rows of dcols that belong to c (each in full,
from start to end): no two iterations touch the same output element (style rule 6). Every pixel receives its
contributions in the order of the kernel offsets (i, j), the same order as the xp version, so the two give bitwise
identical results.
"""

from __future__ import annotations

from numba import njit, prange


@njit(parallel=True, cache=True)
def col2im(dcols, kh, kw, sh, sw, dh, dw, h_out, w_out, dxpad):
    """dxpad[n, c, p*sh + i*dh, q*sw + j*dw] += dcols[(c, i, j), (n, p, q)] for every c, i, j, n, p, q."""
    n, c = dxpad.shape[0], dxpad.shape[1]
    per_sample = h_out * w_out
    for ci in prange(c):
        for i in range(kh):
            for j in range(kw):
                r = (ci * kh + i) * kw + j
                for b in range(n):
                    for p in range(h_out):
                        # Row views that start at the first element touched: the loop index q then counts up
                        # from 0, which lets LLVM drop the negative-index check and vectorise the unit-stride case.
                        start = b * per_sample + p * w_out
                        src = dcols[r, start : start + w_out]
                        dst = dxpad[b, ci, p * sh + i * dh, j * dw :]
                        if sw == 1:
                            for q in range(w_out):
                                dst[q] += src[q]
                        else:
                            for q in range(w_out):
                                dst[q * sw] += src[q]
