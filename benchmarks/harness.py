"""Timing machinery of the benchmarks: interleaved medians, thread settings, copy bandwidth, the machine's description.

The rule every number here follows: the things being compared run **side by side in one process**, interleaved
round by round (scratchattn, PyTorch, the primitive twin, scratchattn, PyTorch, ...), after a warm-up that includes
the first-call compilation, and each is summarised by the **median** of its samples. Interleaving matters on a
shared machine: a neighbour that steals a core for a second slows every variant of that round alike, so the ratios
stay meaningful even when the absolute times drift (PyTorch's own time varies up to 6x between runs there).

A *sample* is ``number`` back-to-back calls divided by ``number``, with ``number`` chosen after the warm-up so that
one sample lasts at least ``min_sample_s``: short calls are then not measured at the resolution of the clock or
drowned by the cost of the synchronisation that ends a GPU sample. Garbage collection is switched off while timing
(the autograd graphs of both libraries are freed by reference counting anyway).

The memory-bandwidth floor of an op is the time to move the bytes it must move (inputs read once, outputs written
once) at the speed of a large array copy measured in the same run: :func:`copy_bandwidth`.
"""

from __future__ import annotations

import datetime
import gc
import math
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from numba import njit, prange

# =================================================================================================================
# timing
# =================================================================================================================


@dataclass
class Timing:
    """Summary of one variant's samples, in seconds per call."""

    median: float
    q1: float  # first and third quartiles: the spread a reader should trust the median to
    q3: float
    minimum: float
    samples: int  # how many samples (rounds) were taken
    number: int  # calls per sample

    def to_dict(self) -> dict:
        return asdict(self)


def quartiles(values) -> tuple[float, float, float]:
    """(q1, median, q3) of ``values`` (the 'inclusive' method: fine for the 3 to 100 samples taken here)."""
    values = sorted(values)
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def time_interleaved(variants: dict[str, Callable[[], object]], *, sync: Callable[[], None] | None = None,
                     warmup: int = 2, rounds: int = 30, min_rounds: int = 5, budget_s: float = 2.0,
                     min_sample_s: float = 2e-3) -> dict[str, Timing]:
    """Time each callable of ``variants`` (name -> zero-argument function), interleaved, and summarise each.

    Args:
        variants: the competitors; each call must do the whole work being measured (and leave no state that
            makes the next call cheaper or dearer).
        sync: called after each sample's calls (e.g. a device synchronisation on a GPU) and included in the time.
        warmup: untimed calls of each variant first (the first one compiles kernels and fills caches).
        rounds: the most samples of each variant; fewer when ``budget_s`` runs out, but never fewer than
            ``min_rounds``.
        budget_s: wall-clock budget of the timed rounds (all variants together).
        min_sample_s: a sample repeats the call ``number`` times so that it lasts at least this long.

    The variants take turns inside a round, and the order rotates from round to round so that no variant always
    runs right after the same neighbour (a cold cache or a freshly freed pool would otherwise favour one).
    """
    sync = sync or (lambda: None)
    names = list(variants)
    # Warm up, then calibrate: the fastest of the warm calls (all but the first, which may compile) and one more
    # call sets each variant's number of calls per sample.
    number = {}
    for name in names:
        warm_times = []
        for k in range(warmup + 1):
            start = time.perf_counter()
            variants[name]()
            sync()
            if k > 0:
                warm_times.append(time.perf_counter() - start)
        single = max(min(warm_times), 1e-7)
        number[name] = max(1, math.ceil(min_sample_s / single))

    samples: dict[str, list[float]] = {name: [] for name in names}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        for r in range(rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for name in order:
                fn, count = variants[name], number[name]
                t0 = time.perf_counter()
                for _ in range(count):
                    fn()
                sync()
                samples[name].append((time.perf_counter() - t0) / count)
            if r + 1 >= min_rounds and time.perf_counter() - started > budget_s:
                break
    finally:
        if gc_was_enabled:
            gc.enable()

    result = {}
    for name in names:
        q1, median, q3 = quartiles(samples[name])
        result[name] = Timing(median=median, q1=q1, q3=q3, minimum=min(samples[name]),
                              samples=len(samples[name]), number=number[name])
    return result


# =================================================================================================================
# threads
# =================================================================================================================


def configure_threads(threads: int, torch=None, threading_layer: str | None = None,
                      blas_threads: int | None = None) -> dict:
    """Give Numba and PyTorch the same number of threads; return what was set, for the report.

    ``threading_layer`` ("omp", "tbb", "workqueue" or None for Numba's default choice) must be chosen before the
    first parallel kernel runs; Numba reports the layer it actually picked only after that, see
    :func:`numba_threading_layer`. ``blas_threads`` (default ``threads``) is NumPy's BLAS thread count.
    """
    import numba

    if threading_layer:
        numba.config.THREADING_LAYER = threading_layer
    if not 1 <= threads <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"--threads must be between 1 and NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS} "
                         f"(set that environment variable for more); got {threads}")
    numba.set_num_threads(threads)
    info = {"threads": threads, "numba_threads": numba.get_num_threads(),
            "numba_threading_layer_requested": threading_layer or "default"}
    if torch is not None:
        torch.set_num_threads(threads)
        info["torch_threads"] = torch.get_num_threads()
    # NumPy's BLAS (behind scratchattn's matmul, conv2d and attention) gets the same count, through threadpoolctl
    # when it is installed (it comes with scikit-learn); otherwise its default (all cores) is reported as unknown.
    try:
        import threadpoolctl
    except ImportError:
        info["blas_threads"] = None
    else:
        global _blas_limits
        _blas_limits = threadpoolctl.threadpool_limits(blas_threads or threads, user_api="blas")
        pools = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
        info["blas_threads"] = {p["internal_api"]: p["num_threads"] for p in pools}
    return info


