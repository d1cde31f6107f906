"""The ``Function`` base class and the grad-mode switch.

A Function is one differentiable op. A subclass writes two methods on plain arrays (NumPy or CuPy):

* ``forward(*arrays) -> array or tuple of arrays`` computes the outputs and saves on ``self`` what the backward
  needs (with :meth:`Function.save_for_backward`, or as plain attributes);
* ``backward(*grad_outputs) -> grad or tuple of grads`` returns one gradient per input, each with the shape of
  that input, or ``None`` where ``self.needs_input_grad[i]`` is False (or the input is not differentiable).

Calling an instance on Tensors (``Mul()(a, b)``) runs ``forward`` on their arrays, wraps the results in Tensors and,
when any input requires a gradient and grad mode is on, records the instance as their ``creator`` so that
``Tensor.backward`` can find it. After its backward has run, the engine calls :meth:`Function.release`, which drops
every attribute the op stored on ``self``: saved arrays are freed without each op having to remember to.
"""

from __future__ import annotations

import contextlib
import threading

from .. import backend

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def _grad_mode(enabled: bool):
    previous = is_grad_enabled()
    _state.grad_enabled = enabled
    try:
        yield
    finally:
        _state.grad_enabled = previous


def no_grad():
    """Context manager: ops inside it record no graph (for evaluation and for optimiser updates)."""
    return _grad_mode(False)


def enable_grad():
    """Context manager: turn graph recording back on inside a ``no_grad`` block."""
    return _grad_mode(True)


class Function:
    """Base class of every differentiable op; see the module docstring for the protocol."""

    # Attributes the engine owns; everything else on an instance is the op's own and is freed by release().
    _ENGINE_ATTRS = ("inputs", "needs_input_grad", "output_meta", "released")

    def __call__(self, *inputs):
        from .tensor import Tensor, as_tensor  # tensor.py imports this module

        tensors = [as_tensor(x) for x in inputs]
        device = _common_device(tensors, type(self).__name__)
        del device
        outputs = self.forward(*[t.data for t in tensors])
        single = not isinstance(outputs, tuple)
        outputs = (outputs,) if single else outputs

        record = is_grad_enabled() and any(t.requires_grad for t in tensors)
        results = []
        for index, array in enumerate(outputs):
            # Integer or boolean outputs (indices, masks) carry no gradient, even from a recorded op.
            differentiable = record and array.dtype.kind == "f"
            out = Tensor(array, requires_grad=differentiable)
            if differentiable:
                out.creator = self
                out.output_index = index
            results.append(out)
        if record:
            self.inputs = tensors
            self.needs_input_grad = tuple(t.requires_grad for t in tensors)
            self.output_meta = tuple((a.shape, a.dtype) for a in outputs)
            self.released = False
        return results[0] if single else tuple(results)

    def forward(self, *arrays):
        raise NotImplementedError(f"{type(self).__name__}.forward is not written")

    def backward(self, *grad_outputs):
        raise NotImplementedError(f"{type(self).__name__}.backward is not written: this op is not differentiable")

    def save_for_backward(self, *arrays):
        """Keep ``arrays`` for the backward pass; read them back as ``self.saved_arrays``."""
        self.saved_arrays = arrays

    def release(self):
        """Drop everything the op saved, and the links to its inputs, once its backward has run."""
        for name in list(vars(self)):
            if name not in self._ENGINE_ATTRS:
                delattr(self, name)
        self.inputs = ()
        self.released = True


def _common_device(tensors, op_name):
    devices = {backend.device_of(t.data) for t in tensors}
    if len(devices) > 1:
        raise ValueError(
            f"{op_name}: all inputs must be on one device; got a mix of {sorted(devices)} "
            "(move them with .to(device))"
        )
    return devices.pop() if devices else "cpu"
