"""Fuzz cases for the headline ops, the code that runs them in a worker process, and the checks on their results.

A *case* is a plain dict (pickled between processes) holding one call of an op: its input arrays, how each is laid
out in memory (contiguous, reversed with negative strides, strided, Fortran order), its options, the kernel path, and
the gradient to send back through it. Cases are built by ``build_case(op, chooser)``, where the chooser is either
hypothesis (``HypothesisChooser``, so failures shrink) or a seeded NumPy generator (``RandomChooser``, for the fixed
corpus that the AddressSanitizer run replays). The values mix ordinary numbers with the special ones that break
kernels: NaN, +-Inf, +-1e30, subnormals and signed zeros.

The worker process (``_robust_worker.py``) runs a case with :func:`run_case` and sends back the outputs and the
gradients as NumPy arrays, or the exception it raised. If a kernel crashes the worker, the parent sees the pipe close
and reports the case; the test process itself survives. :class:`Worker` is the parent's end of that pipe.

:func:`check_case` judges a result in the parent: the call did not raise, the outputs have the right shapes and
dtypes, finite inputs gave finite outputs, and the values match the NumPy references written in
``tests/functional/test_<op>.py`` (loaded from there by path, so there is one reference per op). Where float32
arithmetic may overflow although the float64 reference does not (1e30 * 1e30), the case is marked as out of range
and only the first two properties are checked.
"""

from __future__ import annotations

import importlib.util
import math
import os
import pickle
import select
import struct
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
WORKER_SCRIPT = os.path.join(HERE, "_robust_worker.py")

SPECIALS = ("nan", "inf", "-inf", "huge", "-huge", "subnormal", "-subnormal", "zero", "-zero")
# Specials that keep every intermediate of the ops far from overflow: cases holding only these are "tame".
TAME_SPECIALS = {"subnormal", "-subnormal", "zero", "-zero"}
VIEWS = ("contiguous", "reversed", "strided", "fortran")
SOME_EMPTY = (0, 1, 1, 2, 2, 3, 3)  # batch sizes: an empty batch in one case out of seven
DTYPES = ("float32", "float64")


def special_value(kind: str, dtype) -> float:
    dtype = np.dtype(dtype)
    return {
        "nan": np.nan,
        "inf": np.inf,
        "-inf": -np.inf,
        "huge": 1e30,
        "-huge": -1e30,
        "subnormal": float(np.finfo(dtype).smallest_subnormal),
        "-subnormal": -float(np.finfo(dtype).smallest_subnormal),
        "zero": 0.0,
        "-zero": -0.0,
    }[kind]


# =================================================================================================================
# choosers: where the randomness comes from
# =================================================================================================================


class RandomChooser:
    """Draws from a seeded NumPy generator (the fixed corpus)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def integer(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def specials(self, size: int, max_count: int):
        """A list of (flat index, special kind) to plant in an array of ``size`` elements."""
        if size == 0 or max_count == 0:
            return []
        count = int(self.rng.integers(0, max_count + 1)) if self.rng.random() < 0.6 else 0
        return [(int(self.rng.integers(size)), SPECIALS[int(self.rng.integers(len(SPECIALS)))]) for _ in range(count)]


class HypothesisChooser:
    """Draws through hypothesis's ``data`` object, so that a failing case shrinks to a small one."""

    def __init__(self, data):
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(self.st.integers(lo, hi))

    def pick(self, options):
        return self.data.draw(self.st.sampled_from(list(options)))

    def specials(self, size: int, max_count: int):
        if size == 0 or max_count == 0:
            return []
        st = self.st
        return self.data.draw(
            st.lists(st.tuples(st.integers(0, size - 1), st.sampled_from(SPECIALS)), max_size=max_count)
        )


def draw_array(ch, shape, dtype, scale=1.0, max_specials=3):
    """An array of normal values * scale with up to ``max_specials`` special values planted in it."""
    seed = ch.integer(0, 2**31 - 1)
    a = (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)
    for index, kind in ch.specials(a.size, max_specials):
        a.reshape(-1)[index] = special_value(kind, dtype)
    return a


