"""Tests of the backward walk: accumulation, order, retain_graph, no_grad, deep graphs, freeing, multiple outputs.

Small hand-made Functions below log what the engine does to them, so each test can check the engine itself
rather than some op's formula.
"""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend


def on(device, a):
    return backend.to_device(np.asarray(a, dtype=np.float64), device)


class Scale(sa.Function):
    """y = k * x; logs its name into ``log`` each time its backward runs, with the gradient it received."""

    def __init__(self, k, name, log):
        self.k, self.name, self.log = k, name, log

    def forward(self, x):
        self.save_for_backward(x)
        return self.k * x

    def backward(self, g):
        self.log.append((self.name, backend.to_numpy(g).copy()))
        return self.k * g


class SplitHalves(sa.Function):
    """Two outputs: the first and second half of a 1-D array."""

    def forward(self, x):
        self.n = x.shape[0] // 2
        return x[: self.n].copy(), x[self.n :].copy()

    def backward(self, g_first, g_second):
        xp = backend.get_array_module(g_first)
        return xp.concatenate([g_first, g_second])


class ValuesAndArgmax(sa.Function):
    """Two outputs, one of them integer: the row maxima and their positions."""

    def forward(self, x):
        self.x_shape = x.shape
        self.idx = x.argmax(axis=1)
        return x.max(axis=1), self.idx

    def backward(self, g_values, g_idx):
        xp = backend.get_array_module(g_values)
        dx = xp.zeros(self.x_shape, dtype=g_values.dtype)
        dx[xp.arange(self.x_shape[0]), self.idx] = g_values
        return dx


# =================================================================================================================
# accumulation and broadcasting
# =================================================================================================================


def test_broadcasting_gradients_are_summed_back_to_each_input_shape(device):
    a = sa.tensor(on(device, np.arange(3.0).reshape(3, 1)), requires_grad=True)
    b = sa.tensor(on(device, np.arange(4.0) + 1), requires_grad=True)
    c = sa.tensor(on(device, 2.0), requires_grad=True)  # 0-d
    y = (a * b + c).sum()
    y.backward()
    assert a.grad.shape == (3, 1) and b.grad.shape == (4,) and c.grad.shape == ()
    np.testing.assert_allclose(backend.to_numpy(a.grad), np.full((3, 1), 1 + 2 + 3 + 4))
    np.testing.assert_allclose(backend.to_numpy(b.grad), np.full(4, 0 + 1 + 2))
    np.testing.assert_allclose(backend.to_numpy(c.grad), 12.0)


def test_broadcast_over_a_middle_axis(device):
    a = sa.tensor(on(device, np.ones((2, 1, 4))), requires_grad=True)
    b = sa.tensor(on(device, np.arange(24.0).reshape(2, 3, 4)), requires_grad=True)
    (a * b).backward(on(device, np.ones((2, 3, 4))))
    np.testing.assert_allclose(backend.to_numpy(a.grad), np.arange(24.0).reshape(2, 3, 4).sum(1, keepdims=True))
    np.testing.assert_allclose(backend.to_numpy(b.grad), np.ones((2, 3, 4)))


def test_a_tensor_used_twice_accumulates(device):
    x = sa.tensor(on(device, [1.0, -2.0, 3.0]), requires_grad=True)
    (x * x + x).sum().backward()
    np.testing.assert_allclose(backend.to_numpy(x.grad), 2 * np.array([1.0, -2.0, 3.0]) + 1)


