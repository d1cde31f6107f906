"""``Parameter``, ``Module`` and the containers ``Sequential`` and ``ModuleList``.

A Module is a tree: it owns parameters (Tensors the optimiser trains), buffers (Tensors that are part of the
model's state but are not trained, such as batch norm's running statistics) and child modules. Plain attribute
assignment registers them, as in PyTorch::

    self.weight = Parameter(w)              # -> self._parameters["weight"]
    self.register_buffer("running_mean", m) # -> self._buffers["running_mean"]
    self.fc1 = Linear(8, 2)                 # -> self._modules["fc1"]

Everything else (``named_parameters``, ``state_dict``, ``to``, ``train``) walks that tree. Names are dotted paths
from the root (``"features.0.weight"``), the same names PyTorch gives the same model, so state dicts map one to
one. Moving or casting a module (``to``, ``double``) replaces each Tensor's ``data`` in place and keeps the
Tensor objects, so an optimiser built before the move still holds the right parameters.
"""

from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy as np

from .. import backend
from ..autograd import Tensor

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


# =================================================================================================================
# Parameter
# =================================================================================================================


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable: ``requires_grad`` is True unless asked otherwise.

    ``data`` may be an array (NumPy or CuPy, kept on its device), a Tensor (its array is shared) or a nested list
    of numbers (made a float32 NumPy array, PyTorch's default dtype).
    """

    def __init__(self, data, requires_grad: bool = True):
        if isinstance(data, Tensor):
            data = data.data
        elif not backend.is_array(data):
            data = np.asarray(data)
            if data.dtype.kind in "biuf":  # Python numbers default to float32, as in PyTorch
                data = data.astype(np.float32)
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


def _as_buffer(value, name: str) -> Tensor | None:
    """A buffer is a Tensor without gradient; arrays are wrapped, None stays None."""
    if value is None:
        return None
    if isinstance(value, Parameter):
        raise TypeError(f"buffer {name!r}: expected a Tensor or an array, got a Parameter (register it as one)")
    if isinstance(value, Tensor):
        return value
    if backend.is_array(value):
        return Tensor(value)
    raise TypeError(f"buffer {name!r}: expected a Tensor, an array or None; got {type(value).__name__}")


def _check_name(name, kind: str) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{kind} name must be a str; got {type(name).__name__}")
    if name == "" or "." in name:
        raise ValueError(f"{kind} name must be a non-empty str without '.'; got {name!r}")


# =================================================================================================================
# Module
# =================================================================================================================


class Module:
    """Base class of every layer and model. Subclasses call ``super().__init__()`` first and define ``forward``.

    ``module(x)`` runs ``forward(x)``. ``training`` (set by ``train()`` / ``eval()``) tells layers such as
    dropout and batch norm which behaviour to use.
    """

    def __init__(self):
        # object.__setattr__ because our own __setattr__ needs these dicts to exist.
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- registration ---------------------------------------------------------------------------------------------
    def _require_init(self, name: str) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__() was called: call super().__init__() first in "
                f"{type(self).__name__}.__init__"
            )

    def __setattr__(self, name, value):
        params = self.__dict__.get("_parameters")
        if isinstance(value, Parameter):
            self._require_init(name)
            self._forget(name)
            params[name] = value
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} to parameter {name!r} of {type(self).__name__} "
                    "(a Parameter or None is expected)"
                )
            params[name] = None
        elif isinstance(value, Module):
            self._require_init(name)
            self._forget(name)
            self._modules[name] = value
        elif params is not None and name in self._modules:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} to child module {name!r} of {type(self).__name__} "
                    "(a Module or None is expected)"
                )
            self._modules[name] = None
        elif params is not None and name in self._buffers:
            self._buffers[name] = _as_buffer(value, name)
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str) -> None:
        """Remove ``name`` from every registry and the instance dict (it is being re-registered)."""
        self.__dict__.pop(name, None)
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        self._non_persistent_buffers.discard(name)

    def __getattr__(self, name):
        # Called only when ordinary lookup fails: parameters, buffers and children live in the registries.
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry in d and name in d[registry]:
                return d[registry][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for registry in ("_parameters", "_buffers", "_modules"):
            if name in self.__dict__.get(registry, ()):
                del self.__dict__[registry][name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` (a Parameter, or None for an absent one such as ``bias=False``) as ``name``."""
        self._require_init(name)
        _check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"parameter {name!r}: expected a Parameter or None; got {type(param).__name__}")
        if hasattr(self, name) and name not in self._parameters:
            raise KeyError(f"attribute {name!r} already exists on {type(self).__name__}")
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """Register a buffer: state that is saved and moved with the module but not trained.

        ``persistent=False`` keeps it out of ``state_dict`` (it is still moved by ``to``).
        """
        self._require_init(name)
        _check_name(name, "buffer")
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"attribute {name!r} already exists on {type(self).__name__}")
        self._buffers[name] = _as_buffer(tensor, name)
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Register ``module`` as the child ``name`` (what ``self.name = module`` does for identifier names)."""
        self._require_init(name)
        _check_name(name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"module {name!r}: expected a Module or None; got {type(module).__name__}")
        if hasattr(self, name) and name not in self._modules:
            raise KeyError(f"attribute {name!r} already exists on {type(self).__name__}")
        self._modules[name] = module

    # -- walking the tree -----------------------------------------------------------------------------------------
    def named_modules(self, prefix: str = ""):
        """Yield ``(dotted_name, module)`` for this module (name ``prefix``) and every descendant, each once."""
        seen = set()
        stack = [(prefix, self)]
        while stack:  # depth-first, children in registration order
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{k}" if name else k, m) for k, m in module._modules.items() if m is not None]
            stack.extend(reversed(children))

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        """Yield ``(name, module)`` for the direct children."""
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, registry: str, prefix: str, recurse: bool):
        seen = set()  # a Tensor shared by two modules is reported once, under its first name
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_name, module in modules:
            for name, t in getattr(module, registry).items():
                if t is None or id(t) in seen:
                    continue
                seen.add(id(t))
                yield (f"{module_name}.{name}" if module_name else name), t

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        """Yield ``(dotted_name, Parameter)``, e.g. ``("features.0.weight", p)``; shared parameters once."""
        yield from self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True):
        """Yield ``(dotted_name, Tensor)`` for every buffer (persistent or not)."""
        yield from self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn):
        """Call ``fn(module)`` on every descendant and then on this module (children first, as PyTorch)."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # -- modes and gradients --------------------------------------------------------------------------------------
    def train(self, mode: bool = True):
        """Set training mode (``mode=True``) or evaluation mode on this module and all descendants."""
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode): mode must be a bool; got {type(mode).__name__}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        """Evaluation mode: dropout passes inputs through, batch norm uses its running statistics."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True):
        """Turn gradient tracking of every parameter on or off (e.g. to freeze a backbone)."""
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the accumulated gradients: ``p.grad = None`` (or a fresh zero array if ``set_to_none=False``)."""
        for p in self.parameters():
            if p.grad is not None:
                p.grad = None if set_to_none else backend.get_array_module(p.grad).zeros_like(p.grad)

    # -- devices and dtypes ---------------------------------------------------------------------------------------
    def _apply_to_tensors(self, convert) -> None:
        """Replace ``data`` (and ``grad``) of every parameter and buffer by ``convert(array)``, in place."""
        seen = set()
        for m in self.modules():
            for t in list(m._parameters.values()) + list(m._buffers.values()):
                if t is None or id(t) in seen:
                    continue
                seen.add(id(t))
                t.data = convert(t.data)
                if t.grad is not None:
                    t.grad = convert(t.grad)

    def to(self, device=None, dtype=None):
        """Move every parameter and buffer to ``device`` ("cpu" or "cuda") and/or cast its floating-point ones
        to ``dtype``; the Tensor objects are kept (their ``data`` is replaced). Returns ``self``."""
        if device is not None:
            device = backend.check_device(device)
            self._apply_to_tensors(lambda a: backend.to_device(a, device))
        if dtype is not None:
            dtype = np.dtype(dtype)
            if dtype not in backend.FLOAT_DTYPES:
                raise ValueError(f"to(dtype): dtype must be float32 or float64; got {dtype}")
            self._apply_to_tensors(lambda a: a.astype(dtype, copy=False) if a.dtype.kind == "f" else a)
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def float(self):
        """Cast floating-point parameters and buffers to float32 (integer buffers keep their dtype)."""
        return self.to(dtype=np.float32)

    def double(self):
        """Cast floating-point parameters and buffers to float64 (what gradcheck uses)."""
        return self.to(dtype=np.float64)

    # -- state dicts ----------------------------------------------------------------------------------------------
    def _state_tensors(self, prefix: str = "") -> OrderedDict:
        """name -> Tensor for what ``state_dict`` saves, in PyTorch's order: a module's own parameters, then its
        persistent buffers, then each child's entries. A shared module appears under every name it has."""
        out = OrderedDict()
        for name, p in self._parameters.items():
            if p is not None:
                out[prefix + name] = p
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                out[prefix + name] = b
        for name, m in self._modules.items():
            if m is not None:
                out.update(m._state_tensors(prefix + name + "."))
        return out

    def state_dict(self) -> OrderedDict:
        """An ordered dict ``name -> array`` holding a copy of every parameter and persistent buffer, on the
        module's device, with PyTorch's names (``"0.weight"``, ``"bn.running_mean"``, ``"bn.num_batches_tracked"``).
        """
        return OrderedDict((name, t.data.copy()) for name, t in self._state_tensors().items())

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy the arrays of ``state_dict`` into this module's parameters and buffers.

        Each value is cast to the dtype and moved to the device of the Tensor it loads into, so a float64 NumPy
        checkpoint loads into a float32 model on the GPU. Values may be arrays (NumPy or CuPy), Tensors or numbers.
        With ``strict=True`` a missing or unexpected key is an error; a shape mismatch always is. All problems
        are reported in one ``ValueError`` and nothing is loaded unless everything can be. Returns
        ``(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"load_state_dict: expected a dict of arrays; got {type(state_dict).__name__}")
        targets = self._state_tensors()
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict.keys() if k not in targets]
        problems, ready = [], []
        for name, target in targets.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            value = value.data if isinstance(value, Tensor) else value
            if not backend.is_array(value):
                try:
                    value = np.asarray(value)
                except Exception:  # noqa: BLE001 - anything that is not array-like is reported below
                    value = None
            if value is None or value.dtype.kind not in "biuf":
                kind = type(state_dict[name]).__name__ if value is None else f"dtype {value.dtype}"
                problems.append(f"  {name}: expected a numeric array, got {kind}")
                continue
            if tuple(value.shape) != target.shape:
                problems.append(f"  {name}: shape mismatch, expected {target.shape}, given {tuple(value.shape)}")
                continue
            ready.append((target, value))
        if strict and missing:
            problems.insert(0, "  missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.insert(0 if not missing else 1, "  unexpected keys: " + ", ".join(unexpected))
        if problems:
            raise ValueError(f"load_state_dict into {type(self).__name__} failed:\n" + "\n".join(problems))
        for target, value in ready:
            value = backend.to_device(value, target.device)
            target.data[...] = value.astype(target.dtype, copy=False)
        return IncompatibleKeys(missing, unexpected)

    # -- printing -------------------------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The layer's settings shown between the parentheses of its repr (``"3, 8, kernel_size=(3, 3)"``)."""
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): " + _indent(repr(m)) for name, m in self._modules.items() if m is not None]
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        body = ([extra] if extra else []) + lines
        return f"{type(self).__name__}(\n  " + "\n  ".join(body) + "\n)"


