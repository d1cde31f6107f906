"""Tests of F.scaled_dot_product_attention: forward against a loop-by-loop NumPy reference written here, float64
gradchecks for every input and mask kind, softmax invariants, stability, fully masked rows and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import functional as F

# ---------------------------------------------------------------------------------------------------------------
# reference: one query row at a time, plain softmax with the max subtracted
# ---------------------------------------------------------------------------------------------------------------


def reference_attention(q, k, v, mask=None, scale=None):
    """softmax(q k^T * scale + mask) v in float64, looping over batch index and query row."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    d, lq, lk = q.shape[-1], q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    if mask is not None:
        mask = np.broadcast_to(np.asarray(mask), batch + (lq, lk))
    q = np.broadcast_to(q, batch + q.shape[-2:])
    k = np.broadcast_to(k, batch + k.shape[-2:])
    v = np.broadcast_to(v, batch + v.shape[-2:])
    out = np.zeros(batch + (lq, v.shape[-1]))
    weights = np.zeros(batch + (lq, lk))
    for b in np.ndindex(*batch):
        for i in range(lq):
            scores = np.array([scale * np.dot(q[b][i], k[b][j]) for j in range(lk)])
            if mask is not None and mask.dtype == bool:
                scores = np.where(mask[b][i], scores, -np.inf)
            elif mask is not None:
                scores = scores + mask[b][i]
            if np.all(np.isneginf(scores)):
                continue  # fully masked row: the library defines it as zeros
            e = np.exp(scores - scores.max())
            weights[b][i] = e / e.sum()
            out[b][i] = weights[b][i] @ v[b]
    return out, weights


def make(rng, shape, dtype=np.float64, device="cpu", requires_grad=False):
    return sa.tensor(rng.standard_normal(shape).astype(dtype), requires_grad=requires_grad, device=device)


SHAPES = [
    # q, k, v
    ((2, 3, 4), (2, 5, 4), (2, 5, 6)),  # Lq != Lk, d != dv
    ((1, 1, 3), (1, 2, 3), (1, 2, 1)),  # one query, one value channel
    ((2, 3, 4, 5), (3, 7, 5), (1, 7, 2)),  # batch dims broadcast (2,3) x (3,) x (1,)
    ((6, 4), (6, 4), (6, 4)),  # no batch dims
]


# ---------------------------------------------------------------------------------------------------------------
# forward
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", SHAPES, ids=str)
def test_forward_matches_reference(shapes, dtype, device):
    rng = np.random.default_rng(0)
    q, k, v = (make(rng, s, dtype, device) for s in shapes)
    out, weights = F.scaled_dot_product_attention(q, k, v, return_weights=True)
    ref_out, ref_w = reference_attention(q.numpy(), k.numpy(), v.numpy())
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert out.dtype == dtype and weights.dtype == dtype
    np.testing.assert_allclose(out.numpy(), ref_out, rtol=tol, atol=tol)
    np.testing.assert_allclose(weights.numpy(), ref_w, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_with_masks_and_scale(dtype, device):
    rng = np.random.default_rng(1)
    q, k, v = (make(rng, s, dtype, device) for s in ((2, 4, 3), (2, 5, 3), (2, 5, 2)))
    bool_mask = rng.random((4, 5)) < 0.6
    bool_mask[:, 0] = True  # no fully masked row here
    float_mask = rng.standard_normal((2, 1, 5)).astype(dtype)
    for mask in (bool_mask, float_mask):
        out = F.scaled_dot_product_attention(q, k, v, mask=sa.tensor(mask, device=device), scale=0.7)
        ref, _ = reference_attention(q.numpy(), k.numpy(), v.numpy(), mask, scale=0.7)
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(out.numpy(), ref, rtol=tol, atol=tol)


def test_default_scale_is_inverse_sqrt_d():
    rng = np.random.default_rng(2)
    q, k, v = make(rng, (3, 9)), make(rng, (4, 9)), make(rng, (4, 2))
    a = F.scaled_dot_product_attention(q, k, v).numpy()
    b = F.scaled_dot_product_attention(q, k, v, scale=1 / 3).numpy()
    c = F.scaled_dot_product_attention(q, k, v, scale=1.0).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_bool_mask_equals_minus_inf_float_mask():
    rng = np.random.default_rng(3)
    q, k, v = make(rng, (2, 3, 4)), make(rng, (2, 6, 4)), make(rng, (2, 6, 4))
    allowed = rng.random((2, 3, 6)) < 0.5
    allowed[..., 2] = True
    additive = np.where(allowed, 0.0, -np.inf)
    a = F.scaled_dot_product_attention(q, k, v, mask=allowed).numpy()
    b = F.scaled_dot_product_attention(q, k, v, mask=additive).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-14)


