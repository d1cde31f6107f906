"""Index arithmetic is 64-bit: the kernels address arrays of more than 2^31 elements correctly.

Two kinds of proof, neither needing 8 GB of memory:

* Static: the CUDA kernel files use no 32-bit integer type for anything but counting the taps of one output pixel
  (at most 16; indices, sizes, offsets and the other loop counters are ``long long``), and every integer parameter
  of every kernel is ``long long``, which the launcher only accepts as ``np.int64`` (``launcher.check_args``), so a
  size can never be truncated on its way in. The Numba kernels name no 32-bit integer type in their code (Numba's
  own indices are 64-bit ``intp``).
* Dynamic: kernels that only *read* a big array (squeeze-excitation's squeeze, the affine grid's backward; one per
  CUDA file, on the host shim), and grid sampling forward and backward (which touch only the taps; both paths),
  run on arrays of 2^31 + a few thousand float32 elements, which live in a lazily mapped, never-written zero region
  (``lazy_zeros``: an anonymous ``MAP_NORESERVE`` mapping; untouched pages all share the kernel's zero page, so the
  8.6 GB cost no memory). Values planted beyond element 2^31 must come out in the right output element: with 32-bit
  offsets they would be read from the wrong place (or far out of bounds, a crash: so each runs in its own process),
  and ``test_a_32_bit_offset_is_caught`` shows that a kernel with such an offset fails the check. A full read of
  8.6 GB takes a few seconds, so the kernels that *write* the whole big array (which would need the memory) and the
  other Numba kernels rely on the static checks; on a GPU, ``test_whole_ops_past_2_31_elements_on_the_gpu`` runs
  whole ops on real arrays.
"""

from __future__ import annotations

import glob
import importlib
import mmap
import os
import re
import subprocess
import sys
import tokenize

import numpy as np
import pytest

from scratchattn.kernels.cuda import launcher

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIG = 2**31
CU_FILES = sorted(glob.glob(os.path.join(launcher.KERNEL_DIR, "*.cu")))
CPU_FILES = sorted(glob.glob(os.path.join(os.path.dirname(launcher.KERNEL_DIR), "cpu", "*.py")))

# =================================================================================================================
# static: no 32-bit integer types in the kernels, 64-bit size parameters
# =================================================================================================================

_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
# A 32-bit (or narrower) integer type: int, unsigned (int), short, char, (u)int32_t ... but not "long long" or
# "unsigned long long" (the words after "unsigned" are checked by the look-ahead).
_NARROW_INT = re.compile(r"\b(?:int|short|char|u?int(?:8|16|32)_t)\b|\bunsigned\b(?!\s+long\s+long)")


# 32-bit ints are allowed for one thing only: counting the interpolation taps of one output pixel (at most 16, the
# bicubic 4 x 4), as the loop counters i, j, k and the count K, the compile-time sampling mode MODE (a template
# parameter), and as the return value of functions that fill tap tables (`*_tap`, `*_taps`). They never enter an
# offset into a big array: the offsets are long long.
SMALL_COUNTERS = {"i", "j", "k", "K", "MODE"}
_DECLARED = re.compile(r"\b(?:int|short|char|u?int(?:8|16|32)_t|unsigned(?:\s+int)?)\s+(\w+)")


def narrow_integer_uses(source: str) -> list[str]:
    """Each line of ``source`` (comments removed) that names a 32-bit or narrower integer type for anything but a
    tap counter (``SMALL_COUNTERS``) or a function returning a tap count."""
    code = _COMMENTS.sub(lambda m: "\n" * m.group().count("\n"), source)
    found = []
    for number, line in enumerate(code.splitlines(), 1):
        # "long long int" is a 64-bit type spelled with "int": drop it before looking.
        stripped = re.sub(r"\blong\s+long\s+int\b", "long long", line)
        if not _NARROW_INT.search(stripped):
            continue
        names = _DECLARED.findall(stripped)
        allowed = names and all(n in SMALL_COUNTERS or re.fullmatch(r"\w+_taps?", n) for n in names)
        if not allowed or len(names) != len(_NARROW_INT.findall(stripped)):
            found.append(f"{number}: {line.strip()}")
    return found


