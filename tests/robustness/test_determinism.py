"""Deterministic mode (``backend.use_deterministic_algorithms``): which GPU kernels are bitwise reproducible, and
the one-writer launches that make the others so.

On a GPU, threads that add partial sums into one output with ``atomicAdd`` do so in a different order every run.
The host shim can run blocks on several OS threads (``host.parallel_blocks``), so these tests run there:

* squeeze-excitation's atomic reductions agree with the float64 mean to rounding; in deterministic mode the
  launcher gives each output one writer (NCHW: one lane per plane; NHWC: one pixel block per sample), and the whole
  op's forward and backward are bitwise identical run after run;
* grid sampling's input gradient is an ``atomicAdd`` scatter; in deterministic mode it comes from
  ``grid_sample_backward_input_planes`` (one thread per (n, c) plane, plain ``+=``): it matches the NumPy reference
  and the atomic kernel, and is bitwise identical run after run; the grid gradient is the same in both modes;
* the affine grid's backward, which has no atomics, is bitwise identical under parallel blocks as it is.

On a GPU the ``gpu`` tests repeat the checks through CuPy.
"""

from __future__ import annotations

import _robust_fuzz as fuzz
import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend
from scratchattn import functional as F
from scratchattn.kernels.cpu import grid_sample as codes
from scratchattn.kernels.cuda import grid_sample as cuda_grid_sample
from scratchattn.kernels.cuda import squeeze_excitation as cuda_se

REPEATS = 6


@pytest.fixture
def host():
    try:
        from scratchattn.kernels.cuda import host
    except ImportError as exc:
        pytest.skip(f"the CUDA host shim is not importable: {exc}")
    reason = host.unavailable_reason()
    if reason is not None:
        pytest.skip(f"cuda-host kernel path unavailable: {reason}")
    return host


# =================================================================================================================
# the switch
# =================================================================================================================


def test_the_switch_the_context_manager_and_the_environment_variable(monkeypatch):
    monkeypatch.setattr(backend, "_deterministic_override", None)
    monkeypatch.delenv("SCRATCHATTN_DETERMINISTIC", raising=False)
    assert not backend.deterministic_algorithms_enabled()
    monkeypatch.setenv("SCRATCHATTN_DETERMINISTIC", "1")
    assert backend.deterministic_algorithms_enabled()
    with backend.deterministic(False):
        assert not backend.deterministic_algorithms_enabled()
    assert backend.deterministic_algorithms_enabled()
    monkeypatch.setenv("SCRATCHATTN_DETERMINISTIC", "0")
    with backend.deterministic():
        assert backend.deterministic_algorithms_enabled()
    assert not backend.deterministic_algorithms_enabled()
    sa.use_deterministic_algorithms(True)
    assert backend.deterministic_algorithms_enabled()
    sa.use_deterministic_algorithms(False)
    assert not backend.deterministic_algorithms_enabled()
    with pytest.raises(TypeError, match="flag must be a bool"):
        sa.use_deterministic_algorithms(1)
    monkeypatch.setattr(backend, "_deterministic_override", None)
    monkeypatch.setenv("SCRATCHATTN_DETERMINISTIC", "yes")
    with pytest.raises(ValueError, match="SCRATCHATTN_DETERMINISTIC must be 0 or 1"):
        backend.deterministic_algorithms_enabled()


# =================================================================================================================
# squeeze-excitation: one writer per output in deterministic mode
# =================================================================================================================

REDUCTIONS = {"nchw": (2, 3, 65536), "nhwc": (2, 65536, 3)}  # the writers of one output span several blocks


def reduce(layout, kernel, x, g, target):
    """se_squeeze_<layout> (z, the means) or se_backward_reduce_<layout> (ds) through the launcher."""
    xp = backend.get_array_module(x)
    n, c = (x.shape[0], x.shape[1]) if layout == "nchw" else (x.shape[0], x.shape[2])
    out = xp.empty((n, c), x.dtype)
    if kernel == "squeeze":
        getattr(cuda_se, f"se_squeeze_{layout}")(x, out, target)
    else:
        getattr(cuda_se, f"se_backward_reduce_{layout}")(g, x, out, target)
    return out


