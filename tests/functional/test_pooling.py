"""Tests of max_pool2d, avg_pool2d, adaptive_avg_pool2d and global_avg_pool2d: forward and backward against window
loops written here (float32 and float64), PyTorch's tie and NaN rules for max pooling, gradcheck on every option
(inputs with distinct, well separated values so the max never switches under the finite-difference step)."""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend
from scratchattn import functional as F

# =================================================================================================================
# references
# =================================================================================================================


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def ref_windows(shape, kernel, stride, padding):
    """Yield (p, q, rows, cols): the in-bounds input rows and columns of each output window, in row-major order."""
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    h, w = shape[2:]
    h_out, w_out = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    for p in range(h_out):
        for q in range(w_out):
            rows = [r for r in range(p * sh - ph, p * sh - ph + kh) if 0 <= r < h]
            cols = [c for c in range(q * sw - pw, q * sw - pw + kw) if 0 <= c < w]
            yield p, q, rows, cols, (h_out, w_out)


def ref_max_pool(x, g, kernel, stride, padding):
    """Forward and backward; the winner is the first maximum in row-major window order (NaN beats everything)."""
    y = dx = None
    for p, q, rows, cols, out in ref_windows(x.shape, kernel, stride, padding):
        if y is None:
            y, dx = np.zeros(x.shape[:2] + out), np.zeros(x.shape)
        for n in range(x.shape[0]):
            for c in range(x.shape[1]):
                best, where = None, None
                for r in rows:
                    for s in cols:
                        v = x[n, c, r, s]
                        if best is None or v > best or np.isnan(v):
                            best, where = v, (r, s)
                y[n, c, p, q] = best
                dx[n, c, where[0], where[1]] += g[n, c, p, q]
    return y, dx


def ref_avg_pool(x, g, kernel, stride, padding, count_include_pad):
    kh, kw = _pair(kernel)
    y = dx = None
    for p, q, rows, cols, out in ref_windows(x.shape, kernel, stride, padding):
        if y is None:
            y, dx = np.zeros(x.shape[:2] + out), np.zeros(x.shape)
        count = kh * kw if count_include_pad else len(rows) * len(cols)
        y[:, :, p, q] = x[:, :, rows][:, :, :, cols].sum(axis=(2, 3)) / count
        for r in rows:
            for s in cols:
                dx[:, :, r, s] += g[:, :, p, q] / count
    return y, dx


def ref_adaptive_avg_pool(x, g, out):
    h, w = x.shape[2:]
    y, dx = np.zeros(x.shape[:2] + out), np.zeros(x.shape)
    for a in range(out[0]):
        r0, r1 = int(np.floor(a * h / out[0])), int(np.ceil((a + 1) * h / out[0]))
        for b in range(out[1]):
            c0, c1 = int(np.floor(b * w / out[1])), int(np.ceil((b + 1) * w / out[1]))
            count = (r1 - r0) * (c1 - c0)
            y[:, :, a, b] = x[:, :, r0:r1, c0:c1].sum(axis=(2, 3)) / count
            dx[:, :, r0:r1, c0:c1] += g[:, :, a, b][:, :, None, None] / count
    return y, dx


def distinct_values(shape, seed):
    """Values 0.1 apart in random order: no ties, and a step of 1e-6 never changes which one is the maximum."""
    rng = np.random.default_rng(seed)
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 3.0


def _tensor(device, a, dtype=np.float64, requires_grad=True):
    return sa.tensor(backend.to_device(np.asarray(a).astype(dtype), device), requires_grad=requires_grad)


def _check(fn, x_np, want_y, want_dx, g_np, dtype, device):
    x = _tensor(device, x_np, dtype)
    y = fn(x)
    assert y.dtype == dtype and y.shape == want_y.shape
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(y.numpy(), want_y, **tol)
    y.backward(backend.to_device(g_np.astype(dtype), device))
    np.testing.assert_allclose(backend.to_numpy(x.grad), want_dx, **tol)


# =================================================================================================================
# max_pool2d
# =================================================================================================================

