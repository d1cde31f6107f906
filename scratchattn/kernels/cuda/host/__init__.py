"""The CUDA host shim: run the project's ``.cu`` kernels on the CPU, compiled by the system C++ compiler.

``SCRATCHATTN_KERNELS=cuda-host`` (or ``backend.use_kernels("cuda-host")``) makes the headline ops run their CUDA
kernels on NumPy arrays, so CI without a GPU tests the GPU code against the same references as the Numba kernels,
and a reader can step through a kernel with a CPU debugger. How a kernel file becomes callable:

1. The source is parsed for its ``extern "C" __global__ void name(params)`` signatures (``launcher.parse_kernels``).
2. One C++ translation unit is written: the ``.cu`` text under a ``#line`` directive (so compiler messages and
   debuggers point at the ``.cu`` file), then one generated function per kernel::

       extern "C" int scratchattn_launch_<name>(const unsigned int* dims, void** args, int threads)

   which unpacks ``args`` (one pointer to each argument's value, as ``cuLaunchKernel`` takes them) and runs the grid
   with ``cuda_host_run_grid`` from ``cuda_host.h``, the header that supplies CUDA's built-ins on the host.
3. ``c++ -x c++ -std=c++17 -O2 -shared -fPIC -include cuda_host.h -Dscalar_t=float|double`` builds a shared library
   in a cache outside the source tree, named by a hash of everything that goes into it (source, header, options,
   compiler version), written under a temporary name and renamed, so concurrent test processes never see half a
   file. Later runs load it without compiling.
4. :class:`HostKernel` checks each call's arguments against the signature and calls the launcher through ctypes.

Environment variables: ``SCRATCHATTN_HOST_THREADS=n`` runs blocks on ``n`` threads (default 1: blocks in order,
deterministic); ``SCRATCHATTN_HOST_SANITIZE=address`` builds with AddressSanitizer (the process must then be started
with ``LD_PRELOAD`` of the sanitizer runtime, see :func:`sanitizer_runtime`); ``SCRATCHATTN_HOST_DEBUG=1`` builds
with ``-O0 -g`` for a debugger; ``SCRATCHATTN_CACHE`` moves the cache (default ``~/.cache/scratchattn``); ``CXX``
picks the compiler.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from scratchattn.kernels.cuda import launcher

__all__ = [
    "HostCompileError",
    "HostKernel",
    "build_module",
    "cache_dir",
    "parallel_blocks",
    "sanitizer_runtime",
    "unavailable_reason",
]

SHIM_HEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda_host.h")
# Bump when the generated code or the build recipe changes, so old libraries in the cache are not reused.
FORMAT_VERSION = "1"

compiler_runs = 0  # how many times this process ran the C++ compiler (the cache test reads it)
_threads_override: int | None = None


class HostCompileError(RuntimeError):
    """The C++ compiler rejected a kernel file; the message holds its output (``file.cu:line:col: error: ...``)."""


# ---------------------------------------------------------------------------------------------------------------
# Compiler, cache, options
# ---------------------------------------------------------------------------------------------------------------


@functools.cache
def _compiler() -> tuple[str | None, str]:
    """(path of the C++ compiler, its version line) or (None, why there is none)."""
    if sys.platform == "win32":
        return None, "the CUDA host shim needs a GCC- or Clang-compatible compiler and POSIX shared libraries"
    candidates = [os.environ["CXX"]] if os.environ.get("CXX") else ["c++", "g++", "clang++"]
    for name in candidates:
        path = shutil.which(name)
        if path is None:
            continue
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            return None, f"the C++ compiler {path} does not run ({exc})"
        if out.returncode == 0:
            return path, out.stdout.splitlines()[0] if out.stdout else path
    return None, (f"no C++ compiler found (looked for {', '.join(candidates)} on PATH; set CXX to choose one); "
                  "install g++ or clang++ to run the CUDA kernels on the CPU")


def unavailable_reason() -> str | None:
    """None when the shim can build kernels here, else a sentence saying why not (no C++ compiler, ...)."""
    path, why = _compiler()
    return None if path else why


def cache_dir() -> str:
    """Where built kernel libraries are kept: $SCRATCHATTN_CACHE/cuda-host, else ~/.cache/scratchattn/cuda-host."""
    root = os.environ.get("SCRATCHATTN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "scratchattn")
    return os.path.join(root, "cuda-host")


def _sanitize_flags() -> list[str]:
    value = os.environ.get("SCRATCHATTN_HOST_SANITIZE", "")
    if not value:
        return []
    allowed = {"address", "undefined", "address,undefined"}
    if value not in allowed:
        raise ValueError(f"SCRATCHATTN_HOST_SANITIZE must be one of {sorted(allowed)}; got {value!r}")
    return [f"-fsanitize={value}", "-fno-omit-frame-pointer", "-g"]


def _compiler_flags(dtype) -> list[str]:
    """The C++ command line (without file names) for a ``dtype`` build."""
    flags = ["-x", "c++", "-shared", "-fPIC", "-pthread", "-include", SHIM_HEADER]
    flags += ["-O0", "-g"] if os.environ.get("SCRATCHATTN_HOST_DEBUG") == "1" else ["-O2"]
    for option in launcher.options_for(dtype):
        if option.startswith(("-D", "-U")):
            flags.append(option)
        elif option.startswith(("--std=", "-std=")):
            flags.append("-std=" + option.split("=", 1)[1])
        # Other NVRTC options (code generation for the GPU) have no host meaning and are left out.
    return flags + _sanitize_flags()


def sanitizer_runtime(kind: str = "address") -> str | None:
    """Path of the compiler's sanitizer runtime (``libasan.so``), to ``LD_PRELOAD`` into a sanitized process."""
    path, _ = _compiler()
    if path is None:
        return None
    name = {"address": "libasan.so", "undefined": "libubsan.so"}[kind]
    out = subprocess.run([path, f"-print-file-name={name}"], capture_output=True, text=True)
    found = out.stdout.strip()
    return found if os.path.isabs(found) and os.path.exists(found) else None