def test_the_narrow_integer_scan_finds_what_it_should():
    source = """
    // int in a comment is fine
    long long i = 0; unsigned long long j = 1; long long int k = 2;
    int bad = 0;
    for (unsigned u = 0; u < n; ++u) {}
    const int32_t c = 1; unsigned int d = 2;
    for (int k = 0; k < K; ++k) {}
    __device__ inline int bilinear_taps(scalar_t gx, long long* offset) {
    const int offset = (int)(plane * hw);
    """
    assert narrow_integer_uses(source) == ["4: int bad = 0;", "5: for (unsigned u = 0; u < n; ++u) {}",
                                           "6: const int32_t c = 1; unsigned int d = 2;",
                                           "9: const int offset = (int)(plane * hw);"]


def test_there_are_kernel_files_to_check():
    names = {os.path.basename(p) for p in CU_FILES}
    assert {"affine_grid.cu", "squeeze_excitation.cu", "grid_sample.cu"} <= names, names
    assert {"affine_grid.py", "squeeze_excitation.py", "grid_sample.py"} <= {os.path.basename(p) for p in CPU_FILES}


@pytest.mark.parametrize("path", CU_FILES, ids=os.path.basename)
def test_cuda_kernels_use_no_32_bit_integers(path):
    source = launcher.read_source(path)
    uses = narrow_integer_uses(source)
    assert not uses, f"{os.path.basename(path)} uses 32-bit integer types (indices must be long long):\n" + \
        "\n".join(uses)


@pytest.mark.parametrize("path", CU_FILES, ids=os.path.basename)
def test_every_integer_kernel_parameter_is_64_bit(path):
    kernels = launcher.parse_kernels(launcher.read_source(path), os.path.basename(path))
    assert kernels, f"no kernels found in {path}"
    for name, params in kernels.items():
        for p in params:
            dtype = p.dtype(np.float32)
            if dtype.kind in "iu":
                assert dtype.itemsize == 8, f"{name}: parameter `{p.declaration()}` is {dtype}, not 64-bit"


@pytest.mark.parametrize("path", CPU_FILES, ids=os.path.basename)
def test_numba_kernels_name_no_32_bit_integer_type(path):
    with open(path, encoding="utf-8") as f:
        tokens = list(tokenize.generate_tokens(f.readline))
    narrow = [f"{t.start[0]}: {t.line.strip()}" for t in tokens  # code only: comments and strings are skipped
              if t.type == tokenize.NAME and re.fullmatch(r"u?int(?:8|16|32)|intc|uintc", t.string)]
    assert not narrow, f"{os.path.basename(path)} names a 32-bit integer type:\n" + "\n".join(narrow)


def test_the_launcher_refuses_a_size_that_is_not_int64():
    # The only way into a `long long` parameter is an np.int64: a Python int or an np.int32 is refused, so no size
    # is silently narrowed between the launcher and the kernel.
    params = launcher.parse_kernels('extern "C" __global__ void k(scalar_t* a, long long n) {}')["k"]
    a = np.zeros(1, np.float32)
    launcher.check_args("k", params, np.float32, (a, np.int64(2**40)), np.ndarray, "numpy.ndarray")
    for bad in (2**40, np.int32(5), np.uint64(5)):
        with pytest.raises(TypeError, match="`long long n` must be np.int64"):
            launcher.check_args("k", params, np.float32, (a, bad), np.ndarray, "numpy.ndarray")


# =================================================================================================================
# dynamic: the read-only kernels on more than 2^31 elements
# =================================================================================================================

_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform.startswith("linux") else 0)
SKIP_STATUS = 77  # a body that cannot run here exits with this status and says why on stdout


