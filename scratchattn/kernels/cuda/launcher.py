"""The shared CUDA launcher: compile a ``.cu`` file once per dtype and hand back kernels callable as in CuPy.

Every kernel launcher of the project (``kernels/cuda/<op>.py``) does the same three things::

    kern = get_kernel("grid_sample.cu", "grid_sample_forward", dtype, target)   # compiled once, then cached
    grid, block = launch_config(total_threads)                                  # 1-D grid for grid-stride loops
    kern(grid, block, (inp, out, np.int64(n), np.float32(scale)))                # same call shape as cupy.RawKernel

A source file is compiled once per dtype with ``COMPILE_OPTIONS + ("-Dscalar_t=float",)`` or ``("-Dscalar_t=double",)``,
so one text serves float32 and float64 under the same kernel names. ``target`` picks the compiler:

* ``"cupy"``: CuPy's ``RawModule`` (NVRTC at run time, then the GPU); arguments are CuPy arrays.
* ``"cuda-host"``: the host shim (:mod:`scratchattn.kernels.cuda.host`) compiles the very same text with the system
  C++ compiler and runs it on the CPU; arguments are NumPy arrays.

Both targets check every call against the kernel's C signature, parsed from the source here: the number of
arguments, that each pointer is a C-contiguous array of exactly the pointed-to type, and that each scalar is the exact
NumPy scalar type of the parameter (``np.int64`` for ``long long``). On a GPU a mismatch would not fail: it would
read garbage. Here it raises a ``TypeError`` that names the kernel, the parameter, the expected and the given.
"""

from __future__ import annotations

import math
import os
import re
import threading
from dataclasses import dataclass

import numpy as np

from scratchattn import backend

__all__ = [
    "COMPILE_OPTIONS",
    "DEFAULT_BLOCK",
    "KernelParam",
    "get_kernel",
    "launch_config",
    "options_for",
    "parse_kernels",
    "read_source",
    "source_path",
]

# Options every build gets, on both targets (the host shim passes -std=c++17 to the C++ compiler as well). The
# compile gate test uses exactly these, plus an -arch, which CuPy adds itself for the GPU it runs on.
COMPILE_OPTIONS: tuple[str, ...] = ("--std=c++17",)

DEFAULT_BLOCK = 256
# Grid-stride loops let any grid cover any size; this many blocks of 256 threads (2M threads) fill the largest GPUs
# several times over, while keeping the host shim's per-block overhead small.
MAX_GRID = 8192

KERNEL_DIR = os.path.dirname(os.path.abspath(__file__))
TARGETS = ("cupy", "cuda-host")

_SCALAR_MACRO = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


# ---------------------------------------------------------------------------------------------------------------
# Sources, options, launch shapes
# ---------------------------------------------------------------------------------------------------------------


def source_path(source_file) -> str:
    """Absolute path of a kernel source: a bare file name is looked up in ``scratchattn/kernels/cuda/``."""
    path = os.fspath(source_file)
    return os.path.join(KERNEL_DIR, path) if os.path.basename(path) == path else os.path.abspath(path)


def read_source(source_file) -> str:
    with open(source_path(source_file), encoding="utf-8") as f:
        return f.read()


def options_for(dtype) -> tuple[str, ...]:
    """The compile options of the ``dtype`` build: COMPILE_OPTIONS plus ``-Dscalar_t=float`` or ``double``."""
    dtype = np.dtype(dtype)
    if dtype not in _SCALAR_MACRO:
        raise TypeError(f"dtype must be float32 or float64; got {dtype}")
    return COMPILE_OPTIONS + (f"-Dscalar_t={_SCALAR_MACRO[dtype]}",)