# ---------------------------------------------------------------------------------------------------------------
# Generated launchers
# ---------------------------------------------------------------------------------------------------------------


def generate_launchers(signatures) -> str:
    """C++ text of one ``scratchattn_launch_<name>`` per kernel (see the module docstring)."""
    parts = ["// One launcher per kernel, generated by scratchattn.kernels.cuda.host.\n"]
    for name, params in signatures.items():
        unpack = "".join(
            f"    {p.ctype}{'*' if p.pointer else ''} arg_{p.name} = "
            f"*({p.ctype}{'*' if p.pointer else ''}*)args[{i}];\n"
            for i, p in enumerate(params)
        )
        call_args = ", ".join(f"arg_{p.name}" for p in params)
        parts.append(
            f'extern "C" int scratchattn_launch_{name}(const unsigned int* dims, void** args, int threads) {{\n'
            f"{unpack}"
            f"    return cuda_host_run_grid(dims, threads, [=]() {{ {name}({call_args}); }});\n"
            "}\n"
        )
    return "\n".join(parts)


def _translation_unit(path: str, source: str, signatures) -> str:
    quoted = path.replace("\\", "\\\\").replace('"', '\\"')
    return (f'#line 1 "{quoted}"\n{source}\n'
            f'#line 1 "<launchers generated for {os.path.basename(quoted)}>"\n{generate_launchers(signatures)}')


# ---------------------------------------------------------------------------------------------------------------
# Building and loading
# ---------------------------------------------------------------------------------------------------------------


def build_module(source_file, dtype) -> HostModule:
    """Compile (or load from the cache) the host build of ``source_file`` for ``dtype``."""
    global compiler_runs
    compiler, version_line = _compiler()
    if compiler is None:
        raise RuntimeError(f"cannot run CUDA kernels on the CPU: {version_line}")
    dtype = np.dtype(dtype)
    path = launcher.source_path(source_file)
    source = launcher.read_source(path)
    signatures = launcher.parse_kernels(source, os.path.basename(path))
    unit = _translation_unit(path, source, signatures)
    flags = _compiler_flags(dtype)
    with open(SHIM_HEADER, encoding="utf-8") as f:
        shim = f.read()
    digest = hashlib.sha256("\0".join([FORMAT_VERSION, compiler, version_line, *flags, shim, unit]).encode())
    stem = f"{os.path.splitext(os.path.basename(path))[0]}-{dtype.name}-{digest.hexdigest()[:20]}"
    folder = _writable_cache_dir()
    library = os.path.join(folder, stem + ".so")

    if not os.path.exists(library):
        with tempfile.TemporaryDirectory(dir=folder) as work:
            unit_path = os.path.join(work, "unit.cpp")
            with open(unit_path, "w", encoding="utf-8") as f:
                f.write(unit)
            partial = os.path.join(work, "kernel.so")
            command = [compiler, *flags, unit_path, "-o", partial]
            compiler_runs += 1
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise HostCompileError(f"the C++ compiler could not build {os.path.basename(path)} for {dtype} "
                                       f"with the CUDA host shim:\n{result.stderr.strip()}\ncommand: "
                                       + " ".join(command))
            # Keep the translation unit next to the library: it shows the generated launchers.
            _write_atomically(os.path.join(folder, stem + ".cpp"), unit)
            os.replace(partial, library)  # atomic: another process sees no library or a whole one

    try:
        lib = ctypes.CDLL(library)
    except OSError as exc:
        hint = ""
        if os.environ.get("SCRATCHATTN_HOST_SANITIZE"):
            hint = (f"; a sanitized build needs the sanitizer runtime loaded first: "
                    f"LD_PRELOAD={sanitizer_runtime() or 'libasan.so'} python ...")
        raise RuntimeError(f"could not load the host build of {os.path.basename(path)} ({exc}){hint}") from exc
    return HostModule(lib, path, signatures, dtype)


