"""``gradcheck``: compare an op's hand-written backward with central differences.

For a function ``f`` of tensors, pick a fixed random cotangent ``v`` for its output(s) and look at the scalar
``L(x) = sum(v * f(x))``. The backward pass gives ``dL/dx`` for every input at once; central differences give each
element of it independently:

    dL/dx_i  ~  (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)

with an error of order eps^2 (plus rounding of order |L| * 1e-16 / eps), which is why the check runs in float64.
Checking one random vector-Jacobian product catches a wrong backward with probability one (a wrong row of the
Jacobian would have to be orthogonal to a random ``v``), at the cost of one backward and two forwards per input
element.
"""

from __future__ import annotations

import numpy as np

from .. import backend
from .function import enable_grad, no_grad
from .tensor import Tensor


class GradcheckError(AssertionError):
    """The analytic and the numerical gradient disagree (an AssertionError, so pytest shows it as a failure)."""


def _as_outputs(result):
    outs = result if isinstance(result, (tuple, list)) else (result,)
    return [o for o in outs if isinstance(o, Tensor) and o.dtype.kind == "f"]


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3, seed: int = 0,
              params=()) -> bool:
    """Check the gradient of ``fn(*inputs)`` w.r.t. every input Tensor with ``requires_grad``.

    ``inputs`` is a sequence (or a single Tensor); items that are not Tensors are passed through unchanged.
    Floating-point inputs are checked in float64: float32 inputs are copied to float64 first, because central
    differences in float32 are dominated by rounding. Returns True, or raises :class:`GradcheckError` naming the
    input, the worst element, the analytic and the numerical value. An element passes when
    ``|analytic - numerical| <= atol + rtol * |numerical|``.

    ``params`` are Tensors that ``fn`` reads without taking them as arguments, such as a module's parameters:
    ``gradcheck(block, [x], params=block.named_parameters())`` after ``block.double()``. They are perturbed in
    place (and restored), so they must already be float64; Tensors or ``(name, Tensor)`` pairs are accepted, and
    the name appears in the error. Their ``.grad`` is left as it was.
    """
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    inputs = list(inputs)
    checked = []
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor) and x.dtype.kind == "f":
            data = x.data.astype(np.float64, copy=True)
            inputs[i] = Tensor(data, requires_grad=x.requires_grad)
            if x.requires_grad:
                checked.append(i)
    named_params = []
    for k, item in enumerate(params):
        name, p = item if isinstance(item, tuple) else (f"params[{k}]", item)
        if not isinstance(p, Tensor) or p.dtype != np.float64:
            raise TypeError(f"gradcheck: parameter {name} must be a float64 Tensor (call module.double() first); "
                            f"got {getattr(p, 'dtype', type(p).__name__)}")
        if p.requires_grad:
            named_params.append((f"parameter {name}", p))
    if not checked and not named_params:
        raise ValueError("gradcheck: no input Tensor has requires_grad=True, so there is nothing to check")
    saved_grads = [p.grad for _, p in named_params]
    for _, p in named_params:
        p.grad = None

    with enable_grad():
        outputs = _as_outputs(fn(*inputs))
    if not outputs:
        raise ValueError("gradcheck: fn returned no floating-point Tensor")
    rng = np.random.default_rng(seed)
    cotangents = []
    for o in outputs:
        xp = backend.get_array_module(o.data)
        cotangents.append(xp.asarray(rng.standard_normal(o.shape)).astype(o.dtype))

    # Analytic: one backward pass of L = sum(v * f(x)).
    live = [(o, v) for o, v in zip(outputs, cotangents) if o.requires_grad]
    if live:
        total = None
        for o, v in live:
            term = (o * Tensor(v)).sum()
            total = term if total is None else total + term
        total.backward()

    def objective():
        with no_grad():
            outs = _as_outputs(fn(*inputs))
        return sum(float((o.data.astype(np.float64) * v).sum()) for o, v in zip(outs, cotangents))

    try:
        for label, x in [(f"input {i}", inputs[i]) for i in checked] + named_params:
            _compare(label, x, objective, eps, atol, rtol)
    finally:
        for (_, p), grad in zip(named_params, saved_grads):
            p.grad = grad
    return True


def _compare(label, x, objective, eps, atol, rtol):
    """Central differences of ``objective`` over every element of ``x`` against ``x.grad``; raise on mismatch."""
    analytic = x.grad if x.grad is not None else backend.get_array_module(x.data).zeros_like(x.data)
    analytic = backend.to_numpy(analytic).astype(np.float64).ravel()
    numeric = np.empty_like(analytic)
    xp = backend.get_array_module(x.data)
    x.data = xp.ascontiguousarray(x.data)  # no copy when contiguous; reshape(-1) below must be a view
    flat = x.data.reshape(-1)  # a view: perturbing it perturbs the tensor fn reads
    for k in range(flat.size):
        original = flat[k].item()
        flat[k] = original + eps
        plus = objective()
        flat[k] = original - eps
        minus = objective()
        flat[k] = original
        numeric[k] = (plus - minus) / (2 * eps)
    error = np.abs(analytic - numeric)
    allowed = atol + rtol * np.abs(numeric)
    bad = ~(error <= allowed)  # also catches NaN
    if bad.any():
        k = int(np.argmax(np.where(bad, error - allowed, -np.inf)) if not np.isnan(error).any()
                else np.flatnonzero(np.isnan(error))[0])
        where = np.unravel_index(k, x.shape) if x.shape else ()
        raise GradcheckError(
            f"gradcheck failed for {label} (shape {x.shape}): {int(bad.sum())} of {bad.size} elements "
            f"disagree; worst at index {tuple(int(j) for j in where)}: analytic {analytic[k]:.10g}, "
            f"numerical {numeric[k]:.10g}, |difference| {error[k]:.3g} > atol + rtol*|numerical| = "
            f"{allowed[k]:.3g}"
        )