def test_attention_rows_sum_to_one(device):
    rng = np.random.default_rng(4)
    q, k, v = (make(rng, s, np.float32, device) for s in ((3, 2, 7, 8), (3, 2, 9, 8), (3, 2, 9, 5)))
    mask = rng.random((7, 9)) < 0.5
    mask[:, 4] = True
    _, weights = F.scaled_dot_product_attention(q, k, v, mask=sa.tensor(mask, device=device), return_weights=True)
    w = weights.numpy()
    np.testing.assert_allclose(w.sum(axis=-1), 1.0, rtol=1e-6)
    assert (w >= 0).all()
    assert (w[..., ~mask] == 0).all()  # masked-out keys get exactly zero weight


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_logits_stay_finite(dtype, device):
    rng = np.random.default_rng(5)
    q = make(rng, (2, 5, 4), dtype, device) * 1e4
    k = make(rng, (2, 6, 4), dtype, device) * 1e4
    v = make(rng, (2, 6, 3), dtype, device)
    out, weights = F.scaled_dot_product_attention(q, k, v, return_weights=True)
    assert np.isfinite(out.numpy()).all() and np.isfinite(weights.numpy()).all()
    ref, _ = reference_attention(q.numpy(), k.numpy(), v.numpy())
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-4)  # softmax is (nearly) one-hot here
    q.requires_grad_()
    F.scaled_dot_product_attention(q, k, v).sum().backward()
    assert np.isfinite(sa.Tensor(q.grad).numpy()).all()


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_fully_masked_row_gives_zeros_and_no_gradient(kind, device):
    rng = np.random.default_rng(6)
    q, k, v = (make(rng, s, np.float64, device, requires_grad=True) for s in ((4, 3), (5, 3), (5, 2)))
    allowed = rng.random((4, 5)) < 0.6
    allowed[:, 1] = True
    allowed[2] = False  # query 2 may attend to nothing
    mask = allowed if kind == "bool" else np.where(allowed, 0.0, -np.inf)
    out, weights = F.scaled_dot_product_attention(q, k, v, mask=sa.tensor(mask, device=device), return_weights=True)
    o = out.numpy()
    assert np.isfinite(o).all()
    np.testing.assert_array_equal(o[2], 0.0)
    np.testing.assert_array_equal(weights.numpy()[2], 0.0)
    g = rng.standard_normal(o.shape)
    out.backward(sa.tensor(g, device=device).data)
    np.testing.assert_array_equal(sa.Tensor(q.grad).numpy()[2], 0.0)

    # The other rows see exactly what they would see without query 2: k and v get no gradient from it.
    keep = [0, 1, 3]
    q2, k2, v2 = (sa.tensor(t.numpy(), requires_grad=True) for t in (q, k, v))
    out2 = F.scaled_dot_product_attention(q2[keep], k2, v2, mask=mask[keep])
    out2.backward(g[keep])
    np.testing.assert_allclose(o[keep], out2.numpy(), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(sa.Tensor(k.grad).numpy(), k2.grad, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sa.Tensor(v.grad).numpy(), v2.grad, rtol=1e-12, atol=1e-12)


def test_no_graph_without_requires_grad():
    rng = np.random.default_rng(7)
    out = F.scaled_dot_product_attention(make(rng, (2, 3)), make(rng, (4, 3)), make(rng, (4, 3)))
    assert not out.requires_grad and out.creator is None


# ---------------------------------------------------------------------------------------------------------------
# gradients (float64 central differences)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shapes", SHAPES, ids=str)
def test_gradcheck_no_mask(shapes, device):
    rng = np.random.default_rng(10)
    q, k, v = (make(rng, s, device=device, requires_grad=True) for s in shapes)
    sa.gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v), [q, k, v])


