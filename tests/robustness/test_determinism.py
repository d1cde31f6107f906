"""Which kernels are bitwise reproducible on a GPU, and the one-writer launches that would make the others so.

On a GPU, threads that add partial sums into one output with ``atomicAdd`` do so in a different order every run.
The host shim can run blocks on several OS threads (``host.parallel_blocks``), so these tests run there:

* squeeze-excitation's atomic reductions agree with the sequential result to rounding, and the same kernels
  launched with one writer per output (NCHW: one lane per plane; NHWC: one pixel block per sample) are bitwise
  identical run after run: a deterministic mode that needs no kernel change;
* grid sampling's input gradient is an ``atomicAdd`` scatter; ``PLANES_KERNEL`` below is the proposed deterministic
  replacement (one thread per (n, c) plane walking the output pixels in order, plain ``+=``), compiled here together
  with the helpers of ``grid_sample.cu``: it matches the reference and is bitwise identical run after run;
* the affine grid's backward, which has no atomics, is bitwise identical under parallel blocks as it is.

On a GPU the ``gpu`` tests repeat the checks through CuPy.
"""

from __future__ import annotations

import os

import _robust_fuzz as fuzz
import numpy as np
import pytest

from scratchattn import backend
from scratchattn.kernels.cpu import grid_sample as codes
from scratchattn.kernels.cuda import grid_sample as cuda_grid_sample
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


# =================================================================================================================
# grid sampling: a deterministic input gradient (proposed for grid_sample.cu)
# =================================================================================================================

# Appended to grid_sample.cu's text (it uses that file's Mode<MODE>::K and pixel_taps<MODE>). The grid gradient
# keeps the existing kernel (one writer per output pixel already), launched with need_grad_inp = 0.
PLANES_KERNEL = r"""
// Deterministic input gradient of grid sampling: one thread per (n, c) plane of grad_inp. It walks the output pixels
// of image n in order and adds each tap's weight * g with a plain +=: the only writer of its plane, in a fixed order,
// so the result is the same bit for bit on every run (and on any GPU). Costs: the taps of a pixel are recomputed
// for each channel, and there are only N * C threads.
template <int MODE>
__device__ inline void backward_input_planes(const scalar_t* grad_out, const scalar_t* grid, scalar_t* grad_inp,
                                             long long N, long long C, long long H, long long W, long long H_out,
                                             long long W_out, long long padding_mode, bool align_corners,
                                             bool channels_last) {
    constexpr int K = Mode<MODE>::K;
    const long long P_out = H_out * W_out;
    const long long pixel_stride = channels_last ? C : 1, channel_stride = channels_last ? 1 : H * W;
    const long long out_pixel_stride = channels_last ? C : 1, out_channel_stride = channels_last ? 1 : P_out;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long plane = (long long)blockIdx.x * blockDim.x + threadIdx.x; plane < N * C; plane += stride) {
        const long long n = plane / C;
        const long long c = plane - n * C;
        scalar_t* target = grad_inp + n * C * H * W + c * channel_stride;
        const scalar_t* g = grad_out + n * C * P_out + c * out_channel_stride;
        for (long long p = 0; p < P_out; ++p) {
            long long offset[K];
            scalar_t weight[K], dweight_dx[K], dweight_dy[K];
            const long long pixel = n * P_out + p;
            pixel_taps<MODE>(grid[2 * pixel], grid[2 * pixel + 1], H, W, padding_mode, align_corners, offset, weight,
                             dweight_dx, dweight_dy);
            const scalar_t g_c = g[p * out_pixel_stride];
#pragma unroll
            for (int k = 0; k < K; ++k) {
                if (offset[k] >= 0) target[offset[k] * pixel_stride] += weight[k] * g_c;
            }
        }
    }
}

extern "C" __global__ void grid_sample_backward_input_planes(const scalar_t* grad_out, const scalar_t* grid,
                                                             scalar_t* grad_inp, long long N, long long C, long long H,
                                                             long long W, long long H_out, long long W_out,
                                                             long long mode, long long padding_mode,
                                                             long long align_corners, long long channels_last) {
    if (mode == BILINEAR)
        backward_input_planes<BILINEAR>(grad_out, grid, grad_inp, N, C, H, W, H_out, W_out, padding_mode,
                                        align_corners != 0, channels_last != 0);
    else if (mode == NEAREST)
        backward_input_planes<NEAREST>(grad_out, grid, grad_inp, N, C, H, W, H_out, W_out, padding_mode,
                                       align_corners != 0, channels_last != 0);
    else
        backward_input_planes<BICUBIC>(grad_out, grid, grad_inp, N, C, H, W, H_out, W_out, padding_mode,
                                       align_corners != 0, channels_last != 0);
}
"""