def launch_config(total_threads: int, block: int = DEFAULT_BLOCK) -> tuple[tuple[int], tuple[int]]:
    """``(grid, block)`` for a grid-stride loop over ``total_threads`` items: enough blocks, at most MAX_GRID.

    A launch with zero blocks is an error in CUDA, so an empty problem still gets one block (whose loop does nothing).
    """
    total_threads = int(total_threads)
    if total_threads < 0:
        raise ValueError(f"total_threads must be >= 0; got {total_threads}")
    if not 1 <= block <= 1024:
        raise ValueError(f"block must be between 1 and 1024 threads (CUDA's limit); got {block}")
    blocks = min(max(1, -(-total_threads // block)), MAX_GRID)  # ceil division in integers
    return (blocks,), (block,)


_checked_dims: dict = {}


def normalize_dims(value, what: str, kernel: str) -> tuple[int, int, int]:
    """CuPy accepts an int or a tuple of 1-3 ints for ``grid`` and ``block``; return the (x, y, z) triple."""
    try:
        return _checked_dims[what, value]  # launches repeat a handful of shapes
    except (KeyError, TypeError):
        pass
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, (int, np.integer)) and d >= 1 for d in dims):
        raise ValueError(f"{kernel}: {what} must be a positive int or a tuple of 1 to 3 positive ints; got {value!r}")
    dims = tuple(int(d) for d in dims) + (1,) * (3 - len(dims))
    # The CUDA limits, so that a launch the GPU would refuse fails on the host too.
    limits = (2**31 - 1, 65535, 65535) if what == "grid" else (1024, 1024, 64)
    if any(d > lim for d, lim in zip(dims, limits)) or (what == "block" and math.prod(dims) > 1024):
        raise ValueError(f"{kernel}: {what} {dims} exceeds CUDA's limits {limits}" +
                         (" with at most 1024 threads a block" if what == "block" else ""))
    if isinstance(value, (int, tuple)) and len(_checked_dims) < 4096:
        _checked_dims[what, value] = dims
    return dims


# ---------------------------------------------------------------------------------------------------------------
# Kernel signatures: parsed from the source, checked on every call
# ---------------------------------------------------------------------------------------------------------------

# C parameter type (without const/__restrict__) -> NumPy dtype; "scalar_t" is the dtype of the build.
C_TYPES = {
    "float": np.dtype(np.float32),
    "double": np.dtype(np.float64),
    "int": np.dtype(np.int32),
    "unsigned int": np.dtype(np.uint32),
    "long long": np.dtype(np.int64),
    "long long int": np.dtype(np.int64),
    "unsigned long long": np.dtype(np.uint64),
    "unsigned long long int": np.dtype(np.uint64),
    "scalar_t": None,
}
_QUALIFIERS = {"const", "volatile", "__restrict__", "__restrict", "restrict"}

_LAUNCH_BOUNDS = r"(?:__launch_bounds__\s*\([^()]*\)\s*)?"
_KERNEL_RE = re.compile(
    rf'(extern\s+"C"\s+)?__global__\s+{_LAUNCH_BOUNDS}void\s+{_LAUNCH_BOUNDS}(\w+)\s*\(([^)]*)\)\s*([{{;])'
)
_COMMENT_RE = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


@dataclass(frozen=True)
class KernelParam:
    """One kernel parameter: ``ctype`` as written without qualifiers ("scalar_t", "long long"), ``pointer``, ``const``
    (for pointers: the data is read-only), and ``name``."""

    name: str
    ctype: str
    pointer: bool
    const: bool

    def dtype(self, scalar_dtype) -> np.dtype:
        return np.dtype(scalar_dtype) if self.ctype == "scalar_t" else C_TYPES[self.ctype]

    def declaration(self) -> str:
        return f"{'const ' if self.const else ''}{self.ctype}{'*' if self.pointer else ''} {self.name}"


def _parse_param(text: str, kernel: str, index: int) -> KernelParam:
    if "[" in text or text.count("*") > 1 or "&" in text:
        raise ValueError(f"kernel {kernel}: parameter {index} `{text}` is not supported; use a scalar or `T* name`")
    words = text.replace("*", " * ").split()
    const = "const" in words[: words.index("*")] if "*" in words else False
    pointer = "*" in words
    words = [w for w in words if w not in _QUALIFIERS and w != "*"]
    name, type_words = words[-1], words[:-1]
    ctype = " ".join(type_words)
    if ctype not in C_TYPES:
        raise ValueError(f"kernel {kernel}: parameter `{name}` has type `{ctype}`; the launcher knows only "
                         f"{sorted(C_TYPES)} (with * for pointers)")
    return KernelParam(name=name, ctype=ctype, pointer=pointer, const=const)


def parse_kernels(source: str, filename: str = "<source>") -> dict[str, tuple[KernelParam, ...]]:
    """``{kernel name: parameters}`` for every ``extern "C" __global__ void name(...)`` defined in ``source``.

    CuPy finds a kernel by its unmangled name, so a ``__global__`` function without ``extern "C"`` is an error.
    """
    kernels: dict[str, tuple[KernelParam, ...]] = {}
    code = _COMMENT_RE.sub(lambda m: "\n" * m.group().count("\n"), source)  # keeps line numbers
    matched = {m.start() for m in _KERNEL_RE.finditer(code)}
    for start in (m.start() for m in re.finditer(r'(extern\s+"C"\s+)?__global__', code)):
        if start not in matched:  # a kernel this parser would otherwise skip silently
            line = code.count("\n", 0, start) + 1
            raise ValueError(f'{filename}:{line}: cannot read this kernel signature; write it as '
                             '`extern "C" __global__ void name(type name, ...)`')
    for match in _KERNEL_RE.finditer(code):
        extern_c, name, params, end = match.groups()
        if end == ";":  # a declaration; the definition comes later
            continue
        if not extern_c:
            raise ValueError(f'{filename}: kernel {name} must be declared `extern "C" __global__ void {name}(...)` '
                             "so that it can be found by name")
        params = params.strip()
        parts = [] if params in ("", "void") else [p.strip() for p in params.split(",")]
        kernels[name] = tuple(_parse_param(p, name, i) for i, p in enumerate(parts))
    return kernels


def expected_types(params, scalar_dtype) -> tuple:
    """Per parameter: the dtype a pointer's array must have, or the NumPy scalar type a scalar must have."""
    return tuple(p.dtype(scalar_dtype) if p.pointer else p.dtype(scalar_dtype).type for p in params)


def _args_match(params, expected, args, array_type) -> bool:
    """The fast test of :func:`check_args`, done on every launch: True when every argument is as expected."""
    if type(args) is not tuple or len(args) != len(params):
        return False
    for param, want, arg in zip(params, expected, args):
        if param.pointer:
            if not (isinstance(arg, array_type) and arg.dtype == want and arg.flags.c_contiguous):
                return False
            if not param.const and not getattr(arg.flags, "writeable", True):
                return False
        elif type(arg) is not want:
            return False
    return True


def check_args(kernel: str, params, scalar_dtype, args, array_type, array_type_name: str) -> None:
    """Raise TypeError unless ``args`` match ``params`` exactly (see the module docstring)."""
    if _args_match(params, expected_types(params, scalar_dtype), args, array_type):
        return
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"{kernel}: args must be a tuple; got {type(args).__name__}")
    if len(args) != len(params):
        signature = ", ".join(p.declaration() for p in params)
        raise TypeError(f"{kernel}({signature}) takes {len(params)} arguments; got {len(args)}")
    for param, arg in zip(params, args):
        expected = param.dtype(scalar_dtype)
        where = f"{kernel}: argument `{param.declaration()}`"
        if param.pointer:
            if not isinstance(arg, array_type):
                raise TypeError(f"{where} must be a {array_type_name} of {expected}; got {type(arg).__name__}")
            if arg.dtype != expected:
                raise TypeError(f"{where} must be an array of {expected}; got an array of {arg.dtype}")
            if not arg.flags.c_contiguous:
                raise TypeError(f"{where} must be C-contiguous; got strides {arg.strides} for shape {arg.shape}")
            if not param.const and not getattr(arg.flags, "writeable", True):  # CuPy arrays have no such flag
                raise TypeError(f"{where} is written by the kernel; got a read-only array")
        elif type(arg) is not expected.type:
            got = type(arg).__name__ if not isinstance(arg, np.generic) else f"np.{type(arg).__name__}"
            raise TypeError(f"{where} must be np.{expected.type.__name__}; got {got} (pass every scalar with an "
                            "explicit NumPy type)")


