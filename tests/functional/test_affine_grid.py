"""Tests of the grid generators ``F.affine_grid`` (every kernel path) and ``F.projective_grid`` (every device).

The references below are written here, from the formulas, independently of the library: base coordinates from
their closed forms, the grid by an explicit matrix product per point, and d_theta by the sum of outer products.
"""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend
from scratchattn import functional as F
from scratchattn.kernels.cpu import affine_grid as cpu_kernels

# =================================================================================================================
# NumPy references
# =================================================================================================================


def ref_base_coords(size: int, align_corners: bool) -> np.ndarray:
    """PyTorch's convention in float64: linspace(-1, 1, S), shrunk by (S-1)/S without align_corners; 0 for S == 1."""
    if size == 1:
        return np.zeros(1)
    coords = np.linspace(-1.0, 1.0, size)
    return coords if align_corners else coords * (size - 1) / size


def ref_points(h: int, w: int, align_corners: bool) -> np.ndarray:
    """(H, W, 3) homogeneous base points (x_j, y_i, 1) in float64."""
    xs, ys = ref_base_coords(w, align_corners), ref_base_coords(h, align_corners)
    points = np.ones((h, w, 3))
    for i in range(h):
        for j in range(w):
            points[i, j, 0], points[i, j, 1] = xs[j], ys[i]
    return points


def ref_affine_grid(theta: np.ndarray, h: int, w: int, align_corners: bool) -> np.ndarray:
    points = ref_points(h, w, align_corners)
    theta = theta.astype(np.float64)
    grid = np.empty((theta.shape[0], h, w, 2))
    for n in range(theta.shape[0]):
        for i in range(h):
            for j in range(w):
                grid[n, i, j] = theta[n] @ points[i, j]
    return grid


def ref_affine_grid_backward(grad_grid: np.ndarray, align_corners: bool) -> np.ndarray:
    n, h, w, _ = grad_grid.shape
    points = ref_points(h, w, align_corners)
    grad_theta = np.zeros((n, 2, 3))
    for b in range(n):
        for i in range(h):
            for j in range(w):
                grad_theta[b] += np.outer(grad_grid[b, i, j].astype(np.float64), points[i, j])
    return grad_theta


def ref_projective_grid(homography: np.ndarray, h: int, w: int, align_corners: bool) -> np.ndarray:
    points = ref_points(h, w, align_corners)
    grid = np.empty((homography.shape[0], h, w, 2))
    for n in range(homography.shape[0]):
        for i in range(h):
            for j in range(w):
                u, v, z = homography[n].astype(np.float64) @ points[i, j]
                grid[n, i, j] = u / z, v / z
    return grid


SHAPES = [(1, 1, 1), (2, 5, 7), (3, 4, 1), (1, 1, 6), (2, 8, 3), (1, 6, 6)]  # (N, H, W): odd, non-square, unit axes
DTYPES = [np.float32, np.float64]
TOL = {np.float32: 2e-6, np.float64: 1e-14}  # per unit of magnitude (|theta| ~ 1 and |coords| <= 1)


def random_theta(rng, n, dtype):
    return (np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]) + 0.5 * rng.standard_normal((n, 2, 3))).astype(dtype)


def to_numpy(a):
    return backend.to_numpy(a)


# =================================================================================================================
# affine_grid: forward and backward against the references, on every kernel path
# =================================================================================================================


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_reference(kernel_path, shape, align_corners, dtype):
    n, h, w = shape
    theta = random_theta(np.random.default_rng(1), n, dtype)
    grid = F.affine_grid(sa.tensor(kernel_path.array(theta)), (n, 3, h, w), align_corners=align_corners)
    assert grid.shape == (n, h, w, 2) and grid.dtype == dtype and grid.device == kernel_path.device
    expected = ref_affine_grid(theta, h, w, align_corners)
    np.testing.assert_allclose(grid.numpy(), expected, rtol=0, atol=4 * TOL[dtype], err_msg=f"{kernel_path}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_reference(kernel_path, shape, align_corners, dtype):
    n, h, w = shape
    rng = np.random.default_rng(2)
    theta = sa.tensor(kernel_path.array(random_theta(rng, n, dtype)), requires_grad=True)
    grad_grid = rng.standard_normal((n, h, w, 2)).astype(dtype)
    F.affine_grid(theta, (n, 1, h, w), align_corners=align_corners).backward(kernel_path.array(grad_grid))
    assert theta.grad.shape == (n, 2, 3) and theta.grad.dtype == dtype
    expected = ref_affine_grid_backward(grad_grid, align_corners)
    # Each entry sums H*W terms of magnitude ~1: allow the rounding of such a sum.
    atol = TOL[dtype] * 4 * h * w
    np.testing.assert_allclose(to_numpy(theta.grad), expected, rtol=0, atol=atol, err_msg=f"{kernel_path}")


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 5), (1, 1, 4), (2, 4, 1), (1, 1, 1)])
def test_gradcheck(kernel_path, shape, align_corners):
    n, h, w = shape
    theta = sa.tensor(kernel_path.array(random_theta(np.random.default_rng(3), n, np.float64)), requires_grad=True)
    assert sa.gradcheck(lambda t: F.affine_grid(t, (n, 2, h, w), align_corners=align_corners), [theta])


