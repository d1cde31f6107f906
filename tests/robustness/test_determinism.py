"""Which kernels are bitwise reproducible on a GPU, and the one-writer launches that would make the others so.

On a GPU, threads that add partial sums into one output with ``atomicAdd`` do so in a different order every run.
The host shim shows the same thing when it runs blocks on several OS threads (``host.parallel_blocks``), so these
tests run there: the atomic reductions of squeeze-excitation agree with the sequential result to rounding, and
the same kernels launched with one writer per output (NCHW: one lane per plane; NHWC: one pixel block per sample)
are bitwise identical run after run, which is the deterministic mode docs/robustness.md proposes. The affine grid's
backward, which has no atomics, is bitwise identical under parallel blocks as it is.
"""

from __future__ import annotations

import numpy as np
import pytest

from scratchattn import backend
from scratchattn.kernels.cuda import launcher

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


def squeeze(layout: str, x: np.ndarray, split: int) -> np.ndarray:
    """se_squeeze_<layout> on the host shim with ``split`` writers per output: lanes (NCHW) or pixel blocks (NHWC)."""
    name = f"se_squeeze_{layout}"
    kernel = launcher.get_kernel("squeeze_excitation.cu", name, x.dtype, "cuda-host")
    if layout == "nchw":
        n, c, hw = x.shape
        lanes = split
        total = n * c * lanes
        scalars = (np.int64(n), np.int64(c), np.int64(hw), np.int64(lanes))
    else:
        n, hw, c = x.shape
        pixel_block = -(-hw // split)
        total = n * (-(-hw // pixel_block)) * c
        scalars = (np.int64(n), np.int64(hw), np.int64(c), np.int64(pixel_block))
    z = np.zeros((n, c), x.dtype)
    kernel(*launcher.launch_config(total), (x, z, *scalars))
    return z


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_one_writer_per_output_is_bitwise_reproducible_with_blocks_in_parallel(host, layout):
    rng = np.random.default_rng(0)
    shape = (4, 6, 4096) if layout == "nchw" else (4, 4096, 6)
    x = rng.standard_normal(shape).astype(np.float32) * np.float32(1000)
    sequential = squeeze(layout, x, split=1)
    with host.parallel_blocks(4):
        runs = [squeeze(layout, x, split=1) for _ in range(REPEATS)]
    for z in runs:
        np.testing.assert_array_equal(z, sequential)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_atomic_reductions_agree_to_rounding_with_blocks_in_parallel(host, layout):
    rng = np.random.default_rng(1)
    shape = (4, 6, 4096) if layout == "nchw" else (4, 4096, 6)
    x = rng.standard_normal(shape).astype(np.float32) * np.float32(1000)
    expected = x.astype(np.float64).mean(axis=2 if layout == "nchw" else 1)
    with host.parallel_blocks(4):
        runs = [squeeze(layout, x, split=1024) for _ in range(REPEATS)]  # the writers of one output span blocks
    distinct = {z.tobytes() for z in runs}
    print(f"{layout}: {len(distinct)} distinct results in {REPEATS} parallel runs")
    for z in runs:
        np.testing.assert_allclose(z, expected, rtol=0, atol=1e-4 * 1000)


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
