"""Tests of ``F.conv2d`` (im2col + matrix product): forward and backward against a direct nested-loop convolution
written here, on every option (stride, padding incl. "same"/"valid", dilation, groups, bias), float32 and
float64; gradcheck on each option; and the input errors."""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend
from scratchattn import functional as F

# =================================================================================================================
# reference: the definition, one output element at a time
# =================================================================================================================


def ref_conv2d(x, w, b, stride, padding, dilation, groups):
    """y[n, o, p, q] = b[o] + sum_{c, i, j} w[o, c, i, j] * xpad[n, g*C/groups + c, p*sh + i*dh, q*sw + j*dw]."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = stride, padding, dilation
    n, c, h, wid = x.shape
    o, cg, kh, kw = w.shape
    xpad = np.zeros((n, c, h + pt + pb, wid + pl + pr))
    xpad[:, :, pt : pt + h, pl : pl + wid] = x
    h_out = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    w_out = (wid + pl + pr - dw * (kw - 1) - 1) // sw + 1
    og = o // groups
    y = np.zeros((n, o, h_out, w_out))
    for b_ in range(n):
        for oc in range(o):
            first = (oc // og) * cg  # first input channel of this output channel's group
            for p in range(h_out):
                for q in range(w_out):
                    acc = 0.0 if b is None else float(b[oc])
                    for ci in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                acc += w[oc, ci, i, j] * xpad[b_, first + ci, p * sh + i * dh, q * sw + j * dw]
                    y[b_, oc, p, q] = acc
    return y


def ref_conv2d_backward(x, w, g, stride, padding, dilation, groups):
    """dx and dw by scattering each output gradient back along the same index map as the forward."""
    x, w, g = x.astype(np.float64), w.astype(np.float64), g.astype(np.float64)
    (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = stride, padding, dilation
    n, c, h, wid = x.shape
    o, cg, kh, kw = w.shape
    xpad = np.zeros((n, c, h + pt + pb, wid + pl + pr))
    xpad[:, :, pt : pt + h, pl : pl + wid] = x
    dxpad, dwt = np.zeros_like(xpad), np.zeros_like(w)
    og = o // groups
    for b_ in range(n):
        for oc in range(o):
            first = (oc // og) * cg
            for p in range(g.shape[2]):
                for q in range(g.shape[3]):
                    for ci in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                r, s = p * sh + i * dh, q * sw + j * dw
                                dxpad[b_, first + ci, r, s] += w[oc, ci, i, j] * g[b_, oc, p, q]
                                dwt[oc, ci, i, j] += xpad[b_, first + ci, r, s] * g[b_, oc, p, q]
    return dxpad[:, :, pt : pt + h, pl : pl + wid], dwt


# =================================================================================================================
# cases: (x shape, w shape, conv2d kwargs, the reference's explicit padding)
# =================================================================================================================

CASES = {
    "plain": ((2, 3, 7, 6), (4, 3, 3, 2), {}, ((0, 0), (0, 0))),
    "stride2": ((2, 3, 7, 6), (4, 3, 3, 3), {"stride": 2}, ((0, 0), (0, 0))),
    "stride(2,1)_pad(1,2)": ((1, 2, 6, 5), (3, 2, 3, 3), {"stride": (2, 1), "padding": (1, 2)}, ((1, 1), (2, 2))),
    "dilation2_pad2": ((2, 2, 7, 7), (3, 2, 3, 3), {"dilation": 2, "padding": 2}, ((2, 2), (2, 2))),
    "dilation(1,2)_stride(1,3)": ((1, 2, 6, 9), (2, 2, 2, 3), {"dilation": (1, 2), "stride": (1, 3)},
                                  ((0, 0), (0, 0))),
    "groups2": ((2, 4, 5, 6), (6, 2, 3, 3), {"groups": 2, "padding": 1}, ((1, 1), (1, 1))),
    "depthwise": ((1, 3, 5, 5), (3, 1, 3, 3), {"groups": 3, "stride": 2, "padding": 1}, ((1, 1), (1, 1))),
    "same_even_kernel": ((1, 2, 5, 6), (3, 2, 4, 2), {"padding": "same"}, ((1, 2), (0, 1))),
    "same_dilated": ((1, 2, 6, 5), (2, 2, 3, 2), {"padding": "same", "dilation": 2}, ((2, 2), (1, 1))),
    "valid": ((1, 2, 5, 4), (2, 2, 2, 2), {"padding": "valid"}, ((0, 0), (0, 0))),
    "1x1": ((2, 5, 3, 4), (3, 5, 1, 1), {}, ((0, 0), (0, 0))),
    "batch1_channel1": ((1, 1, 5, 7), (1, 1, 5, 3), {}, ((0, 0), (0, 0))),
    "kernel_covers_input": ((2, 2, 3, 4), (3, 2, 3, 4), {}, ((0, 0), (0, 0))),
}


def _ref_args(kwargs, ref_padding):
    def pair(v):
        return (v, v) if isinstance(v, int) else tuple(v)

    return pair(kwargs.get("stride", 1)), ref_padding, pair(kwargs.get("dilation", 1)), kwargs.get("groups", 1)


def _on(device, a, dtype, requires_grad=False):
    return sa.tensor(backend.to_device(np.asarray(a).astype(dtype), device), requires_grad=requires_grad)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_forward_and_backward_match_the_loop_reference(case, dtype, device):
    x_shape, w_shape, kwargs, ref_padding = CASES[case]
    rng = np.random.default_rng(list(CASES).index(case))
    x_np, w_np, b_np = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    x, w, b = (_on(device, a, dtype, True) for a in (x_np, w_np, b_np))
    y = F.conv2d(x, w, b, **kwargs)
    args = _ref_args(kwargs, ref_padding)
    want = ref_conv2d(x_np.astype(dtype), w_np.astype(dtype), b_np.astype(dtype), *args)
    assert y.dtype == dtype and y.shape == want.shape
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y.numpy(), want, **tol)

    g = rng.standard_normal(want.shape)
    y.backward(backend.to_device(g.astype(dtype), device))
    dx_want, dw_want = ref_conv2d_backward(x_np.astype(dtype), w_np.astype(dtype), g.astype(dtype), *args)
    np.testing.assert_allclose(backend.to_numpy(x.grad), dx_want, **tol)
    np.testing.assert_allclose(backend.to_numpy(w.grad), dw_want, **tol)
    np.testing.assert_allclose(backend.to_numpy(b.grad), g.astype(dtype).sum(axis=(0, 2, 3)), **tol)


@pytest.mark.parametrize("case", list(CASES))
def test_conv2d_gradcheck(case, device):
    x_shape, w_shape, kwargs, _ = CASES[case]
    rng = np.random.default_rng(100 + list(CASES).index(case))
    x, w, b = (_on(device, rng.standard_normal(s), np.float64, True) for s in (x_shape, w_shape, w_shape[:1]))
    assert sa.gradcheck(lambda *t: F.conv2d(*t, **kwargs), [x, w, b])


def test_conv2d_without_bias_and_with_only_input_grad():
    rng = np.random.default_rng(3)
    x = _on("cpu", rng.standard_normal((2, 2, 5, 5)), np.float64, True)
    w = _on("cpu", rng.standard_normal((3, 2, 3, 3)), np.float64, False)
    assert sa.gradcheck(lambda t: F.conv2d(t, w, stride=2, padding=1), [x])
    assert F.conv2d(x, w).creator is not None


def test_conv2d_empty_batch():
    x = sa.tensor(np.zeros((0, 2, 5, 5)), requires_grad=True)
    w = sa.tensor(np.ones((3, 2, 3, 3)), requires_grad=True)
    y = F.conv2d(x, w, groups=1, padding=1)
    assert y.shape == (0, 3, 5, 5)
    y.sum().backward()
    assert x.grad.shape == (0, 2, 5, 5)
    np.testing.assert_array_equal(w.grad, np.zeros((3, 2, 3, 3)))


def test_conv2d_errors_name_the_argument():
    x = sa.tensor(np.zeros((1, 4, 5, 5)))
    w = sa.tensor(np.zeros((2, 4, 3, 3)))
    with pytest.raises(ValueError, match=r"input must have shape \(N, C, H, W\); got \(4, 5, 5\)"):
        F.conv2d(sa.tensor(np.zeros((4, 5, 5))), w)
    with pytest.raises(ValueError, match="weight.shape\\[1\\] must be 2"):
        F.conv2d(x, w, groups=2)
    with pytest.raises(ValueError, match="divisible by groups 3"):
        F.conv2d(x, sa.tensor(np.zeros((3, 1, 3, 3))), groups=3)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        F.conv2d(x, w, stride=0)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        F.conv2d(x, w, padding=-1)
    with pytest.raises(TypeError, match="dilation must be an int or a pair"):
        F.conv2d(x, w, dilation=(1, 2, 3))
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        F.conv2d(x, w, padding="same", stride=2)
    with pytest.raises(ValueError, match="padding string must be 'valid' or 'same'"):
        F.conv2d(x, w, padding="full")
    with pytest.raises(ValueError, match="larger than the padded input height"):
        F.conv2d(x, sa.tensor(np.zeros((2, 4, 6, 3))))
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        F.conv2d(x, w, sa.tensor(np.zeros(3)))
    with pytest.raises(TypeError, match="weight dtype float32 differs from input dtype float64"):
        F.conv2d(x, sa.tensor(np.zeros((2, 4, 3, 3), dtype=np.float32)))
    with pytest.raises(TypeError, match="input must be floating point"):
        F.conv2d(sa.tensor(np.zeros((1, 4, 5, 5), dtype=np.int64)), w)


def test_conv2d_accepts_non_contiguous_input():
    rng = np.random.default_rng(8)
    base = rng.standard_normal((2, 6, 5, 3))
    x_view = base.transpose(0, 3, 2, 1)[:, :, ::-1]  # (2, 3, 5, 6), permuted and with a negative stride
    w = rng.standard_normal((4, 3, 2, 2))
    for padding in (0, 1):
        got = F.conv2d(sa.tensor(x_view), sa.tensor(w), padding=padding).numpy()
        want = F.conv2d(sa.tensor(np.ascontiguousarray(x_view)), sa.tensor(w), padding=padding).numpy()
        np.testing.assert_array_equal(got, want)


# =================================================================================================================
# the CPU fast path: the Numba col2im against the xp reference (bit for bit: same additions, same order)
# =================================================================================================================

COL2IM_CASES = {  # x shape, kernel, stride, (pad_h, pad_w), dilation
    "5x5 odd sizes": ((3, 2, 9, 7), (5, 5), (1, 1), ((0, 0), (0, 0)), (1, 1)),
    "stride(2,3) pad": ((2, 3, 8, 11), (3, 2), (2, 3), ((1, 1), (2, 2)), (1, 1)),
    "dilation(2,1) uneven pad": ((1, 2, 9, 6), (3, 3), (1, 1), ((1, 2), (0, 1)), (2, 1)),
    "channel1 batch1": ((1, 1, 6, 5), (2, 3), (1, 2), ((0, 0), (1, 1)), (1, 1)),
    "1x1 stride2": ((2, 4, 5, 5), (1, 1), (2, 2), ((0, 0), (0, 0)), (1, 1)),
}


@pytest.mark.parametrize("case", list(COL2IM_CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_col2im_equals_the_xp_reference_bitwise(case, dtype):
    from scratchattn.functional import conv

    x_shape, kernel, stride, (pad_h, pad_w), dilation = COL2IM_CASES[case]
    out_size = tuple((s + sum(p) - d * (k - 1) - 1) // st + 1
                     for s, p, k, st, d in zip(x_shape[2:], (pad_h, pad_w), kernel, stride, dilation))
    rows = x_shape[1] * kernel[0] * kernel[1]
    dcols = np.random.default_rng(5).standard_normal((rows, x_shape[0] * out_size[0] * out_size[1])).astype(dtype)
    args = (x_shape, kernel, stride, pad_h, pad_w, dilation, out_size)
    want = conv.col2im(dcols, *args)
    got = conv.col2im_fast(dcols, *args)
    assert got.dtype == dtype and got.shape == x_shape and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)
    # and col2im is the adjoint of im2col: <im2col(x), dcols> == <x, col2im(dcols)>
    x = np.random.default_rng(6).standard_normal(x_shape)
    cols = conv.im2col(x, kernel, stride, pad_h, pad_w, dilation, out_size)
    np.testing.assert_allclose((cols * dcols).sum(), (x * got).sum(), rtol=1e-4 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_cpu_kernels_match_the_xp_path(dtype, monkeypatch):
    """The whole op with and without the Numba col2im: identical outputs and gradients."""
    from scratchattn.functional.conv import Conv2d

    rng = np.random.default_rng(9)
    x_np, w_np, b_np = rng.standard_normal((3, 4, 9, 8)), rng.standard_normal((6, 2, 3, 3)), rng.standard_normal(6)
    g = rng.standard_normal((3, 6, 5, 4)).astype(dtype)
    results = []
    for fast in (True, False):
        monkeypatch.setattr(Conv2d, "cpu_kernels", fast)
        x, w, b = (_on("cpu", a, dtype, True) for a in (x_np, w_np, b_np))
        y = F.conv2d(x, w, b, stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
        y.backward(g)
        results.append((y.numpy(), x.grad, w.grad, b.grad))
    for fast_array, xp_array in zip(*results):
        np.testing.assert_array_equal(fast_array, xp_array)


def test_workspace_reuses_buffers_within_its_limits():
    from scratchattn.functional.conv import Workspace

    space = Workspace(max_bytes=1000, per_shape=2)
    a = space.take((10, 5), np.float32)
    assert a.shape == (10, 5) and a.dtype == np.float32
    space.give(a)
    assert space.take((10, 5), np.float32) is a  # the same memory again
    assert space.take((10, 5), np.float64) is not a  # another dtype is another key
    space.give(a)
    space.give(np.empty((10, 5), np.float32))
    space.give(np.empty((10, 5), np.float32))  # a third one of this key is dropped
    assert space.bytes == 400 and len(space.spare[((10, 5), np.dtype(np.float32))]) == 2
    space.give(np.empty((200, 2), np.float32))  # 1600 bytes: over max_bytes, dropped
    space.give(np.empty((10, 10), np.float32)[:, :5])  # a view: never kept (its memory belongs to another array)
    assert space.bytes == 400
    space.clear()
    assert space.bytes == 0 and space.take((10, 5), np.float32) is not a


def test_conv2d_workspace_never_hands_out_memory_a_graph_still_needs():
    """backward(retain_graph=True) keeps cols; other convolutions of the same shapes run in between (taking every
    spare buffer); a second backward through the first graph must give the same gradients."""
    rng = np.random.default_rng(11)
    x_np, w_np = rng.standard_normal((4, 3, 9, 9)).astype(np.float32), rng.standard_normal((5, 3, 3, 3))
    w = _on("cpu", w_np, np.float32, True)
    x = _on("cpu", x_np, np.float32, True)
    y = F.conv2d(x, w, padding=1)
    g = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(g, retain_graph=True)
    first = (x.grad.copy(), w.grad.copy())
    for seed in range(3):  # unrelated steps through the same shapes, each releasing its buffers
        other = _on("cpu", np.random.default_rng(seed).standard_normal(x_np.shape), np.float32, True)
        F.conv2d(other, w, padding=1).backward(np.ones(y.shape, np.float32))
    x.grad = w.grad = None
    y.backward(g)
    np.testing.assert_array_equal(x.grad, first[0])
    np.testing.assert_array_equal(w.grad, first[1])
    want = F.conv2d(sa.tensor(x_np.astype(np.float64)), sa.tensor(w_np), padding=1).numpy()
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-4, atol=1e-4)  # the output was not overwritten either