# ---------------------------------------------------------------------------------------------------------------
# The CuPy target
# ---------------------------------------------------------------------------------------------------------------


class CupyKernel:
    """A ``cupy.RawKernel`` with the argument check in front; called as ``kern(grid, block, args)``."""

    def __init__(self, raw_kernel, name: str, params, dtype):
        self.raw_kernel, self.name, self.params, self.dtype = raw_kernel, name, params, np.dtype(dtype)
        self.expected = expected_types(params, self.dtype)
        self.array_type = backend.cupy_module().ndarray

    def __call__(self, grid, block, args, **kwargs):
        # grid and block are checked by CuPy and the driver; the arguments by nobody, hence the check. The fast
        # test runs on every launch; the full check, which names what is wrong, only when it fails.
        if not _args_match(self.params, self.expected, args, self.array_type):
            check_args(self.name, self.params, self.dtype, args, self.array_type, "cupy.ndarray")
            args = tuple(args)  # the full check also accepts a list
        self.raw_kernel(grid, block, args, **kwargs)


def _build_cupy(path: str, dtype):
    cupy = backend.cupy_module()
    source = read_source(path)
    module = cupy.RawModule(code=source, options=options_for(dtype))
    return module, parse_kernels(source, os.path.basename(path))


# ---------------------------------------------------------------------------------------------------------------
# get_kernel: one compiled module per (file, dtype, target), one kernel object per name
# ---------------------------------------------------------------------------------------------------------------

