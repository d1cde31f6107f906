"""Learning-rate schedules: ``StepLR`` and ``CosineAnnealingLR`` (PyTorch's names, arguments and values).

A scheduler owns an optimiser and rewrites each group's ``"lr"`` once per epoch::

    scheduler = CosineAnnealingLR(optimizer, T_max=epochs)
    for epoch in range(epochs):
        train_one_epoch(...)          # optimizer.step() inside
        scheduler.step()

Constructing a scheduler records each group's starting rate as ``"initial_lr"`` (the ``base_lrs``) and sets
``last_epoch = 0``. Each ``step()`` adds one to ``last_epoch`` and sets every group's rate to the schedule's value
at that epoch, computed in closed form from ``base_lr`` (so the value does not drift through repeated
multiplication, and a scheduler restored from ``state_dict`` continues exactly).
"""

from __future__ import annotations

import math

from .optimizer import Optimizer


class LRScheduler:
    """Base class: subclasses define ``lr_at(base_lr, epoch)``."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: optimizer must be an Optimizer; got {type(optimizer).__name__}")
        if not isinstance(last_epoch, int) or last_epoch < -1:
            raise ValueError(f"{type(self).__name__}: last_epoch must be an int >= -1; got {last_epoch!r}")
        self.optimizer = optimizer
        for i, group in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise KeyError(f"param 'initial_lr' is not set in param_groups[{i}] when resuming an optimizer "
                               f"(last_epoch={last_epoch})")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def lr_at(self, base_lr: float, epoch: int) -> float:
        raise NotImplementedError(f"{type(self).__name__} does not define lr_at(base_lr, epoch)")

    def step(self) -> None:
        """Advance one epoch and write the new learning rate into every parameter group."""
        self.last_epoch += 1
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.lr_at(base_lr, self.last_epoch)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The learning rate of each group as set by the latest ``step()``."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """Everything but the optimiser: ``last_epoch``, ``base_lrs`` and the schedule's settings."""
        return {key: (list(v) if isinstance(v, list) else v) for key, v in vars(self).items() if key != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        unknown = set(state_dict) - set(vars(self))
        if unknown:
            raise ValueError(f"{type(self).__name__}.load_state_dict: unexpected keys {sorted(unknown)}")
        vars(self).update({key: (list(v) if isinstance(v, (list, tuple)) else v) for key, v in state_dict.items()})


def _check_positive_int(owner: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a positive int; got {value!r}")


class StepLR(LRScheduler):
    """``StepLR(optimizer, step_size, gamma=0.1)``: ``lr = base_lr * gamma ** (epoch // step_size)``."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        _check_positive_int("StepLR", "step_size", step_size)
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma > 0:
            raise ValueError(f"StepLR: gamma must be a number > 0; got {gamma!r}")
        self.step_size, self.gamma = step_size, float(gamma)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, epoch):
        return base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """``CosineAnnealingLR(optimizer, T_max, eta_min=0)``: half a cosine from ``base_lr`` down to ``eta_min``::

        lr(epoch) = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2

    ``lr(0) = base_lr`` and ``lr(T_max) = eta_min``; stepping past ``T_max`` follows the cosine back up, as
    PyTorch's does (PyTorch computes the same values recursively from the previous rate).
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        _check_positive_int("CosineAnnealingLR", "T_max", T_max)
        if isinstance(eta_min, bool) or not isinstance(eta_min, (int, float)) or eta_min < 0:
            raise ValueError(f"CosineAnnealingLR: eta_min must be a number >= 0; got {eta_min!r}")
        self.T_max, self.eta_min = T_max, float(eta_min)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, epoch):
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2