def special_kinds(a) -> set:
    """Which special kinds an array holds (by value; ordinary numbers are none)."""
    kinds = set()
    if a is None or a.size == 0:
        return kinds
    finfo = np.finfo(a.dtype)
    if np.isnan(a).any():
        kinds.add("nan")
    if np.isinf(a).any():
        kinds.add("inf")
    finite = np.abs(a[np.isfinite(a)])
    if (finite >= 1e29).any():
        kinds.add("huge")
    if ((finite > 0) & (finite < finfo.tiny)).any():
        kinds.add("subnormal")
    return kinds


# =================================================================================================================
# memory layouts: the same values behind different strides
# =================================================================================================================


def make_view(a: np.ndarray, kind: str) -> np.ndarray:
    """An array equal to ``a`` whose memory layout is ``kind`` (the worker applies it before the call)."""
    if kind == "contiguous" or a.ndim == 0:
        return np.ascontiguousarray(a)
    if kind == "reversed":  # negative strides on every axis
        flipped = np.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])
        return flipped[(slice(None, None, -1),) * a.ndim]
    if kind == "strided":  # every other element of a twice-as-wide buffer along the last axis
        # The gaps hold NaN (or -1 for integers): an op that read them would show it.
        big = np.full(a.shape[:-1] + (2 * a.shape[-1],), np.nan if a.dtype.kind == "f" else -1, dtype=a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if kind == "fortran":
        return np.asfortranarray(a)
    raise ValueError(f"unknown view {kind!r}")


# =================================================================================================================
# building cases
# =================================================================================================================


def _common(ch, op: str, path: str) -> dict:
    return {"op": op, "path": path, "dtype": ch.pick(DTYPES), "inputs": {}, "views": {}, "options": {}}


def _add_input(case, ch, name, array, differentiable=True):
    case["inputs"][name] = array
    case["views"][name] = ch.pick(VIEWS)
    case.setdefault("differentiable", []).append(name) if differentiable else None


def build_affine_grid(ch, path):
    case = _common(ch, "affine_grid", path)
    dtype = case["dtype"]
    n, h, w = ch.pick(SOME_EMPTY), ch.integer(1, 7), ch.integer(1, 7)
    # Near the identity, so that the grid covers the image; then the special values.
    theta = (draw_array(ch, (n, 2, 3), dtype, scale=0.5, max_specials=0) + np.eye(2, 3)).astype(dtype)
    for index, kind in ch.specials(theta.size, 3):
        theta.reshape(-1)[index] = special_value(kind, dtype)
    _add_input(case, ch, "theta", theta)
    case["options"] = {"size": (n, ch.integer(1, 3), h, w), "align_corners": ch.pick((False, True))}
    case["grad_output"] = draw_array(ch, (n, h, w, 2), dtype)
    return case


def build_squeeze_excitation(ch, path):
    case = _common(ch, "squeeze_excitation", path)
    dtype = case["dtype"]
    layout = ch.pick(("NCHW", "NHWC"))
    n, c, h, w, hidden = ch.pick(SOME_EMPTY), ch.integer(1, 6), ch.integer(1, 6), ch.integer(1, 6), ch.integer(1, 3)
    shape = (n, c, h, w) if layout == "NCHW" else (n, h, w, c)
    # Special values go into x (and the incoming gradient); the weights stay ordinary numbers, because 1e30 weights
    # times 1e30 activations overflow float32 where the float64 reference does not, which says nothing of the op.
    _add_input(case, ch, "x", draw_array(ch, shape, dtype, max_specials=4))
    _add_input(case, ch, "w1", draw_array(ch, (hidden, c), dtype, scale=1 / math.sqrt(c), max_specials=0))
    if ch.pick((True, False)):
        _add_input(case, ch, "b1", draw_array(ch, (hidden,), dtype, scale=0.5, max_specials=0))
    _add_input(case, ch, "w2", draw_array(ch, (c, hidden), dtype, max_specials=0))
    if ch.pick((True, False)):
        _add_input(case, ch, "b2", draw_array(ch, (c,), dtype, scale=0.5, max_specials=0))
    case["options"] = {"layout": layout}
    case["grad_output"] = draw_array(ch, shape, dtype, max_specials=2)
    return case


def build_attention(ch, path):
    case = _common(ch, "scaled_dot_product_attention", path)
    dtype = case["dtype"]
    batch = (ch.pick(SOME_EMPTY),) if ch.pick((True, False)) else (ch.pick(SOME_EMPTY), ch.integer(1, 2))
    lq, lk, d, dv = ch.pick((0, 1, 2, 3, 4, 4)), ch.integer(1, 4), ch.integer(1, 4), ch.integer(1, 3)
    _add_input(case, ch, "q", draw_array(ch, batch + (lq, d), dtype))
    _add_input(case, ch, "k", draw_array(ch, batch + (lk, d), dtype))
    _add_input(case, ch, "v", draw_array(ch, batch + (lk, dv), dtype))
    mask_kind = ch.pick(("none", "bool", "float"))
    if mask_kind == "bool":
        seed = ch.integer(0, 2**31 - 1)
        _add_input(case, ch, "mask", np.random.default_rng(seed).random((lq, lk)) < 0.7, differentiable=False)
    elif mask_kind == "float":
        mask = draw_array(ch, (lq, lk), dtype, max_specials=0)
        seed = ch.integer(0, 2**31 - 1)
        mask[np.random.default_rng(seed).random((lq, lk)) < 0.3] = -np.inf
        _add_input(case, ch, "mask", mask, differentiable=False)
    case["options"] = {"scale": ch.pick((None, 0.5, 2.0))}
    case["grad_output"] = draw_array(ch, batch + (lq, dv), dtype)
    return case


def build_grid_sample(ch, path):
    case = _common(ch, "grid_sample", path)
    dtype = case["dtype"]
    layout = ch.pick(("NCHW", "NHWC"))
    n, c, h, w = ch.pick(SOME_EMPTY), ch.pick((0, 1, 2, 3, 3, 3, 3)), ch.integer(1, 5), ch.integer(1, 5)
    h_out, w_out = ch.integer(1, 4), ch.integer(1, 4)
    shape = (n, c, h, w) if layout == "NCHW" else (n, h, w, c)
    _add_input(case, ch, "input", draw_array(ch, shape, dtype, max_specials=2))
    # Grid points mostly inside [-1, 1], some outside, with NaN, +-Inf, 1e30, subnormals and zeros planted.
    _add_input(case, ch, "grid", draw_array(ch, (n, h_out, w_out, 2), dtype, scale=ch.pick((0.6, 1.5)),
                                            max_specials=4))
    case["options"] = {"mode": ch.pick(("bilinear", "nearest", "bicubic")),
                       "padding_mode": ch.pick(("zeros", "border", "reflection")),
                       "align_corners": ch.pick((False, True)), "layout": layout}
    out_shape = (n, c, h_out, w_out) if layout == "NCHW" else (n, h_out, w_out, c)
    case["grad_output"] = draw_array(ch, out_shape, dtype, max_specials=1)
    return case


BUILDERS = {
    "affine_grid": build_affine_grid,
    "squeeze_excitation": build_squeeze_excitation,
    "scaled_dot_product_attention": build_attention,
    "grid_sample": build_grid_sample,
}


def build_case(op: str, ch, path: str) -> dict:
    return BUILDERS[op](ch, path)


def describe(case) -> str:
    """A readable account of a case: enough to rebuild it by hand."""
    lines = [f"op={case['op']} path={case['path']} dtype={case['dtype']} options={case['options']}"]
    with np.printoptions(precision=17, threshold=200, linewidth=110):
        for name, a in case["inputs"].items():
            lines.append(f"  {name} {a.shape} view={case['views'][name]}:\n    " + repr(a).replace("\n", "\n    "))
        g = case.get("grad_output")
        if g is not None:
            lines.append(f"  grad_output {g.shape}:\n    " + repr(g).replace("\n", "\n    "))
    return "\n".join(lines)


# =================================================================================================================
# running a case (in the worker)
# =================================================================================================================


def run_case(case) -> dict:
    """Run one case and return {"outputs": [arrays], "grads": {name: array}} or {"error": (type, message)}."""
    import scratchattn as sa
    from scratchattn import backend
    from scratchattn import functional as F

    try:
        device = "cuda" if case["path"] == "cupy" else "cpu"
        tensors = {}
        for name, a in case["inputs"].items():
            view = make_view(a, case["views"][name])
            data = backend.to_device(view, device) if device == "cuda" else view
            tensors[name] = sa.Tensor(data, requires_grad=name in case.get("differentiable", ()))
        opts = case["options"]
        context = backend.use_kernels(case["path"]) if device == "cpu" else _nullcontext()
        with context:
            if case["op"] == "affine_grid":
                out = F.affine_grid(tensors["theta"], opts["size"], align_corners=opts["align_corners"])
            elif case["op"] == "squeeze_excitation":
                t = tensors
                out = F.squeeze_excitation(t["x"], t["w1"], t.get("b1"), t["w2"], t.get("b2"), layout=opts["layout"])
            elif case["op"] == "scaled_dot_product_attention":
                t = tensors
                out = F.scaled_dot_product_attention(t["q"], t["k"], t["v"], mask=t.get("mask"), scale=opts["scale"])
            elif case["op"] == "grid_sample":
                out = F.grid_sample(tensors["input"], tensors["grid"], **opts)
            else:
                raise ValueError(f"unknown op {case['op']!r}")
            outputs = [out.numpy()]
            grads = {}
            if case.get("grad_output") is not None and out.requires_grad:
                out.backward(backend.to_device(case["grad_output"], device))
                grads = {name: None if t.grad is None else backend.to_numpy(t.grad) for name, t in tensors.items()
                         if t.requires_grad}
        return {"outputs": outputs, "grads": grads}
    except Exception as exc:  # noqa: BLE001 - every exception is a finding to report to the parent
        return {"error": (type(exc).__name__, str(exc))}


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# =================================================================================================================
# the worker process, seen from the parent
# =================================================================================================================


class WorkerCrashed(AssertionError):
    """The worker process died (or hung) while running a case."""


def send_message(stream, obj) -> None:
    blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(blob)) + blob)
    stream.flush()


