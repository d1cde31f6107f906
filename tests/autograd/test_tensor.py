"""Tests of the Tensor API: construction, description, conversion, operators, comparisons, indexing, shape and
reduction methods (values against NumPy, gradients against numbers worked out here or against gradcheck)."""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend


def on(device, a, dtype=np.float64):
    return backend.to_device(np.asarray(a, dtype=dtype), device)


# =================================================================================================================
# construction and description
# =================================================================================================================


def test_shape_dtype_device_and_conversion(device):
    data = on(device, np.arange(6).reshape(2, 3), np.float32)
    t = sa.tensor(data, requires_grad=True)
    assert t.shape == (2, 3) and t.ndim == 2 and t.size == 6 and len(t) == 2
    assert t.dtype == np.float32 and t.device == device
    assert t.data is data and t.grad is None and t.is_leaf
    copy = t.numpy()
    assert isinstance(copy, np.ndarray)
    copy[0, 0] = 100  # a copy, not a view
    assert backend.to_numpy(t.data)[0, 0] == 0
    assert sa.tensor(on(device, [[2.5]])).item() == 2.5


def test_python_lists_become_float32_and_dtype_is_respected():
    assert sa.tensor([1.0, 2.0]).dtype == np.float32
    assert sa.tensor([1.0, 2.0], dtype=np.float64).dtype == np.float64
    assert sa.tensor([1, 2]).dtype.kind == "i"


def test_requires_grad_needs_a_float_tensor():
    with pytest.raises(TypeError, match="floating-point"):
        sa.tensor(np.array([1, 2]), requires_grad=True)


def test_detach_shares_data_and_cuts_the_graph():
    x = sa.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x * 2
    d = y.detach()
    assert d.data is y.data and not d.requires_grad and d.creator is None
    (d * x).sum().backward()
    np.testing.assert_allclose(x.grad, [2.0, 4.0])  # d is a constant


def test_astype_is_differentiable():
    x = sa.tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    y = x.double() * 3
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, [3.0, 3.0])


def test_to_the_same_device_returns_the_tensor():
    x = sa.tensor(np.array([1.0]))
    assert x.to("cpu") is x
    with pytest.raises(ValueError, match="device must be one of"):
        x.to("tpu")


@pytest.mark.gpu
def test_to_cuda_and_back_is_differentiable():
    x = sa.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x.to("cuda") * 3
    assert y.device == "cuda"
    y.to("cpu").sum().backward()
    assert x.grad.__class__ is np.ndarray
    np.testing.assert_allclose(x.grad, [3.0, 3.0])


# =================================================================================================================
# operators
# =================================================================================================================


def test_arithmetic_operators_values(device):
    a_np, b_np = np.array([1.0, -2.0, 4.0]), np.array([0.5, 3.0, -2.0])
    a, b = sa.tensor(on(device, a_np)), sa.tensor(on(device, b_np))
    cases = {
        "a+b": (a + b, a_np + b_np),
        "a-b": (a - b, a_np - b_np),
        "a*b": (a * b, a_np * b_np),
        "a/b": (a / b, a_np / b_np),
        "a**2": (a**2, a_np**2),
        "-a": (-a, -a_np),
        "2+a": (2 + a, 2 + a_np),
        "2-a": (2 - a, 2 - a_np),
        "2*a": (2 * a, 2 * a_np),
        "2/a": (2 / a, 2 / a_np),
        "ndarray+a": (on(device, b_np) + a, b_np + a_np),
    }
    for name, (got, want) in cases.items():
        assert isinstance(got, sa.Tensor), name
        np.testing.assert_allclose(got.numpy(), want, err_msg=name)


def test_python_scalars_keep_the_tensor_dtype():
    x = sa.tensor(np.ones(2, dtype=np.float32))
    for y in (x * 2.5, 2.5 + x, x / 3, x - 1, x**2):
        assert y.dtype == np.float32


def test_matmul_operator(device):
    a_np = np.arange(6.0).reshape(2, 3)
    b_np = np.arange(12.0).reshape(3, 4)
    a, b = sa.tensor(on(device, a_np), requires_grad=True), sa.tensor(on(device, b_np), requires_grad=True)
    np.testing.assert_allclose((a @ b).numpy(), a_np @ b_np)
    assert sa.gradcheck(lambda p, q: p @ q, [a, b])


def test_comparisons_give_tensors_without_grad():
    x = sa.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y = sa.tensor(np.array([2.0, 2.0, 2.0]))
    for got, want in ((x < y, [1, 0, 0]), (x <= y, [1, 1, 0]), (x > y, [0, 0, 1]), (x >= 2, [0, 1, 1]),
                      (x == y, [0, 1, 0]), (x != 2.0, [1, 0, 1])):
        assert isinstance(got, sa.Tensor) and not got.requires_grad and got.creator is None
        assert got.dtype == np.bool_
        np.testing.assert_array_equal(got.numpy(), np.array(want, dtype=bool))


