"""Shared fixtures: devices and kernel paths.

* ``device`` runs a test on "cpu" and, where CuPy sees a GPU, on "cuda" (marked ``gpu``).
* ``kernel_path`` runs a test of a headline op (grid sampling, affine grid, squeeze-excitation) through each
  member of its kernel pair: "numba", "cuda-host" (the .cu sources on the CPU through the host shim) and, with a
  GPU, "cupy". Inside the test, ``kernel_path.array(a)`` puts a NumPy array on the path's device and the library
  runs the path's kernels (the fixture keeps ``backend.use_kernels`` active for the whole test).
"""

from __future__ import annotations

import numpy as np
import pytest

from scratchattn import backend

GPU_REASON = backend.cuda_unavailable_reason()


def pytest_report_header(config):
    gpu = "available" if GPU_REASON is None else f"unavailable, gpu tests skipped ({GPU_REASON})"
    shim = host_shim_skip_reason() or "available"
    return [f"scratchattn: GPU {gpu}", f"scratchattn: cuda-host kernel path {shim}"]


def pytest_collection_modifyitems(config, items):
    if GPU_REASON is None:
        return
    skip = pytest.mark.skip(reason=f"no GPU: {GPU_REASON}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    return request.param


class KernelPath:
    def __init__(self, name: str):
        self.name = name
        self.device = "cuda" if name == "cupy" else "cpu"

    def array(self, a):
        return backend.to_device(np.asarray(a), self.device)

    def __repr__(self):
        return self.name


def host_shim_skip_reason():
    """None when the CUDA host shim can build kernels here, else why not (no C++ compiler, ...)."""
    try:
        from scratchattn.kernels.cuda import host
    except ImportError as exc:
        return f"the CUDA host shim is not importable: {exc}"
    return host.unavailable_reason()


@pytest.fixture(params=["numba", "cuda-host", pytest.param("cupy", marks=pytest.mark.gpu)])
def kernel_path(request):
    name = request.param
    if name == "cuda-host":
        reason = host_shim_skip_reason()
        if reason is not None:
            pytest.skip(f"cuda-host kernel path unavailable: {reason}")
    path = KernelPath(name)
    if name == "cupy":
        yield path
    else:
        with backend.use_kernels(name):
            yield path