def test_gradient_through_a_noncontiguous_consumer(kernel_path):
    # The grid's gradient arrives through a permute (a non-contiguous array): the op must not assume its layout.
    rng = np.random.default_rng(4)
    n, h, w = 2, 3, 5
    theta = sa.tensor(kernel_path.array(random_theta(rng, n, np.float64)), requires_grad=True)
    weights = rng.standard_normal((n, 2, h, w))
    loss = (F.affine_grid(theta, (n, 1, h, w)).permute(0, 3, 1, 2) * sa.tensor(kernel_path.array(weights))).sum()
    loss.backward()
    expected = ref_affine_grid_backward(weights.transpose(0, 2, 3, 1), False)
    np.testing.assert_allclose(to_numpy(theta.grad), expected, rtol=1e-12, atol=1e-12)


def test_noncontiguous_theta(kernel_path):
    rng = np.random.default_rng(5)
    theta = np.ascontiguousarray(random_theta(rng, 3, np.float32).transpose(2, 1, 0)).transpose(2, 1, 0)
    assert not theta.flags.c_contiguous
    grid = F.affine_grid(sa.tensor(kernel_path.array(theta)), (3, 1, 4, 5))
    np.testing.assert_allclose(grid.numpy(), ref_affine_grid(theta, 4, 5, False), rtol=0, atol=1e-5)


# =================================================================================================================
# base coordinates, identity, unit axes, empty batch, determinism
# =================================================================================================================


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size", [(1, 1), (2, 4), (5, 3), (7, 7)])
def test_identity_theta_gives_the_base_grid(kernel_path, size, align_corners, dtype):
    h, w = size
    identity = np.tile(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=dtype), (2, 1, 1))
    grid = F.affine_grid(sa.tensor(kernel_path.array(identity)), (2, 1, h, w), align_corners=align_corners).numpy()
    expected = ref_points(h, w, align_corners)[:, :, :2].astype(dtype)
    # theta = identity multiplies by 1 and adds 0: the base coordinates come out exactly (to one rounding of the
    # float64 value, which the float32 reference also carries).
    np.testing.assert_allclose(grid[0], expected, rtol=0, atol=np.finfo(dtype).eps)
    np.testing.assert_array_equal(grid[0], grid[1])


def test_known_base_coordinates():
    identity = sa.tensor(np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]))
    x_false = F.affine_grid(identity, (1, 1, 1, 4), align_corners=False).numpy()[0, 0, :, 0]
    x_true = F.affine_grid(identity, (1, 1, 1, 4), align_corners=True).numpy()[0, 0, :, 0]
    np.testing.assert_allclose(x_false, [-0.75, -0.25, 0.25, 0.75], rtol=0, atol=1e-15)
    np.testing.assert_allclose(x_true, [-1.0, -1.0 / 3.0, 1.0 / 3.0, 1.0], rtol=0, atol=1e-15)


@pytest.mark.parametrize("align_corners", [False, True])
def test_unit_axis_gives_zero(kernel_path, align_corners):
    identity = np.tile(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), (1, 1, 1))
    tall = F.affine_grid(sa.tensor(kernel_path.array(identity)), (1, 1, 3, 1), align_corners=align_corners).numpy()
    wide = F.affine_grid(sa.tensor(kernel_path.array(identity)), (1, 1, 1, 3), align_corners=align_corners).numpy()
    np.testing.assert_array_equal(tall[0, :, 0, 0], np.zeros(3))  # x of the single column
    np.testing.assert_array_equal(wide[0, 0, :, 1], np.zeros(3))  # y of the single row
    assert tall[0, 0, 0, 1] == pytest.approx(-1.0 if align_corners else -2.0 / 3.0, abs=1e-15)


