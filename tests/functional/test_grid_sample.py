"""Tests of F.grid_sample: both kernel pairs against the NumPy reference, gradchecks, geometry, determinism, safety.

Every test that runs the op takes the ``kernel_path`` fixture, so it runs through the Numba kernels, the CUDA
kernels on the CPU (host shim) and, with a GPU, the CUDA kernels through CuPy. Grids are drawn with
``safe_grid``: pixel coordinates an integer plus a fraction in [0.1, 0.4] or [0.6, 0.9], so that no point sits on
a kink of the piecewise-smooth sampler (integer pixel coordinates for bilinear, the clip borders, the reflection
mirrors at integers or half-integers, the rounding ties of nearest), not even after float32 rounding or the
perturbations of gradcheck.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from grid_sample_reference import grid_sample_reference, grid_sample_reference_backward

import scratchattn as sa
from scratchattn import backend
from scratchattn import functional as F

MODES = ("bilinear", "nearest", "bicubic")
PADDINGS = ("zeros", "border", "reflection")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (N, C, H_in, W_in, H_out, W_out): odd and non-square, batch 1, channel 1, a 1x1 input, a single input row,
# output sizes unlike the input's, more channels than a SIMD vector, and more output pixels than one tap block (256).
SHAPES = (
    (2, 3, 5, 7, 4, 6),
    (1, 1, 6, 4, 7, 3),
    (1, 2, 1, 1, 2, 3),
    (3, 1, 1, 9, 1, 5),
    (1, 17, 3, 5, 3, 2),
    (2, 2, 6, 5, 17, 19),
    (1, 40, 4, 5, 3, 2),  # C > 32: the channels-last CUDA forward's lanes each take more than one channel
)


# =================================================================================================================
# helpers
# =================================================================================================================


def safe_grid(rng, n, h_out, w_out, H, W, align_corners, reach=2):
    """A grid (N, H_out, W_out, 2) whose pixel coordinates are k + f, k an integer from -reach - 1 to size + reach
    - 1 (so points outside the image are common) and f in [0.1, 0.4] or [0.6, 0.9]."""

    def axis(size, shape):
        k = rng.integers(-reach - 1, size + reach, shape)
        f = rng.uniform(0.1, 0.4, shape) + 0.5 * rng.integers(0, 2, shape)
        pixel = k + f
        if align_corners:
            if size == 1:  # every point maps to the only pixel; draw normalised values directly
                return rng.uniform(-1.5, 1.5, shape)
            return 2 * pixel / (size - 1) - 1
        return (2 * pixel + 1) / size - 1

    shape = (n, h_out, w_out)
    return np.stack([axis(W, shape), axis(H, shape)], axis=-1)


def float32_exact(a):
    """``a`` rounded to float32 and held in float64: the same numbers serve both dtypes exactly."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def to_layout(a, layout):
    """An NCHW array in ``layout``."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if layout == "NHWC" else a


def from_layout(a, layout):
    return a.transpose(0, 3, 1, 2) if layout == "NHWC" else a


def assert_close(actual, expected, dtype, what):
    """Per-dtype tolerances, scaled by the size of the expected values."""
    actual = backend.to_numpy(actual)
    scale = max(1.0, float(np.abs(expected).max(initial=0)))
    tol = 2e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale, err_msg=what)


@functools.cache
def reference_case(mode, padding_mode, align_corners, shape_index):
    """(img, grid, grad_out, out, grad_img, grad_grid) in float64 for one shape; computed once for all dtypes,
    layouts and kernel paths."""
    N, C, H, W, H_out, W_out = SHAPES[shape_index]
    rng = np.random.default_rng([MODES.index(mode), PADDINGS.index(padding_mode), int(align_corners), shape_index])
    img = float32_exact(rng.standard_normal((N, C, H, W)))
    grid = float32_exact(safe_grid(rng, N, H_out, W_out, H, W, align_corners))
    grad_out = float32_exact(rng.standard_normal((N, C, H_out, W_out)))
    out = grid_sample_reference(img, grid, mode, padding_mode, align_corners)
    grad_img, grad_grid = grid_sample_reference_backward(img, grid, grad_out, mode, padding_mode, align_corners)
    return img, grid, grad_out, out, grad_img, grad_grid


def run(kernel_path, img, grid, grad_out=None, layout="NCHW", dtype=np.float64, **options):
    """Forward (and backward with ``grad_out``) through the op on ``kernel_path``; NCHW NumPy arrays in, NumPy out
    (in NCHW): (out, grad_img, grad_grid)."""
    x = sa.tensor(kernel_path.array(to_layout(img, layout).astype(dtype)), requires_grad=True)
    g = sa.tensor(kernel_path.array(np.asarray(grid, dtype=dtype)), requires_grad=True)
    y = F.grid_sample(x, g, layout=layout, **options)
    assert y.dtype == dtype and y.device == kernel_path.device
    if grad_out is None:
        return from_layout(y.numpy(), layout), None, None
    y.backward(kernel_path.array(to_layout(grad_out, layout).astype(dtype)))
    return from_layout(y.numpy(), layout), from_layout(backend.to_numpy(x.grad), layout), backend.to_numpy(g.grad)


# =================================================================================================================
# against the reference
# =================================================================================================================


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("mode", MODES)
def test_matches_reference(kernel_path, mode, padding_mode, align_corners, layout, dtype):
    options = dict(mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    for index, shape in enumerate(SHAPES):
        img, grid, grad_out, out, grad_img, grad_grid = reference_case(mode, padding_mode, align_corners, index)
        got_out, got_img, got_grid = run(kernel_path, img, grid, grad_out, layout, dtype, **options)
        where = f"shape {shape}, {options}, {layout}, {np.dtype(dtype).name}, {kernel_path}"
        assert_close(got_out, out, dtype, f"output, {where}")
        assert_close(got_img, grad_img, dtype, f"input gradient, {where}")
        assert_close(got_grid, grad_grid, dtype, f"grid gradient, {where}")
        if mode == "nearest":
            assert not np.any(got_grid), f"nearest must give a zero grid gradient, {where}"


# =================================================================================================================
# numerical gradients
# =================================================================================================================


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("mode", MODES)
def test_gradcheck(kernel_path, mode, padding_mode, align_corners, layout):
    rng = np.random.default_rng(7)
    N, C, H, W, H_out, W_out = 2, 2, 3, 4, 2, 3
    img = to_layout(rng.standard_normal((N, C, H, W)), layout)
    grid = safe_grid(rng, N, H_out, W_out, H, W, align_corners, reach=1)
    x = sa.tensor(kernel_path.array(img), requires_grad=True)
    g = sa.tensor(kernel_path.array(grid), requires_grad=mode != "nearest")

    def fn(a, b):
        return F.grid_sample(a, b, mode=mode, padding_mode=padding_mode, align_corners=align_corners, layout=layout)

    assert sa.gradcheck(fn, (x, g))
    if mode == "nearest":  # piecewise constant in the grid: its gradient is exactly zero
        g = sa.tensor(kernel_path.array(grid), requires_grad=True)
        fn(x, g).sum().backward()
        assert not np.any(backend.to_numpy(g.grad))


# =================================================================================================================
# geometry: identity, translation, rotation
# =================================================================================================================


def identity_grid(n, H, W, align_corners):
    """The grid that samples every pixel at its own centre (PyTorch's base coordinates)."""

    def coords(size):
        j = np.arange(size, dtype=np.float64)
        if align_corners:
            return 2 * j / (size - 1) - 1 if size > 1 else np.zeros(1)
        return (2 * j + 1) / size - 1

    grid = np.empty((n, H, W, 2))
    grid[..., 0] = coords(W)[None, None, :]
    grid[..., 1] = coords(H)[None, :, None]
    return grid


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("mode", MODES)
def test_identity_grid_reproduces_input(kernel_path, mode, layout, dtype):
    rng = np.random.default_rng(3)
    # With align_corners, sizes 2^k + 1 make every normalised coordinate and pixel coordinate exact: bit-equal.
    img = rng.standard_normal((2, 3, 5, 9)).astype(dtype).astype(np.float64)
    out, _, _ = run(kernel_path, img, identity_grid(2, 5, 9, True), layout=layout, dtype=dtype, mode=mode,
                    align_corners=True)
    np.testing.assert_array_equal(out, img.astype(dtype))
    # Other sizes, and align_corners=False, reproduce it to rounding.
    img = rng.standard_normal((2, 3, 6, 7)).astype(dtype).astype(np.float64)
    for align_corners in (False, True):
        out, _, _ = run(kernel_path, img, identity_grid(2, 6, 7, align_corners), layout=layout, dtype=dtype,
                        mode=mode, align_corners=align_corners)
        assert_close(out, img, dtype, f"identity, align_corners={align_corners}")


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
def test_translation_by_one_pixel(kernel_path, padding_mode, align_corners):
    img = np.arange(2 * 5 * 6, dtype=np.float64).reshape(1, 2, 5, 6)
    grid = identity_grid(1, 5, 6, align_corners)
    grid[..., 0] += 2 / (6 - 1) if align_corners else 2 / 6  # one pixel to the right, in normalised units
    out, _, _ = run(kernel_path, img, grid, padding_mode=padding_mode, align_corners=align_corners)
    expected = np.empty_like(img)
    expected[..., :-1] = img[..., 1:]  # output column j shows input column j + 1: the image moved left
    expected[..., -1] = 0 if padding_mode == "zeros" else img[..., -1]
    np.testing.assert_allclose(out, expected, atol=1e-9)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_rotation_by_quarter_turns(kernel_path, mode, align_corners):
    img = np.random.default_rng(5).standard_normal((1, 2, 5, 5))
    base = identity_grid(1, 5, 5, align_corners)
    # Rotating the sampling points by 90 degrees, (x, y) -> (-y, x), turns the image by a quarter counterclockwise.
    quarter = np.stack([-base[..., 1], base[..., 0]], axis=-1)
    out, _, _ = run(kernel_path, img, quarter, mode=mode, align_corners=align_corners)
    np.testing.assert_allclose(out, np.rot90(img, k=1, axes=(2, 3)), atol=1e-9)
    half = -base  # 180 degrees
    out, _, _ = run(kernel_path, img, half, mode=mode, align_corners=align_corners)
    np.testing.assert_allclose(out, img[:, :, ::-1, ::-1], atol=1e-9)


def test_sampling_between_pixels_averages_them(kernel_path):
    img = np.array([[[[0.0, 10.0], [20.0, 30.0]]]])
    grid = np.zeros((1, 1, 1, 2))  # the centre of a 2x2 image
    out, grad_img, grad_grid = run(kernel_path, img, grid, np.ones((1, 1, 1, 1)), align_corners=True)
    assert out[0, 0, 0, 0] == pytest.approx(15.0)
    np.testing.assert_allclose(grad_img, np.full((1, 1, 2, 2), 0.25))
    # d out/d x = d out/d ix * d ix/d x = ((10 - 0) + (30 - 20)) / 2 * (2 - 1) / 2; likewise y.
    np.testing.assert_allclose(grad_grid, [[[[5.0, 10.0]]]])


# =================================================================================================================
# determinism
# =================================================================================================================


def test_backward_is_bitwise_deterministic(kernel_path):
    if kernel_path.name == "cupy":
        pytest.skip("the GPU backward scatters with atomicAdd, whose order (and float rounding) varies by design")
    rng = np.random.default_rng(14)
    # Large enough for the Numba kernels to run in parallel (see SERIAL_WORK in kernels/cpu/grid_sample.py).
    img = rng.standard_normal((4, 3, 9, 11))
    grid = rng.uniform(-1.2, 1.2, (4, 32, 33, 2))
    grad_out = rng.standard_normal((4, 3, 32, 33))
    for layout in ("NCHW", "NHWC"):
        first = run(kernel_path, img, grid, grad_out, layout, np.float32, padding_mode="reflection")
        second = run(kernel_path, img, grid, grad_out, layout, np.float32, padding_mode="reflection")
        for a, b in zip(first, second):
            assert a.tobytes() == b.tobytes()


_THREADS_SCRIPT = textwrap.dedent("""
    import hashlib, numpy as np, scratchattn as sa
    from scratchattn import functional as F
    rng = np.random.default_rng(0)
    digest = hashlib.sha256()
    for layout, shape in (("NCHW", (5, 3, 9, 11)), ("NHWC", (5, 9, 11, 3))):
        x = sa.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
        # Large enough to run in parallel (SERIAL_WORK), with chunks that differ between 1 and 2 threads.
        g = sa.tensor(rng.uniform(-1.2, 1.2, (5, 40, 41, 2)).astype(np.float32), requires_grad=True)
        for mode in ("bilinear", "bicubic"):
            y = F.grid_sample(x, g, mode=mode, padding_mode="border", layout=layout)
            (y * y).sum().backward()
            for a in (y.data, x.grad, g.grad):
                digest.update(a.tobytes())
            x.grad = g.grad = None
    print(digest.hexdigest())
""")


def test_cpu_backward_is_identical_for_one_and_two_threads():
    digests = []
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads, SCRATCHATTN_KERNELS="numba")
        result = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT], capture_output=True, text=True, env=env,
                                cwd=ROOT, timeout=300)
        assert result.returncode == 0, result.stderr
        digests.append(result.stdout.strip())
    assert digests[0] == digests[1], f"results differ between 1 and 2 threads: {digests}"
    assert len(digests[0]) == len(hashlib.sha256().hexdigest())