_blas_limits = None  # kept alive: the limit holds while this object exists


def numba_threading_layer() -> str:
    """The threading layer Numba uses (runs a tiny parallel kernel first if none has run yet)."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet in this process
        _parallel_copy(np.zeros(16, np.float32), np.zeros(16, np.float32))
        return numba.threading_layer()


# =================================================================================================================
# the memory-bandwidth floor
# =================================================================================================================


@njit(parallel=True, cache=True)
def _parallel_copy(src, dst):
    # A plain prange over a non-negative range: Numba vectorises it (see perf-notes.md).
    for i in prange(src.shape[0]):
        dst[i] = src[i]


def copy_bandwidth(nbytes: int = 256 << 20, xp=np, sync: Callable[[], None] | None = None, rounds: int = 15,
                   budget_s: float = 2.0) -> dict:
    """Bytes moved per second (read + written) by a copy of a large float32 array, best of the available copies.

    On the CPU two copies are timed: NumPy's ``np.copyto`` (one thread) and a Numba ``prange`` copy (all the
    threads set), because the parallel kernels are held to what the memory system delivers to all cores. On the GPU
    (``xp`` = CuPy) a device-to-device ``copyto``. The floor used everywhere is the fastest of them.
    """
    n = nbytes // 4
    src = xp.ones(n, dtype=xp.float32)
    dst = xp.empty_like(src)
    copies = {f"{xp.__name__}_copyto": lambda: xp.copyto(dst, src)}
    if xp is np:
        copies["numba_prange_copy"] = lambda: _parallel_copy(src, dst)
    timings = time_interleaved(copies, sync=sync, warmup=2, rounds=rounds, min_rounds=3, budget_s=budget_s,
                               min_sample_s=0.0)
    moved = 2 * src.nbytes
    result = {name: moved / t.median for name, t in timings.items()}
    result["array_bytes"] = int(src.nbytes)
    result["floor_bytes_per_s"] = max(v for k, v in result.items() if k != "array_bytes")
    return result


def parallel_stall_probe(calls: int = 100, nbytes: int = 4 << 20) -> dict:
    """How steadily a parallel Numba kernel runs right now: a 4 MiB parallel copy against the same copy on one thread.

    On a quiet machine the parallel copy takes about as long as the serial one, or less. When other processes
    compete for the cores, a parallel region must wait until every one of its threads has been scheduled, and with
    OpenMP's default spin-waiting the waits grow to whole scheduler time slices (milliseconds), while the serial copy
    is hardly slowed. ``stall`` = 90th percentile of the parallel copy / median of the serial one: about 1 when
    quiet; the results mark a case noisy when the probe after it exceeds 3.
    """
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)

    def percentiles(fn, count):
        for _ in range(3):
            fn()
        times = []
        for _ in range(count):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        times.sort()
        return times[len(times) // 2], times[int(0.9 * (len(times) - 1))]

    serial, _ = percentiles(lambda: np.copyto(dst, src), max(5, calls // 4))
    median, p90 = percentiles(lambda: _parallel_copy(src, dst), calls)
    return {"serial_median_s": serial, "median_s": median, "p90_s": p90, "stall": p90 / serial}


# =================================================================================================================
# the machine
# =================================================================================================================


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def git_state() -> dict | None:
    """The commit measured, and the library files that differed from it (the benchmark times the working tree)."""
    import subprocess

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--", "scratchattn"], cwd=repo, capture_output=True,
                                text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "uncommitted": [line[3:] for line in status]} if head else None


THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "NUMBA_NUM_THREADS",
                   "NUMBA_THREADING_LAYER", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "SCRATCHATTN_KERNELS")


def machine_info(gpu_name: str | None = None, torch=None) -> dict:
    """What the results must be read against: CPU, cores, GPU, library versions, date (UTC)."""
    import numba

    cores = os.cpu_count() or 1
    info = {
        "cpu": cpu_model(),
        "cores": cores,
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "torch": getattr(torch, "__version__", None),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    info["git"] = git_state()
    # The settings of the thread pools that a user might have changed: results depend on them.
    info["environment"] = {k: os.environ[k] for k in THREAD_ENV_VARS if k in os.environ}
    if gpu_name:
        info["gpu"] = gpu_name
    info["machine"] = slug(gpu_name) if gpu_name else f"{slug(info['cpu'])}-{cores}c"
    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    return info
