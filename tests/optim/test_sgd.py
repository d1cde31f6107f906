"""Tests of ``optim.SGD`` against a NumPy re-implementation of PyTorch's documented update, written here.

PyTorch's rule (torch.optim.SGD docs): g <- g + wd * p; with momentum, b <- g on the first step and
b <- mu * b + (1 - dampening) * g afterwards; g <- g + mu * b (Nesterov) or g <- b; p <- p - lr * g.
"""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend, nn, optim

STEPS = 3


def ref_sgd(p0, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    """The parameter after len(grads) SGD steps, in float64."""
    p, buf = p0.astype(np.float64).copy(), None
    for g in grads:
        d = g + weight_decay * p
        if momentum != 0:
            buf = d.copy() if buf is None else momentum * buf + (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        p = p - lr * d
    return p


def make_problem(seed=0, shape=(3, 4)):
    rng = np.random.default_rng(seed)
    p0 = rng.standard_normal(shape)
    grads = [rng.standard_normal(shape) for _ in range(STEPS)]
    return p0, grads


def run(opt, params, grads_per_param, device="cpu"):
    for step in range(STEPS):
        for p, grads in zip(params, grads_per_param):
            p.grad = backend.to_device(grads[step].astype(p.dtype), device)
        opt.step()


CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.1, weight_decay=0.05),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.8, dampening=0.3),
    dict(lr=0.1, momentum=0.9, nesterov=True),
    dict(lr=0.02, momentum=0.5, dampening=0.1, weight_decay=0.2),
    dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_three_steps_match_the_reference(config, device):
    p0, grads = make_problem()
    p = nn.Parameter(backend.to_device(p0.copy(), device))
    run(optim.SGD([p], **config), [p], [grads], device)
    np.testing.assert_allclose(p.numpy(), ref_sgd(p0, grads, **config), rtol=1e-12, atol=1e-14)


def test_param_groups_use_their_own_options():
    (p0, g0), (q0, gq) = make_problem(1), make_problem(2, (5,))
    p, q = nn.Parameter(p0.copy()), nn.Parameter(q0.copy())
    opt = optim.SGD([{"params": [p]}, {"params": [q], "lr": 0.01, "nesterov": True}], lr=0.1, momentum=0.9)
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[1]["lr"] == 0.01
    run(opt, [p, q], [g0, gq])
    np.testing.assert_allclose(p.data, ref_sgd(p0, g0, lr=0.1, momentum=0.9), rtol=1e-12)
    np.testing.assert_allclose(q.data, ref_sgd(q0, gq, lr=0.01, momentum=0.9, nesterov=True), rtol=1e-12)


def test_float32_stays_float32_and_matches_in_float32_precision():
    p0, grads = make_problem(3)
    p = nn.Parameter(p0.astype(np.float32))
    run(optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01), [p], [grads])
    assert p.dtype == np.float32
    np.testing.assert_allclose(p.data, ref_sgd(p0.astype(np.float32), grads, 0.1, 0.9, 0, 0.01), rtol=1e-5,
                               atol=1e-6)


def test_grad_is_not_modified_and_data_is_updated_in_place():
    p0, grads = make_problem(4)
    p = nn.Parameter(p0.copy())
    data = p.data
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.1)
    for g in grads:
        p.grad = g.copy()
        grad_array = p.grad
        opt.step()
        assert p.grad is grad_array
        np.testing.assert_array_equal(p.grad, g)
    assert p.data is data  # updated in place: views of p.data see the new values


def test_parameters_without_grad_are_skipped():
    p, q = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    opt = optim.SGD([p, q], lr=0.5, momentum=0.9)
    p.grad = np.ones(2)
    opt.step()
    np.testing.assert_array_equal(p.data, [0.5, 0.5])
    np.testing.assert_array_equal(q.data, [1.0, 1.0])
    assert q not in opt.state and p in opt.state


def test_step_runs_the_closure_and_returns_its_loss():
    p = nn.Parameter(np.array([3.0]))
    opt = optim.SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 9.0 and p.data[0] == 3.0 - 0.25 * 6.0
    assert sa.is_grad_enabled()  # no_grad was only around the update


def test_zero_grad():
    p = nn.Parameter(np.ones(2))
    opt = optim.SGD([p], lr=0.1)
    p.grad = np.ones(2)
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad, [0, 0])
    opt.zero_grad()
    assert p.grad is None


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(lr=-0.1), ValueError, "lr must be a finite number >= 0"),
        (dict(lr="fast"), TypeError, "lr must be a number"),
        (dict(lr=0.1, momentum=-1), ValueError, "momentum"),
        (dict(lr=0.1, nesterov=True), ValueError, "nesterov=True needs momentum > 0"),
        (dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError, "dampening = 0"),
        (dict(lr=0.1, weight_decay=float("nan")), ValueError, "weight_decay"),
    ],
)
def test_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        optim.SGD([nn.Parameter(np.ones(2))], **kwargs)


def test_bad_params():
    p = nn.Parameter(np.ones(2))
    with pytest.raises(TypeError, match="single Tensor"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="same parameter twice"):
        optim.SGD([p, p], lr=0.1)
    with pytest.raises(ValueError, match="does not require grad"):
        optim.SGD([sa.tensor(np.ones(2))], lr=0.1)
    with pytest.raises(TypeError, match=r"params\[0\] must be a Tensor"):
        optim.SGD([np.ones(2)], lr=0.1)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['betas'\]"):
        optim.SGD([{"params": [p], "betas": (0.9, 0.9)}], lr=0.1)
    with pytest.raises(ValueError, match="needs a 'params' entry"):
        optim.SGD([{"lr": 0.1}], lr=0.1)
