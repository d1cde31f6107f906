"""First-call cost: what a user waits for before the first result, with cold and warm compilation caches.

Run as a script (``python -m benchmarks.firstcall --device cpu``) it times, in a fresh process, ``import
scratchattn`` and then the first and the second forward+backward call of each headline op on tiny float32 inputs,
and prints one JSON object. The first call includes compiling the op's kernels: Numba on the CPU (``cache=True``
kernels are loaded from ``NUMBA_CACHE_DIR`` when the cache is warm), NVRTC through CuPy on the GPU (cached in
``CUPY_CACHE_DIR``). :func:`first_call_costs` runs the script twice with one fresh cache folder, cold then warm.

:func:`cuda_compile_times` times the two compilers of the ``.cu`` files directly, in this process: NVRTC (PTX for
compute_90, as CuPy compiles for an H200; no GPU needed) and the CPU host shim's C++ build (with a fresh
``SCRATCHATTN_CACHE``, so nothing is reused).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_calls(device: str):
    """(name, zero-argument fwd+bwd call) for each headline op, float32, tiny shapes, on ``device``."""
    import numpy as np

    import scratchattn as sa
    from scratchattn import backend
    from scratchattn import functional as F

    rng = np.random.default_rng(0)

    def tensor(shape, scale=1.0):
        a = (rng.standard_normal(shape) * scale).astype(np.float32)
        return sa.tensor(backend.to_device(a, device), requires_grad=True)

    def affine():
        theta = tensor((2, 2, 3))
        F.affine_grid(theta, (2, 1, 5, 6)).sum().backward()

    def sampler(layout):
        def call():
            x = tensor((2, 3, 5, 6) if layout == "NCHW" else (2, 5, 6, 3))
            grid = tensor((2, 4, 7, 2), scale=0.5)
            F.grid_sample(x, grid, layout=layout).sum().backward()
        return call

    def se(layout):
        def call():
            x = tensor((2, 8, 5, 6) if layout == "NCHW" else (2, 5, 6, 8))
            w1, b1, w2, b2 = tensor((2, 8)), tensor((2,)), tensor((8, 2)), tensor((8,))
            F.squeeze_excitation(x, w1, b1, w2, b2, layout=layout).sum().backward()
        return call

    calls = [("affine_grid", affine)]
    if hasattr(F, "grid_sample"):
        calls += [("grid_sample NCHW", sampler("NCHW")), ("grid_sample NHWC", sampler("NHWC"))]
    calls += [("squeeze_excitation NCHW", se("NCHW")), ("squeeze_excitation NHWC", se("NHWC"))]
    return calls


def measure_in_this_process(device: str) -> dict:
    """Import time and first/second call times of each op; meant to run in a fresh process."""
    started = time.perf_counter()
    import scratchattn  # noqa: F401 - the import being timed
    result = {"import_s": time.perf_counter() - started, "first_call_s": {}, "second_call_s": {}}
    sync = lambda: None  # noqa: E731
    if device == "cuda":
        from scratchattn import backend

        cupy = backend.cupy_module()
        sync = cupy.cuda.Device().synchronize
    for name, call in _tiny_calls(device):
        for key in ("first_call_s", "second_call_s"):
            t0 = time.perf_counter()
            call()
            sync()
            result[key][name] = time.perf_counter() - t0
    result["total_first_calls_s"] = sum(result["first_call_s"].values())
    return result


def first_call_costs(device: str = "cpu", python: str = sys.executable, timeout_s: float = 300) -> dict:
    """Run the measurement in two fresh processes sharing one new, empty cache folder: {"cold": ..., "warm": ...}."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="scratchattn-bench-cache-") as cache:
        env = dict(os.environ)
        env["NUMBA_CACHE_DIR"] = os.path.join(cache, "numba")
        env["CUPY_CACHE_DIR"] = os.path.join(cache, "cupy")
        env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        for label in ("cold", "warm"):
            t0 = time.perf_counter()
            out = subprocess.run([python, "-m", "benchmarks.firstcall", "--device", device], cwd=REPO, env=env,
                                 capture_output=True, text=True, timeout=timeout_s)
            if out.returncode != 0:
                raise RuntimeError(f"benchmarks.firstcall ({label}) failed:\n{out.stderr.strip()[-2000:]}")
            results[label] = json.loads(out.stdout.strip().splitlines()[-1])
            results[label]["process_s"] = time.perf_counter() - t0
    return results


def cuda_compile_times(host_shim: bool = True) -> dict:
    """Seconds to compile each ``.cu`` file per dtype with NVRTC (compute_90) and with the host shim's C++ compiler."""
    import numpy as np

    from scratchattn.kernels.cuda import launcher, nvrtc

    files = sorted(glob.glob(os.path.join(launcher.KERNEL_DIR, "*.cu")))
    result: dict = {"nvrtc_s": {}, "host_shim_s": {}}
    reason = nvrtc.unavailable_reason()
    if reason is None:
        result["nvrtc_version"] = ".".join(map(str, nvrtc.version()))
        for path in files:
            source = launcher.read_source(path)
            for dtype in (np.float32, np.float64):
                t0 = time.perf_counter()
                options = launcher.options_for(dtype) + ("-arch=compute_90",)  # CuPy's choice on an H200
                nvrtc.compile_to_ptx(source, os.path.basename(path), options)
                result["nvrtc_s"][f"{os.path.basename(path)} {np.dtype(dtype).name}"] = time.perf_counter() - t0
    else:
        result["nvrtc_unavailable"] = reason
    if not host_shim:
        return result
    from scratchattn.kernels.cuda import host

    reason = host.unavailable_reason()
    if reason is not None:
        result["host_shim_unavailable"] = reason
        return result
    previous = os.environ.get("SCRATCHATTN_CACHE")
    with tempfile.TemporaryDirectory(prefix="scratchattn-bench-host-") as cache:
        os.environ["SCRATCHATTN_CACHE"] = cache  # host.cache_dir() reads it at each build: nothing is reused
        try:
            for path in files:
                for dtype in (np.float32, np.float64):
                    t0 = time.perf_counter()
                    host.build_module(path, dtype)
                    result["host_shim_s"][f"{os.path.basename(path)} {np.dtype(dtype).name}"] = time.perf_counter() - t0
        finally:
            if previous is None:
                os.environ.pop("SCRATCHATTN_CACHE", None)
            else:
                os.environ["SCRATCHATTN_CACHE"] = previous
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.firstcall", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args(argv)
    print(json.dumps(measure_in_this_process(args.device)))


if __name__ == "__main__":
    main()