_COMPILE_SCRIPT = textwrap.dedent("""
    import numpy as np
    import scratchattn as sa
    from scratchattn import functional as F
    from scratchattn.kernels.cpu import grid_sample as k

    x = sa.tensor(np.ones((1, 2, 4, 5)), requires_grad=True)
    g = sa.tensor(np.zeros((1, 3, 2, 2)), requires_grad=True)
    F.grid_sample(x, g, padding_mode="border").sum().backward()
    compiled = [f.__name__ for f in (*k.FORWARD_KERNELS.values(), *k.BACKWARD_KERNELS.values(), k.plan_bilinear_block,
                                     k.plan_nearest_block, k.plan_bicubic_block) if f.signatures]
    print(" ".join(sorted(compiled)), len(k.forward_block_nchw.signatures), len(k.backward_block_nchw.signatures))
""")


@pytest.mark.slow
def test_a_bilinear_call_compiles_only_bilinear_code(tmp_path):
    # The cold compile was 30-50 s per dtype while one Numba kernel held every mode; each mode now has its own
    # kernels, and a program that samples bilinearly must not pay for nearest or bicubic code. A fresh cache
    # directory makes Numba compile instead of loading earlier results.
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), SCRATCHATTN_KERNELS="numba")
    result = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT], capture_output=True, text=True, env=env,
                            cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    expected = "grid_sample_backward_bilinear grid_sample_forward_bilinear plan_bilinear_block 1 1"
    assert result.stdout.strip() == expected, result.stdout


