"""Tests of ``optim.Adam`` and ``optim.AdamW`` against a NumPy re-implementation of PyTorch's documented update.

PyTorch's rule (torch.optim.Adam / AdamW docs), step t = 1, 2, ...:
AdamW first shrinks p <- p (1 - lr wd); Adam instead adds wd p to g. Then m <- b1 m + (1 - b1) g,
v <- b2 v + (1 - b2) g^2, (amsgrad: vmax <- max(vmax, v), used in place of v),
p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from scratchattn import backend, nn, optim

STEPS = 3


def ref_adam(p0, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False):
    b1, b2 = betas
    p = p0.astype(np.float64).copy()
    m, v, vmax = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        m_hat = m / (1 - b1**t)
        v_hat = (vmax if amsgrad else v) / (1 - b2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


def make_problem(seed=0, shape=(4, 3)):
    rng = np.random.default_rng(seed)
    p0 = rng.standard_normal(shape)
    # growing then shrinking gradients make amsgrad's running max matter
    grads = [scale * rng.standard_normal(shape) for scale in (1.0, 3.0, 0.2)]
    return p0, grads


def run(opt, params, grads_per_param, device="cpu"):
    for step in range(STEPS):
        for p, grads in zip(params, grads_per_param):
            p.grad = backend.to_device(grads[step].astype(p.dtype), device)
        opt.step()


ADAM_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.05, betas=(0.8, 0.99), eps=1e-3),
    dict(lr=0.1, weight_decay=0.3),
    dict(lr=0.1, amsgrad=True),
    dict(lr=0.1, weight_decay=0.1, amsgrad=True),
]


@pytest.mark.parametrize("config", ADAM_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_adam_three_steps_match_the_reference(config, device):
    p0, grads = make_problem()
    p = nn.Parameter(backend.to_device(p0.copy(), device))
    run(optim.Adam([p], **config), [p], [grads], device)
    np.testing.assert_allclose(p.numpy(), ref_adam(p0, grads, **config), rtol=1e-12, atol=1e-14)


ADAMW_CONFIGS = [dict(lr=0.1), dict(lr=0.1, weight_decay=0.3), dict(lr=0.05, weight_decay=0.2, amsgrad=True)]


@pytest.mark.parametrize("config", ADAMW_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_adamw_three_steps_match_the_reference(config, device):
    p0, grads = make_problem(1)
    p = nn.Parameter(backend.to_device(p0.copy(), device))
    run(optim.AdamW([p], **config), [p], [grads], device)
    full = dict(weight_decay=1e-2, **config) if "weight_decay" not in config else config  # AdamW's default decay
    np.testing.assert_allclose(p.numpy(), ref_adam(p0, grads, decoupled=True, **full), rtol=1e-12, atol=1e-14)


def test_adamw_decay_is_decoupled_from_the_adaptive_scale():
    """With zero gradients Adam's L2 term is normalised away to a step of about lr * sign(p); AdamW's decay
    is exactly p * (1 - lr wd)."""
    p0 = np.array([2.0, -0.5])
    a, w = nn.Parameter(p0.copy()), nn.Parameter(p0.copy())
    opt_a, opt_w = optim.Adam([a], lr=0.1, weight_decay=0.5), optim.AdamW([w], lr=0.1, weight_decay=0.5)
    a.grad, w.grad = np.zeros(2), np.zeros(2)
    opt_a.step()
    opt_w.step()
    np.testing.assert_allclose(w.data, p0 * (1 - 0.1 * 0.5), rtol=1e-15)
    np.testing.assert_allclose(a.data, p0 - 0.1 * np.sign(p0), rtol=1e-6)


def test_first_step_is_lr_times_sign_thanks_to_bias_correction():
    """At t = 1 the corrected moments are g and g^2, so the step is lr * g / (|g| + eps) ~ lr * sign(g),
    whatever the betas; without the correction it would be (1-b1)/sqrt(1-b2) times that."""
    g = np.array([1e-3, -5.0, 0.25])
    for betas in [(0.9, 0.999), (0.5, 0.9)]:
        p = nn.Parameter(np.zeros(3))
        opt = optim.Adam([p], lr=0.01, betas=betas, eps=0.0)
        p.grad = g
        opt.step()
        np.testing.assert_allclose(p.data, -0.01 * np.sign(g), rtol=1e-14)
        assert opt.state[p]["step"] == 1


def test_param_groups_and_float32():
    (p0, gp), (q0, gq) = make_problem(2), make_problem(3, (2,))
    p, q = nn.Parameter(p0.astype(np.float32)), nn.Parameter(q0.copy())
    opt = optim.Adam([{"params": [p]}, {"params": [q], "lr": 0.01, "betas": (0.5, 0.6)}], lr=0.1)
    run(opt, [p, q], [gp, gq])
    assert p.dtype == np.float32 and opt.state[p]["exp_avg"].dtype == np.float32
    np.testing.assert_allclose(p.data, ref_adam(p0.astype(np.float32), gp, lr=0.1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q.data, ref_adam(q0, gq, lr=0.01, betas=(0.5, 0.6)), rtol=1e-12)


def test_grad_is_left_untouched():
    p0, grads = make_problem(5)
    p = nn.Parameter(p0.copy())
    opt = optim.Adam([p], lr=0.1, weight_decay=0.1)
    p.grad = grads[0].copy()
    opt.step()
    np.testing.assert_array_equal(p.grad, grads[0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(betas=(1.0, 0.9)), r"betas\[0\] must be in \[0, 1\)"),
        (dict(betas=(0.9, -0.1)), r"betas\[1\]"),
        (dict(betas=0.9), "betas must be a pair"),
        (dict(eps=-1e-8), "eps"),
        (dict(lr=math.inf), "lr"),
        (dict(weight_decay=-1), "weight_decay"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optim.Adam([nn.Parameter(np.ones(2))], **kwargs)
    with pytest.raises(ValueError, match=match):
        optim.AdamW([nn.Parameter(np.ones(2))], **kwargs)
