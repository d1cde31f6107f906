"""Tests of optimiser state dicts: PyTorch's layout, resuming (directly and through ``sa.save`` / ``sa.load``)
gives the same weights as an uninterrupted run, and mismatches are reported by name."""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import nn, optim

STEPS = 6


def make_params(dtype=np.float64):
    rng = np.random.default_rng(0)
    return [nn.Parameter(rng.standard_normal(shape).astype(dtype)) for shape in [(3, 2), (2,), (4,)]]


def grads_at(step, params):
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal(p.shape).astype(p.dtype) for p in params]


def make_opt(kind, params):
    groups = [{"params": params[:2]}, {"params": params[2:], "lr": 0.01}]
    if kind == "sgd":
        return optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=True)
    if kind == "adam":
        return optim.Adam(groups, lr=0.1, betas=(0.8, 0.95), amsgrad=True)
    return optim.AdamW(groups, lr=0.1)


def take_steps(opt, params, steps):
    for step in steps:
        for p, g in zip(params, grads_at(step, params)):
            p.grad = g
        opt.step()


def test_layout_is_pytorchs():
    params = make_params()
    opt = make_opt("adam", params)
    take_steps(opt, params, range(2))
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sd["param_groups"][1]["lr"] == 0.01 and sd["param_groups"][0]["betas"] == [0.8, 0.95]
    assert sorted(sd["state"]) == [0, 1, 2]
    assert sd["state"][0]["step"] == 2 and set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    sd["state"][0]["exp_avg"][...] = 123.0  # a copy
    assert not np.any(opt.state[params[0]]["exp_avg"] == 123.0)


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("through_file", [False, True], ids=["in-memory", "sa.save"])
def test_resume_equals_uninterrupted_run(kind, through_file, tmp_path):
    straight = make_params()
    opt = make_opt(kind, straight)
    take_steps(opt, straight, range(STEPS))

    first = make_params()
    opt1 = make_opt(kind, first)
    take_steps(opt1, first, range(3))
    checkpoint = {"params": [p.data for p in first], "optim": opt1.state_dict(), "epoch": 3}
    if through_file:
        sa.save(checkpoint, tmp_path / "ckpt.npz")
        checkpoint = sa.load(tmp_path / "ckpt.npz")

    resumed = make_params()
    for p, saved in zip(resumed, checkpoint["params"]):
        p.data[...] = saved
    opt2 = make_opt(kind, resumed)
    opt2.load_state_dict(checkpoint["optim"])
    take_steps(opt2, resumed, range(checkpoint["epoch"], STEPS))
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a.data, b.data)


def test_loaded_state_takes_the_parameters_dtype():
    p64 = make_params()
    opt = make_opt("adam", p64)
    take_steps(opt, p64, range(1))
    p32 = make_params(np.float32)
    opt32 = make_opt("adam", p32)
    opt32.load_state_dict(opt.state_dict())
    assert opt32.state[p32[0]]["exp_avg"].dtype == np.float32
    assert opt32.param_groups[0]["betas"] == (0.8, 0.95)  # tuples stay tuples


def test_mismatches_are_reported():
    params = make_params()
    opt = make_opt("sgd", params)
    take_steps(opt, params, range(1))
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="2 parameter groups, this optimiser has 1"):
        optim.SGD(make_params(), lr=0.1).load_state_dict(sd)
    other = make_params()
    with pytest.raises(ValueError, match="group 0 was saved with 2 parameters, this optimiser's group 0 has 1"):
        optim.SGD([{"params": other[:1]}, {"params": other[1:]}], lr=0.1).load_state_dict(sd)
    shapes = [nn.Parameter(np.ones((2, 3))), nn.Parameter(np.ones(2)), nn.Parameter(np.ones(4))]
    with pytest.raises(ValueError, match=r"state\[0\]\['momentum_buffer'\] has shape \(3, 2\), parameter 0 has"):
        make_opt("sgd", shapes).load_state_dict(sd)
    with pytest.raises(ValueError, match="keys 'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})
    assert "Parameter Group 1" in repr(opt) and "lr: 0.01" in repr(opt)