# =================================================================================================================
# non-finite and huge coordinates
# =================================================================================================================

SPECIAL = (np.nan, np.inf, -np.inf, 1e30, -1e30)


def special_grid(H, W, align_corners):
    """A 1 x 6 x 6 grid: row r puts SPECIAL[r] into x (columns 0-2) or y (3-5) of ordinary points; row 5 is
    ordinary. Returns the grid and the mask of special points."""
    rng = np.random.default_rng(11)
    grid = safe_grid(rng, 1, 6, 6, H, W, align_corners, reach=0)
    for r, value in enumerate(SPECIAL):
        grid[0, r, :3, 0] = value
        grid[0, r, 3:, 1] = value
    special = np.zeros((1, 1, 6, 6), bool)
    special[0, 0, :5] = True
    return grid, special


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("mode", MODES)
def test_nonfinite_and_huge_coordinates_are_safe(kernel_path, mode, padding_mode, align_corners):
    img = np.random.default_rng(12).standard_normal((1, 2, 4, 5))
    grid, special = special_grid(4, 5, align_corners)
    options = dict(mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    for dtype in (np.float32, np.float64):
        out, grad_img, grad_grid = run(kernel_path, img, grid, np.ones((1, 2, 6, 6)), "NCHW", dtype, **options)
        special2 = np.broadcast_to(special, out.shape)
        ordinary = ~special2
        assert np.all(np.isfinite(out[ordinary]))
        if padding_mode == "zeros":
            # Far outside the image, NaN included: every tap reads zero padding, and nothing flows back.
            assert np.all(out[special2] == 0), out
            assert np.all(np.isfinite(grad_img)) and np.all(np.isfinite(grad_grid))
            assert np.all(grad_grid[special[:, 0]] == 0)
        elif mode != "bicubic":
            # NaN and -Inf clip to the first pixel, +Inf to the last ("border"); reflection sends NaN and +-Inf
            # to the first. These equal ordinary samples at -1 or +1; 1e30 reflects to some pixel: just finite.
            assert np.all(np.isfinite(out)) and np.all(np.isfinite(grad_img)) and np.all(np.isfinite(grad_grid))
            replaced = grid.copy()
            for value, normalised in ((np.nan, -1.0), (-np.inf, -1.0), (np.inf, 1.0 if padding_mode == "border"
                                                                        else -1.0)):
                replaced[np.isnan(replaced) if np.isnan(value) else replaced == value] = normalised
            check = ~np.isin(np.abs(grid[..., 0]), [1e30]) & ~np.isin(np.abs(grid[..., 1]), [1e30])
            expected = grid_sample_reference(img, np.where(np.abs(replaced) > 1e29, 0.0, replaced), **options)
            np.testing.assert_allclose(out[:, :, check[0]], expected[:, :, check[0]], rtol=1e-5, atol=1e-5)
            # A clipped coordinate has slope 0 (the other coordinate of the point may still have a gradient).
            assert np.all(grad_grid[~np.isfinite(grid)] == 0)
        else:
            # Bicubic weights are polynomials in the fraction ix - floor(ix), which is NaN for NaN and Inf: the
            # output there is NaN, as in PyTorch. 1e30 has fraction 0 and gives a finite value.
            nonfinite = ~np.isfinite(grid).all(axis=-1)
            assert np.all(np.isnan(out[:, :, nonfinite[0]]))
            huge = (np.abs(grid) == 1e30).any(axis=-1) & ~nonfinite
            assert np.all(np.isfinite(out[:, :, huge[0]]))


# =================================================================================================================
# shapes, layouts, contiguity, dtypes
# =================================================================================================================


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_empty_batch_and_empty_sizes(kernel_path, layout):
    cases = [((0, 3, 4, 5), (0, 2, 3, 2)), ((2, 3, 4, 5), (2, 0, 3, 2)), ((2, 3, 4, 5), (2, 3, 0, 2)),
             ((2, 0, 4, 5), (2, 3, 3, 2))]
    for img_shape, grid_shape in cases:
        img = np.ones(img_shape)
        grid = np.zeros(grid_shape)
        out, grad_img, grad_grid = run(kernel_path, img, grid, np.ones((img_shape[0], img_shape[1]) +
                                                                        grid_shape[1:3]), layout)
        assert out.shape == (img_shape[0], img_shape[1]) + grid_shape[1:3]
        assert grad_img.shape == img_shape and not grad_img.any()
        assert grad_grid.shape == grid_shape and not grad_grid.any()


def test_non_contiguous_inputs_are_accepted(kernel_path):
    rng = np.random.default_rng(13)
    big = rng.standard_normal((2, 3, 10, 7))
    img = big[:, :, ::2, :]  # a strided view
    grid = safe_grid(rng, 2, 4, 3, 5, 7, False)
    x = sa.tensor(kernel_path.array(big))[:, :, ::2, :]
    g = sa.tensor(kernel_path.array(grid.transpose(0, 2, 1, 3).copy())).transpose(1, 2)  # non-contiguous grid
    out = F.grid_sample(x, g)
    assert_close(out.numpy(), grid_sample_reference(img, grid), np.float64, "strided input and grid")


def test_nhwc_output_layout_and_dtype(kernel_path):
    x = sa.tensor(kernel_path.array(np.ones((2, 4, 5, 3), np.float32)))
    g = sa.tensor(kernel_path.array(np.zeros((2, 6, 7, 2), np.float32)))
    y = F.grid_sample(x, g, layout="NHWC")
    assert y.shape == (2, 6, 7, 3) and y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), 1.0)


