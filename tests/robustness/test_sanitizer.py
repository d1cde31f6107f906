"""The CUDA kernels under AddressSanitizer (and UndefinedBehaviorSanitizer): no out-of-bounds access on any fuzz case.

The host shim builds the ``.cu`` files with ``-fsanitize=address,undefined`` when ``SCRATCHATTN_HOST_SANITIZE`` says
so (``kernels/cuda/host``); the sanitizer runtime must then be preloaded into the Python process. A worker process
started that way replays a fixed corpus of fuzz cases per op (``_robust_fuzz.build_case`` with a seeded generator:
NaN, +-Inf, +-1e30 and subnormals in inputs and gradients, empty batches, every layout and option) through the
``cuda-host`` path. An invalid read or write, or undefined behaviour in the kernels' integer arithmetic, aborts the
worker with the sanitizer's report, which the failure message quotes together with the case. Each result is also
checked against the references, as in the fuzz tests.

Two control cases show that the sanitizer is live in the worker (a sanitizer run that cannot fail proves nothing): a
test kernel that reads one element past the end of its input, and the library's own ``affine_grid_forward`` launched
directly with a theta one sample too short; both must be reported, at the right source file.

Cases per op: ``SCRATCHATTN_SANITIZE_CASES`` (default 40 here; ``make sanitize`` runs 400).
"""

from __future__ import annotations

import os

import _robust_fuzz as fuzz
import pytest

CASES = int(os.environ.get("SCRATCHATTN_SANITIZE_CASES", "40"))
SANITIZED_OPS = ["affine_grid", "grid_sample", "squeeze_excitation"]  # the ops with CUDA kernels (attention has none)


@pytest.fixture(scope="module")
def sanitized_worker(tmp_path_factory):
    try:
        from scratchattn.kernels.cuda import host
    except ImportError as exc:
        pytest.skip(f"the CUDA host shim is not importable: {exc}")
    reason = host.unavailable_reason()
    if reason is not None:
        pytest.skip(f"cuda-host kernel path unavailable: {reason}")
    runtime = host.sanitizer_runtime("address")
    if runtime is None:
        pytest.skip("the C++ compiler has no AddressSanitizer runtime (libasan.so) to preload")
    env = {
        "SCRATCHATTN_HOST_SANITIZE": "address,undefined",
        "LD_PRELOAD": runtime,
        # The interpreter keeps memory alive until exit (not a kernel's leak); wide redzones catch reads further
        # past an array's end; any undefined behaviour stops the worker instead of printing and going on.
        "ASAN_OPTIONS": "detect_leaks=0:redzone=256:abort_on_error=0:halt_on_error=1",
        "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    }
    worker = fuzz.Worker(env=env, timeout=600, log_dir=str(tmp_path_factory.mktemp("sanitizer")))
    yield worker
    worker.close()


@pytest.mark.parametrize(("which", "source"), [("toy", "_oob_read.cu"), ("library", "affine_grid.cu")])
def test_the_sanitizer_catches_a_read_past_the_end(sanitized_worker, which, source):
    with pytest.raises(fuzz.WorkerCrashed) as info:
        sanitized_worker.run({"op": "oob_control", "which": which, "n": 3, "path": "cuda-host", "dtype": "float32",
                              "options": {}, "inputs": {}, "views": {}})
    report = str(info.value)
    assert "heap-buffer-overflow" in report and "READ of size 4" in report, report[-3000:]
    assert source in report, f"the report should point at a line of {source}:\n{report[-3000:]}"


@pytest.mark.parametrize("op", SANITIZED_OPS)
def test_fuzz_corpus_runs_clean_under_the_sanitizers(sanitized_worker, op):
    for seed in range(CASES):
        case = fuzz.build_case(op, fuzz.RandomChooser(1000 * SANITIZED_OPS.index(op) + seed), "cuda-host")
        fuzz.check_case(case, sanitized_worker.run(case))
    assert sanitized_worker.cases_run >= CASES