def lazy_zeros(shape, dtype=np.float32) -> np.ndarray:
    """A writable C-contiguous zero array whose pages take memory only once written.

    On Linux an anonymous private mapping with MAP_NORESERVE: the kernel reserves no memory for it, and reads of
    untouched pages map the shared zero page. Elsewhere ``np.zeros`` (calloc), which is lazy on most systems too.
    """
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    try:
        if _MAP_NORESERVE and hasattr(mmap, "MAP_ANONYMOUS"):
            region = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE)
            return np.frombuffer(region, dtype=dtype).reshape(shape)
        return np.zeros(shape, dtype)
    except (OSError, MemoryError, ValueError) as exc:
        print(f"cannot map {nbytes / 2**30:.1f} GiB of address space here ({exc}); the static checks still hold")
        sys.exit(SKIP_STATUS)


def run_kernel(path: str, module: str, name: str, *arrays):
    kind = "cpu" if path == "numba" else "cuda"
    kernels = importlib.import_module(f"scratchattn.kernels.{kind}.{module}")
    return getattr(kernels, name)(*arrays) if path == "numba" else getattr(kernels, name)(*arrays, target=path)


def run_isolated(body: str, path: str):
    """Run ``body(path)`` of this module in a fresh process: a kernel that indexes with 32 bits reads far outside
    the array, and that crash must fail this test, not end the test session."""
    if path == "cuda-host":
        try:
            from scratchattn.kernels.cuda import host

            reason = host.unavailable_reason()
        except ImportError as exc:
            reason = f"the CUDA host shim is not importable: {exc}"
        if reason is not None:
            pytest.skip(f"cuda-host kernel path unavailable: {reason}")
    script = f"import sys; sys.path[:0] = [{HERE!r}]; import test_index_width as t; t.{body}({path!r})"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", "")))
    if result.returncode == SKIP_STATUS:
        pytest.skip(result.stdout.strip())
    assert result.returncode == 0, (f"{body}({path!r}) failed with exit status {result.returncode}"
                                    f"{' (killed by a signal: a crash)' if result.returncode < 0 else ''}:\n"
                                    f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}")


def se_squeeze_nchw_body(path):
    # (N, C, HW) with the last planes beyond element 2^31: the offset plane * hw + p passes 32 bits there.
    n, c, hw = 2**21 + 1, 1, 1024
    x = lazy_zeros((n, c, hw))
    assert x.size > BIG
    x[n - 1, 0, 1000] = 7.0  # element 2^31 + 1000
    x[n - 2, 0, 3] = -2.0  # element 2^31 - 1021: just below the line
    z = np.full((n, c), np.nan, np.float32)
    run_kernel(path, "squeeze_excitation", "se_squeeze_nchw", x, z)
    assert z[n - 1, 0] * hw == 7.0 and z[n - 2, 0] * hw == -2.0, (z[n - 1], z[n - 2])
    assert np.count_nonzero(z) == 2, np.flatnonzero(z)[:10]


def affine_grid_backward_body(path):
    # grad_grid (N, H, W, 2): the offset row * w * 2 + j * 2 + k passes 2^31 in the last rows.
    n, h, w = 1, 2**20 + 1, 1024
    grad_grid = lazy_zeros((n, h, w, 2))
    assert grad_grid.size > BIG
    grad_grid[0, h - 1, w - 1, 1] = 2.0  # the very last element, 2^31 + 2047
    grad_grid[0, h - 1, 3, 0] = 5.0  # element 2^31 + 1030
    grad_grid[0, 0, 1, 1] = 1.0
    xs = np.linspace(-1, 1, w).astype(np.float32)
    ys = np.linspace(-1, 1, h).astype(np.float32)
    grad_theta = np.full((n, 2, 3), np.nan, np.float32)
    run_kernel(path, "affine_grid", "affine_grid_backward", grad_grid, xs, ys, grad_theta)
    # d theta[k] = sum over points of g_k * (x_j, y_i, 1)
    expected = [[5 * xs[3], 5 * ys[h - 1], 5], [2 * xs[w - 1] + xs[1], 2 * ys[h - 1] + ys[0], 3]]
    np.testing.assert_allclose(grad_theta[0], expected, rtol=1e-6)