def read_exactly(stream, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def receive_message(stream):
    header = read_exactly(stream, 8)
    if header is None:
        return None
    blob = read_exactly(stream, struct.unpack("<Q", header)[0])
    return None if blob is None else pickle.loads(blob)


class Worker:
    """A process that runs cases one at a time: ``run(case)`` returns its result or raises WorkerCrashed.

    ``env`` adds environment variables (the sanitizer run sets LD_PRELOAD and SCRATCHATTN_HOST_SANITIZE). The
    worker's stderr goes to a file, so that a crash report (a Python traceback, a segfault, an AddressSanitizer
    report) can be quoted in the failure message. After a crash the next ``run`` starts a fresh worker.
    """

    def __init__(self, env: dict | None = None, timeout: float = 300.0, log_dir: str | None = None):
        self.env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {}))
        self.timeout = timeout
        self.log_dir = log_dir or os.path.join(REPO, ".pytest_cache")
        self.process = None
        self.cases_run = 0

    def _start(self):
        os.makedirs(self.log_dir, exist_ok=True)
        self.stderr_path = os.path.join(self.log_dir, f"robust-worker-{os.getpid()}-{time.monotonic_ns()}.log")
        self.stderr_file = open(self.stderr_path, "w+b")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen([sys.executable, WORKER_SCRIPT], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.stderr_file, env=self.env, cwd=REPO)

    def stderr_tail(self, chars: int = 6000) -> str:
        self.stderr_file.flush()
        self.stderr_file.seek(0)
        return self.stderr_file.read().decode("utf-8", "replace")[-chars:]

    def run(self, case) -> dict:
        if self.process is None or self.process.poll() is not None:
            self._start()
        try:
            send_message(self.process.stdin, case)
            ready, _, _ = select.select([self.process.stdout], [], [], self.timeout)
            result = receive_message(self.process.stdout) if ready else "timeout"
        except (BrokenPipeError, OSError):
            result = None
        if result is None or result == "timeout":
            if result == "timeout":
                self.process.kill()
            code = self.process.wait(timeout=60)
            what = f"hung for {self.timeout:.0f} s" if result == "timeout" else f"died with exit status {code}"
            tail = self.stderr_tail()
            self.close()
            raise WorkerCrashed(f"the worker process {what} running this case:\n{describe(case)}\n"
                                f"--- its stderr (last part) ---\n{tail}")
        self.cases_run += 1
        return result

    def close(self):
        if self.process is not None:
            if self.process.poll() is None:
                try:
                    self.process.stdin.close()
                    self.process.wait(timeout=30)
                except (OSError, subprocess.TimeoutExpired):
                    self.process.kill()
                    self.process.wait()
            self.stderr_file.close()
            with _quiet():
                os.unlink(self.stderr_path)
        self.process = None


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        return kind is not None and issubclass(kind, OSError)