def _writable_cache_dir() -> str:
    """cache_dir(), or a per-user folder in the temporary directory when that cannot be created (read-only home)."""
    folder = cache_dir()
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        folder = os.path.join(tempfile.gettempdir(), f"scratchattn-{os.getuid()}", "cuda-host")
        os.makedirs(folder, exist_ok=True)
    return folder


def _write_atomically(target: str, text: str) -> None:
    partial = f"{target}.{os.getpid()}.tmp"
    with open(partial, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(partial, target)


# ---------------------------------------------------------------------------------------------------------------
# Calling kernels
# ---------------------------------------------------------------------------------------------------------------

_CTYPES = {
    np.dtype(np.float32): ctypes.c_float,
    np.dtype(np.float64): ctypes.c_double,
    np.dtype(np.int32): ctypes.c_int32,
    np.dtype(np.uint32): ctypes.c_uint32,
    np.dtype(np.int64): ctypes.c_int64,
    np.dtype(np.uint64): ctypes.c_uint64,
}


def block_threads() -> int:
    """How many OS threads run blocks: parallel_blocks(n) inside its block, else $SCRATCHATTN_HOST_THREADS, else 1."""
    if _threads_override is not None:
        return _threads_override
    value = os.environ.get("SCRATCHATTN_HOST_THREADS", "1")
    try:
        threads = int(value)
    except ValueError:
        raise ValueError(f"SCRATCHATTN_HOST_THREADS must be a positive integer; got {value!r}") from None
    return max(1, threads)


@contextlib.contextmanager
def parallel_blocks(threads: int):
    """Run the blocks of every host launch inside the ``with`` on ``threads`` OS threads (races become visible)."""
    global _threads_override
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int; got {threads!r}")
    previous, _threads_override = _threads_override, threads
    try:
        yield
    finally:
        _threads_override = previous


class HostModule:
    """A loaded host build of one kernel file for one dtype; ``get_function(name)`` as in ``cupy.RawModule``."""

    def __init__(self, lib, path: str, signatures, dtype):
        self.lib, self.path, self.signatures, self.dtype = lib, path, signatures, dtype

    def get_function(self, name: str) -> HostKernel:
        if name not in self.signatures:
            raise ValueError(f"{os.path.basename(self.path)} has no kernel {name!r}; it has {sorted(self.signatures)}")
        launch = getattr(self.lib, f"scratchattn_launch_{name}")
        launch.argtypes = [ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
        launch.restype = ctypes.c_int
        return HostKernel(name, self.signatures[name], self.dtype, launch)


class HostKernel:
    """One kernel on the CPU, called like a ``cupy.RawKernel``: ``kern(grid, block, args)``; runs to completion."""

    def __init__(self, name: str, params, dtype, launch):
        self.name, self.params, self.dtype, self._launch = name, params, np.dtype(dtype), launch

    def __call__(self, grid, block, args, shared_mem: int = 0, stream=None):
        grid3 = launcher.normalize_dims(grid, "grid", self.name)
        block3 = launcher.normalize_dims(block, "block", self.name)
        if shared_mem:
            raise NotImplementedError(f"{self.name}: the host shim has no shared memory; got shared_mem={shared_mem}")
        launcher.check_args(self.name, self.params, self.dtype, args, np.ndarray, "numpy.ndarray")
        # cuLaunchKernel's convention: one pointer per argument, to a variable holding the argument's value.
        values = [
            ctypes.c_void_p(arg.ctypes.data) if p.pointer else _CTYPES[p.dtype(self.dtype)](arg)
            for p, arg in zip(self.params, args)
        ]
        pointers = (ctypes.c_void_p * max(1, len(values)))(*[ctypes.addressof(v) for v in values])
        dims = (ctypes.c_uint * 6)(*grid3, *block3)
        self._launch(dims, pointers, block_threads())  # ctypes releases the GIL for the call

    def __repr__(self):
        signature = ", ".join(p.declaration() for p in self.params)
        return f"<HostKernel {self.name}({signature}) for {self.dtype}>"