def grid_sample_body(path):
    # input (1, 1, H, W) with H * W > 2^31: sampling touches only the taps, so both paths run in milliseconds.
    # align_corners=True puts -1 and +1 exactly on the first and last pixel centres, which float32 represents.
    from scratchattn.kernels.cpu import grid_sample as codes

    h, w = 2**16 + 1, 2**15
    inp = lazy_zeros((1, 1, h, w))
    assert inp.size > BIG
    inp[0, 0, h - 1, w - 1] = 5.0  # the last element, 2^31 + 2^15 - 1
    inp[0, 0, h - 1, 0] = 3.0  # element 2^31
    inp[0, 0, h - 2, w - 1] = 2.0  # element 2^31 - 1
    grid = np.array([[[[1, 1], [-1, 1], [1, 1 - 2 / (h - 1)]]]], np.float32)
    for mode in ("nearest", "bilinear"):
        out = np.full((1, 1, 1, 3), np.nan, np.float32)
        run_kernel(path, "grid_sample", "grid_sample_forward", inp, grid, out, codes.MODES[mode], codes.ZEROS, True,
                   False)
        np.testing.assert_array_equal(out.ravel(), [5.0, 3.0, 2.0], err_msg=mode)
    # backward: the scatter writes grad_inp at the same far taps; nothing else may change
    grad_inp = lazy_zeros((1, 1, h, w))
    grad_grid = np.full(grid.shape, np.nan, np.float32)
    grad_out = np.array([[[[1.0, 10.0, 100.0]]]], np.float32)
    run_kernel(path, "grid_sample", "grid_sample_backward", grad_out, inp, grid, grad_inp, grad_grid,
               codes.NEAREST, codes.ZEROS, True, False)
    assert (grad_inp[0, 0, h - 1, w - 1], grad_inp[0, 0, h - 1, 0], grad_inp[0, 0, h - 2, w - 1]) == (1, 10, 100)
    assert np.count_nonzero(grad_inp[0, 0, h - 3:]) == 3 and np.count_nonzero(grad_inp[0, 0, :8]) == 0
    np.testing.assert_array_equal(grad_grid, 0)  # nearest: no gradient for the grid


@pytest.mark.parametrize("path", ["numba", "cuda-host"])
def test_grid_sample_past_2_31_elements(path):
    run_isolated("grid_sample_body", path)


@pytest.mark.parametrize("path", ["cuda-host"])
def test_se_squeeze_nchw_past_2_31_elements(path):
    run_isolated("se_squeeze_nchw_body", path)


@pytest.mark.parametrize("path", ["cuda-host"])
def test_affine_grid_backward_past_2_31_elements(path):
    run_isolated("affine_grid_backward_body", path)


MUTANT = """
extern "C" __global__ void squeeze_32(const scalar_t* x, scalar_t* z, long long n_batch, long long hw) {
    for (long long plane = blockIdx.x * (long long)blockDim.x + threadIdx.x; plane < n_batch;
         plane += (long long)blockDim.x * gridDim.x) {
        const scalar_t* plane_x = x + (int)(plane * hw);  // the bug this file guards against: a 32-bit offset
        scalar_t acc = 0;
        for (long long p = 0; p < hw; ++p) acc += plane_x[p];
        z[plane] = acc / (scalar_t)hw;
    }
}
"""


def mutant_body(path):
    from scratchattn.kernels.cuda import launcher as kernel_launcher

    source = os.path.join(os.environ["MUTANT_DIR"], "squeeze_32.cu")
    n, hw = 2**21 + 1, 1024
    x = lazy_zeros((n, 1, hw))
    x[n - 1, 0, 1000] = 7.0
    z = np.zeros(n, np.float32)
    kernel = kernel_launcher.get_kernel(source, "squeeze_32", np.float32, path)
    kernel(*kernel_launcher.launch_config(n), (x, z, np.int64(n), np.int64(hw)))
    assert z[n - 1] * hw == 7.0, f"the planted value was lost: z[-1] * hw = {z[n - 1] * hw}"