# =================================================================================================================
# checking a result (in the parent)
# =================================================================================================================


def _load_test_module(filename: str):
    """A test module of tests/functional by path (its references), imported once under a private name."""
    name = "robust_reference_" + os.path.splitext(filename)[0]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "tests", "functional", filename))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class CaseFailure(AssertionError):
    pass


def assert_matches(actual, expected, dtype, what: str, case, scale: float = 1.0):
    """``actual`` equals the float64 reference ``expected``: NaN where it is NaN, the same infinity where it is
    infinite, and within a tolerance elsewhere (relative to the magnitude of the values involved)."""
    actual = np.asarray(actual)
    if actual.shape != expected.shape:
        raise CaseFailure(f"{what}: shape {actual.shape}, expected {expected.shape}\n{describe(case)}")
    eps = float(np.finfo(dtype).eps)
    ref_nan, ref_inf = np.isnan(expected), np.isinf(expected)
    finite = ~(ref_nan | ref_inf)
    bad = np.zeros(expected.shape, bool)
    bad |= ref_nan & ~np.isnan(actual)
    bad |= ref_inf & (actual != expected)
    magnitude = np.max(np.abs(expected[finite]), initial=0.0)
    tolerance = 64 * eps * (np.abs(expected) + max(scale, magnitude, 1.0))
    with np.errstate(invalid="ignore"):
        bad |= finite & ~(np.abs(actual.astype(np.float64) - expected) <= tolerance)
    if bad.any():
        where = np.argwhere(bad)[:5]
        rows = [f"    at {tuple(int(i) for i in w)}: got {actual[tuple(w)]!r}, expected {expected[tuple(w)]!r}"
                for w in where]
        raise CaseFailure(f"{what}: {int(bad.sum())} of {bad.size} values differ from the reference\n"
                          + "\n".join(rows) + f"\n{describe(case)}")


