"""NVRTC, the CUDA run-time compiler, called through ``ctypes``: the compile gate of the project's ``.cu`` files.

CuPy compiles every ``.cu`` source with NVRTC when a kernel is first used on the GPU. NVRTC itself needs no GPU and
no driver, so the tests call the same compiler on machines without a GPU (CI): every kernel file must compile
here exactly as CuPy would compile it there. The library comes from the PyPI wheel ``nvidia-cuda-nvrtc-cu12``
(``nvidia/cuda_nvrtc/lib/libnvrtc.so.12``, a test dependency); a system CUDA toolkit is used when the wheel is
absent. Only six NVRTC calls are needed: create a program, compile it, read the log, read the PTX, destroy it,
and the version. See the NVRTC user guide for the C API these mirror.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import importlib.util
import os

__all__ = ["NvrtcError", "compile_to_ptx", "unavailable_reason", "version"]


class NvrtcError(RuntimeError):
    """A compile error: the message is NVRTC's own log (``file(line): error: ...`` with the line and a caret)."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


def _candidate_libraries() -> list[str]:
    """Where libnvrtc may live: $SCRATCHATTN_NVRTC, the PyPI wheel, then the dynamic loader's search path."""
    paths = []
    if os.environ.get("SCRATCHATTN_NVRTC"):
        paths.append(os.environ["SCRATCHATTN_NVRTC"])
    try:
        spec = importlib.util.find_spec("nvidia.cuda_nvrtc")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            paths += sorted(glob.glob(os.path.join(folder, "lib", "libnvrtc.so.*")))
    paths += ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"]
    return [p for p in paths if "alt" not in os.path.basename(p)]


@functools.cache
def _load():
    """(library, None) or (None, why it could not be loaded)."""
    tried = []
    for path in _candidate_libraries():
        try:
            if os.path.isabs(path):
                # libnvrtc dlopens libnvrtc-builtins.so.<version> by name at compile time; load it first from the
                # same folder so the loader finds it without LD_LIBRARY_PATH.
                for builtins in glob.glob(os.path.join(os.path.dirname(path), "libnvrtc-builtins.so.*")):
                    if "alt" not in os.path.basename(builtins):
                        ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)
            lib = ctypes.CDLL(path)
        except OSError as exc:
            tried.append(f"{path}: {exc}")
            continue
        _declare(lib)
        return lib, None
    return None, (
        "NVRTC (libnvrtc) was not found; install the test extra (`pip install -e .[test]`, which brings the PyPI "
        "wheel nvidia-cuda-nvrtc-cu12) or set SCRATCHATTN_NVRTC to the library's path. Tried: " + "; ".join(tried)
    )


def _declare(lib) -> None:
    c_int, c_size_t, c_char_p, c_void_p = ctypes.c_int, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p
    prototypes = {
        "nvrtcVersion": [ctypes.POINTER(c_int), ctypes.POINTER(c_int)],
        # nvrtcCreateProgram(prog*, source, name, numHeaders, headers, includeNames)
        "nvrtcCreateProgram": [ctypes.POINTER(c_void_p), c_char_p, c_char_p, c_int, c_void_p, c_void_p],
        "nvrtcCompileProgram": [c_void_p, c_int, ctypes.POINTER(c_char_p)],
        "nvrtcGetProgramLogSize": [c_void_p, ctypes.POINTER(c_size_t)],
        "nvrtcGetProgramLog": [c_void_p, c_char_p],
        "nvrtcGetPTXSize": [c_void_p, ctypes.POINTER(c_size_t)],
        "nvrtcGetPTX": [c_void_p, c_char_p],
        "nvrtcDestroyProgram": [ctypes.POINTER(c_void_p)],
    }
    for name, argtypes in prototypes.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, c_int  # every call returns an nvrtcResult (0 = success)
    lib.nvrtcGetErrorString.argtypes, lib.nvrtcGetErrorString.restype = [c_int], c_char_p


def unavailable_reason() -> str | None:
    """None when NVRTC can be called here, else a sentence saying why not and how to get it."""
    return _load()[1]


def _library():
    lib, reason = _load()
    if lib is None:
        raise RuntimeError(reason)
    return lib


def version() -> tuple[int, int]:
    """NVRTC's (major, minor) version, e.g. (12, 9)."""
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(_library().nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    return major.value, minor.value


def _check(result: int, call: str) -> None:
    if result != 0:
        message = _library().nvrtcGetErrorString(result).decode()
        raise NvrtcError(f"{call} failed: {message}")


def compile_to_ptx(source: str, name: str, options=()) -> str:
    """Compile CUDA C++ ``source`` (named ``name`` in messages) with NVRTC ``options``; return the PTX text.

    Raises :class:`NvrtcError` whose message is the compiler log when the source does not compile.
    """
    lib = _library()
    prog = ctypes.c_void_p()
    _check(lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None),
           "nvrtcCreateProgram")
    try:
        encoded = [o.encode() for o in options]
        argv = (ctypes.c_char_p * max(1, len(encoded)))(*encoded)
        result = lib.nvrtcCompileProgram(prog, len(encoded), argv)
        size = ctypes.c_size_t()
        _check(lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size)), "nvrtcGetProgramLogSize")
        log_buffer = ctypes.create_string_buffer(size.value)
        _check(lib.nvrtcGetProgramLog(prog, log_buffer), "nvrtcGetProgramLog")
        log = log_buffer.value.decode(errors="replace").strip()
        if result != 0:
            raise NvrtcError(f"NVRTC could not compile {name} with options {list(options)}:\n{log}", log)
        _check(lib.nvrtcGetPTXSize(prog, ctypes.byref(size)), "nvrtcGetPTXSize")
        ptx_buffer = ctypes.create_string_buffer(size.value)
        _check(lib.nvrtcGetPTX(prog, ptx_buffer), "nvrtcGetPTX")
        return ptx_buffer.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
