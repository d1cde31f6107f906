"""Tests of cat/concat, stack and pad: values against NumPy (and, for pad, an index-by-index reference written
here), gradients by gradcheck on every dim and mode, and the input errors."""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend
from scratchattn import functional as F

RNG = np.random.default_rng(21)


def leaf(device, a, dtype=np.float64, requires_grad=True):
    return sa.tensor(backend.to_device(np.asarray(a).astype(dtype), device), requires_grad=requires_grad)


# =================================================================================================================
# cat, stack
# =================================================================================================================


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_cat_values_and_gradients(dim, device):
    base = [2, 3, 4]
    arrays = []
    for size in (1, 3, 2):
        shape = list(base)
        shape[dim] = size
        arrays.append(RNG.standard_normal(shape))
    tensors = [leaf(device, a) for a in arrays]
    np.testing.assert_array_equal(F.cat(tensors, dim).numpy(), np.concatenate(arrays, axis=dim))
    assert F.concat is F.cat
    assert sa.gradcheck(lambda *t: F.cat(list(t), dim=dim), tensors)


def test_cat_passes_gradient_only_to_inputs_that_need_it():
    a, b = leaf("cpu", np.ones((2, 2))), leaf("cpu", np.ones((1, 2)), requires_grad=False)
    F.cat([a, b]).sum().backward()
    np.testing.assert_array_equal(a.grad, np.ones((2, 2)))
    assert b.grad is None


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
def test_stack_values_and_gradients(dim, device):
    arrays = [RNG.standard_normal((3, 2)) for _ in range(4)]
    tensors = [leaf(device, a) for a in arrays]
    np.testing.assert_array_equal(F.stack(tensors, dim).numpy(), np.stack(arrays, axis=dim))
    assert sa.gradcheck(lambda *t: F.stack(list(t), dim=dim), tensors)


def test_cat_and_stack_errors():
    a, b = sa.tensor(np.ones((2, 3))), sa.tensor(np.ones((2, 4)))
    with pytest.raises(ValueError, match="non-empty"):
        F.cat([])
    with pytest.raises(ValueError, match=r"tensors\[1\] has shape \(2, 4\)"):
        F.cat([a, b], dim=0)
    assert F.cat([a, b], dim=1).shape == (2, 7)
    with pytest.raises(ValueError, match=r"tensors\[1\] has shape \(2, 4\); tensors\[0\] has \(2, 3\)"):
        F.stack([a, b])
    with pytest.raises(TypeError, match="one dtype"):
        F.cat([a, sa.tensor(np.ones((2, 3), dtype=np.float32))])
    with pytest.raises(ValueError, match="out of range"):
        F.stack([a, a], dim=3)


# =================================================================================================================
# pad
# =================================================================================================================


def ref_pad(x, pad, mode, value):
    """Element by element: each output position along a padded axis copies the input position the mode names."""
    out = x.astype(np.float64)
    for k in range(len(pad) // 2):
        axis = x.ndim - 1 - k
        before, after = pad[2 * k], pad[2 * k + 1]
        n = out.shape[axis]
        pieces = []
        for j in range(-before, n + after):
            if mode == "constant":
                if 0 <= j < n:
                    pieces.append(np.take(out, [j], axis=axis))
                else:
                    shape = list(out.shape)
                    shape[axis] = 1
                    pieces.append(np.full(shape, float(value)))
                continue
            if mode == "reflect":
                src = -j if j < 0 else (2 * (n - 1) - j if j >= n else j)
            elif mode == "replicate":
                src = min(max(j, 0), n - 1)
            else:  # circular
                src = j % n
            pieces.append(np.take(out, [src], axis=axis))
        out = np.concatenate(pieces, axis=axis)
    return out


PAD_CASES = [((1, 2), (2, 3, 5)), ((2, 0, 1, 3), (2, 3, 4, 5)), ((0, 1, 2, 2, 1, 0), (2, 3, 4, 5)),
             ((3, 3), (4,)), ((1, 1, 1, 1), (1, 1, 2, 2))]


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("pad,shape", PAD_CASES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pad_values(mode, pad, shape, dtype, device):
    if mode == "reflect" and max(pad) >= min(shape[len(shape) - len(pad) // 2:]):
        pad = tuple(min(p, 1) for p in pad)  # reflect needs amounts below the dim size
    x_np = RNG.standard_normal(shape).astype(dtype)
    y = F.pad(leaf(device, x_np, dtype, False), pad, mode=mode, value=1.5)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y.numpy(), ref_pad(x_np, pad, mode, 1.5).astype(dtype))


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("pad,shape", PAD_CASES, ids=str)
def test_pad_gradcheck(mode, pad, shape, device):
    if mode == "reflect" and max(pad) >= min(shape[len(shape) - len(pad) // 2:]):
        pad = tuple(min(p, 1) for p in pad)
    x = leaf(device, RNG.standard_normal(shape))
    assert sa.gradcheck(lambda t: F.pad(t, pad, mode=mode), [x])


def test_pad_negative_amounts_crop_in_constant_mode(device):
    x_np = np.arange(20.0).reshape(4, 5)
    x = leaf(device, x_np)
    y = F.pad(x, (-1, 2, 1, -2), value=-7.0)
    want = np.full((3, 6), -7.0)
    want[1:, :4] = x_np[:2, 1:]
    np.testing.assert_array_equal(y.numpy(), want)
    assert sa.gradcheck(lambda t: F.pad(t, (-1, 2, 1, -2)), [x])


def test_pad_errors():
    x = sa.tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match="mode must be one of"):
        F.pad(x, (1, 1), mode="mirror")
    with pytest.raises(TypeError, match="even number of ints"):
        F.pad(x, (1, 1, 1))
    with pytest.raises(ValueError, match="covers 3 dims but the input has only 2"):
        F.pad(x, (1, 1, 1, 1, 1, 1))
    with pytest.raises(ValueError, match="must be smaller than dim 1's size 3"):
        F.pad(x, (3, 0), mode="reflect")
    with pytest.raises(ValueError, match="non-negative pad amounts"):
        F.pad(x, (-1, 0), mode="replicate")
    with pytest.raises(ValueError, match="at most dim 0's size 2"):
        F.pad(x, (0, 0, 3, 0), mode="circular")
    with pytest.raises(ValueError, match="negative size"):
        F.pad(x, (-2, -2))
