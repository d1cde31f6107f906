"""Numba kernels of ``batch_norm`` in training mode on the CPU: two passes forward, two passes backward.

``functional/normalization.py`` holds the op, its validation and the plain ``xp`` version (the reference and the
CuPy path), which makes about five passes over the input in each direction (mean, centre, square, reduce, scale,
shift, ...). These kernels make the fewest passes the math allows, each a plain loop:

* ``batch_norm_stats``            mean[c], var[c] over the m = N*S values of channel c   (one read of x)
* ``batch_norm_apply``            y = (x - mean[c]) * scale[c] + bias[c]                    (one read, one write)
* ``batch_norm_backward_reduce``  sum_g[c] = sum g,  sum_gxc[c] = sum g * (x - mean[c])    (one read of g and x)
* ``batch_norm_backward_input``   dx = a[c] * g + b[c] * (x - mean[c]) + k[c]               (one read of each, a write)

with per-channel coefficients computed by the functional on (C,) vectors: scale = w / sigma; and, from
dx = (w/sigma) (g - mean(g) - x_hat mean(g x_hat)) with x_hat = (x - mean) / sigma,
a = w / sigma, b = -a * sum_gxc / (m sigma^2), k = -a * sum_g / m. Both maps subtract the mean before scaling
(rather than folding it into one constant): a folded constant would cancel against x * scale and lose digits
when |mean| >> std.

``mean`` is float64 everywhere (the statistics are float64; rounding the mean to float32 would shift every x - mean
of a channel whose spread is small next to its mean); the other (C,) vectors are in the data's dtype. Arrays are
viewed as (N, C, S), S the product of the spatial sizes (a reshape, no copy; S = 1 for (N, C) input),
C-contiguous. Each ``prange`` iteration owns one channel c and everything written for it, so the kernels are
race-free (style rule 6). Sums accumulate in float64, also for float32 data, with ``fastmath={"reassoc"}`` so LLVM
may keep several partial sums in SIMD lanes (without it the loop adds one value after another, several times
slower); the order is fixed by the compiled code, so results repeat bit for bit. The variance is computed in one
pass around a shift, the channel's first value: var = mean((x - K)^2) - mean(x - K)^2. Without the shift this
formula loses every digit when |mean| >> std; with K a value of the channel, the two terms stay of the size of the
spread, and float64 accumulation leaves float32 data far more precision than it has.
"""

from __future__ import annotations

from numba import njit, prange

_REDUCE = dict(parallel=True, cache=True, fastmath={"reassoc"})
_ELEMENTWISE = dict(parallel=True, cache=True)


@njit(**_REDUCE)
def batch_norm_stats(x, mean, var):
    """mean[c] and biased var[c] (float64) of x[:, c, :] (N, C, S)."""
    n, c, s = x.shape
    m = n * s
    for ch in prange(c):
        shift = float(x[0, ch, 0])
        total = 0.0
        total_sq = 0.0
        for b in range(n):
            row = x[b, ch]
            for i in range(s):
                d = row[i] - shift
                total += d
                total_sq += d * d
        centre = total / m
        mean[ch] = shift + centre
        v = total_sq / m - centre * centre
        var[ch] = 0.0 if v < 0.0 else v  # never negative through rounding; a NaN stays NaN


@njit(**_ELEMENTWISE)
def batch_norm_apply(x, mean, scale, bias, y):
    """y[n, c, s] = (x[n, c, s] - mean[c]) * scale[c] + bias[c]; mean float64, scale and bias in x's dtype."""
    n, c, s = x.shape
    for ch in prange(c):
        mu = mean[ch]
        a = scale[ch]
        k = bias[ch]
        for b in range(n):
            src = x[b, ch]
            dst = y[b, ch]
            for i in range(s):
                dst[i] = (src[i] - mu) * a + k


@njit(**_REDUCE)
def batch_norm_backward_reduce(g, x, mean, sum_g, sum_gxc):
    """sum_g[c] = sum g[:, c, :],  sum_gxc[c] = sum g[:, c, :] * (x[:, c, :] - mean[c])  (float64)."""
    n, c, s = x.shape
    for ch in prange(c):
        mu = mean[ch]
        total = 0.0
        total_x = 0.0
        for b in range(n):
            grad = g[b, ch]
            row = x[b, ch]
            for i in range(s):
                gi = float(grad[i])
                total += gi
                total_x += gi * (row[i] - mu)
        sum_g[ch] = total
        sum_gxc[ch] = total_x


@njit(**_ELEMENTWISE)
def batch_norm_backward_input(g, x, mean, a, b_coef, k, dx):
    """dx[n, c, s] = a[c] * g[n, c, s] + b_coef[c] * (x[n, c, s] - mean[c]) + k[c]; mean float64, the rest x's dtype."""
    n, c, s = x.shape
    for ch in prange(c):
        mu = mean[ch]
        ac = a[ch]
        bc = b_coef[ch]
        kc = k[ch]
        for b in range(n):
            grad = g[b, ch]
            row = x[b, ch]
            dst = dx[b, ch]
            for i in range(s):
                dst[i] = ac * grad[i] + bc * (row[i] - mu) + kc