def assert_finite(arrays: dict, case, why: str):
    for what, a in arrays.items():
        if a is not None and not np.isfinite(a).all():
            raise CaseFailure(f"{what} holds {int((~np.isfinite(a)).sum())} non-finite values although {why}\n"
                              f"{describe(case)}")


def check_case(case, result) -> None:
    """Raise CaseFailure unless ``result`` is right for ``case`` (see the module docstring)."""
    if "error" in result:
        kind, message = result["error"]
        raise CaseFailure(f"the op raised {kind}: {message}\n{describe(case)}")
    CHECKS[case["op"]](case, result)


def _expect_dtype(case, result):
    dtype = np.dtype(case["dtype"])
    for a in result["outputs"]:
        if a.dtype != dtype:
            raise CaseFailure(f"output dtype {a.dtype}, expected {dtype}\n{describe(case)}")
    for name, g in result["grads"].items():
        if g is None:
            raise CaseFailure(f"no gradient for {name}\n{describe(case)}")
        if g.dtype != dtype or g.shape != case["inputs"][name].shape:
            raise CaseFailure(f"gradient of {name}: {g.dtype} {g.shape}, expected {dtype} "
                              f"{case['inputs'][name].shape}\n{describe(case)}")


def check_affine_grid(case, result):
    ref = _load_test_module("test_affine_grid.py")
    theta, dtype = case["inputs"]["theta"], np.dtype(case["dtype"])
    n, _, h, w = case["options"]["size"]
    align = case["options"]["align_corners"]
    _expect_dtype(case, result)
    with np.errstate(all="ignore"):
        expected = ref.ref_affine_grid(theta, h, w, align)
        expected_grad = ref.ref_affine_grid_backward(case["grad_output"], align)
    (grid,) = result["outputs"]
    # Each grid value is a sum of three terms |theta| * |coordinate| <= 1e30, which never overflows float32; the
    # rounding error is relative to the largest term (two 1e30 terms may cancel), hence the scale.
    largest = lambda a: float(np.max(np.abs(a[np.isfinite(a)]), initial=0.0))  # noqa: E731
    assert_matches(grid, expected, dtype, "grid", case, scale=3 * largest(theta))
    if np.isfinite(theta).all():
        assert_finite({"grid": grid}, case, "theta is finite")
    if "theta" in result["grads"]:
        g = case["grad_output"]
        assert_matches(result["grads"]["theta"], expected_grad, dtype, "grad theta", case, scale=g.size * largest(g))
        if np.isfinite(g).all():
            assert_finite({"grad theta": result["grads"]["theta"]}, case, "the incoming gradient is finite")