def test_gradcheck_bool_mask(device):
    rng = np.random.default_rng(11)
    q, k, v = (make(rng, s, device=device, requires_grad=True) for s in ((2, 3, 4), (2, 5, 4), (2, 5, 3)))
    allowed = rng.random((2, 1, 5)) < 0.6
    allowed[..., 0] = True
    mask = sa.tensor(allowed, device=device)
    sa.gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, mask=mask, scale=0.9), [q, k, v])


def test_gradcheck_float_mask_including_its_gradient(device):
    rng = np.random.default_rng(12)
    q, k, v = (make(rng, s, device=device, requires_grad=True) for s in ((2, 3, 4), (1, 5, 4), (5, 2)))
    mask = make(rng, (3, 5), device=device, requires_grad=True)  # broadcast over the batch: grad is summed
    sa.gradcheck(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, mask=m), [q, k, v, mask])


def test_gradcheck_float_mask_with_minus_inf_entries():
    rng = np.random.default_rng(13)
    q, k, v = (make(rng, s, requires_grad=True) for s in ((3, 4), (5, 4), (5, 2)))
    bias = rng.standard_normal((3, 5))
    bias[:, 3] = -np.inf  # key 3 is forbidden for every query
    mask = sa.tensor(bias)
    sa.gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, mask=mask), [q, k, v])


def test_gradcheck_with_weights_as_output(device):
    rng = np.random.default_rng(14)
    q, k, v = (make(rng, s, device=device, requires_grad=True) for s in ((2, 3, 4), (2, 4, 4), (2, 4, 3)))
    sa.gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, return_weights=True), [q, k, v])


def test_gradcheck_fully_masked_row():
    rng = np.random.default_rng(15)
    q, k, v = (make(rng, s, requires_grad=True) for s in ((3, 2), (4, 2), (4, 3)))
    allowed = np.ones((3, 4), dtype=bool)
    allowed[1] = False
    allowed[0, 2] = False
    sa.gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, mask=allowed), [q, k, v])


def test_self_attention_same_tensor_for_q_k_v():
    rng = np.random.default_rng(16)
    x = make(rng, (2, 4, 3), requires_grad=True)
    sa.gradcheck(lambda x: F.scaled_dot_product_attention(x, x, x), [x])


# ---------------------------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------------------------


def test_bad_input_raises_naming_the_argument():
    rng = np.random.default_rng(20)
    q, k, v = make(rng, (2, 3, 4)), make(rng, (2, 5, 4)), make(rng, (2, 5, 6))
    sdpa = F.scaled_dot_product_attention
    with pytest.raises(ValueError, match="same feature size"):
        sdpa(q, make(rng, (2, 5, 3)), v)
    with pytest.raises(ValueError, match="number of keys"):
        sdpa(q, k, make(rng, (2, 4, 6)))
    with pytest.raises(ValueError, match="batch dims"):
        sdpa(q, make(rng, (3, 5, 4)), v)
    with pytest.raises(ValueError, match="q must have at least 2 dims"):
        sdpa(make(rng, (4,)), k, v)
    with pytest.raises(ValueError, match="at least one key"):
        sdpa(q, make(rng, (2, 0, 4)), make(rng, (2, 0, 6)))
    with pytest.raises(TypeError, match="share one dtype"):
        sdpa(q, k.float(), v)
    with pytest.raises(TypeError, match="k must be float32 or float64"):
        sdpa(q, sa.tensor(np.ones((2, 5, 4), dtype=np.int64)), v)
    with pytest.raises(ValueError, match="mask must broadcast"):
        sdpa(q, k, v, mask=np.ones((3, 4), dtype=bool))
    with pytest.raises(ValueError, match="mask must broadcast"):
        sdpa(q, k, v, mask=np.ones((4, 2, 3, 5), dtype=bool))  # may not add batch dims
    with pytest.raises(TypeError, match="mask must be boolean or of q's dtype"):
        sdpa(q, k, v, mask=np.zeros((3, 5), dtype=np.float32))
    with pytest.raises(TypeError, match="scale must be a real number"):
        sdpa(q, k, v, scale="0.5")
