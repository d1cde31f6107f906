"""The backward walk: run every Function's backward once, in reverse topological order, and sum the gradients.

The graph is the set of Functions reachable from the root tensor through ``creator`` and ``inputs``. It is sorted
with an explicit stack (no recursion, so graphs thousands of ops deep are fine). A Function runs only after every
Function that consumed one of its outputs has run, so the gradient it receives for each output is already the sum
over all uses of that output. Leaves (tensors with no creator) that require a gradient accumulate into ``.grad``,
as in PyTorch, across calls to ``backward``.
"""

from __future__ import annotations

from .. import backend


def _topological_order(root_fn):
    """Functions reachable from ``root_fn``, each after all of its consumers (iterative post-order DFS)."""
    order, visited = [], {id(root_fn)}
    stack = [(root_fn, iter(root_fn.inputs))]
    while stack:
        fn, children = stack[-1]
        for t in children:
            child = t.creator
            if child is not None and t.requires_grad and id(child) not in visited:
                if child.released:
                    raise RuntimeError(_FREED_MESSAGE)
                visited.add(id(child))
                stack.append((child, iter(child.inputs)))
                break
        else:
            stack.pop()
            order.append(fn)
    order.reverse()  # post-order reversed: consumers before producers
    return order


_FREED_MESSAGE = (
    "backward through a graph whose saved arrays were already freed: call backward(retain_graph=True) the "
    "first time to go through it twice"
)


def run_backward(root, grad, retain_graph: bool) -> None:
    root_fn = root.creator
    if root_fn is None:  # backward on a leaf: its gradient is the incoming one
        root.grad = grad.copy() if root.grad is None else root.grad + grad
        return
    if root_fn.released:
        raise RuntimeError(_FREED_MESSAGE)

    pending = {id(root_fn): [None] * len(root_fn.output_meta)}
    pending[id(root_fn)][root.output_index] = grad
    # ids of the gradient arrays that something else may still hold (the caller's grad, gradients waiting for
    # another Function, arrays already stored as a leaf's .grad). A leaf keeps a gradient as its .grad without a
    # copy only when it is a fresh array nobody else holds: backward functions may hand one array, or a view of
    # their output gradient, to several inputs, and a leaf's .grad must be its own (it may be changed in place).
    shared = {id(grad)}
    for fn in _topological_order(root_fn):
        grad_outputs = pending.pop(id(fn), None)
        if grad_outputs is None:
            continue  # reachable, but no gradient flows through it
        xp = None
        for i, g in enumerate(grad_outputs):
            if g is None:  # an output nobody used: its gradient is zero
                shape, dtype = fn.output_meta[i]
                xp = xp or backend.get_array_module(*(t.data for t in fn.inputs))
                grad_outputs[i] = xp.zeros(shape, dtype=dtype)
        grad_inputs = fn.backward(*grad_outputs)
        if not isinstance(grad_inputs, tuple):
            grad_inputs = (grad_inputs,)
        if len(grad_inputs) != len(fn.inputs):
            raise RuntimeError(
                f"{type(fn).__name__}.backward returned {len(grad_inputs)} gradients for {len(fn.inputs)} inputs"
            )
        for t, g, needed in zip(fn.inputs, grad_inputs, fn.needs_input_grad):
            if g is None or not needed:
                continue
            if g.shape != t.data.shape:
                raise RuntimeError(
                    f"{type(fn).__name__}.backward returned a gradient of shape {tuple(g.shape)} for an input "
                    f"of shape {t.shape}"
                )
            if g.dtype != t.data.dtype:
                g = g.astype(t.data.dtype)
            if t.creator is None:
                if t.grad is not None:
                    t.grad = t.grad + g
                else:
                    t.grad = g.copy() if g.base is not None or id(g) in shared else g
                shared.add(id(t.grad))
            else:
                shared.add(id(g))
                slot = pending.setdefault(id(t.creator), [None] * len(t.creator.output_meta))
                previous = slot[t.output_index]
                slot[t.output_index] = g if previous is None else previous + g
        if not retain_graph:
            fn.release()