def check_squeeze_excitation(case, result):
    ref = _load_test_module("test_squeeze_excitation.py")
    inputs, dtype, layout = case["inputs"], np.dtype(case["dtype"]), case["options"]["layout"]
    x, w1, b1, w2, b2 = (inputs.get(k) for k in ("x", "w1", "b1", "w2", "b2"))
    _expect_dtype(case, result)
    (y,) = result["outputs"]
    if y.shape != x.shape:
        raise CaseFailure(f"y has shape {y.shape}, expected x's {x.shape}\n{describe(case)}")
    if "huge" in special_kinds(x):
        # +-1e30 in one channel cancel in the float32 mean up to an error of 1e30 * eps, which can move the gate
        # anywhere in [0, 1]; what must hold is that y = x * s with 0 <= s <= 1, and NaN exactly where x is NaN
        # (a NaN anywhere in a sample spreads through the excitation to the whole sample).
        with np.errstate(invalid="ignore"):
            outside = np.isfinite(y) & ((np.abs(y) > np.abs(x)) | (np.sign(y) * np.sign(x) < 0))
        if outside.any():
            raise CaseFailure(f"y = x * s with a gate outside [0, 1] at {np.argwhere(outside)[:5].tolist()}\n"
                              f"{describe(case)}")
    else:
        with np.errstate(all="ignore"):
            expected, _, _ = ref.reference_forward(x, w1, b1, w2, b2, layout)
        assert_matches(y, expected, dtype, "y", case)
    if np.isfinite(x).all():
        assert_finite({"y": y}, case, "x is finite")
    g = case["grad_output"]
    tame = (special_kinds(x) | special_kinds(g)) <= TAME_SPECIALS
    if result["grads"] and tame:
        # Gradients multiply x by g and by the weights: with 1e30 in both they overflow float32, so they are
        # compared only for ordinary values (subnormals and signed zeros included).
        with np.errstate(all="ignore"):
            dx, dw1, db1, dw2, db2 = ref.reference_backward(g, x, w1, b1, w2, b2, layout)
        expected_grads = {"x": dx, "w1": dw1, "b1": db1, "w2": dw2, "b2": db2}
        for name, grad in result["grads"].items():
            assert_matches(grad, expected_grads[name], dtype, f"grad {name}", case)
        assert_finite({f"grad {k}": v for k, v in result["grads"].items()}, case, "x and the gradient are finite")