# =================================================================================================================
# indexing
# =================================================================================================================


def test_indexing_values_and_gradient_with_repeated_indices(device):
    x_np = np.arange(5.0) * 10
    x = sa.tensor(on(device, x_np), requires_grad=True)
    index = np.array([0, 3, 3, 1, 3])
    y = x[index]
    np.testing.assert_allclose(y.numpy(), x_np[index])
    y.backward(on(device, [1.0, 2.0, 3.0, 4.0, 5.0]))
    # element 3 is used three times: its gradient is 2 + 3 + 5
    np.testing.assert_allclose(backend.to_numpy(x.grad), [1.0, 4.0, 0.0, 10.0, 0.0])


def test_indexing_with_slices_ints_and_masks():
    x_np = np.arange(24.0).reshape(2, 3, 4)
    x = sa.tensor(x_np, requires_grad=True)
    np.testing.assert_allclose(x[1, :, ::2].numpy(), x_np[1, :, ::2])
    mask = x_np > 10
    np.testing.assert_allclose(x[mask].numpy(), x_np[mask])
    np.testing.assert_allclose(x[sa.tensor(np.array([1, 1]))].numpy(), x_np[[1, 1]])
    assert sa.gradcheck(lambda t: t[1, :, ::2] * t[0, :, 1::2], [x])
    assert sa.gradcheck(lambda t: t[mask], [x])


# =================================================================================================================
# shape and reduction methods
# =================================================================================================================


def test_reshape_transpose_permute_flatten(device):
    x_np = np.arange(24.0).reshape(2, 3, 4)
    x = sa.tensor(on(device, x_np), requires_grad=True)
    np.testing.assert_allclose(x.reshape(4, 6).numpy(), x_np.reshape(4, 6))
    np.testing.assert_allclose(x.reshape((6, -1)).numpy(), x_np.reshape(6, 4))
    np.testing.assert_allclose(x.view(-1).numpy(), x_np.ravel())
    np.testing.assert_allclose(x.transpose(0, 2).numpy(), x_np.transpose(2, 1, 0))
    np.testing.assert_allclose(x.T.numpy(), x_np.T)
    np.testing.assert_allclose(x.permute(1, 2, 0).numpy(), x_np.transpose(1, 2, 0))
    np.testing.assert_allclose(x.permute((2, 0, 1)).numpy(), x_np.transpose(2, 0, 1))
    np.testing.assert_allclose(x.flatten(1).numpy(), x_np.reshape(2, 12))
    w = sa.tensor(on(device, np.random.default_rng(0).standard_normal((3, 4, 2))))
    assert sa.gradcheck(lambda t: t.permute(1, 2, 0) * w, [x])
    assert sa.gradcheck(lambda t: t.transpose(0, 1).reshape(3, 8) @ w.reshape(8, 3), [x])
    assert sa.gradcheck(lambda t: t.flatten(0, 1) * 2, [x])


@pytest.mark.parametrize("method", ["sum", "mean", "max"])
@pytest.mark.parametrize("dim", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdim", [False, True])
def test_reductions_values_and_gradients(method, dim, keepdim, device):
    rng = np.random.default_rng(1)
    x_np = rng.permutation(24).reshape(2, 3, 4).astype(np.float64)  # distinct values: max has no ties
    x = sa.tensor(on(device, x_np), requires_grad=True)
    got = getattr(x, method)(dim=dim, keepdim=keepdim)
    axis = dim if not isinstance(dim, list) else tuple(dim)
    want = {"sum": np.sum, "mean": np.mean, "max": np.max}[method](x_np, axis=axis, keepdims=keepdim)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want)
    assert sa.gradcheck(lambda t: getattr(t, method)(dim=dim, keepdim=keepdim), [x])


def test_max_splits_the_gradient_between_ties():
    x = sa.tensor(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]]), requires_grad=True)
    x.max(dim=1).sum().backward()
    np.testing.assert_allclose(x.grad, [[0, 0.5, 0.5], [1, 0, 0]])


def test_unary_methods(device):
    x_np = np.array([0.5, 1.5, 2.0])
    x = sa.tensor(on(device, x_np), requires_grad=True)
    for name, ref in (("exp", np.exp), ("log", np.log), ("sqrt", np.sqrt), ("abs", np.abs)):
        np.testing.assert_allclose(getattr(x, name)().numpy(), ref(x_np), err_msg=name)
        assert sa.gradcheck(lambda t, name=name: getattr(t, name)(), [x])


def test_repr_mentions_values_and_grad():
    text = repr(sa.tensor(np.array([1.0, 2.0]), requires_grad=True))
    assert "1." in text and "requires_grad=True" in text