WINDOW_CASES = {
    "k2": ((2, 3, 6, 8), {"kernel_size": 2}),
    "k3_s2_p1": ((2, 2, 7, 6), {"kernel_size": 3, "stride": 2, "padding": 1}),
    "k(2,3)_s1 overlapping": ((1, 2, 5, 6), {"kernel_size": (2, 3), "stride": 1}),
    "k3_s(1,2)_p(1,0)": ((1, 1, 5, 7), {"kernel_size": 3, "stride": (1, 2), "padding": (1, 0)}),
    "k2_odd_input_floor": ((3, 1, 5, 7), {"kernel_size": 2}),
    "whole_input": ((2, 2, 3, 4), {"kernel_size": (3, 4)}),
}


def _window_args(kwargs):
    k = kwargs["kernel_size"]
    return k, kwargs.get("stride", k), kwargs.get("padding", 0)


@pytest.mark.parametrize("case", list(WINDOW_CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_matches_the_loop_reference(case, dtype, device):
    shape, kwargs = WINDOW_CASES[case]
    rng = np.random.default_rng(list(WINDOW_CASES).index(case))
    x_np = rng.standard_normal(shape).astype(dtype)
    g_np = rng.standard_normal(F.max_pool2d(sa.tensor(x_np), **kwargs).shape)
    y_ref, dx_ref = ref_max_pool(x_np.astype(np.float64), g_np.astype(dtype).astype(np.float64),
                                 *_window_args(kwargs))
    _check(lambda t: F.max_pool2d(t, **kwargs), x_np, y_ref, dx_ref, g_np, dtype, device)


@pytest.mark.parametrize("case", list(WINDOW_CASES))
def test_max_pool_gradcheck(case, device):
    shape, kwargs = WINDOW_CASES[case]
    x = _tensor(device, distinct_values(shape, 7))
    assert sa.gradcheck(lambda t: F.max_pool2d(t, **kwargs), [x])


def test_max_pool_ties_send_the_gradient_to_the_first_maximum():
    x_np = np.array([[[[1.0, 5.0, 5.0, 0.0],
                       [5.0, 2.0, 5.0, 5.0],
                       [0.0, 0.0, 3.0, 3.0]]]])
    x = _tensor("cpu", x_np)
    y = F.max_pool2d(x, kernel_size=2, stride=1)
    y.backward(np.ones(y.shape))
    # windows (0,0) and (0,1) both pick (0,1); window (0,2) picks (0,2); row-1 windows pick (1,0), (1,2), (1,2)
    want = np.array([[[[0.0, 2.0, 1.0, 0.0],
                       [1.0, 0.0, 2.0, 0.0],
                       [0.0, 0.0, 0.0, 0.0]]]])
    np.testing.assert_array_equal(x.grad, want)
    np.testing.assert_array_equal(y.numpy(), [[[[5, 5, 5], [5, 5, 5]]]])


def test_max_pool_propagates_nan_and_sends_its_gradient_there():
    x_np = np.array([[[[1.0, np.nan], [3.0, 2.0]]]])
    x = _tensor("cpu", x_np)
    y = F.max_pool2d(x, 2)
    assert np.isnan(y.item())
    y.backward(np.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(x.grad, [[[[0.0, 1.0], [0.0, 0.0]]]])


def test_max_pool_padding_never_wins_over_negative_values():
    x = _tensor("cpu", -np.arange(1.0, 10.0).reshape(1, 1, 3, 3))
    y = F.max_pool2d(x, 3, stride=1, padding=1)
    np.testing.assert_array_equal(y.numpy()[0, 0], [[-1, -1, -2], [-1, -1, -2], [-4, -4, -5]])


# =================================================================================================================
# avg_pool2d
# =================================================================================================================


@pytest.mark.parametrize("case", list(WINDOW_CASES))
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_avg_pool_matches_the_loop_reference(case, count_include_pad, dtype, device):
    shape, kwargs = WINDOW_CASES[case]
    rng = np.random.default_rng(list(WINDOW_CASES).index(case))
    x_np = rng.standard_normal(shape).astype(dtype)
    out_shape = F.avg_pool2d(sa.tensor(x_np), **kwargs).shape
    g_np = rng.standard_normal(out_shape)
    y_ref, dx_ref = ref_avg_pool(x_np.astype(np.float64), g_np.astype(dtype).astype(np.float64),
                                 *_window_args(kwargs), count_include_pad)
    _check(lambda t: F.avg_pool2d(t, **kwargs, count_include_pad=count_include_pad), x_np, y_ref, dx_ref, g_np,
           dtype, device)


@pytest.mark.parametrize("case", list(WINDOW_CASES))
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_gradcheck(case, count_include_pad, device):
    shape, kwargs = WINDOW_CASES[case]
    x = _tensor(device, np.random.default_rng(3).standard_normal(shape))
    assert sa.gradcheck(lambda t: F.avg_pool2d(t, **kwargs, count_include_pad=count_include_pad), [x])


# =================================================================================================================
# adaptive_avg_pool2d, global_avg_pool2d
# =================================================================================================================

ADAPTIVE_CASES = [((2, 3, 7, 5), (3, 2)), ((1, 2, 5, 5), 1), ((1, 1, 4, 6), (4, 6)), ((2, 1, 3, 4), (5, 7)),
                  ((1, 2, 6, 9), (None, 4)), ((1, 1, 10, 3), (4, 1))]


@pytest.mark.parametrize("shape,out", ADAPTIVE_CASES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adaptive_avg_pool_matches_the_loop_reference(shape, out, dtype, device):
    rng = np.random.default_rng(len(shape) + shape[2] * 10 + shape[3])
    x_np = rng.standard_normal(shape).astype(dtype)
    out_pair = tuple(shape[2 + i] if o is None else o for i, o in enumerate(_pair(out)))
    g_np = rng.standard_normal(shape[:2] + out_pair)
    y_ref, dx_ref = ref_adaptive_avg_pool(x_np.astype(np.float64), g_np.astype(dtype).astype(np.float64), out_pair)
    _check(lambda t: F.adaptive_avg_pool2d(t, out), x_np, y_ref, dx_ref, g_np, dtype, device)


@pytest.mark.parametrize("shape,out", ADAPTIVE_CASES, ids=str)
def test_adaptive_avg_pool_gradcheck(shape, out, device):
    x = _tensor(device, np.random.default_rng(2).standard_normal(shape))
    assert sa.gradcheck(lambda t: F.adaptive_avg_pool2d(t, out), [x])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_avg_pool(dtype, device):
    rng = np.random.default_rng(4)
    x_np = rng.standard_normal((3, 4, 5, 6)).astype(dtype)
    g_np = rng.standard_normal((3, 4, 1, 1))
    want_dx = np.broadcast_to(g_np.astype(dtype) / 30, x_np.shape)
    _check(F.global_avg_pool2d, x_np, x_np.astype(np.float64).mean(axis=(2, 3), keepdims=True), want_dx, g_np,
           dtype, device)
    assert sa.gradcheck(F.global_avg_pool2d, [_tensor(device, rng.standard_normal((2, 3, 3, 2)))])


# =================================================================================================================
# errors
# =================================================================================================================


def test_pooling_errors_name_the_argument():
    x = sa.tensor(np.zeros((1, 2, 5, 5)))
    with pytest.raises(ValueError, match=r"input must have shape \(N, C, H, W\)"):
        F.max_pool2d(sa.tensor(np.zeros((2, 5, 5))), 2)
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        F.avg_pool2d(x, 0)
    with pytest.raises(ValueError, match="padding must be at most half the kernel size"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="larger than the padded input height"):
        F.max_pool2d(x, (6, 2))
    with pytest.raises(TypeError, match="stride must be an int or a pair"):
        F.avg_pool2d(x, 2, stride=1.5)
    with pytest.raises(ValueError, match="output_size entries must be positive"):
        F.adaptive_avg_pool2d(x, (0, 2))
    with pytest.raises(TypeError, match="input must be floating point"):
        F.global_avg_pool2d(sa.tensor(np.zeros((1, 2, 5, 5), dtype=np.int32)))


# =================================================================================================================
# max_pool2d: the CPU fast path (Numba kernels, general and 2x2) against the xp reference path
# =================================================================================================================

FAST_CASES = {  # shape, kwargs; the 2x2 ones take the specialised kernels
    "2x2 even": ((2, 3, 6, 8), {"kernel_size": 2}),
    "2x2 odd height and width": ((3, 2, 7, 9), {"kernel_size": 2}),
    "2x2 stride 2 explicit, odd width": ((1, 1, 4, 5), {"kernel_size": 2, "stride": 2}),
    "k3 s2 p1": ((2, 2, 7, 6), {"kernel_size": 3, "stride": 2, "padding": 1}),
    "k(2,3) s1 overlapping": ((1, 2, 5, 6), {"kernel_size": (2, 3), "stride": 1}),
    "2x2 stride 1": ((2, 1, 5, 4), {"kernel_size": 2, "stride": 1}),
}


def _with_ties_and_nans(shape, dtype, seed):
    """Small integers (many ties inside windows), a few NaNs and infinities."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, shape).astype(dtype)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, 3, replace=False)] = np.nan
    flat[rng.choice(flat.size, 2, replace=False)] = -np.inf
    return x


@pytest.mark.parametrize("case", list(FAST_CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_cpu_kernels_match_the_xp_path(case, dtype, monkeypatch):
    from scratchattn.functional.pooling import MaxPool2d

    shape, kwargs = FAST_CASES[case]
    x_np = _with_ties_and_nans(shape, dtype, list(FAST_CASES).index(case))
    results = []
    for fast in (True, False):
        monkeypatch.setattr(MaxPool2d, "cpu_kernels", fast)
        x = sa.tensor(x_np.copy(), requires_grad=True)
        y = F.max_pool2d(x, **kwargs)
        winners = y.creator.argmax.copy()  # the op frees it in backward
        g = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
        y.backward(g)
        results.append((y.numpy(), winners, x.grad))
    (y_fast, arg_fast, dx_fast), (y_xp, arg_xp, dx_xp) = results
    np.testing.assert_array_equal(y_fast, y_xp)  # NaN positions equal too
    np.testing.assert_array_equal(arg_fast, arg_xp)  # the same winner in every window: ties and NaN rules agree
    assert arg_fast.dtype == arg_xp.dtype
    assert y_fast.dtype == dtype and dx_fast.dtype == dtype and dx_fast.shape == shape
    # Overlapping windows may add a pixel's shares in another order: equal up to rounding.
    np.testing.assert_allclose(dx_fast, dx_xp, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", list(FAST_CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_cpu_kernels_match_the_loop_reference(case, dtype):
    """Random values, odd shapes: values and gradient against the window loop (which the xp path also meets)."""
    shape, kwargs = FAST_CASES[case]
    rng = np.random.default_rng(20 + list(FAST_CASES).index(case))
    x_np = rng.standard_normal(shape).astype(dtype)
    g_np = rng.standard_normal(F.max_pool2d(sa.tensor(x_np), **kwargs).shape)
    y_ref, dx_ref = ref_max_pool(x_np.astype(np.float64), g_np.astype(dtype).astype(np.float64),
                                 *_window_args(kwargs))
    _check(lambda t: F.max_pool2d(t, **kwargs), x_np, y_ref, dx_ref, g_np, dtype, "cpu")


def test_max_pool_2x2_kernel_zeroes_the_uncovered_border():
    """The 2x2 backward fills dx from np.empty: the odd last row and column (in no window) must come out 0."""
    x = sa.tensor(np.arange(35.0).reshape(1, 1, 5, 7), requires_grad=True)
    y = F.max_pool2d(x, 2)
    y.backward(np.ones(y.shape))
    want = np.zeros((5, 7))
    want[1:4:2, 1:6:2] = 1.0  # the bottom-right element of every window is its maximum
    np.testing.assert_array_equal(x.grad[0, 0], want)