def check_attention(case, result):
    ref = _load_test_module("test_attention.py")
    inputs, dtype = case["inputs"], np.dtype(case["dtype"])
    q, k, v, mask = (inputs.get(name) for name in ("q", "k", "v", "mask"))
    _expect_dtype(case, result)
    (out,) = result["outputs"]
    batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    if out.shape != batch + (q.shape[-2], v.shape[-1]):
        raise CaseFailure(f"output shape {out.shape}, expected {batch + (q.shape[-2], v.shape[-1])}\n{describe(case)}")
    largest_v = float(np.max(np.abs(v[np.isfinite(v)]), initial=0.0))
    if "huge" in special_kinds(q) | special_kinds(k):
        # Scores of 1e30 (or their overflow to inf in float32) make the softmax hinge on rounding; what must hold
        # is that every finite output row is a convex combination of the rows of v (weights >= 0 summing to 1).
        lo = np.broadcast_to(np.min(v, axis=-2, keepdims=True), out.shape)
        hi = np.broadcast_to(np.max(v, axis=-2, keepdims=True), out.shape)
        slack = 64 * float(np.finfo(dtype).eps) * max(largest_v, 1.0) * k.shape[-2]
        with np.errstate(invalid="ignore"):
            outside = np.isfinite(out) & np.isfinite(lo) & np.isfinite(hi) & ((out < lo - slack) | (out > hi + slack))
        # ... or a row of zeros: a fully masked row, or one whose scores all overflowed to -inf.
        # (0 * v where v is NaN or Inf: NaN in those columns)
        outside &= ~((out == 0) | np.isnan(out)).all(axis=-1, keepdims=True)
        if outside.any():
            raise CaseFailure(f"output outside the convex hull of v's rows at {np.argwhere(outside)[:5].tolist()}\n"
                              f"{describe(case)}")
    else:
        # Without 1e30 in q or k the scores never overflow float32 (|q|, |k| ~ 1, d <= 4).
        with np.errstate(all="ignore"):
            expected, _ = ref.reference_attention(q, k, v, mask=mask, scale=case["options"]["scale"])
            # A fully masked row has weights 0 (the reference skips it, leaving 0); the op multiplies those zeros
            # by v like any other row, so a NaN or Inf in v makes it NaN there, as IEEE arithmetic says.
            skipped = _fully_masked_rows(q, k, mask, case["options"]["scale"])
            zero_rows = np.zeros(k.shape[-2]) @ np.broadcast_to(v, batch + v.shape[-2:]).astype(np.float64)
            expected = np.where(skipped[..., None], zero_rows[..., None, :], expected)
        assert_matches(out, expected, dtype, "output", case, scale=largest_v * k.shape[-2])
        if all(np.isfinite(a).all() for a in (q, k, v)):
            assert_finite({"output": out}, case, "q, k and v are finite")
    tame = set().union(*(special_kinds(a) for a in (q, k, v, case["grad_output"]))) <= TAME_SPECIALS
    if result["grads"] and tame:
        assert_finite({f"grad {k}": v for k, v in result["grads"].items()}, case, "all inputs are ordinary numbers")


def _fully_masked_rows(q, k, mask, scale):
    """Boolean (..., Lq): the rows whose scores + mask are all -inf, which the op defines to weigh every key 0."""
    q64, k64 = q.astype(np.float64), k.astype(np.float64)
    with np.errstate(all="ignore"):
        scores = q64 @ np.swapaxes(k64, -1, -2) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
        if mask is not None and mask.dtype == bool:
            scores = np.where(mask, scores, -np.inf)
        elif mask is not None:
            scores = scores + mask
    return np.isneginf(scores).all(axis=-1)


def grid_semantics(grid, h, w, mode, padding_mode, align_corners):
    """The documented treatment of special grid points, as a grid the finite-only reference can read.

    Returns (grid for the reference, checked, zero), both (N, H_out, W_out): ``checked`` marks the points whose value
    the reference predicts, ``zero`` the points that must read 0 and pass no gradient. A non-finite coordinate
    (functional/grid_sample.py's docstring): under "zeros" the point reads 0, whatever the other coordinate; under
    "border" NaN samples the first pixel and +-Inf the edge; under "reflection" NaN and +-Inf sample the first pixel.
    Not predicted: bicubic with "border"/"reflection" at a non-finite point (NaN, as in PyTorch), and "reflection"
    of a coordinate beyond 1e4, which float32 folds differently from the float64 reference.
    """
    g = grid.astype(np.float64)
    checked = np.ones(grid.shape[:3], bool)
    zero = np.zeros(grid.shape[:3], bool)
    for axis, size in ((0, w), (1, h)):
        v = g[..., axis]
        nan, pos, neg = np.isnan(v), np.isposinf(v), np.isneginf(v)
        bad = nan | pos | neg
        first_pixel = -1.0 if align_corners else 1.0 / size - 1.0
        if padding_mode == "zeros":
            zero |= bad
            v[bad] = 0.0
        elif mode == "bicubic":
            checked &= ~bad
            v[bad] = 0.0
        elif padding_mode == "border":
            v[nan], v[pos], v[neg] = first_pixel, 1e6, -1e6
        else:
            v[bad] = first_pixel
        if padding_mode == "reflection":
            checked &= ~(np.abs(v) > 1e4)
        # Beyond 2^52 the reference's bicubic tap distances (ix - k in float64) lose their fractions; +-1e6 lies
        # outside every image just the same (zeros: reads 0; border: the edge).
        np.clip(v, -1e6, 1e6, out=v)
    return g, checked, zero