def test_a_32_bit_offset_is_caught(tmp_path, monkeypatch):
    # The same check on a kernel with the bug: it must fail (here by reading far before the array and crashing).
    (tmp_path / "squeeze_32.cu").write_text(MUTANT)
    monkeypatch.setenv("MUTANT_DIR", str(tmp_path))
    with pytest.raises(AssertionError, match="mutant_body.*failed with exit status"):
        run_isolated("mutant_body", "cuda-host")


# =================================================================================================================
# on a GPU: the whole ops, forward and backward, on real arrays of more than 2^31 elements
# =================================================================================================================


@pytest.mark.gpu
def test_whole_ops_past_2_31_elements_on_the_gpu():
    """On a GPU the big arrays are real (8.6 GB each), so the kernels that write them are checked too."""
    import scratchattn as sa
    from scratchattn import backend
    from scratchattn import functional as F

    cp = backend.cupy_module()
    if cp.cuda.Device().mem_info[0] < 48 * 2**30:
        pytest.skip("needs 48 GiB of free GPU memory")

    # affine_grid: grid (1, H, W, 2) with H * W * 2 > 2^31; the last point is theta @ (x_last, y_last, 1).
    h, w = 2**15 + 1, 2**15
    theta = sa.tensor(cp.asarray([[[0.5, 0.25, 0.125], [-0.25, 0.5, 0.0625]]], dtype=cp.float32), requires_grad=True)
    grid = F.affine_grid(theta, (1, 1, h, w), align_corners=True)
    assert grid.size > BIG
    last = cp.asnumpy(grid.data[0, h - 1, w - 1])
    np.testing.assert_allclose(last, [0.5 + 0.25 + 0.125, -0.25 + 0.5 + 0.0625], rtol=1e-6)
    g = cp.zeros(grid.shape, cp.float32)
    g[0, h - 1, w - 1, 0] = 1.0  # only the last point pulls: d theta[0] = (x, y, 1) = (1, 1, 1)
    grid.backward(g)
    np.testing.assert_allclose(cp.asnumpy(theta.grad[0]), [[1, 1, 1], [0, 0, 0]], atol=1e-6)
    del grid, g, theta

    # squeeze_excitation: x (N, C, H, W) with N*C*H*W > 2^31; a sample beyond 2^31 gets its own gate.
    n, c, hw = 2**11 + 1, 16, 2**16  # 2^31 + 2^20 elements
    x = cp.zeros((n, c, 256, 256), cp.float32)
    x[n - 1, 3] = 2.0
    w1 = cp.ones((1, c), cp.float32)
    w2 = cp.ones((c, 1), cp.float32)
    xt = sa.tensor(x, requires_grad=True)
    y = F.squeeze_excitation(xt, w1, None, w2, None)
    gate = 1 / (1 + np.exp(-(2.0 * 1.0)))  # z = 2 in channel 3 of the last sample, 0 elsewhere: a1 = 2, a2 = 2
    np.testing.assert_allclose(float(y.data[n - 1, 3, 255, 255]), 2.0 * gate, rtol=1e-5)
    np.testing.assert_allclose(float(y.data[n - 2, 3, 0, 0]), 0.0)
    y.backward(cp.ones(y.shape, cp.float32))
    # With g = 1: ds = sum_p x = 2 HW in channel 3 of the last sample, so dz = 2 HW s (1 - s) for every channel
    # there and dx = s + 2 s (1 - s); in the other samples a1 = 0 stops the excitation's gradient: dx = s = 1/2.
    np.testing.assert_allclose(float(xt.grad[n - 1, 0, 255, 255]), gate + 2 * gate * (1 - gate), rtol=1e-4)
    np.testing.assert_allclose(float(xt.grad[n - 1, 3, 0, 0]), gate + 2 * gate * (1 - gate), rtol=1e-4)
    np.testing.assert_allclose(float(xt.grad[n - 2, 3, 0, 0]), 0.5, rtol=1e-6)
    assert x.size > BIG and hw == 256 * 256
