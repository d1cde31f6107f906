"""Tests of the fused squeeze-excitation op, its kernel pair and its primitive twin.

The references are written here in NumPy, independently of the library: the forward as the paper states it, the
backward as the chain rule through each step, with einsum. Every test runs through each kernel path (Numba,
the CUDA sources on the host shim, and CuPy on a GPU) with the ``kernel_path`` fixture.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend
from scratchattn import functional as F
from scratchattn.functional.squeeze_excitation import squeeze_excitation, squeeze_excitation_simple

LAYOUTS = ["NCHW", "NHWC"]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


# =================================================================================================================
# NumPy reference
# =================================================================================================================


def to_nchw(a, layout):
    return a if layout == "NCHW" else a.transpose(0, 3, 1, 2)


def from_nchw(a, layout):
    return a if layout == "NCHW" else a.transpose(0, 2, 3, 1)


def reference_forward(x, w1, b1, w2, b2, layout="NCHW"):
    """y, s and the intermediates, in float64, for x in ``layout``."""
    x = to_nchw(x.astype(np.float64), layout)
    z = x.mean(axis=(2, 3))
    a1 = z @ w1.T.astype(np.float64) + (0 if b1 is None else b1)
    r1 = np.maximum(a1, 0)
    a2 = r1 @ w2.T.astype(np.float64) + (0 if b2 is None else b2)
    s = 1 / (1 + np.exp(-a2))
    y = x * s[:, :, None, None]
    return from_nchw(y, layout), s, dict(z=z, a1=a1, r1=r1)


def reference_backward(g, x, w1, b1, w2, b2, layout="NCHW"):
    """(dx, dw1, db1, dw2, db2) of L = sum(g * y), in float64, step by step through the forward."""
    _, s, mid = reference_forward(x, w1, b1, w2, b2, layout)
    g = to_nchw(g.astype(np.float64), layout)
    x = to_nchw(x.astype(np.float64), layout)
    hw = x.shape[2] * x.shape[3]
    ds = np.einsum("nchw,nchw->nc", g, x)
    da2 = ds * s * (1 - s)
    dw2 = np.einsum("nc,nk->ck", da2, mid["r1"])
    dr1 = np.einsum("nc,ck->nk", da2, w2)
    da1 = dr1 * (mid["a1"] > 0)
    dw1 = np.einsum("nk,nc->kc", da1, mid["z"])
    dz = np.einsum("nk,kc->nc", da1, w1)
    dx = g * s[:, :, None, None] + dz[:, :, None, None] / hw
    return from_nchw(dx, layout), dw1, da1.sum(0), dw2, da2.sum(0)


def make_inputs(shape, hidden, dtype, layout="NCHW", seed=0, bias=True):
    """x of ``shape`` (in ``layout``) and weights whose hidden pre-activations stay clear of the relu kink."""
    rng = np.random.default_rng(seed)
    channels = shape[1] if layout == "NCHW" else shape[3]
    x = rng.standard_normal(shape).astype(dtype)
    w1 = (rng.standard_normal((hidden, channels)) / np.sqrt(channels)).astype(dtype)
    w2 = rng.standard_normal((channels, hidden)).astype(dtype)
    b1 = rng.standard_normal(hidden).astype(dtype) if bias else None
    b2 = rng.standard_normal(channels).astype(dtype) if bias else None
    # Keep every a1 at least 0.05 away from 0, so that finite differences never cross the relu kink.
    _, _, mid = reference_forward(x, w1, b1, w2, b2, layout)
    a1 = mid["a1"]
    close = np.abs(a1) < 0.05
    if close.any():
        shift = np.where(close, 0.1 * np.sign(a1 + 1e-30), 0).mean(axis=0)
        if b1 is None:
            return make_inputs(shape, hidden, dtype, layout, seed + 1000, bias)
        b1 = (b1 + shift + 0.1 * close.any(axis=0)).astype(dtype)
    return x, w1, b1, w2, b2


def nhwc_shape(shape, layout):
    """An NCHW ``shape`` written in ``layout``."""
    n, c, h, w = shape
    return shape if layout == "NCHW" else (n, h, w, c)


def tensors(kernel_path, arrays, requires_grad=True):
    return [None if a is None else sa.tensor(kernel_path.array(a), requires_grad=requires_grad) for a in arrays]


def assert_close(actual, expected, dtype, what):
    actual = backend.to_numpy(backend.unwrap(actual))
    np.testing.assert_allclose(actual, expected, **TOL[dtype], err_msg=what)


# =================================================================================================================
# the kernels against the reference
# =================================================================================================================


def kernel_functions(kernel_path):
    """(module, call) where call(name, *arrays) runs kernel ``name`` of the path on the arrays."""
    if kernel_path.name == "numba":
        module = importlib.import_module("scratchattn.kernels.cpu.squeeze_excitation")
        return lambda name, *arrays: getattr(module, name)(*arrays)
    module = importlib.import_module("scratchattn.kernels.cuda.squeeze_excitation")
    return lambda name, *arrays: getattr(module, name)(*arrays, target=kernel_path.name)


KERNEL_SHAPES = [(2, 3, 9, 11), (1, 1, 1, 1), (3, 5, 1, 1), (2, 4, 13, 10), (1, 7, 3, 2)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", KERNEL_SHAPES)
def test_kernels_match_reference(kernel_path, dtype, layout, shape):
    run = kernel_functions(kernel_path)
    xp = backend.get_array_module(kernel_path.array(np.zeros(1)))
    rng = np.random.default_rng(1)
    n, c, h, w = shape
    # The data is rounded to dtype first, so the float64 reference sees exactly what the kernel sees.
    x = rng.standard_normal(nhwc_shape(shape, layout)).astype(dtype).astype(np.float64)
    g = rng.standard_normal(nhwc_shape(shape, layout)).astype(dtype).astype(np.float64)
    s = rng.uniform(0.1, 0.9, (n, c)).astype(dtype).astype(np.float64)
    dz_hw = rng.standard_normal((n, c)).astype(dtype).astype(np.float64)
    x_nchw, g_nchw = to_nchw(x, layout), to_nchw(g, layout)
    big = (n, c, h * w) if layout == "NCHW" else (n, h * w, c)

    def device(a):  # the kernels' 3-D view, in dtype, on the path's device
        return kernel_path.array(a.astype(dtype).reshape(big) if a.ndim == 4 else a.astype(dtype))

    def host(a):  # a kernel's 3-D output back as NCHW on the host
        return to_nchw(backend.to_numpy(a).reshape(x.shape), layout)

    suffix = "_" + layout.lower()
    z = xp.full((n, c), np.nan, dtype=dtype)
    run("se_squeeze" + suffix, device(x), z)
    assert_close(z, x_nchw.mean(axis=(2, 3)), dtype, "se_squeeze")

    y = xp.full(big, np.nan, dtype=dtype)
    run("se_scale" + suffix, device(x), device(s), y)
    assert_close(host(y), x_nchw * s[:, :, None, None], dtype, "se_scale")

    ds = xp.full((n, c), np.nan, dtype=dtype)
    run("se_backward_reduce" + suffix, device(g), device(x), ds)
    assert_close(ds, (g_nchw * x_nchw).sum(axis=(2, 3)), dtype, "se_backward_reduce")

    dx = xp.full(big, np.nan, dtype=dtype)
    run("se_backward_input" + suffix, device(g), device(s), device(dz_hw), dx)
    expected = g_nchw * s[:, :, None, None] + dz_hw[:, :, None, None]
    assert_close(host(dx), expected, dtype, "se_backward_input")


# (N, C, C_r): batch 1, one channel, one hidden unit, and C = 33 (an odd length for the dot products).
EXCITATION_SHAPES = [(2, 6, 3), (1, 5, 1), (3, 1, 1), (4, 33, 2)]


def placeholder_or(a, xp, dtype):
    """The bias argument of se_hidden/se_gate: the bias, or a one-element NaN placeholder (which must not be read)."""
    return xp.full(1, np.nan, dtype=dtype) if a is None else a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n,c,hidden", EXCITATION_SHAPES)
def test_excitation_kernels_match_reference(kernel_path, dtype, bias, n, c, hidden):
    run = kernel_functions(kernel_path)
    xp = backend.get_array_module(kernel_path.array(np.zeros(1)))
    rng = np.random.default_rng(7)

    def rounded(*shape, scale=1.0):  # in dtype first, so the float64 reference sees what the kernel sees
        return (scale * rng.standard_normal(shape)).astype(dtype).astype(np.float64)

    z, w1, w2 = rounded(n, c), rounded(hidden, c, scale=1 / np.sqrt(c)), rounded(c, hidden)
    b1, b2 = (rounded(hidden), rounded(c)) if bias else (None, None)
    r1_in = np.abs(rounded(n, hidden))  # se_gate's input is a relu output
    r1_in[0, 0] = 0.0

    def device(a):
        return placeholder_or(None if a is None else kernel_path.array(a.astype(dtype)), xp, dtype)

    a1 = z @ w1.T + (0 if b1 is None else b1)
    r1 = xp.full((n, hidden), np.nan, dtype=dtype)
    run("se_hidden", device(z), device(w1), device(b1), r1, bias)
    assert_close(r1, np.maximum(a1, 0), dtype, f"se_hidden, a1 = {a1}")
    assert (backend.to_numpy(r1) >= 0).all()

    a2 = r1_in @ w2.T + (0 if b2 is None else b2)
    s = xp.full((n, c), np.nan, dtype=dtype)
    run("se_gate", device(r1_in), device(w2), device(b2), s, bias)
    assert_close(s, 1 / (1 + np.exp(-a2)), dtype, f"se_gate, a2 = {a2}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gate_kernel_saturates_without_overflow(kernel_path, dtype):
    # a2 = +-1000: e^-a2 overflows in the naive sigmoid; the kernel must give exactly 0 and 1, with no NaN.
    run = kernel_functions(kernel_path)
    xp = backend.get_array_module(kernel_path.array(np.zeros(1)))
    r1 = kernel_path.array(np.array([[1.0]], dtype=dtype))
    w2 = kernel_path.array(np.array([[-1000.0], [1000.0], [0.0]], dtype=dtype))
    s = xp.full((1, 3), np.nan, dtype=dtype)
    run("se_gate", r1, w2, placeholder_or(None, xp, dtype), s, False)
    np.testing.assert_array_equal(backend.to_numpy(s), np.array([[0.0, 1.0, 0.5]], dtype=dtype))


FORWARD_SHAPES = [((2, 6, 5, 3), 2), ((1, 4, 1, 1), 1), ((3, 5, 20, 15), 3), ((1, 1, 2, 3), 1)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape,hidden", FORWARD_SHAPES)
def test_forward_kernel_matches_reference(kernel_path, dtype, layout, bias, shape, hidden):
    # se_forward_<layout>: every output (z, r1, s, y) of the whole forward, through the pair's one call.
    run = kernel_functions(kernel_path)
    xp = backend.get_array_module(kernel_path.array(np.zeros(1)))
    n, c, h, w = shape
    rng = np.random.default_rng(8)
    arrays = [rng.standard_normal(nhwc_shape(shape, layout)) + 0.3, rng.standard_normal((hidden, c)),
              rng.standard_normal(hidden) if bias else None, rng.standard_normal((c, hidden)),
              rng.standard_normal(c) if bias else None]
    # Rounded to dtype first, so the float64 reference sees what the kernels see.
    arrays = [None if a is None else a.astype(dtype).astype(np.float64) for a in arrays]
    x, w1, b1, w2, b2 = arrays
    y_ref, s_ref, mid = reference_forward(*arrays, layout=layout)
    big = (n, c, h * w) if layout == "NCHW" else (n, h * w, c)

    def device(a):
        return placeholder_or(None if a is None else kernel_path.array(a.astype(dtype)), xp, dtype)

    z = xp.full((n, c), np.nan, dtype=dtype)
    r1 = xp.full((n, hidden), np.nan, dtype=dtype)
    s = xp.full((n, c), np.nan, dtype=dtype)
    y = xp.full(big, np.nan, dtype=dtype)
    run("se_forward_" + layout.lower(), device(x).reshape(big), device(w1), device(b1), device(w2), device(b2),
        z, r1, s, y, bias, bias)
    assert_close(z, mid["z"], dtype, "z")
    assert_close(r1, mid["r1"], dtype, "r1")
    assert_close(s, s_ref, dtype, "s")
    assert_close(backend.to_numpy(y).reshape(x.shape), y_ref, dtype, "y")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bias", [True, False])
def test_numba_per_sample_forward_equals_the_passes_bitwise(dtype, layout, bias):
    # se_forward runs one sample at a time, or (with fewer samples than threads) the four passes; both must give
    # the same bits, so that a result does not depend on the thread count. 300 pixels: 4 full pixel blocks and a
    # partial one.
    from scratchattn.kernels.cpu import squeeze_excitation as kernels

    shape, hidden = nhwc_shape((3, 37, 20, 15), layout), 4
    rng = np.random.default_rng(9)
    x = (rng.standard_normal(shape) + 0.3).astype(dtype)
    w1, w2 = rng.standard_normal((hidden, 37)).astype(dtype), rng.standard_normal((37, hidden)).astype(dtype)
    b1 = rng.standard_normal(hidden).astype(dtype) if bias else placeholder_or(None, np, dtype)
    b2 = rng.standard_normal(37).astype(dtype) if bias else placeholder_or(None, np, dtype)
    big = (3, 37, 300) if layout == "NCHW" else (3, 300, 37)
    results = []
    for per_sample in (True, False):
        outputs = [np.full(size, np.nan, dtype=dtype) for size in [(3, 37), (3, hidden), (3, 37), big]]
        z, r1, s, y = outputs
        if per_sample:
            kernel = getattr(kernels, "se_forward_per_sample_" + layout.lower())
            kernel(x.reshape(big), w1, b1, w2, b2, z, r1, s, y, bias, bias)
        else:
            getattr(kernels, "se_squeeze_" + layout.lower())(x.reshape(big), z)
            kernels.se_hidden(z, w1, b1, r1, bias)
            kernels.se_gate(r1, w2, b2, s, bias)
            getattr(kernels, "se_scale_" + layout.lower())(x.reshape(big), s, y)
        results.append(outputs)
    for name, per_sample, passes in zip(["z", "r1", "s", "y"], *results):
        assert np.array_equal(per_sample, passes), (name, np.abs(per_sample - passes).max())


def test_forward_functions_exist_in_both_members_of_the_pair():
    # The pair shares its function names and argument order (the CUDA launchers add `target`).
    import inspect

    from scratchattn.kernels.cpu import squeeze_excitation as numba_kernels
    from scratchattn.kernels.cuda import squeeze_excitation as cuda_kernels

    for name in ["se_hidden", "se_gate", "se_forward_nchw", "se_forward_nhwc", "se_squeeze_nchw", "se_scale_nhwc"]:
        numba_fn = getattr(numba_kernels, name)
        numba_fn = getattr(numba_fn, "py_func", numba_fn)
        numba_args = list(inspect.signature(numba_fn).parameters)
        cuda_args = list(inspect.signature(getattr(cuda_kernels, name)).parameters)
        assert cuda_args == numba_args + ["target"], (name, numba_args, cuda_args)


def test_numba_nhwc_reduction_spans_several_pixel_blocks():
    # 300 pixels = 4 full blocks of 64 and a partial one: the blocked reduction must add every block once.
    from scratchattn.kernels.cpu import squeeze_excitation as kernels

    assert 300 % kernels.PIXEL_BLOCK != 0 and 300 > 2 * kernels.PIXEL_BLOCK
    x = np.random.default_rng(2).standard_normal((2, 300, 3))
    z = np.empty((2, 3))
    kernels.se_squeeze_nhwc(x, z)
    np.testing.assert_allclose(z, x.mean(axis=1), rtol=1e-13)


# =================================================================================================================
# the op: forward, backward, gradcheck
# =================================================================================================================

OP_SHAPES = [((2, 6, 5, 3), 2), ((1, 4, 1, 1), 1), ((3, 5, 4, 7), 3), ((2, 3, 2, 2), 1)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape,hidden", OP_SHAPES)
def test_op_matches_reference(kernel_path, dtype, layout, bias, shape, hidden):
    arrays = make_inputs(nhwc_shape(shape, layout), hidden, dtype, layout, bias=bias)
    x, w1, b1, w2, b2 = tensors(kernel_path, arrays)
    y, s = squeeze_excitation(x, w1, b1, w2, b2, layout=layout, return_excitation=True)
    y_ref, s_ref, _ = reference_forward(*arrays, layout=layout)
    assert y.shape == x.shape and y.dtype == dtype and s.shape == (shape[0], shape[1])
    assert y.device == kernel_path.device
    assert_close(y, y_ref, dtype, "y")
    assert_close(s, s_ref, dtype, "s")

    g = np.random.default_rng(3).standard_normal(y.shape).astype(dtype)
    y.backward(kernel_path.array(g))
    expected = reference_backward(g, *arrays, layout=layout)
    for name, t, ref in zip(["dx", "dw1", "db1", "dw2", "db2"], [x, w1, b1, w2, b2], expected):
        if t is None:
            continue
        assert t.grad is not None, name
        assert_close(t.grad, ref, dtype, name)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape,hidden", OP_SHAPES)
def test_gradcheck(kernel_path, layout, bias, shape, hidden):
    arrays = make_inputs(nhwc_shape(shape, layout), hidden, np.float64, layout, bias=bias)
    inputs = tensors(kernel_path, arrays)
    assert sa.gradcheck(lambda *t: squeeze_excitation(*t, layout=layout), inputs)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_gradcheck_through_the_excitation_output(kernel_path, layout):
    # s is a differentiable output too: a loss that reads both y and s must get both contributions.
    arrays = make_inputs(nhwc_shape((2, 4, 3, 2), layout), 2, np.float64, layout)
    inputs = tensors(kernel_path, arrays)

    def both(*t):
        return squeeze_excitation(*t, layout=layout, return_excitation=True)

    assert sa.gradcheck(both, inputs)


def test_gradient_only_for_some_inputs(kernel_path):
    arrays = make_inputs((2, 4, 3, 3), 2, np.float64)
    x, w1, b1, w2, b2 = tensors(kernel_path, arrays, requires_grad=False)
    w2.requires_grad_()
    squeeze_excitation(x, w1, b1, w2, b2).sum().backward()
    g = np.ones(arrays[0].shape)
    assert_close(w2.grad, reference_backward(g, *arrays)[3], np.float64, "dw2")
    assert x.grad is None and w1.grad is None


def test_empty_batch(kernel_path):
    arrays = make_inputs((0, 4, 3, 3), 2, np.float32)
    x, w1, b1, w2, b2 = tensors(kernel_path, arrays)
    y = squeeze_excitation(x, w1, b1, w2, b2)
    assert y.shape == (0, 4, 3, 3)
    y.sum().backward()
    assert x.grad.shape == (0, 4, 3, 3)
    assert float(backend.to_numpy(w1.grad).sum()) == 0.0


def test_non_contiguous_input_and_gradient(kernel_path):
    arrays = make_inputs((2, 5, 4, 3), 2, np.float64)
    x_big = np.ascontiguousarray(np.repeat(arrays[0], 2, axis=3))
    x = sa.tensor(kernel_path.array(x_big), requires_grad=True)
    x_view = x[:, :, :, ::2]  # a strided view; its gradient flows back through getitem
    w1, b1, w2, b2 = tensors(kernel_path, arrays[1:])
    y = squeeze_excitation(x_view, w1, b1, w2, b2)
    g = np.random.default_rng(4).standard_normal((2, 3, 5, 4)).transpose(0, 2, 3, 1)  # non-contiguous too
    y.backward(kernel_path.array(g))
    assert_close(y, reference_forward(*arrays)[0], np.float64, "y")
    dx = reference_backward(g, *arrays)[0]
    assert_close(x.grad[:, :, :, ::2], dx, np.float64, "dx")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_numba_results_are_bitwise_reproducible_across_runs_and_thread_counts(layout):
    # Large enough for the op to run the kernels in parallel (SERIAL_BELOW); the third run forces one thread.
    from scratchattn.kernels.cpu import squeeze_excitation as kernels

    shape = nhwc_shape((4, 32, 33, 17), layout)
    assert np.prod(shape) >= kernels.SERIAL_BELOW
    arrays = make_inputs(shape, 4, np.float32, layout)
    g = np.random.default_rng(6).standard_normal(shape).astype(np.float32)
    results = []
    for run in range(3):
        x, w1, b1, w2, b2 = [sa.tensor(a.copy(), requires_grad=True) for a in arrays]
        if run < 2:
            y = squeeze_excitation(x, w1, b1, w2, b2, layout=layout)
            y.backward(g)
        else:
            with kernels.single_thread():
                y = squeeze_excitation(x, w1, b1, w2, b2, layout=layout)
                y.backward(g)
        results.append([y.numpy(), x.grad, w1.grad, b1.grad, w2.grad, b2.grad])
    for k, (first, second, serial) in enumerate(zip(*results)):
        assert np.array_equal(first, second), k
        assert np.array_equal(first, serial), k
    y_ref = reference_forward(*arrays, layout=layout)[0]
    np.testing.assert_allclose(results[0][0], y_ref, **TOL[np.float32])


# =================================================================================================================
# fused vs primitive twin
# =================================================================================================================


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bias", [True, False])
def test_fused_matches_primitive_twin(kernel_path, dtype, layout, bias):
    arrays = make_inputs(nhwc_shape((3, 8, 5, 6), layout), 2, dtype, layout, bias=bias)
    g = np.random.default_rng(5).standard_normal(nhwc_shape((3, 8, 5, 6), layout)).astype(dtype)
    outputs = []
    for op in (squeeze_excitation, squeeze_excitation_simple):
        inputs = tensors(kernel_path, arrays)
        y, s = op(*inputs, layout=layout, return_excitation=True)
        y.backward(kernel_path.array(g))
        outputs.append([y, s] + [t.grad for t in inputs if t is not None])
    for k, (fused, twin) in enumerate(zip(*outputs)):
        fused, twin = backend.to_numpy(backend.unwrap(fused)), backend.to_numpy(backend.unwrap(twin))
        assert fused.dtype == twin.dtype == dtype
        np.testing.assert_allclose(fused, twin, rtol=1e-4 if dtype == np.float32 else 1e-11,
                                   atol=1e-5 if dtype == np.float32 else 1e-12, err_msg=f"output/grad #{k}")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_primitive_twin_gradcheck(layout):
    arrays = make_inputs(nhwc_shape((2, 4, 3, 2), layout), 2, np.float64, layout)
    inputs = [sa.tensor(a, requires_grad=True) for a in arrays]
    assert sa.gradcheck(lambda *t: squeeze_excitation_simple(*t, layout=layout), inputs)


def test_exported_from_functional():
    assert F.squeeze_excitation is squeeze_excitation
    assert F.squeeze_excitation_simple is squeeze_excitation_simple


# =================================================================================================================
# validation
# =================================================================================================================


def good_arrays():
    return list(make_inputs((2, 6, 3, 3), 2, np.float32))


@pytest.mark.parametrize(
    "index,bad,exc,words",
    [
        (0, np.zeros((2, 6, 3), np.float32), ValueError, ["x", "4-D", "(2, 6, 3)"]),
        (0, np.zeros((2, 6, 3, 3), np.int64), TypeError, ["x", "float32 or float64", "int64"]),
        (0, np.zeros((2, 6, 0, 3), np.float32), ValueError, ["x", "pixel", "(2, 6, 0, 3)"]),
        (1, np.zeros((2, 5), np.float32), ValueError, ["w1", "(2, 6)", "(2, 5)"]),
        (1, np.zeros((0, 6), np.float32), ValueError, ["w1", "C_r >= 1", "(0, 6)"]),
        (1, np.zeros(6, np.float32), ValueError, ["w1", "2-D", "(6,)"]),
        (1, np.zeros((2, 6), np.float64), TypeError, ["w1", "float32", "float64"]),
        (2, np.zeros(3, np.float32), ValueError, ["b1", "(2,)", "(3,)"]),
        (3, np.zeros((6, 3), np.float32), ValueError, ["w2", "(6, 2)", "(6, 3)"]),
        (4, np.zeros(6, np.float64), TypeError, ["b2", "float32", "float64"]),
        (4, np.zeros((6, 1), np.float32), ValueError, ["b2", "(6,)", "(6, 1)"]),
    ],
)
def test_bad_input_names_the_argument(index, bad, exc, words):
    arrays = good_arrays()
    arrays[index] = bad
    with pytest.raises(exc) as info:
        squeeze_excitation(*[None if a is None else sa.tensor(a) for a in arrays])
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_bad_layout():
    with pytest.raises(ValueError, match="layout must be one of"):
        squeeze_excitation(*good_arrays(), layout="CHWN")


def test_nhwc_checks_channels_last():
    x, w1, b1, w2, b2 = good_arrays()  # x is (2, 6, 3, 3): as NHWC it has 3 channels, not 6
    with pytest.raises(ValueError, match=r"w1 must have shape \(2, 3\)"):
        squeeze_excitation(x, w1, b1, w2, b2, layout="NHWC")


@pytest.mark.gpu
def test_mixed_devices_are_refused():
    x, w1, b1, w2, b2 = good_arrays()
    with pytest.raises(ValueError, match="w2 must be on x's device 'cuda'"):
        squeeze_excitation(sa.tensor(x).to("cuda"), sa.tensor(w1).to("cuda"), None, w2, None)