def test_translation_only_moves_every_point(kernel_path):
    theta = np.array([[[1.0, 0.0, 0.25], [0.0, 1.0, -0.5]]])
    grid = F.affine_grid(sa.tensor(kernel_path.array(theta)), (1, 1, 3, 4)).numpy()
    base = ref_points(3, 4, False)[:, :, :2]
    np.testing.assert_allclose(grid[0] - base, np.broadcast_to([0.25, -0.5], (3, 4, 2)), rtol=0, atol=1e-15)


def test_empty_batch(kernel_path):
    theta = sa.tensor(kernel_path.array(np.zeros((0, 2, 3))), requires_grad=True)
    grid = F.affine_grid(theta, (0, 3, 4, 5))
    assert grid.shape == (0, 4, 5, 2)
    grid.backward(kernel_path.array(np.zeros((0, 4, 5, 2))))
    assert theta.grad.shape == (0, 2, 3)


def test_backward_is_deterministic(kernel_path):
    rng = np.random.default_rng(6)
    n, h, w = 3, 33, 47
    theta_np = random_theta(rng, n, np.float32)
    grad_grid = kernel_path.array(rng.standard_normal((n, h, w, 2)).astype(np.float32))
    grads = []
    for _ in range(3):
        theta = sa.tensor(kernel_path.array(theta_np), requires_grad=True)
        F.affine_grid(theta, (n, 1, h, w)).backward(grad_grid)
        grads.append(to_numpy(theta.grad))
    for g in grads[1:]:
        np.testing.assert_array_equal(g, grads[0])


def test_numba_backward_is_identical_across_thread_counts():
    numba = pytest.importorskip("numba")
    rng = np.random.default_rng(7)
    n, h, w = 3, 101, 113  # above PARALLEL_MIN_POINTS: the parallel kernels run
    assert n * h * w >= cpu_kernels.PARALLEL_MIN_POINTS
    theta_np = random_theta(rng, n, np.float32)
    grad_grid = rng.standard_normal((n, h, w, 2)).astype(np.float32)
    results = []
    previous = numba.get_num_threads()
    try:
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            with backend.use_kernels("numba"):
                theta = sa.tensor(theta_np, requires_grad=True)
                grid = F.affine_grid(theta, (n, 1, h, w))
                grid.backward(grad_grid)
            results.append((grid.numpy(), theta.grad.copy()))
    finally:
        numba.set_num_threads(previous)
    for grid, grad in results[1:]:
        np.testing.assert_array_equal(grid, results[0][0])
        np.testing.assert_array_equal(grad, results[0][1])