def test_gradient_only_for_the_grid(kernel_path):
    img, grid, grad_out, _, _, expected = reference_case("bilinear", "zeros", False, 0)
    x = sa.tensor(kernel_path.array(img))  # a constant image: only the grid learns
    g = sa.tensor(kernel_path.array(grid), requires_grad=True)
    F.grid_sample(x, g).backward(kernel_path.array(grad_out))
    assert x.grad is None
    assert_close(g.grad, expected, np.float64, "grid gradient alone")


# =================================================================================================================
# errors
# =================================================================================================================


def test_bad_arguments_raise_clear_errors():
    x = sa.tensor(np.zeros((2, 3, 4, 5), np.float32))
    g = sa.tensor(np.zeros((2, 6, 7, 2), np.float32))
    cases = [
        (([[1.0]], g), {}, TypeError, "input must be a Tensor"),
        ((x, "grid"), {}, TypeError, "grid must be a Tensor"),
        ((sa.tensor(np.zeros((2, 3, 4, 5), np.int64)), g), {}, TypeError, "input must be float32 or float64"),
        ((x, g.astype(np.float64)), {}, TypeError, "same dtype; got input float32 and grid float64"),
        ((sa.tensor(np.zeros((3, 4, 5), np.float32)), g), {}, ValueError, r"input must be 4-D \(N, C, H_in, W_in\)"),
        ((sa.tensor(np.zeros((2, 3, 4, 5, 6), np.float32)), g), {}, NotImplementedError, "volumetric"),
        ((x, sa.tensor(np.zeros((2, 6, 7, 3), np.float32))), {}, ValueError, r"grid must have shape \(N, H_out"),
        ((x, sa.tensor(np.zeros((6, 7, 2), np.float32))), {}, ValueError, "grid must have shape"),
        ((x, sa.tensor(np.zeros((3, 6, 7, 2), np.float32))), {}, ValueError, "same batch size"),
        ((x, g), {"mode": "linear"}, ValueError, "mode must be one of 'bilinear', 'nearest', 'bicubic'; got 'linear'"),
        ((x, g), {"padding_mode": "edge"}, ValueError, "padding_mode must be one of"),
        ((x, g), {"layout": "CHWN"}, ValueError, "layout must be one of 'NCHW', 'NHWC'"),
        ((x, g), {"align_corners": 1}, TypeError, "align_corners must be a bool"),
        ((sa.tensor(np.zeros((2, 3, 0, 5), np.float32)), g), {}, ValueError, "non-empty spatial dimensions"),
        ((x, g), {"layout": "NHWC"}, ValueError, None),  # fine as shapes go: C = 5 channels, H_in = 3, W_in = 4
    ]
    for args, kwargs, error, message in cases[:-1]:
        with pytest.raises(error, match=message):
            F.grid_sample(*args, **kwargs)
    F.grid_sample(x, g, layout="NHWC")  # the last case is valid


@pytest.mark.gpu
def test_mixed_devices_raise():
    x = sa.tensor(np.zeros((1, 1, 2, 2), np.float32)).to("cuda")
    g = sa.tensor(np.zeros((1, 1, 1, 2), np.float32))
    with pytest.raises(ValueError, match="same device"):
        F.grid_sample(x, g)