def reduction_arrays(layout, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(REDUCTIONS[layout]).astype(np.float32) * np.float32(1000)
    g = rng.standard_normal(REDUCTIONS[layout]).astype(np.float32)
    axis = 2 if layout == "nchw" else 1
    gx = g.astype(np.float64) * x
    # (the value, the sum of the magnitudes of its terms: a float32 sum is right to about 1e-4 of that, any order)
    expected = {"squeeze": (x.astype(np.float64).mean(axis=axis), np.abs(x).astype(np.float64).mean(axis=axis)),
                "reduce": (gx.sum(axis=axis), np.abs(gx).sum(axis=axis))}
    return x, g, expected


@pytest.mark.parametrize("kernel", ["squeeze", "reduce"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_se_reductions_are_bitwise_reproducible_in_deterministic_mode(host, layout, kernel):
    x, g, expected = reduction_arrays(layout, seed=0)
    with host.parallel_blocks(4):
        atomic = [reduce(layout, kernel, x, g, "cuda-host") for _ in range(REPEATS)]
        with backend.deterministic():
            runs = [reduce(layout, kernel, x, g, "cuda-host") for _ in range(REPEATS)]
    print(f"{layout}/{kernel}: atomic reductions gave {len({a.tobytes() for a in atomic})} distinct results in "
          f"{REPEATS} parallel runs; deterministic mode {len({r.tobytes() for r in runs})}")
    for z in runs[1:]:
        np.testing.assert_array_equal(z, runs[0])
    value, magnitude = expected[kernel]
    for z in (runs[0], *atomic):
        assert np.all(np.abs(z - value) <= 1e-4 * magnitude), (z, value)


def se_op_gradients(layout, arrays, seed=7):
    x, w1, b1, w2, b2 = (sa.tensor(a, requires_grad=True) for a in arrays)
    y = F.squeeze_excitation(x, w1, b1, w2, b2, layout=layout)
    xp = backend.get_array_module(y.data)
    g = xp.asarray(np.random.default_rng(seed).standard_normal(y.shape).astype(np.float32))
    y.backward(g)
    return [backend.to_numpy(t.data) for t in (y,)] + [backend.to_numpy(t.grad) for t in (x, w1, b1, w2, b2)]


def se_op_arrays(layout, seed=6):
    rng = np.random.default_rng(seed)
    n, c, h, w, c_r = 2, 8, 64, 64, 2
    shape = (n, c, h, w) if layout == "NCHW" else (n, h, w, c)
    return [rng.standard_normal(s).astype(np.float32) for s in (shape, (c_r, c), (c_r,), (c, c_r), (c,))]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_se_op_is_bitwise_reproducible_in_deterministic_mode(host, layout):
    arrays = se_op_arrays(layout)
    with backend.use_kernels("cuda-host"), host.parallel_blocks(4):
        atomic = se_op_gradients(layout, arrays)
        with backend.deterministic():
            runs = [se_op_gradients(layout, arrays) for _ in range(REPEATS)]
    with backend.use_kernels("numba"):
        numba = se_op_gradients(layout, arrays)
    for run in runs[1:]:
        for a, b in zip(run, runs[0], strict=True):
            np.testing.assert_array_equal(a, b)
    for a, b, c in zip(runs[0], atomic, numba, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_se_op_is_bitwise_reproducible_in_deterministic_mode_on_the_gpu(layout):
    cp = backend.cupy_module()
    arrays = [cp.asarray(a) for a in se_op_arrays(layout, seed=8)]
    atomic = [se_op_gradients(layout, arrays) for _ in range(REPEATS)]
    with backend.deterministic():
        runs = [se_op_gradients(layout, arrays) for _ in range(REPEATS)]
    print(f"{layout}: d(x) took {len({a[1].tobytes() for a in atomic})} distinct values in {REPEATS} atomic runs")
    for run in runs[1:]:
        for a, b in zip(run, runs[0], strict=True):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(runs[0], atomic[0], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


# =================================================================================================================
# the affine grid: no atomics
# =================================================================================================================


def test_affine_grid_backward_has_no_atomics_and_is_bitwise_reproducible(host):
    from scratchattn.kernels.cuda import affine_grid

    rng = np.random.default_rng(2)
    n, h, w = 3, 64, 80
    grad_grid = rng.standard_normal((n, h, w, 2)).astype(np.float32)
    xs = np.linspace(-1, 1, w).astype(np.float32)
    ys = np.linspace(-1, 1, h).astype(np.float32)

    def backward():
        out = np.empty((n, 2, 3), np.float32)
        affine_grid.affine_grid_backward(grad_grid, xs, ys, out, target="cuda-host")
        return out

    sequential = backward()
    with host.parallel_blocks(4):
        for _ in range(REPEATS):
            np.testing.assert_array_equal(backward(), sequential)


@pytest.mark.gpu
def test_affine_grid_backward_is_bitwise_reproducible_on_the_gpu():
    import scratchattn as sa
    from scratchattn import functional as F

    cp = backend.cupy_module()
    rng = np.random.default_rng(3)
    theta = rng.standard_normal((8, 2, 3)).astype(np.float32)
    g = cp.asarray(rng.standard_normal((8, 96, 128, 2)).astype(np.float32))
    grads = []
    for _ in range(REPEATS):
        t = sa.tensor(cp.asarray(theta), requires_grad=True)
        F.affine_grid(t, (8, 1, 96, 128)).backward(g)
        grads.append(cp.asnumpy(t.grad))
    for grad in grads[1:]:
        np.testing.assert_array_equal(grad, grads[0])


# =================================================================================================================
# grid sampling: the input gradient from grid_sample_backward_input_planes in deterministic mode
# =================================================================================================================


def gs_gradients(grad_out, inp, grid, mode, padding_mode, align_corners, channels_last, target, need_grid=True):
    xp = backend.get_array_module(inp)
    grad_inp = xp.zeros_like(inp)
    grad_grid = xp.empty_like(grid) if need_grid else None
    cuda_grid_sample.grid_sample_backward(grad_out, inp, grid, grad_inp, grad_grid, mode, padding_mode, align_corners,
                                          channels_last, target)
    return grad_inp, grad_grid


GS_CASES = [("bilinear", "zeros", False, "NCHW"), ("bilinear", "reflection", True, "NHWC"),
            ("bicubic", "border", False, "NCHW"), ("nearest", "zeros", True, "NHWC")]


def gs_arrays(layout, dtype=np.float32, seed=4):
    rng = np.random.default_rng(seed)
    n, c, h, w, h_out, w_out = 2, 3, 5, 6, 9, 11  # more output than input pixels: taps are shared, atomics collide
    shape = (n, c, h, w) if layout == "NCHW" else (n, h, w, c)
    out_shape = (n, c, h_out, w_out) if layout == "NCHW" else (n, h_out, w_out, c)
    inp = rng.standard_normal(shape).astype(dtype)
    grid = (1.2 * rng.standard_normal((n, h_out, w_out, 2))).astype(dtype)
    grad_out = rng.standard_normal(out_shape).astype(dtype)
    return grad_out, inp, grid


@pytest.mark.parametrize(("mode", "padding_mode", "align_corners", "layout"), GS_CASES)
def test_grid_sample_gradients_are_right_and_bitwise_reproducible_in_deterministic_mode(host, mode, padding_mode,
                                                                                        align_corners, layout):
    reference = fuzz._load_test_module("grid_sample_reference.py")
    grad_out, inp, grid = gs_arrays(layout)
    options = (codes.MODES[mode], codes.PADDING_MODES[padding_mode], align_corners, layout == "NHWC")
    with host.parallel_blocks(4):
        atomic_inp, atomic_grid = gs_gradients(grad_out, inp, grid, *options, "cuda-host")
        with backend.deterministic():
            runs = [gs_gradients(grad_out, inp, grid, *options, "cuda-host") for _ in range(REPEATS)]
            inp_only, none = gs_gradients(grad_out, inp, grid, *options, "cuda-host", need_grid=False)
    assert none is None
    for grad_inp, grad_grid in runs[1:]:
        np.testing.assert_array_equal(grad_inp, runs[0][0])
        np.testing.assert_array_equal(grad_grid, runs[0][1])
    np.testing.assert_array_equal(inp_only, runs[0][0])
    np.testing.assert_array_equal(runs[0][1], atomic_grid)  # the same kernel, one writer per pixel, in both modes
    np.testing.assert_allclose(runs[0][0], atomic_inp, rtol=1e-5, atol=1e-5)
    nchw = (lambda a: a.transpose(0, 3, 1, 2)) if layout == "NHWC" else (lambda a: a)
    expected_inp, expected_grid = reference.grid_sample_reference_backward(nchw(inp), grid, nchw(grad_out), mode,
                                                                           padding_mode, align_corners)
    np.testing.assert_allclose(nchw(runs[0][0]), expected_inp, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(runs[0][1], expected_grid, rtol=1e-4, atol=1e-4)


def test_grid_sample_op_uses_the_deterministic_kernel(host):
    # Through F.grid_sample and autograd: bitwise-identical gradients run after run, equal to Numba's to rounding.
    grad_out, inp, grid = gs_arrays("NCHW", seed=9)

    def gradients():
        x, g = sa.tensor(inp, requires_grad=True), sa.tensor(grid, requires_grad=True)
        F.grid_sample(x, g, align_corners=True).backward(grad_out)
        return x.grad, g.grad

    with backend.use_kernels("cuda-host"), host.parallel_blocks(4), backend.deterministic():
        runs = [gradients() for _ in range(REPEATS)]
    numba = gradients()
    for grad_inp, grad_grid in runs[1:]:
        np.testing.assert_array_equal(grad_inp, runs[0][0])
        np.testing.assert_array_equal(grad_grid, runs[0][1])
    np.testing.assert_allclose(runs[0][0], numba[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(runs[0][1], numba[1], rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize(("mode", "padding_mode", "align_corners", "layout"), GS_CASES)
def test_grid_sample_gradients_in_deterministic_mode_on_the_gpu(mode, padding_mode, align_corners, layout):
    cp = backend.cupy_module()
    grad_out, inp, grid = (cp.asarray(a) for a in gs_arrays(layout, seed=5))
    options = (codes.MODES[mode], codes.PADDING_MODES[padding_mode], align_corners, layout == "NHWC")
    atomic = [[cp.asnumpy(a) for a in gs_gradients(grad_out, inp, grid, *options, "cupy")] for _ in range(REPEATS)]
    with backend.deterministic():
        runs = [[cp.asnumpy(a) for a in gs_gradients(grad_out, inp, grid, *options, "cupy")] for _ in range(REPEATS)]
    print(f"{mode}/{padding_mode}: atomic scatter gave {len({a[0].tobytes() for a in atomic})} distinct results "
          f"in {REPEATS} runs; deterministic mode {len({r[0].tobytes() for r in runs})}")
    for grad_inp, grad_grid in runs[1:]:
        np.testing.assert_array_equal(grad_inp, runs[0][0])
        np.testing.assert_array_equal(grad_grid, runs[0][1])
    np.testing.assert_allclose(runs[0][0], atomic[0][0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(runs[0][1], atomic[0][1])
