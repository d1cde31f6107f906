"""Property-based fuzzing of the headline ops on every kernel path, each case run in a worker process.

Hypothesis draws shapes (batches of 0 included), dtypes, options, memory layouts (contiguous, negative strides,
strided, Fortran order) and values with NaN, +-Inf, +-1e30, subnormals and signed zeros planted in them
(``_robust_fuzz.build_case``). A worker process runs each case (``_robust_worker.py``), so a kernel that crashes
takes down the worker, not pytest: the test then fails with the case that did it, and hypothesis shrinks it. For
every case the parent checks that the op did not raise, that outputs and gradients have the right shapes and dtypes,
that finite inputs gave finite outputs, and that the values match the NumPy references of tests/functional.

The number of cases per op and path is ``SCRATCHATTN_FUZZ_EXAMPLES`` (default 60: about a second each here).
"""

from __future__ import annotations

import os

import _robust_fuzz as fuzz
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("SCRATCHATTN_FUZZ_EXAMPLES", "60"))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,  # the first case of a path compiles its kernels
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def worker():
    w = fuzz.Worker()
    yield w
    w.close()


def run_and_check(worker, case):
    fuzz.check_case(case, worker.run(case))


@pytest.mark.parametrize("op", sorted(fuzz.BUILDERS))
@FUZZ_SETTINGS
@given(data=st.data())
def test_fuzz_op(worker, kernel_path, op, data):
    if op == "scaled_dot_product_attention" and kernel_path.name == "cuda-host":
        pytest.skip("scaled_dot_product_attention has no kernel pair: its one CPU path is fuzzed as 'numba'")
    run_and_check(worker, fuzz.build_case(op, fuzz.HypothesisChooser(data), kernel_path.name))


# =================================================================================================================
# the machinery itself: a crash is caught and reported with its case; the checks can fail
# =================================================================================================================


def test_a_crashing_case_is_reported_and_the_worker_restarts(worker):
    with pytest.raises(fuzz.WorkerCrashed, match=r"(?s)died with exit status 3 running this case:\nop=exit"):
        worker.run({"op": "exit", "status": 3, "path": "numba", "dtype": "float32", "options": {}, "inputs": {},
                    "views": {}})
    case = fuzz.build_case("affine_grid", fuzz.RandomChooser(0), "numba")
    run_and_check(worker, case)  # a fresh worker takes over


def test_a_segfault_in_the_worker_is_reported(tmp_path):
    # A worker killed by a signal (what a wild read does) is told apart from one that exits.
    worker = fuzz.Worker(env={"PYTHONFAULTHANDLER": "1"})
    try:
        with pytest.raises(fuzz.WorkerCrashed, match=r"died with exit status -11"):
            worker.run({"op": "segfault", "path": "numba", "dtype": "float32", "options": {}, "inputs": {},
                        "views": {}})
    finally:
        worker.close()


def test_views_hold_the_same_values_with_other_strides():
    a = np.arange(24.0).reshape(2, 3, 4)
    views = {kind: fuzz.make_view(a, kind) for kind in fuzz.VIEWS}
    for kind, view in views.items():
        np.testing.assert_array_equal(view, a, err_msg=kind)
    assert all(s < 0 for s in views["reversed"].strides)
    assert not views["strided"].flags.c_contiguous and not views["strided"].flags.f_contiguous
    assert views["fortran"].flags.f_contiguous and not views["fortran"].flags.c_contiguous


def test_the_checks_catch_a_wrong_result(worker):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    case = {"op": "squeeze_excitation", "path": "numba", "dtype": "float32", "options": {"layout": "NCHW"},
            "inputs": {"x": x, "w1": rng.standard_normal((2, 3)).astype(np.float32),
                       "w2": rng.standard_normal((3, 2)).astype(np.float32)},
            "views": {"x": "reversed", "w1": "contiguous", "w2": "strided"}, "differentiable": ["x", "w1", "w2"],
            "grad_output": np.ones_like(x)}
    result = worker.run(case)
    fuzz.check_case(case, result)
    assert set(result["grads"]) == {"x", "w1", "w2"}
    result["outputs"][0][1, 2, 3, 0] += 1e-3
    with pytest.raises(fuzz.CaseFailure, match=r"y: 1 of 96 values differ from the reference\n    at \(1, 2, 3, 0\)"):
        fuzz.check_case(case, result)
    result["outputs"][0][1, 2, 3, 0] = np.nan
    with pytest.raises(fuzz.CaseFailure, match="y: 1 of 96"):
        fuzz.check_case(case, result)
    result = worker.run(case)
    result["grads"]["w1"][0, 0] = np.inf
    with pytest.raises(fuzz.CaseFailure, match="grad w1: 1 of 6"):
        fuzz.check_case(case, result)
    with pytest.raises(fuzz.CaseFailure, match="the op raised ValueError: boom"):
        fuzz.check_case(case, {"error": ("ValueError", "boom")})
