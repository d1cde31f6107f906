"""Tests of ``sa.gradcheck`` itself: it passes a right backward, catches a wrong one with a useful message, and
checks float32 inputs in float64."""

from __future__ import annotations

import re

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend


class Cube(sa.Function):
    """y = x^3 with a correct (``wrong=False``) or a deliberately wrong backward (2x^2 instead of 3x^2)."""

    def __init__(self, wrong=False):
        self.wrong = wrong

    def forward(self, x):
        self.save_for_backward(x)
        return x**3

    def backward(self, g):
        (x,) = self.saved_arrays
        return g * (2 if self.wrong else 3) * x * x


class ScaleBy(sa.Function):
    """y = a * b with b's gradient wrong only in element 2 of b."""

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a * b

    def backward(self, g):
        a, b = self.saved_arrays
        db = g * a
        db[2] += 0.5
        return g * b, db


def test_gradcheck_passes_a_correct_backward(device):
    x = sa.tensor(backend.to_device(np.array([0.5, -1.25, 2.0]), device), requires_grad=True)
    assert sa.gradcheck(lambda t: Cube()(t), [x])


def test_gradcheck_catches_a_wrong_backward():
    x = sa.tensor(np.array([0.5, -1.25, 2.0]), requires_grad=True)
    with pytest.raises(sa.GradcheckError) as info:
        sa.gradcheck(lambda t: Cube(wrong=True)(t), [x])
    assert isinstance(info.value, AssertionError)
    message = str(info.value)
    assert "input 0" in message and "index (" in message and "analytic" in message and "numerical" in message


def test_gradcheck_message_names_the_input_the_index_and_both_values():
    a = sa.tensor(np.array([1.0, 2.0, 3.0, 4.0]), requires_grad=True)
    b = sa.tensor(np.array([0.5, 0.25, -1.0, 2.0]), requires_grad=True)
    with pytest.raises(sa.GradcheckError) as info:
        sa.gradcheck(lambda p, q: ScaleBy()(p, q), [a, b], seed=3)
    message = str(info.value)
    assert "input 1" in message, message
    assert "index (2,)" in message, message
    assert "1 of 4 elements" in message, message
    # the numerical value is v_2 * a_2 for the cotangent v that gradcheck drew; the analytic one is off by 0.5
    analytic = float(re.search(r"analytic (\S+),", message).group(1))
    numerical = float(re.search(r"numerical (\S+),", message).group(1))
    assert abs(analytic - numerical - 0.5) < 1e-6, message


def test_gradcheck_checks_float32_inputs_in_float64():
    seen = []

    def fn(t):
        seen.append(t.dtype)
        return Cube()(t)

    x = sa.tensor(np.array([0.3, -0.7], dtype=np.float32), requires_grad=True)
    # eps=1e-6 in float32 would perturb by less than the float32 spacing of ~0.5 and fail; in float64 it passes.
    assert sa.gradcheck(fn, [x], eps=1e-6, atol=1e-8, rtol=1e-6)
    assert set(seen) == {np.dtype(np.float64)}
    assert x.dtype == np.float32 and x.grad is None  # the caller's tensor is not touched


def test_gradcheck_skips_inputs_without_requires_grad_and_passes_non_tensors():
    x = sa.tensor(np.array([1.0, 2.0]), requires_grad=True)
    c = sa.tensor(np.array([3.0, 4.0]))
    assert sa.gradcheck(lambda t, k, scale: (t * k) * scale, [x, c, 2.5])


def test_gradcheck_needs_something_to_check():
    with pytest.raises(ValueError, match="requires_grad"):
        sa.gradcheck(lambda t: t * 2, [sa.tensor(np.array([1.0]))])


def test_gradcheck_sees_a_missing_gradient_as_zero():
    # A backward that returns None for an input that does matter is caught, not silently skipped.
    class DropsB(sa.Function):
        def forward(self, a, b):
            self.b = b
            return a * b

        def backward(self, g):
            return g * self.b, None

    a = sa.tensor(np.array([1.0]), requires_grad=True)
    b = sa.tensor(np.array([2.0]), requires_grad=True)
    with pytest.raises(sa.GradcheckError, match="input 1"):
        sa.gradcheck(lambda p, q: DropsB()(p, q), [a, b])


def test_gradcheck_checks_parameters_a_function_reads_implicitly():
    """params=: tensors fn closes over (a module's parameters) are checked in place; a wrong gradient is named."""
    rng = np.random.default_rng(5)
    w = sa.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    w.grad = np.full((3, 4), 7.0)  # an earlier gradient: gradcheck must leave it as it was
    x = sa.tensor(rng.standard_normal((2, 4)), requires_grad=True)
    assert sa.gradcheck(lambda t: t @ w.transpose(0, 1), [x], params=[("weight", w)])
    np.testing.assert_array_equal(w.grad, np.full((3, 4), 7.0))

    class HalfGradient(sa.Function):  # y = a * x with the gradient for a off by a factor of two
        def forward(self, a, x):
            self.save_for_backward(a, x)
            return a * x

        def backward(self, g):
            a, x = self.saved_arrays
            return 0.5 * g * x, g * a

    a = sa.tensor(rng.standard_normal(5), requires_grad=True)
    with pytest.raises(sa.GradcheckError, match=r"parameter scale \(shape \(5,\)\)"):
        sa.gradcheck(lambda t: HalfGradient()(a, t), [sa.tensor(rng.standard_normal(5))], params=[("scale", a)])
    with pytest.raises(TypeError, match="float64"):
        sa.gradcheck(lambda t: t * 2, [x], params=[sa.tensor(np.ones(3, dtype=np.float32), requires_grad=True)])