def _near_kink(grid, h, w, align_corners):
    """(N, H_out, W_out, 2): the coordinates whose pixel position is (nearly) an integer or a half-integer, where the
    sampled function has a kink and the kernels take a one-sided derivative while the reference takes 0."""
    ref = _load_test_module("grid_sample_reference.py")
    near = np.zeros(grid.shape, bool)
    for axis, size in ((0, w), (1, h)):
        with np.errstate(all="ignore"):
            ix, _ = ref.unnormalize(grid[..., axis], size, align_corners)
            frac = np.abs(2 * ix - np.round(2 * ix))
        near[..., axis] = ~(frac > 2e-4)
    return near


def check_grid_sample(case, result):
    ref = _load_test_module("grid_sample_reference.py")
    opts, dtype = case["options"], np.dtype(case["dtype"])
    inp, grid, g = case["inputs"]["input"], case["inputs"]["grid"], case["grad_output"]
    nhwc = opts["layout"] == "NHWC"
    img = inp.transpose(0, 3, 1, 2) if nhwc else inp  # the reference works in NCHW
    n, c, h, w = img.shape
    _expect_dtype(case, result)
    (out,) = result["outputs"]
    expected_shape = (n, grid.shape[1], grid.shape[2], c) if nhwc else (n, c, grid.shape[1], grid.shape[2])
    if out.shape != expected_shape:
        raise CaseFailure(f"output shape {out.shape}, expected {expected_shape}\n{describe(case)}")
    out = out.transpose(0, 3, 1, 2) if nhwc else out
    mode, padding, align = opts["mode"], opts["padding_mode"], opts["align_corners"]
    ref_grid, checked, zero = grid_semantics(grid, h, w, mode, padding, align)
    scale = float(np.max(np.abs(img[np.isfinite(img)]), initial=0.0))
    if np.isfinite(img).all():
        expected = ref.grid_sample_reference(img, ref_grid, mode, padding, align)
        expected[np.broadcast_to(zero[:, None], expected.shape)] = 0.0
        mask = np.broadcast_to(checked[:, None], expected.shape)
        assert_matches(np.where(mask, out, 0), np.where(mask, expected, 0), dtype, "output", case, scale=2 * scale)
        if np.isfinite(grid).all():
            assert_finite({"output": out}, case, "the input and the grid are finite")
    grads = result["grads"]
    if not grads:
        return
    grad_grid = grads["grid"]
    finite_points = np.isfinite(grid)
    tame = (special_kinds(inp) | special_kinds(g)) <= TAME_SPECIALS
    if tame and (grad_grid[~finite_points] != 0).any() and not (mode == "bicubic" and padding != "zeros"):
        raise CaseFailure(f"grad grid is not 0 at non-finite grid coordinates: {grad_grid[~finite_points]}\n"
                          f"{describe(case)}")
    if tame and checked.all():
        g_nchw = (g.transpose(0, 3, 1, 2) if nhwc else g).astype(np.float64)
        g_nchw[np.broadcast_to(zero[:, None], g_nchw.shape)] = 0.0  # points reading 0 pass no gradient
        with np.errstate(all="ignore"):
            d_img, d_grid = ref.grid_sample_reference_backward(img, ref_grid, g_nchw, mode, padding, align)
        d_inp = d_img.transpose(0, 2, 3, 1) if nhwc else d_img
        g_scale = float(np.max(np.abs(g), initial=0.0))
        assert_matches(grads["input"], d_inp, dtype, "grad input", case, scale=16 * g_scale)
        # The grid gradient away from the kinks of the sampled function (integer and half-integer pixel positions).
        keep = finite_points & ~_near_kink(ref_grid, h, w, align)
        size_scale = max(h, w) * max(c, 1) * 16
        assert_matches(np.where(keep, grad_grid, 0), np.where(keep, d_grid, 0), dtype, "grad grid", case,
                       scale=size_scale * scale * g_scale)
        assert_finite({"grad input": grads["input"], "grad grid": grad_grid}, case,
                      "the input, the gradient and the grid's finite points are ordinary numbers")


CHECKS = {
    "affine_grid": check_affine_grid,
    "squeeze_excitation": check_squeeze_excitation,
    "scaled_dot_product_attention": check_attention,
    "grid_sample": check_grid_sample,
}
