"""The CUDA launcher and the host shim, on the test-only kernels of ``_toy_kernels.cu``.

Checks that the very CUDA text runs on the CPU with the semantics of a GPU launch (index variables of 3-D grids,
grid-stride loops, atomicAdd under blocks running in parallel), that every call is checked against the kernel's C
signature, that builds are cached, and that compiler errors and out-of-bounds writes are reported clearly. The same
toy kernels run through CuPy in the ``gpu`` tests at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from scratchattn import backend
from scratchattn.kernels.cuda import launcher

TOY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_toy_kernels.cu")
FLOATS = [np.float32, np.float64]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _host_or_skip():
    from scratchattn.kernels.cuda import host

    reason = host.unavailable_reason()
    if reason is not None:
        pytest.skip(f"cuda-host kernel path unavailable: {reason}")
    return host


@pytest.fixture
def host():
    return _host_or_skip()


def toy(name, dtype, target="cuda-host"):
    return launcher.get_kernel(TOY, name, dtype, target)


# ---------------------------------------------------------------------------------------------------------------
# Results against NumPy
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("grid", [1, 3, 40])  # fewer threads than items: the grid-stride loop covers the rest
def test_grid_stride_copy_matches_numpy(host, dtype, grid):
    x = np.random.default_rng(0).standard_normal(1001).astype(dtype)
    out = np.full_like(x, np.nan)
    toy("toy_scale_copy", dtype)((grid,), (64,), (x, out, np.int64(x.size), dtype(0.25)))
    np.testing.assert_array_equal(out, 2 * x + dtype(0.25))


@pytest.mark.parametrize("dtype", FLOATS)
def test_empty_problem_launches_one_idle_block(host, dtype):
    x = np.zeros(0, dtype)
    grid, block = launcher.launch_config(0)
    assert grid == (1,)
    toy("toy_scale_copy", dtype)(grid, block, (x, x.copy(), np.int64(0), dtype(1)))


@pytest.mark.parametrize("threads", [1, 4])
@pytest.mark.parametrize("dtype", FLOATS)
def test_atomic_scatter_is_exact_with_blocks_in_parallel(host, dtype, threads):
    # Small integer values: every partial sum is exact in float32, so any lost update shows as a wrong total.
    rng = np.random.default_rng(1)
    n, bins = 200_000, 7
    index = rng.integers(0, bins, n).astype(np.int64)
    value = rng.integers(0, 4, n).astype(dtype)
    expected = np.zeros(bins, dtype)
    np.add.at(expected, index, value)
    out = np.zeros(bins, dtype)
    with host.parallel_blocks(threads):
        toy("toy_scatter_add", dtype)((64,), (256,), (index, value, out, np.int64(n)))
    np.testing.assert_array_equal(out, expected)


def test_plain_scatter_loses_updates_with_blocks_in_parallel(host):
    """The non-atomic twin: shows the parallel launch has the power to expose a missing atomicAdd.

    A race is a matter of timing, so this retries a few times and skips (saying so) if it never shows up here.
    """
    n = 400_000
    index = np.zeros(n, np.int64)  # every update hits the same bin: the worst case
    value = np.ones(n, np.float32)
    kernel = toy("toy_scatter_add_racy", np.float32)
    totals = []
    with host.parallel_blocks(4):
        for _ in range(10):
            out = np.zeros(1, np.float32)
            kernel((64,), (256,), (index, value, out, np.int64(n)))
            totals.append(float(out[0]))
            if out[0] < n:
                break
    assert all(t <= n for t in totals), totals  # updates can be lost, never invented
    if min(totals) == n:
        pytest.skip(f"the race did not reproduce in {len(totals)} parallel launches on this machine")


@pytest.mark.parametrize("threads", [1, 3])
def test_index_variables_of_a_3d_launch(host, threads):
    grid, block = (2, 3, 2), (4, 2, 3)
    n_blocks, n_threads = 2 * 3 * 2, 4 * 2 * 3
    block_id = np.full(n_blocks * n_threads, -1, np.int32)
    thread_id = np.full(n_blocks * n_threads, -1, np.int32)
    with host.parallel_blocks(threads):
        toy("toy_thread_ids", np.float32)(grid, block, (block_id, thread_id))
    # Linear ids as the kernel computes them: x fastest. Each (block, thread) pair must appear exactly once.
    np.testing.assert_array_equal(block_id, np.repeat(np.arange(n_blocks), n_threads))
    np.testing.assert_array_equal(thread_id, np.tile(np.arange(n_threads), n_blocks))


def test_every_scalar_type_reaches_the_kernel(host):
    out = np.zeros(1, np.float64)
    args = (out, np.int32(-3), np.uint32(4_000_000_000), np.int64(-(2**40)), np.uint64(2**50), np.float32(0.5),
            np.float64(0.125))
    toy("toy_scalar_types", np.float64)(1, 1, args)
    assert out[0] == -3 + 4_000_000_000 - 2**40 + 2**50 + 0.5 + 0.125


# ---------------------------------------------------------------------------------------------------------------
# Argument checks (a GPU would silently read garbage)
# ---------------------------------------------------------------------------------------------------------------


def _copy_args(dtype=np.float32, n=8):
    x = np.ones(n, dtype)
    return [x, np.zeros_like(x), np.int64(n), dtype(0)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a[:3], r"toy_scale_copy\(const scalar_t\* in, .*\) takes 4 arguments; got 3"),
        (lambda a: [a[0].astype(np.float64)] + a[1:], r"`const scalar_t\* in` must be an array of float32; got .*64"),
        (lambda a: [a[0], a[1].astype(np.int32)] + a[2:], r"`scalar_t\* out` must be an array of float32; got .*int32"),
        (lambda a: [list(a[0])] + a[1:], r"`const scalar_t\* in` must be a numpy.ndarray of float32; got list"),
        (lambda a: [np.ones(16, np.float32)[::2]] + a[1:], r"`const scalar_t\* in` must be C-contiguous"),
        (lambda a: a[:2] + [8, a[3]], r"`long long n` must be np.int64; got int"),
        (lambda a: a[:2] + [np.int32(8), a[3]], r"`long long n` must be np.int64; got np.int32"),
        (lambda a: a[:3] + [0.0], r"`scalar_t shift` must be np.float32; got float"),
        (lambda a: a[:3] + [np.float64(0)], r"`scalar_t shift` must be np.float32; got np.float64"),
    ],
)
def test_wrong_arguments_raise_type_error_naming_the_parameter(host, change, message):
    with pytest.raises(TypeError, match=message):
        toy("toy_scale_copy", np.float32)(1, 32, tuple(change(_copy_args())))


def test_read_only_output_is_refused_but_read_only_input_is_fine(host):
    args = _copy_args()
    args[0].flags.writeable = False
    toy("toy_scale_copy", np.float32)(1, 32, tuple(args))  # `const scalar_t* in`: reading is all the kernel does
    args[1].flags.writeable = False
    with pytest.raises(TypeError, match=r"`scalar_t\* out` is written by the kernel; got a read-only array"):
        toy("toy_scale_copy", np.float32)(1, 32, tuple(args))


@pytest.mark.parametrize(
    ("grid", "block", "message"),
    [
        (0, 32, "grid must be a positive int"),
        ((1, 1, 1, 1), 32, "grid must be a positive int or a tuple of 1 to 3"),
        (1, (32, 64), r"block \(32, 64, 1\) exceeds CUDA's limits"),
        (1, (1, 1, 65), r"block \(1, 1, 65\) exceeds"),
        ((1, 70000), 32, r"grid \(1, 70000, 1\) exceeds"),
    ],
)
def test_launch_shapes_a_gpu_would_refuse_are_refused(host, grid, block, message):
    with pytest.raises(ValueError, match=message):
        toy("toy_scale_copy", np.float32)(grid, block, tuple(_copy_args()))


def test_shared_memory_argument_is_not_implemented(host):
    with pytest.raises(NotImplementedError, match="no shared memory"):
        toy("toy_scale_copy", np.float32)(1, 32, tuple(_copy_args()), shared_mem=128)


def test_unknown_kernel_target_and_dtype(host):
    with pytest.raises(ValueError, match=r"has no kernel 'toy_nothing'; it has \['toy_scalar_types'"):
        toy("toy_nothing", np.float32)
    with pytest.raises(ValueError, match="target must be one of"):
        launcher.get_kernel(TOY, "toy_scale_copy", np.float32, "gpu")
    with pytest.raises(TypeError, match="dtype must be float32 or float64; got float16"):
        launcher.get_kernel(TOY, "toy_scale_copy", np.float16, "cuda-host")


def test_threads_setting_is_validated(host, monkeypatch):
    monkeypatch.setenv("SCRATCHATTN_HOST_THREADS", "many")
    with pytest.raises(ValueError, match="SCRATCHATTN_HOST_THREADS must be a positive integer; got 'many'"):
        toy("toy_scale_copy", np.float32)(1, 32, tuple(_copy_args()))
    with pytest.raises(ValueError, match="threads must be a positive int"):
        with host.parallel_blocks(0):
            pass


# ---------------------------------------------------------------------------------------------------------------
# Build cache and compiler messages
# ---------------------------------------------------------------------------------------------------------------


def test_kernels_are_cached_in_process_and_on_disk(host):
    first = toy("toy_scale_copy", np.float64)
    assert toy("toy_scale_copy", np.float64) is first  # same object: no work at all on the second call
    runs = host.compiler_runs
    launcher.clear_cache()
    again = toy("toy_scale_copy", np.float64)  # a new process would do this: load the library from the disk cache
    assert again is not first
    assert host.compiler_runs == runs, "the on-disk cache was not used"
    x = np.arange(5.0)
    out = np.zeros(5)
    again(1, 32, (x, out, np.int64(5), np.float64(1)))
    np.testing.assert_array_equal(out, 2 * x + 1)


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_a_fresh_cache_builds_once_per_dtype(host, tmp_path, monkeypatch):
    monkeypatch.setenv("SCRATCHATTN_CACHE", str(tmp_path / "cache"))
    source = _write(tmp_path, "tiny.cu", """\
        extern "C" __global__ void tiny_fill(scalar_t* out, scalar_t value) { out[threadIdx.x] = value; }
        """)
    runs = host.compiler_runs
    out = np.zeros(4, np.float32)
    launcher.get_kernel(source, "tiny_fill", np.float32, "cuda-host")(1, 4, (out, np.float32(2.5)))
    np.testing.assert_array_equal(out, 2.5)
    assert host.compiler_runs == runs + 1
    assert [p.suffix for p in sorted((tmp_path / "cache" / "cuda-host").iterdir())] == [".cpp", ".so"]


_BUILD_SCRIPT = """
import numpy as np
from scratchattn.kernels.cuda import host, launcher
out = np.zeros(4, np.float64)
launcher.get_kernel({source!r}, "tiny_fill", np.float64, "cuda-host")(1, 4, (out, np.float64(1.5)))
print(out.sum(), host.compiler_runs)
"""


def test_two_processes_building_at_once_both_get_a_whole_library(host, tmp_path):
    source = _write(tmp_path, "tiny.cu", """\
        extern "C" __global__ void tiny_fill(scalar_t* out, scalar_t value) { out[threadIdx.x] = value; }
        """)
    env = dict(os.environ, SCRATCHATTN_CACHE=str(tmp_path / "cache"), PYTHONPATH=REPO)
    script = _BUILD_SCRIPT.format(source=source)
    processes = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in processes]
    for stdout, stderr, returncode in results:
        assert returncode == 0, stderr
        assert stdout.split()[0] == "6.0"
    # Both may have compiled (neither saw the other's library yet); what matters is one whole library and no debris.
    names = sorted(p.name for p in (tmp_path / "cache" / "cuda-host").iterdir())
    assert [os.path.splitext(n)[1] for n in names] == [".cpp", ".so"], names


def test_compile_error_shows_the_compiler_message_with_file_and_line(host, tmp_path, monkeypatch):
    monkeypatch.setenv("SCRATCHATTN_CACHE", str(tmp_path / "cache"))
    source = _write(tmp_path, "broken.cu", """\
        extern "C" __global__ void broken(scalar_t* out) {
            out[0] = undefined_name;
        }
        """)
    with pytest.raises(host.HostCompileError, match=r"(?s)broken\.cu:2:\d+: error: .*undefined_name"):
        launcher.get_kernel(source, "broken", np.float32, "cuda-host")


def test_syncthreads_is_refused_with_a_reason(host, tmp_path, monkeypatch):
    monkeypatch.setenv("SCRATCHATTN_CACHE", str(tmp_path / "cache"))
    source = _write(tmp_path, "sync.cu", """\
        extern "C" __global__ void sync(scalar_t* out) {
            out[threadIdx.x] = 1;
            __syncthreads();
        }
        """)
    with pytest.raises(host.HostCompileError, match="__syncthreads is not supported"):
        launcher.get_kernel(source, "sync", np.float64, "cuda-host")


# ---------------------------------------------------------------------------------------------------------------
# Signature parsing and launch shapes (no compiler needed)
# ---------------------------------------------------------------------------------------------------------------


def test_parse_kernels_reads_extern_c_signatures():
    source = """
    // extern "C" __global__ void in_a_comment(int x) {}
    extern "C" __global__ void declared_first(float* a);
    __device__ float helper(float v) { return v; }
    extern "C" __global__ void __launch_bounds__(256) k(const scalar_t* __restrict__ in, long long n,
                                                        unsigned int* counts, const double s) { }
    extern "C" __global__ void declared_first(float* a) { }
    extern "C" __global__ void no_args() { }
    """
    kernels = launcher.parse_kernels(source)
    assert list(kernels) == ["k", "declared_first", "no_args"]
    assert [p.declaration() for p in kernels["k"]] == [
        "const scalar_t* in", "long long n", "unsigned int* counts", "double s"]
    assert kernels["k"][0].dtype(np.float64) == np.float64
    assert kernels["no_args"] == ()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("__global__ void k(float* a) {}", r'kernel k must be declared `extern "C" __global__'),
        ('extern "C" __global__ void k(size_t n) {}', "parameter `n` has type `size_t`"),
        ('extern "C" __global__ void k(float** a) {}', r"parameter 0 `float\*\* a` is not supported"),
        ('\n\nextern "C" __global__ int k() {}', r"<source>:3: cannot read this kernel signature"),
    ],
)
def test_parse_kernels_rejects_what_the_launcher_cannot_call(source, message):
    with pytest.raises(ValueError, match=message):
        launcher.parse_kernels(source)


def test_launch_config_covers_the_problem_and_caps_the_grid():
    assert launcher.launch_config(1) == ((1,), (256,))
    assert launcher.launch_config(257) == ((2,), (256,))
    assert launcher.launch_config(10**12) == ((launcher.MAX_GRID,), (256,))
    assert launcher.launch_config(1000, block=128) == ((8,), (128,))
    with pytest.raises(ValueError, match="total_threads must be >= 0"):
        launcher.launch_config(-1)
    with pytest.raises(ValueError, match="block must be between 1 and 1024 threads"):
        launcher.launch_config(10, block=2048)


# ---------------------------------------------------------------------------------------------------------------
# AddressSanitizer build
# ---------------------------------------------------------------------------------------------------------------

_ASAN_SCRIPT = """
import numpy as np
from scratchattn.kernels.cuda import launcher
toy = {toy!r}
x = np.ones(1000, np.float32)
out = np.zeros_like(x)
launcher.get_kernel(toy, "toy_scale_copy", np.float32, "cuda-host")(4, 64, (x, out, np.int64(1000), np.float32(0)))
print("in-bounds kernel ran clean", flush=True)
launcher.get_kernel(toy, "toy_write_past_end", np.float32, "cuda-host")(1, 1, (out, np.int64(1000)))
print("out-of-bounds write went unnoticed", flush=True)
"""


def test_address_sanitizer_build_catches_an_out_of_bounds_write(host):
    runtime = host.sanitizer_runtime("address")
    if runtime is None:
        pytest.skip("the C++ compiler has no AddressSanitizer runtime (libasan.so)")
    env = dict(os.environ, SCRATCHATTN_HOST_SANITIZE="address", LD_PRELOAD=runtime, PYTHONPATH=REPO,
               ASAN_OPTIONS="detect_leaks=0")  # the interpreter itself keeps memory alive until exit
    result = subprocess.run([sys.executable, "-c", _ASAN_SCRIPT.format(toy=TOY)], env=env, capture_output=True,
                            text=True, timeout=120)
    assert "in-bounds kernel ran clean" in result.stdout, result.stderr[-3000:]
    assert "out-of-bounds write went unnoticed" not in result.stdout
    assert result.returncode != 0
    assert "heap-buffer-overflow" in result.stderr and "WRITE of size 4" in result.stderr, result.stderr[-3000:]


# ---------------------------------------------------------------------------------------------------------------
# The same toy kernels through CuPy on a GPU
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", FLOATS)
def test_toy_kernels_on_the_gpu_match_numpy(dtype):
    cp = backend.cupy_module()
    rng = np.random.default_rng(2)
    x = rng.standard_normal(100_001).astype(dtype)
    out = cp.zeros(x.size, dtype)
    grid, block = launcher.launch_config(x.size)
    toy("toy_scale_copy", dtype, "cupy")(grid, block, (cp.asarray(x), out, np.int64(x.size), dtype(0.25)))
    np.testing.assert_array_equal(cp.asnumpy(out), 2 * x + dtype(0.25))

    index = rng.integers(0, 7, 200_000).astype(np.int64)
    value = rng.integers(0, 4, 200_000).astype(dtype)
    expected = np.zeros(7, dtype)
    np.add.at(expected, index, value)
    bins = cp.zeros(7, dtype)
    toy("toy_scatter_add", dtype, "cupy")(grid, block, (cp.asarray(index), cp.asarray(value), bins, np.int64(200_000)))
    np.testing.assert_array_equal(cp.asnumpy(bins), expected)

    with pytest.raises(TypeError, match="`long long n` must be np.int64; got int"):
        toy("toy_scale_copy", dtype, "cupy")(grid, block, (cp.asarray(x), out, x.size, dtype(0.25)))