def test_leaf_gradients_accumulate_across_backward_calls(device):
    x = sa.tensor(on(device, [1.0, 2.0]), requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(backend.to_numpy(x.grad), [3 + 2, 3 + 4])


def test_leaf_gradients_are_separate_arrays(device):
    # Add's backward hands the same array to both inputs; each leaf must still own its .grad.
    a = sa.tensor(on(device, [1.0, 2.0]), requires_grad=True)
    b = sa.tensor(on(device, [3.0, 4.0]), requires_grad=True)
    g = on(device, [1.0, 1.0])
    (a + b).backward(g)
    a.grad *= 5
    np.testing.assert_allclose(backend.to_numpy(b.grad), [1.0, 1.0])
    np.testing.assert_allclose(backend.to_numpy(g), [1.0, 1.0])


# =================================================================================================================
# order of the walk
# =================================================================================================================


def test_diamond_graph_runs_each_backward_once_after_all_its_consumers():
    #        x
    #        |  top (x2)
    #        s
    #  left / \ right      left: x3, right: x5
    #       \ /
    #        d = left + right, then sum
    log = []
    x = sa.tensor(np.array([1.0, 2.0]), requires_grad=True)
    s = Scale(2.0, "top", log)(x)
    left = Scale(3.0, "left", log)(s)
    right = Scale(5.0, "right", log)(s)
    (left + right).sum().backward()
    names = [name for name, _ in log]
    assert sorted(names) == ["left", "right", "top"], names
    assert names[-1] == "top", f"top ran before one of its consumers: {names}"
    # top received the sum of both branches' gradients in a single call
    np.testing.assert_allclose(log[-1][1], [3.0 + 5.0, 3.0 + 5.0])
    np.testing.assert_allclose(x.grad, [2 * 8.0, 2 * 8.0])


def test_branch_without_gradient_is_skipped():
    log = []
    x = sa.tensor(np.array([1.0]), requires_grad=True)
    constant = sa.tensor(np.array([4.0]))
    y = Scale(2.0, "x-branch", log)(x) + Scale(7.0, "const-branch", log)(constant)
    y.sum().backward()
    assert [name for name, _ in log] == ["x-branch"]
    np.testing.assert_allclose(x.grad, [2.0])


# =================================================================================================================
# retain_graph, freeing, no_grad
# =================================================================================================================


def test_second_backward_without_retain_graph_raises():
    x = sa.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_second_backward_with_retain_graph_accumulates():
    x = sa.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * 2 * np.array([1.0, 2.0]))


def test_saved_arrays_are_released_after_backward():
    log = []
    x = sa.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = Scale(2.0, "s", log)(x)
    fn = y.creator
    assert fn.saved_arrays[0] is x.data
    y.sum().backward()
    assert fn.released
    for attr in ("saved_arrays", "k", "name", "log"):
        assert not hasattr(fn, attr), f"{attr} still held after backward"
    assert fn.inputs == ()


def test_saved_arrays_survive_backward_with_retain_graph():
    x = sa.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = Scale(2.0, "s", [])(x)
    y.sum().backward(retain_graph=True)
    assert not y.creator.released and hasattr(y.creator, "saved_arrays")


def test_no_grad_records_nothing():
    x = sa.tensor(np.array([1.0, 2.0]), requires_grad=True)
    with sa.no_grad():
        y = (x * x).sum()
        assert not sa.is_grad_enabled()
        with sa.enable_grad():
            z = x * 2
    assert sa.is_grad_enabled()
    assert not y.requires_grad and y.creator is None
    assert z.requires_grad and z.creator is not None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_deep_chain_of_ten_thousand_ops_has_no_recursion_limit():
    x = sa.tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001**10_000], rtol=1e-10)


# =================================================================================================================
# multiple outputs
# =================================================================================================================


def test_multiple_outputs_both_used(device):
    x = sa.tensor(on(device, [1.0, 2.0, 3.0, 4.0]), requires_grad=True)
    first, second = SplitHalves()(x)
    (first * 2 + second * 3).sum().backward()
    np.testing.assert_allclose(backend.to_numpy(x.grad), [2, 2, 3, 3])


def test_multiple_outputs_one_unused_gets_zero_gradient(device):
    x = sa.tensor(on(device, [1.0, 2.0, 3.0, 4.0]), requires_grad=True)
    _, second = SplitHalves()(x)
    (second * second).sum().backward()
    np.testing.assert_allclose(backend.to_numpy(x.grad), [0, 0, 6, 8])


def test_integer_output_of_a_recorded_function_has_no_gradient():
    x = sa.tensor(np.array([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]]), requires_grad=True)
    values, idx = ValuesAndArgmax()(x)
    assert values.requires_grad and not idx.requires_grad and idx.creator is None
    np.testing.assert_array_equal(idx.numpy(), [1, 0])
    values.sum().backward()
    np.testing.assert_allclose(x.grad, [[0, 1, 0], [1, 0, 0]])


# =================================================================================================================
# errors from a malformed backward
# =================================================================================================================


class WrongShapeGrad(sa.Function):
    def forward(self, x):
        return x * 2

    def backward(self, g):
        return g[:1]


def test_backward_returning_a_wrong_shape_is_reported():
    x = sa.tensor(np.array([1.0, 2.0]), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"WrongShapeGrad.backward returned a gradient of shape \(1,\)"):
        WrongShapeGrad()(x).sum().backward()


def test_backward_without_grad_needs_a_scalar():
    x = sa.tensor(np.array([1.0, 2.0]), requires_grad=True)
    with pytest.raises(ValueError, match="one-element"):
        (x * 2).backward()
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        (x * 2).backward(np.ones(3))
