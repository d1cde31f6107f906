"""``Optimizer``: the base class of SGD, Adam and AdamW — parameter groups, per-parameter state, state dicts.

An optimiser holds ``param_groups``, a list of dicts; each has ``"params"`` (a list of Parameters) and its own
options (``"lr"``, ``"momentum"``, ...), which default to the optimiser's constructor arguments. Groups let parts
of a model train differently, e.g. a spatial transformer's localisation net at a tenth of the learning rate::

    optim.SGD([{"params": model.backbone.parameters()},
               {"params": model.stn.parameters(), "lr": 0.001}], lr=0.01, momentum=0.9)

``state`` maps each Parameter to its per-parameter arrays (momentum buffers, Adam's moments), created lazily on
the parameter's device and dtype at its first update. Subclasses write ``_update(group)``: it reads ``p.grad`` and
writes ``p.data`` in place (never ``p.grad``), under ``no_grad``. ``state_dict()`` has PyTorch's layout —
``{"state": {index: {...}}, "param_groups": [{..., "params": [index, ...]}]}`` with parameters numbered in group
order — and can be written with ``sa.save``.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..autograd import Tensor, enable_grad, no_grad


class Optimizer:
    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        self.state: dict = {}  # Parameter -> dict of arrays and counters (Tensors hash by identity)
        if isinstance(params, Tensor):
            raise TypeError(
                f"{type(self).__name__}: params must be an iterable of Parameters or of dicts; got a single Tensor "
                "(wrap it in a list)"
            )
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    # -- groups ---------------------------------------------------------------------------------------------------
    def add_param_group(self, group: dict) -> None:
        """Add a group: ``{"params": iterable of Parameters, option: value, ...}``; missing options get defaults."""
        name = type(self).__name__
        if not isinstance(group, dict):
            raise TypeError(f"{name}: a parameter group must be a dict; got {type(group).__name__}")
        if "params" not in group:
            raise ValueError(f"{name}: a parameter group needs a 'params' entry; got keys {sorted(group)}")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: params[{i}] must be a Tensor (a Parameter); got {type(p).__name__}")
            if not p.requires_grad:
                raise ValueError(f"{name}: params[{i}] (shape {p.shape}) does not require grad, so it cannot train")
        if len({id(p) for p in params}) != len(params):
            raise ValueError(f"{name}: a parameter group lists the same parameter twice")
        taken = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in taken for p in params):
            raise ValueError(f"{name}: a parameter appears in more than one parameter group")
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise ValueError(f"{name}: unknown option(s) {sorted(unknown)} in a parameter group")
        full = dict(self.defaults)
        full.update(group)
        full["params"] = params
        self._check_options(full)
        self.param_groups.append(full)

    def _check_options(self, group: dict) -> None:
        """Raise ValueError for an invalid option value (subclasses check their own options)."""
        _check_nonnegative(type(self).__name__, "lr", group["lr"])

    # -- the update -----------------------------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget every parameter's gradient (``p.grad = None``; a fresh zero array if ``set_to_none=False``)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad = None if set_to_none else backend.get_array_module(p.grad).zeros_like(p.grad)

    def step(self, closure=None):
        """Update every parameter that has a gradient. ``closure`` (optional) recomputes and returns the loss,
        which ``step`` returns."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                self._update(group)
        return loss

    def _update(self, group: dict) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not define _update(group)")

    # -- state dicts ----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{"state": {index: {name: array copy or number}}, "param_groups": [{option: value, "params": [index]}]}``"""
        index_of, groups, k = {}, [], 0
        for group in self.param_groups:
            entry = {key: (list(v) if isinstance(v, tuple) else v) for key, v in group.items() if key != "params"}
            entry["params"] = list(range(k, k + len(group["params"])))
            for p in group["params"]:
                index_of[id(p)] = k
                k += 1
            groups.append(entry)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index_of[id(p)]] = {
                        key: (v.copy() if backend.is_array(v) else v) for key, v in self.state[p].items()
                    }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore options and per-parameter state saved by ``state_dict`` (or read back by ``sa.load``).

        The optimiser must have the same group sizes as the one that was saved. Arrays are cast to each
        parameter's dtype and moved to its device; a shape mismatch raises ValueError naming the entry.
        """
        name = type(self).__name__
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            given = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"{name}.load_state_dict: expected a dict with keys 'state' and 'param_groups'; "
                             f"got {given}")
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: the saved state has {len(saved_groups)} parameter groups, "
                             f"this optimiser has {len(self.param_groups)}")
        params_by_index = {}
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            saved_params = list(saved.get("params", []))
            if len(saved_params) != len(group["params"]):
                raise ValueError(f"{name}.load_state_dict: group {i} was saved with {len(saved_params)} parameters, "
                                 f"this optimiser's group {i} has {len(group['params'])}")
            params_by_index.update(zip((int(j) for j in saved_params), group["params"]))

        # Check everything before changing anything.
        new_state = {}
        for key, entry in dict(state_dict["state"]).items():
            index = int(key)  # sa.load gives the keys back as ints; a JSON-ish source might give strings
            if index not in params_by_index:
                raise ValueError(f"{name}.load_state_dict: state for parameter {index}, which no group lists")
            p = params_by_index[index]
            restored = {}
            for field, value in entry.items():
                if isinstance(value, Tensor):
                    value = value.data
                if backend.is_array(value) and value.ndim > 0:
                    if tuple(value.shape) != p.shape:
                        raise ValueError(f"{name}.load_state_dict: state[{index}][{field!r}] has shape "
                                         f"{tuple(value.shape)}, parameter {index} has shape {p.shape}")
                    value = backend.to_device(value, p.device).astype(p.dtype, copy=True)
                elif backend.is_array(value):  # a 0-d array: a counter such as Adam's step
                    value = backend.to_numpy(value).item()
                restored[field] = value
            new_state[p] = restored

        for saved, group in zip(saved_groups, self.param_groups):
            for key, value in saved.items():
                if key != "params":
                    group[key] = tuple(value) if isinstance(group.get(key), tuple) else value
        self.state = new_state

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        return "\n".join(lines) + "\n)"


def _check_nonnegative(owner: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{owner}: {name} must be a number; got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}: {name} must be a finite number >= 0; got {value}")