def _indent(text: str) -> str:
    return text.replace("\n", "\n  ")


# =================================================================================================================
# Sequential, ModuleList
# =================================================================================================================


def _index(i, n: int, what: str) -> int:
    if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
        raise TypeError(f"{what} indices must be integers or slices; got {type(i).__name__}")
    if not -n <= i < n:
        raise IndexError(f"{what} index {i} is out of range for length {n}")
    return int(i) % n


class Sequential(Module):
    """Children called one after another: ``Sequential(Conv2d(...), ReLU(), ...)(x)``.

    The children are named ``"0"``, ``"1"``, ... (or by the keys of a single ``OrderedDict`` argument), which gives
    the state-dict names ``"0.weight"``, ... Indexable (``seq[0]``, ``seq[-1]``, ``seq[1:]``), iterable, sized.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, _check_module(m, f"Sequential[{name!r}]"))
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), _check_module(m, f"Sequential argument {i}"))

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, i):
        items = list(self._modules.items())
        if isinstance(i, slice):
            return Sequential(OrderedDict(items[i]))
        return items[_index(i, len(items), "Sequential")][1]

    def __setitem__(self, i, module):
        name = list(self._modules)[_index(i, len(self), "Sequential")]
        self._modules[name] = _check_module(module, f"Sequential[{i}]")

    def append(self, module):
        self.add_module(str(len(self)), _check_module(module, "Sequential.append"))
        return self

    def forward(self, x):
        for m in self:
            x = m(x)
        return x


class ModuleList(Module):
    """A list of modules whose parameters the parent registers (a plain Python list would hide them).

    Children are named ``"0"``, ``"1"``, ...; it has no ``forward``: the owner decides how to call them.
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, i):
        values = list(self._modules.values())
        if isinstance(i, slice):
            return ModuleList(values[i])
        return values[_index(i, len(values), "ModuleList")]

    def __setitem__(self, i, module):
        self._modules[str(_index(i, len(self), "ModuleList"))] = _check_module(module, f"ModuleList[{i}]")

    def append(self, module):
        self.add_module(str(len(self)), _check_module(module, "ModuleList.append"))
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self


def _check_module(m, where: str) -> Module:
    if not isinstance(m, Module):
        raise TypeError(f"{where}: expected a Module; got {type(m).__name__}")
    return m
