"""The compile gate: every ``.cu`` file of the project compiles with NVRTC, as CuPy will compile it on a GPU.

NVRTC (from the PyPI wheel ``nvidia-cuda-nvrtc-cu12``, a test dependency) runs without a GPU, so this gate runs in
CI. It uses exactly the launcher's options (``COMPILE_OPTIONS`` plus ``-Dscalar_t=float|double``) plus an ``-arch``
for the H200 (CuPy picks the arch of the GPU it runs on). It matters beyond "does it compile on a GPU": the host shim
compiles the same files with g++, which accepts host headers and C++ that a GPU compiler refuses; this gate is what
keeps the shim from hiding such code. A failure prints NVRTC's own log: file, line, the offending line and a caret.
"""

from __future__ import annotations

import glob
import os
import re

import numpy as np
import pytest

from scratchattn.kernels.cuda import launcher, nvrtc

GATE_ARCH = "-arch=compute_90"  # H200; atomicAdd on double needs compute_60 or newer
KERNEL_FILES = sorted(glob.glob(os.path.join(launcher.KERNEL_DIR, "*.cu")))
TOY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_toy_kernels.cu")


@pytest.fixture(autouse=True)
def _nvrtc_or_skip():
    reason = nvrtc.unavailable_reason()
    if reason is not None:
        pytest.skip(f"NVRTC compile gate not run: {reason}")


def _compile(path: str, dtype) -> str:
    source = launcher.read_source(path)
    try:
        return nvrtc.compile_to_ptx(source, os.path.basename(path), launcher.options_for(dtype) + (GATE_ARCH,))
    except nvrtc.NvrtcError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("path", KERNEL_FILES + [TOY], ids=os.path.basename)
def test_kernel_file_compiles_with_nvrtc(path, dtype):
    ptx = _compile(path, dtype)  # 25-60 ms a file on the CI-like machine
    # Every kernel the launcher can call is in the PTX under its own (unmangled) name, where CuPy's get_function
    # looks for it; and the parameter count matches the signature the launcher checks calls against.
    for name, params in launcher.parse_kernels(launcher.read_source(path), os.path.basename(path)).items():
        entry = re.search(rf"\.entry\s+{name}\s*\(([^)]*)\)", ptx)
        assert entry is not None, f"{os.path.basename(path)}: kernel {name} is missing from the PTX"
        assert entry.group(1).count(".param") == len(params), (name, entry.group(1))


def test_the_project_has_kernel_files():
    names = {os.path.basename(p) for p in KERNEL_FILES}
    assert names, f"no .cu files found in {launcher.KERNEL_DIR}"


# The gate's power: code that g++ (and so the host shim) would accept, but a GPU compiler refuses.
@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("#include <cmath>\n", r'(?s)gate\.cu\(1\): catastrophic error: could not open source file "cmath".*\^'),
        ("", r"(?s)gate\.cu\(\d+\): error: no instance of overloaded function \"atomicAdd\""),
    ],
    ids=["host-header", "signed-64-bit-atomicAdd"],
)
def test_gate_rejects_what_a_gpu_compiler_rejects(snippet, message):
    source = snippet + """
extern "C" __global__ void count(long long* total, long long n) {
    atomicAdd(total, n);   // CUDA has atomicAdd for unsigned long long only
}
"""
    if snippet:  # keep only the include error in the first case
        source = source.replace("atomicAdd(total, n);", "total[0] = n;")
    with pytest.raises(nvrtc.NvrtcError, match=message):
        nvrtc.compile_to_ptx(source, "gate.cu", launcher.options_for(np.float32) + (GATE_ARCH,))


def test_nvrtc_version_is_known():
    major, minor = nvrtc.version()
    assert major >= 11 and minor >= 0
