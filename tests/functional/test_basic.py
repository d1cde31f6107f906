"""Tests of the elementary ops in ``functional/basic.py``: values against NumPy, gradients by gradcheck (float64)
with broadcasting on every binary op, matmul in all its NumPy shapes, shape ops and reductions."""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend
from scratchattn import functional as F

RNG = np.random.default_rng(1234)


def leaf(device, a, requires_grad=True):
    return sa.tensor(backend.to_device(np.asarray(a, dtype=np.float64), device), requires_grad=requires_grad)


BINARY = {
    "add": (F.add, np.add),
    "sub": (F.sub, np.subtract),
    "mul": (F.mul, np.multiply),
    "div": (F.div, np.divide),
}

SHAPE_PAIRS = [
    ((3, 4), (3, 4)), ((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((4,), (2, 3, 4)), ((2, 1, 4), (3, 1)), ((), (3,)),
]


@pytest.mark.parametrize("name", list(BINARY))
@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=str)
def test_binary_ops_with_broadcasting(name, shapes, device):
    op, ref = BINARY[name]
    a_np = RNG.standard_normal(shapes[0])
    b_np = RNG.uniform(0.5, 2.0, shapes[1]) * RNG.choice([-1, 1], shapes[1])  # away from 0 for div
    a, b = leaf(device, a_np), leaf(device, b_np)
    np.testing.assert_allclose(op(a, b).numpy(), ref(a_np, b_np), rtol=1e-12)
    assert sa.gradcheck(op, [a, b])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_ops_keep_dtype(dtype):
    a = sa.tensor(np.ones(3, dtype=dtype))
    for name, (op, _) in BINARY.items():
        assert op(a, a).dtype == dtype, name
        assert op(a, 2).dtype == dtype, name


UNARY = {
    "exp": (F.exp, np.exp, lambda n: RNG.standard_normal(n)),
    "log": (F.log, np.log, lambda n: RNG.uniform(0.5, 3.0, n)),
    "sqrt": (F.sqrt, np.sqrt, lambda n: RNG.uniform(0.5, 3.0, n)),
    "abs": (F.abs, np.abs, lambda n: RNG.uniform(0.5, 3.0, n) * RNG.choice([-1, 1], n)),
    "neg": (F.neg, np.negative, lambda n: RNG.standard_normal(n)),
    "pow 3": (lambda t: F.pow(t, 3), lambda a: a**3, lambda n: RNG.standard_normal(n)),
    "pow -1.5": (lambda t: F.pow(t, -1.5), lambda a: a**-1.5, lambda n: RNG.uniform(0.5, 3.0, n)),
}


@pytest.mark.parametrize("name", list(UNARY))
def test_unary_ops(name, device):
    op, ref, sample = UNARY[name]
    a_np = sample((2, 5))
    a = leaf(device, a_np)
    np.testing.assert_allclose(op(a).numpy(), ref(a_np), rtol=1e-12)
    assert sa.gradcheck(op, [a])


def test_pow_rejects_a_tensor_exponent():
    with pytest.raises(TypeError, match="exponent"):
        F.pow(sa.tensor([1.0]), sa.tensor([2.0]))


MATMUL_SHAPES = [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)), ((2, 3, 4), (4, 5)),
                 ((3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((2, 3, 4), (4,))]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_shapes_values_and_gradients(shapes, device):
    a_np, b_np = RNG.standard_normal(shapes[0]), RNG.standard_normal(shapes[1])
    a, b = leaf(device, a_np), leaf(device, b_np)
    got = F.matmul(a, b)
    want = np.matmul(a_np, b_np)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    assert sa.gradcheck(F.matmul, [a, b])


def test_matmul_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"inner dims differ.*\(3, 4\).*\(5, 2\)"):
        F.matmul(sa.tensor(np.ones((3, 4))), sa.tensor(np.ones((5, 2))))
    with pytest.raises(ValueError, match="at least 1 dim"):
        F.matmul(sa.tensor(np.ones(())), sa.tensor(np.ones(3)))


def test_shape_ops_gradients(device):
    x = leaf(device, RNG.standard_normal((2, 3, 4)))
    assert sa.gradcheck(lambda t: F.reshape(t, (4, 6)), [x])
    assert sa.gradcheck(lambda t: F.flatten(t, 1, 2), [x])
    assert sa.gradcheck(lambda t: F.permute(t, (2, 0, 1)), [x])
    assert sa.gradcheck(lambda t: F.transpose(t, 0, -1), [x])
    assert sa.gradcheck(lambda t: F.getitem(t, (slice(None), [0, 2, 2], 1)), [x])
    assert sa.gradcheck(lambda t: F.broadcast_to(t[:, :1], (5, 2, 3, 4)), [x])
    np.testing.assert_allclose(F.broadcast_to(x[:, :1], (5, 2, 3, 4)).numpy(),
                               np.broadcast_to(x.numpy()[:, :1], (5, 2, 3, 4)))


def test_reductions_over_several_dims(device):
    x_np = RNG.permutation(60).reshape(3, 4, 5).astype(np.float64)
    x = leaf(device, x_np)
    for op, ref in ((F.sum, np.sum), (F.mean, np.mean), (F.max, np.max)):
        for dim in (None, 1, (0, 2), (-1, 0)):
            axis = dim
            np.testing.assert_allclose(op(x, dim=dim).numpy(), ref(x_np, axis=axis))
            assert sa.gradcheck(lambda t, op=op, dim=dim: op(t, dim=dim, keepdim=True), [x])


def test_reduction_dim_errors():
    x = sa.tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match="out of range"):
        F.sum(x, dim=2)
    with pytest.raises(ValueError, match="repeats"):
        F.mean(x, dim=(0, -2))
    with pytest.raises(ValueError, match="empty"):
        F.max(sa.tensor(np.ones((0, 3))))


@pytest.mark.gpu
def test_mixing_devices_is_rejected_with_a_clear_error():
    a = sa.tensor(np.ones(3))
    b = a.to("cuda")
    with pytest.raises(ValueError, match="one device"):
        F.add(a, b)
