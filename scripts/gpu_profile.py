"""Where the host time of a GPU call goes: cProfile of the CuPy path of the headline ops at the benchmark's shapes.

On a GPU the small benchmark shapes are bound by the host (Python, CuPy's launch path, the driver), not by the
kernels: this prints, per op, the wall time per call with and without a device synchronisation per call, and the
functions that take the most host time. Needs CuPy and a GPU; made for scripts/gpu_check.sh's machine.

    python scripts/gpu_profile.py [--calls 300]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import scratchattn as sa  # noqa: E402
from scratchattn import backend  # noqa: E402
from scratchattn import functional as F  # noqa: E402


def cases(cp):
    rng = np.random.default_rng(0)

    def dev(a, grad=False):
        return sa.tensor(cp.asarray(np.asarray(a, dtype=np.float32)), requires_grad=grad)

    x = dev(rng.standard_normal((32, 16, 64, 64)))
    g = dev(rng.uniform(-1, 1, (32, 64, 64, 2)))
    xs = dev(rng.standard_normal((32, 256, 28, 28)))
    w1, w2 = dev(rng.standard_normal((16, 256)) * 0.1), dev(rng.standard_normal((256, 16)) * 0.1)
    theta = dev(rng.standard_normal((32, 2, 3)))
    empty = dev(np.zeros(1))
    return {
        "empty cupy op (y = x * 2)": lambda: empty.data * 2,
        "grid_sample fwd N=32 C=16 64x64": lambda: F.grid_sample(x, g),
        "squeeze_excitation fwd N=32 C=256 28x28": lambda: F.squeeze_excitation(xs, w1, None, w2, None),
        "affine_grid fwd N=32 64x64": lambda: F.affine_grid(theta, (32, 16, 64, 64)),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=300)
    args = p.parse_args()
    reason = backend.cuda_unavailable_reason()
    if reason is not None:
        print(f"no GPU: {reason}")
        return 2
    cp = backend.cupy_module()
    sync = cp.cuda.Device().synchronize
    for name, fn in cases(cp).items():
        for _ in range(20):
            fn()
        sync()
        t0 = time.perf_counter()
        for _ in range(args.calls):
            fn()
        sync()
        async_us = (time.perf_counter() - t0) / args.calls * 1e6
        t0 = time.perf_counter()
        for _ in range(args.calls):
            fn()
            sync()
        synced_us = (time.perf_counter() - t0) / args.calls * 1e6
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.calls):
            fn()
        sync()
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(14)
        print(f"== {name}: {async_us:.1f} us a call back to back, {synced_us:.1f} us with a sync after each")
        print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
