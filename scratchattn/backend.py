"""Devices and array modules: the one place that knows whether an array lives on the CPU or the GPU.

scratchattn keeps its data in NumPy arrays on the CPU and in CuPy arrays on the GPU. Every generic op is written
once against an "array module" ``xp`` (``numpy`` or ``cupy``) obtained from :func:`get_array_module`. CuPy is
optional: importing this module never fails without it, and :func:`cuda_unavailable_reason` says why the GPU
cannot be used.

The headline ops (grid sampling, affine grids, squeeze-excitation) have hand-written kernel pairs. Which member of
a pair runs is decided by :func:`kernel_path`:

* ``"numba"``     - NumPy arrays, Numba kernels in ``kernels/cpu`` (the default on the CPU);
* ``"cuda-host"`` - NumPy arrays, the CUDA sources in ``kernels/cuda`` compiled for the CPU through the host shim
  (chosen with the environment variable ``SCRATCHATTN_KERNELS=cuda-host`` or :func:`use_kernels`);
* ``"cupy"``      - CuPy arrays, the CUDA sources compiled by CuPy/NVRTC and run on the GPU.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

try:  # CuPy is optional; any failure to import it just means "no GPU path".
    import cupy as _cupy

    _CUPY_IMPORT_ERROR: str | None = None
except Exception as exc:  # noqa: BLE001 - ImportError, or CUDA libraries missing at import
    _cupy = None
    _CUPY_IMPORT_ERROR = f"cupy could not be imported ({type(exc).__name__}: {exc})"

DEVICES = ("cpu", "cuda")
KERNEL_PATHS = ("numba", "cuda-host")
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

_kernel_override: str | None = None
_deterministic_override: bool | None = None


# ---------------------------------------------------------------------------------------------------------------
# CuPy / GPU availability
# ---------------------------------------------------------------------------------------------------------------


# (cupy module, reason) of the last probe: the device count does not change while a process runs, and asking the
# driver on every op (cupy_module() sits on the path of every GPU kernel launch) cost tens of microseconds a call.
_probe: tuple = (None, "not probed")


def cuda_unavailable_reason() -> str | None:
    """None when CuPy is importable and sees at least one GPU; otherwise a sentence saying why not."""
    global _probe
    if _cupy is None:
        return _CUPY_IMPORT_ERROR
    if _probe[0] is _cupy:
        return _probe[1]
    try:
        count = _cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - no driver, no device, ...
        reason = f"cupy is installed but the CUDA runtime failed ({type(exc).__name__}: {exc})"
    else:
        reason = "cupy is installed but no CUDA device is visible" if count == 0 else None
    _probe = (_cupy, reason)
    return reason


def cuda_is_available() -> bool:
    """True when arrays can be moved to the GPU."""
    return cuda_unavailable_reason() is None


def cupy_module():
    """The ``cupy`` module, or a RuntimeError saying why the GPU cannot be used."""
    reason = cuda_unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"device 'cuda' is not available: {reason}")
    return _cupy


# ---------------------------------------------------------------------------------------------------------------
# Arrays and devices
# ---------------------------------------------------------------------------------------------------------------


def is_cupy_array(a) -> bool:
    return _cupy is not None and isinstance(a, _cupy.ndarray)


def is_array(a) -> bool:
    return isinstance(a, np.ndarray) or is_cupy_array(a)


def unwrap(a):
    """The array inside a Tensor (its ``.data``); anything else as given.

    An array is returned as it is: a CuPy array has a ``.data`` attribute too (its device memory pointer), so
    "look through ``.data``" must never be applied to an array.
    """
    return a if is_array(a) else getattr(a, "data", a)


def get_array_module(*arrays):
    """``cupy`` if any argument is a CuPy array, else ``numpy`` (Tensors are looked through via ``.data``)."""
    for a in arrays:
        if is_cupy_array(unwrap(a)):
            return _cupy
    return np


def device_of(a) -> str:
    """``"cuda"`` for a CuPy array, ``"cpu"`` otherwise."""
    return "cuda" if is_cupy_array(unwrap(a)) else "cpu"


def check_device(device) -> str:
    if not isinstance(device, str):
        raise TypeError(f"device must be a str, one of {DEVICES}; got {type(device).__name__}")
    name = device.split(":")[0]
    if name not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}; got {device!r}")
    return name


def to_device(a, device: str):
    """Move an array to ``device`` ("cpu" or "cuda"), returning it unchanged if already there."""
    device = check_device(device)
    if device == "cpu":
        return _cupy.asnumpy(a) if is_cupy_array(a) else np.asarray(a)
    cp = cupy_module()
    return a if is_cupy_array(a) else cp.asarray(a)


def to_numpy(a) -> np.ndarray:
    """A NumPy array with the values of ``a`` (a copy when ``a`` is on the GPU)."""
    return _cupy.asnumpy(a) if is_cupy_array(a) else np.asarray(a)


# ---------------------------------------------------------------------------------------------------------------
# Kernel paths
# ---------------------------------------------------------------------------------------------------------------


def kernel_path(array) -> str:
    """Which kernel of a pair runs on ``array``: "cupy" on the GPU; "numba" or "cuda-host" on the CPU."""
    if is_cupy_array(array):
        return "cupy"
    path = _kernel_override or os.environ.get("SCRATCHATTN_KERNELS", "") or "numba"
    if path not in KERNEL_PATHS:
        raise ValueError(f"SCRATCHATTN_KERNELS must be one of {KERNEL_PATHS}; got {path!r}")
    return path


@contextlib.contextmanager
def use_kernels(path: str):
    """Run the CPU kernels of the headline ops through ``path`` ("numba" or "cuda-host") inside the block."""
    global _kernel_override
    if path not in KERNEL_PATHS:
        raise ValueError(f"path must be one of {KERNEL_PATHS}; got {path!r}")
    previous, _kernel_override = _kernel_override, path
    try:
        yield
    finally:
        _kernel_override = previous


# ---------------------------------------------------------------------------------------------------------------
# Deterministic mode
# ---------------------------------------------------------------------------------------------------------------


def use_deterministic_algorithms(flag: bool) -> None:
    """Turn deterministic mode on or off for the whole process (it overrides ``SCRATCHATTN_DETERMINISTIC``).

    In deterministic mode the CUDA kernels of grid sampling (the input gradient) and squeeze-excitation (its two
    reductions) are launched with one writer per output, adding in a fixed order: bitwise-identical results run
    after run, at some cost in speed. The Numba kernels are deterministic either way.
    """
    global _deterministic_override
    if not isinstance(flag, bool):
        raise TypeError(f"flag must be a bool; got {type(flag).__name__}")
    _deterministic_override = flag


def deterministic_algorithms_enabled() -> bool:
    """True when deterministic mode is on: set by :func:`use_deterministic_algorithms` / :func:`deterministic`,
    else by the environment variable ``SCRATCHATTN_DETERMINISTIC=1``."""
    if _deterministic_override is not None:
        return _deterministic_override
    value = os.environ.get("SCRATCHATTN_DETERMINISTIC", "")
    if value not in ("", "0", "1"):
        raise ValueError(f"SCRATCHATTN_DETERMINISTIC must be 0 or 1; got {value!r}")
    return value == "1"


@contextlib.contextmanager
def deterministic(flag: bool = True):
    """Turn deterministic mode on (or off, with ``flag=False``) inside the block."""
    global _deterministic_override
    if not isinstance(flag, bool):
        raise TypeError(f"flag must be a bool; got {type(flag).__name__}")
    previous, _deterministic_override = _deterministic_override, flag
    try:
        yield
    finally:
        _deterministic_override = previous