def test_numba_serial_and_parallel_kernels_agree_bitwise(monkeypatch):
    # Small problems take the serial loop, large ones the parallel one; both run the same per-row body.
    rng = np.random.default_rng(8)
    n, h, w = 2, 7, 9
    theta_np = random_theta(rng, n, np.float32)
    grad_grid = rng.standard_normal((n, h, w, 2)).astype(np.float32)
    results = []
    for threshold in (0, 1 << 62):  # every size parallel, then every size serial
        monkeypatch.setattr(cpu_kernels, "PARALLEL_MIN_POINTS", threshold)
        with backend.use_kernels("numba"):
            theta = sa.tensor(theta_np, requires_grad=True)
            grid = F.affine_grid(theta, (n, 1, h, w))
            grid.backward(grad_grid)
        results.append((grid.numpy(), theta.grad.copy()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


# =================================================================================================================
# bad input
# =================================================================================================================

GOOD_THETA = np.zeros((2, 2, 3), dtype=np.float32)


@pytest.mark.parametrize(
    "theta, size, align_corners, error, words",
    [
        (GOOD_THETA, (2, 1, 4, 4, 4), False, NotImplementedError, "3-D"),
        (np.zeros((2, 3, 4), np.float32), (2, 1, 4, 4, 4), False, NotImplementedError, "3-D"),
        (np.zeros((2, 3, 3), np.float32), (2, 1, 4, 4), False, ValueError, "theta must have shape (N, 2, 3)"),
        (np.zeros((2, 6), np.float32), (2, 1, 4, 4), False, ValueError, "got shape (2, 6)"),
        (np.zeros((2, 2, 3), np.int64), (2, 1, 4, 4), False, TypeError, "float32 or float64"),
        (np.zeros((2, 2, 3), np.float16), (2, 1, 4, 4), False, TypeError, "got dtype float16"),
        ([[[1, 0, 0], [0, 1, 0]]], (1, 1, 4, 4), False, TypeError, "theta must be a Tensor"),
        (GOOD_THETA, (3, 1, 4, 4), False, ValueError, "size[0] (N) must equal the batch"),
        (GOOD_THETA, (2, 1, 4), False, ValueError, "4 entries"),
        (GOOD_THETA, (2, 1, 0, 4), False, ValueError, "must be positive"),
        (GOOD_THETA, (2, 1, 4, -1), False, ValueError, "must be positive"),
        (GOOD_THETA, (2, 0, 4, 4), False, ValueError, "must be positive"),
        (GOOD_THETA, (2, 1, 4.0, 4), False, TypeError, "tuple or list of ints"),
        (GOOD_THETA, "2144", False, TypeError, "tuple or list of ints"),
        (GOOD_THETA, (2, 1, True, 4), False, TypeError, "tuple or list of ints"),
        (GOOD_THETA, (2, 1, 4, 4), "yes", TypeError, "align_corners must be a bool"),
    ],
)
def test_bad_input_raises_a_clear_error(theta, size, align_corners, error, words):
    theta = sa.tensor(theta) if isinstance(theta, np.ndarray) else theta
    with pytest.raises(error) as info:
        F.affine_grid(theta, size, align_corners=align_corners)
    assert words in str(info.value), str(info.value)
    assert "affine_grid" in str(info.value)


def test_size_accepts_numpy_ints_and_lists():
    grid = F.affine_grid(sa.tensor(GOOD_THETA), [np.int64(2), 1, np.int32(3), 5])
    assert grid.shape == (2, 3, 5, 2)


# =================================================================================================================
# projective_grid (written against xp: every device, no kernel pair)
# =================================================================================================================


def random_homography(rng, n, dtype):
    # Near the identity, so that w = h3 . p stays well away from 0 on the base points (|x|, |y| <= 1).
    return (np.eye(3) + 0.2 * rng.standard_normal((n, 3, 3))).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("shape", [(2, 5, 7), (1, 1, 3), (3, 4, 1)])
def test_projective_forward_matches_reference(device, shape, align_corners, dtype):
    n, h, w = shape
    homography = random_homography(np.random.default_rng(8), n, dtype)
    grid = F.projective_grid(sa.tensor(homography, device=device), (n, 1, h, w), align_corners=align_corners)
    assert grid.shape == (n, h, w, 2) and grid.dtype == dtype and grid.device == device
    expected = ref_projective_grid(homography, h, w, align_corners)
    np.testing.assert_allclose(grid.numpy(), expected, rtol=20 * TOL[dtype], atol=20 * TOL[dtype])


@pytest.mark.parametrize("align_corners", [False, True])
def test_projective_of_an_affine_matrix_is_the_affine_grid(device, align_corners):
    theta = random_theta(np.random.default_rng(9), 2, np.float64)
    homography = np.concatenate([theta, np.tile([[[0.0, 0.0, 1.0]]], (2, 1, 1))], axis=1)
    projective = F.projective_grid(sa.tensor(homography, device=device), (2, 1, 4, 6), align_corners).numpy()
    affine = F.affine_grid(sa.tensor(theta, device=device), (2, 1, 4, 6), align_corners).numpy()
    np.testing.assert_allclose(projective, affine, rtol=0, atol=1e-15)


def test_projective_scaling_of_the_whole_matrix_changes_nothing(device):
    homography = random_homography(np.random.default_rng(10), 2, np.float64)
    a = F.projective_grid(sa.tensor(homography, device=device), (2, 1, 3, 5)).numpy()
    b = F.projective_grid(sa.tensor(-2.5 * homography, device=device), (2, 1, 3, 5)).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 4), (1, 1, 3), (1, 2, 1)])
def test_projective_gradcheck(device, shape, align_corners):
    n, h, w = shape
    homography = sa.tensor(random_homography(np.random.default_rng(11), n, np.float64), device=device,
                           requires_grad=True)
    assert sa.gradcheck(lambda m: F.projective_grid(m, (n, 1, h, w), align_corners=align_corners), [homography])


@pytest.mark.parametrize(
    "homography, size, error, words",
    [
        (np.zeros((2, 2, 3)), (2, 1, 4, 4), ValueError, "homography must have shape (N, 3, 3)"),
        (np.zeros((2, 3, 3), np.int32), (2, 1, 4, 4), TypeError, "float32 or float64"),
        (np.zeros((2, 3, 3)), (1, 1, 4, 4), ValueError, "size[0] (N)"),
        (np.zeros((2, 3, 3)), (2, 1, 4, 4, 4), NotImplementedError, "3-D"),
    ],
)
def test_projective_bad_input(homography, size, error, words):
    with pytest.raises(error) as info:
        F.projective_grid(sa.tensor(homography), size)
    assert words in str(info.value) and "projective_grid" in str(info.value), str(info.value)
