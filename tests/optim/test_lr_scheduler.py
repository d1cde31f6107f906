"""Tests of ``optim.lr_scheduler.StepLR`` and ``CosineAnnealingLR`` against their closed forms, written here:

    StepLR:            lr(e) = base * gamma ** (e // step_size)
    CosineAnnealingLR: lr(e) = eta_min + (base - eta_min) * (1 + cos(pi e / T_max)) / 2
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from scratchattn import nn, optim
from scratchattn.optim.lr_scheduler import CosineAnnealingLR, StepLR


def two_group_sgd(lr0=0.5, lr1=0.05):
    p, q = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(3))
    return optim.SGD([{"params": [p]}, {"params": [q], "lr": lr1}], lr=lr0, momentum=0.9)


def cosine(base, eta_min, epoch, t_max):
    return eta_min + (base - eta_min) * (1 + math.cos(math.pi * epoch / t_max)) / 2


@pytest.mark.parametrize("t_max, eta_min", [(10, 0.0), (7, 0.001), (1, 0.01)])
def test_cosine_follows_the_closed_form_for_every_group(t_max, eta_min):
    opt = two_group_sgd()
    sched = CosineAnnealingLR(opt, T_max=t_max, eta_min=eta_min)
    for epoch in range(3 * t_max + 2):  # past T_max the cosine comes back up, as in PyTorch
        expected = [cosine(0.5, eta_min, epoch, t_max), cosine(0.05, eta_min, epoch, t_max)]
        got = [g["lr"] for g in opt.param_groups]
        np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-16, err_msg=f"epoch {epoch}")
        assert sched.get_last_lr() == got and sched.last_epoch == epoch
        sched.step()
    assert [g["initial_lr"] for g in opt.param_groups] == [0.5, 0.05]


def test_cosine_end_points():
    opt = two_group_sgd()
    sched = CosineAnnealingLR(opt, T_max=4, eta_min=0.01)
    assert opt.param_groups[0]["lr"] == 0.5
    for _ in range(4):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01, abs=1e-15)


def test_step_lr_values():
    opt = two_group_sgd()
    sched = StepLR(opt, step_size=3, gamma=0.5)
    seen = []
    for _ in range(10):
        seen.append(sched.get_last_lr())
        sched.step()
    assert [s[0] for s in seen] == [0.5 * 0.5 ** (e // 3) for e in range(10)]
    assert [s[1] for s in seen] == [0.05 * 0.5 ** (e // 3) for e in range(10)]


@pytest.mark.parametrize("make", [lambda o: CosineAnnealingLR(o, T_max=6, eta_min=0.002),
                                  lambda o: StepLR(o, step_size=2, gamma=0.3)], ids=["cosine", "step"])
def test_state_dict_resume_continues_identically(make):
    opt_a = two_group_sgd()
    sched_a = make(opt_a)
    for _ in range(4):
        sched_a.step()
    saved_opt, saved_sched = opt_a.state_dict(), sched_a.state_dict()
    assert saved_sched["last_epoch"] == 4 and "optimizer" not in saved_sched

    opt_b = two_group_sgd()
    opt_b.load_state_dict(saved_opt)  # restores lr and initial_lr of each group
    sched_b = make(opt_b)
    sched_b.load_state_dict(saved_sched)
    for _ in range(5):
        sched_a.step()
        sched_b.step()
        assert [g["lr"] for g in opt_a.param_groups] == [g["lr"] for g in opt_b.param_groups]


def test_bad_arguments():
    opt = two_group_sgd()
    with pytest.raises(ValueError, match="T_max must be a positive int"):
        CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(ValueError, match="eta_min"):
        CosineAnnealingLR(opt, T_max=3, eta_min=-1.0)
    with pytest.raises(ValueError, match="step_size must be a positive int"):
        StepLR(opt, step_size=1.5)
    with pytest.raises(ValueError, match="gamma"):
        StepLR(opt, step_size=2, gamma=0)
    with pytest.raises(TypeError, match="optimizer must be an Optimizer"):
        StepLR([0.1], step_size=2)
    with pytest.raises(KeyError, match="initial_lr"):
        StepLR(two_group_sgd(), step_size=2, last_epoch=3)
    sched = StepLR(opt, step_size=2)
    with pytest.raises(ValueError, match="unexpected keys"):
        sched.load_state_dict({"last_epoch": 1, "bogus": 2})