@pytest.fixture(scope="module")
def planes_source(request):
    # A fixed path (in pytest's cache folder), so that the host shim's build cache serves later sessions.
    path = request.config.cache.mkdir("robustness") / "grid_sample_planes.cu"
    text = launcher.read_source("grid_sample.cu") + PLANES_KERNEL
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return str(path)


def planes_grad_input(source, grad_out, inp, grid, mode, padding_mode, align_corners, channels_last, target):
    xp = backend.get_array_module(inp)
    grad_inp = xp.zeros_like(inp)
    sizes = (inp.shape[3], inp.shape[1], inp.shape[2]) if channels_last else inp.shape[1:]
    n, (c, h, w) = inp.shape[0], sizes
    kernel = launcher.get_kernel(source, "grid_sample_backward_input_planes", inp.dtype, target)
    kernel(*launcher.launch_config(n * c), (grad_out, grid, grad_inp, *(np.int64(v) for v in (n, c, h, w,
                                                                                               *grid.shape[1:3])),
                                          np.int64(mode), np.int64(padding_mode), np.int64(align_corners),
                                          np.int64(channels_last)))
    return grad_inp


def atomic_grad_input(grad_out, inp, grid, mode, padding_mode, align_corners, channels_last, target):
    xp = backend.get_array_module(inp)
    grad_inp = xp.zeros_like(inp)
    cuda_grid_sample.grid_sample_backward(grad_out, inp, grid, grad_inp, None, mode, padding_mode, align_corners,
                                          channels_last, target)
    return grad_inp


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
def test_grid_sample_planes_gradient_is_right_and_bitwise_reproducible(host, planes_source, mode, padding_mode,
                                                                         align_corners, layout):
    reference = fuzz._load_test_module("grid_sample_reference.py")
    grad_out, inp, grid = gs_arrays(layout)
    options = (codes.MODES[mode], codes.PADDING_MODES[padding_mode], align_corners, layout == "NHWC")
    with host.parallel_blocks(4):
        runs = [planes_grad_input(planes_source, grad_out, inp, grid, *options, "cuda-host") for _ in range(REPEATS)]
        atomic = atomic_grad_input(grad_out, inp, grid, *options, "cuda-host")
    for grad in runs[1:]:
        np.testing.assert_array_equal(grad, runs[0])
    np.testing.assert_allclose(runs[0], atomic, rtol=1e-5, atol=1e-5)
    nchw = (lambda a: a.transpose(0, 3, 1, 2)) if layout == "NHWC" else (lambda a: a)
    expected, _ = reference.grid_sample_reference_backward(nchw(inp), grid, nchw(grad_out), mode, padding_mode,
                                                           align_corners)
    np.testing.assert_allclose(nchw(runs[0]), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize(("mode", "padding_mode", "align_corners", "layout"), GS_CASES)
def test_grid_sample_planes_gradient_on_the_gpu(planes_source, mode, padding_mode, align_corners, layout):
    cp = backend.cupy_module()
    grad_out, inp, grid = (cp.asarray(a) for a in gs_arrays(layout, seed=5))
    options = (codes.MODES[mode], codes.PADDING_MODES[padding_mode], align_corners, layout == "NHWC")
    runs = [cp.asnumpy(planes_grad_input(planes_source, grad_out, inp, grid, *options, "cupy"))
            for _ in range(REPEATS)]
    atomic = [cp.asnumpy(atomic_grad_input(grad_out, inp, grid, *options, "cupy")) for _ in range(REPEATS)]
    print(f"{mode}/{padding_mode}: atomic scatter gave {len({a.tobytes() for a in atomic})} distinct results "
          f"in {REPEATS} runs; the planes kernel {len({r.tobytes() for r in runs})}")
    for grad in runs[1:]:
        np.testing.assert_array_equal(grad, runs[0])
    np.testing.assert_allclose(runs[0], atomic[0], rtol=1e-5, atol=1e-5)


def test_prototype_kernel_passes_the_nvrtc_gate(planes_source):
    # The proposal must compile where the real kernels do: NVRTC with the launcher's options (float and double, as
    # tests/kernels checks the real files; about 2 s each).
    nvrtc = pytest.importorskip("scratchattn.kernels.cuda.nvrtc")
    reason = getattr(nvrtc, "unavailable_reason", lambda: None)()
    if reason:
        pytest.skip(f"NVRTC unavailable: {reason}")
    for dtype in (np.float32, np.float64):
        nvrtc.compile_to_ptx(launcher.read_source(planes_source), os.path.basename(planes_source),
                             launcher.options_for(dtype) + ("-arch=compute_90",))