_modules: dict = {}
_kernels: dict = {}
_lock = threading.Lock()


def get_kernel(source_file, name: str, dtype, target: str):
    """The kernel ``name`` of ``source_file`` built for ``dtype`` on ``target`` ("cupy" or "cuda-host"); cached.

    ``source_file`` is a file name in ``scratchattn/kernels/cuda/`` (or an absolute path, as the tests use for
    their toy kernels). The result is called as ``kern(grid, block, args)``.
    """
    fast_key = (source_file, name, dtype, target)  # as given: most calls end at this lookup
    kernel = _kernels.get(fast_key)
    if kernel is not None:
        return kernel
    dtype = np.dtype(dtype)
    key = (source_path(source_file), dtype, target, name)
    kernel = _kernels.get(key)
    if kernel is not None:
        _kernels[fast_key] = kernel
        return kernel
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}; got {target!r}")
    options_for(dtype)  # validates dtype
    with _lock:  # two threads asking for the same module compile it once
        module_key = key[:3]
        if module_key not in _modules:
            if target == "cupy":
                _modules[module_key] = _build_cupy(key[0], dtype)
            else:
                from scratchattn.kernels.cuda import host  # imported here: host imports this module

                _modules[module_key] = host.build_module(key[0], dtype)
        module = _modules[module_key]
    if target == "cupy":
        raw_module, signatures = module
        if name not in signatures:
            raise ValueError(f"{os.path.basename(key[0])} has no kernel {name!r}; it has {sorted(signatures)}")
        kernel = CupyKernel(raw_module.get_function(name), name, signatures[name], dtype)
    else:
        kernel = module.get_function(name)
    _kernels[key] = _kernels[fast_key] = kernel
    return kernel


def clear_cache() -> None:
    """Forget every compiled module of this process (the host shim's on-disk cache stays): used by the tests."""
    with _lock:
        _modules.clear()
        _kernels.clear()
