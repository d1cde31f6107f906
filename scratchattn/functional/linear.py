"""``linear``: the affine map of a fully connected layer, y = x W^T + b, with PyTorch's (out, in) weight layout.

One Function with its own backward (instead of matmul + transpose + add) so that a layer costs two matrix
products in the backward and no copies: the leading dims of ``x`` are folded into one batch dim, giving plain
2-D BLAS calls. Derivation: docs/derivations.md, section "Generic ops" (matmul).
"""

from __future__ import annotations

from ..autograd import Function
from ..autograd.tensor import as_tensor


class Linear(Function):
    """y = x W^T + b for x (..., in), W (out, in), b (out,) -> y (..., out).

    With X, G the inputs and output gradients folded to (M, in) and (M, out):
    dX = G W,  dW = G^T X,  db = sum over rows of G.
    """

    def forward(self, x, weight, bias=None):
        y = (x.reshape(-1, x.shape[-1]) @ weight.T).reshape(x.shape[:-1] + (weight.shape[0],))
        if bias is not None:
            y += bias
        self.save_for_backward(x, weight)
        return y

    def backward(self, g):
        x, weight = self.saved_arrays
        g2 = g.reshape(-1, g.shape[-1])
        dx = dw = db = None
        if self.needs_input_grad[0]:
            dx = (g2 @ weight).reshape(x.shape)
        if self.needs_input_grad[1]:
            dw = g2.T @ x.reshape(-1, x.shape[-1])
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            db = g2.sum(axis=0)
        return (dx, dw) if len(self.needs_input_grad) == 2 else (dx, dw, db)


def linear(input, weight, bias=None):  # noqa: A002 - torch's argument name
    """x W^T + b: ``input`` (..., in), ``weight`` (out, in), ``bias`` (out,) or None -> (..., out)."""
    x, w = as_tensor(input), as_tensor(weight)
    if x.dtype.kind != "f":
        raise TypeError(f"linear: input must be floating point; got dtype {x.dtype}")
    if w.ndim != 2:
        raise ValueError(f"linear: weight must have shape (out_features, in_features); got {w.shape}")
    if x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear: input's last dim must equal weight's in_features {w.shape[1]}; "
                         f"got input shape {x.shape}")
    if w.dtype != x.dtype:
        raise TypeError(f"linear: weight dtype {w.dtype} differs from input dtype {x.dtype}")
    if bias is None:
        return Linear()(x, w)
    b = as_tensor(bias)
    if b.shape != (w.shape[0],):
        raise ValueError(f"linear: bias must have shape ({w.shape[0]},); got {b.shape}")
    if b.dtype != x.dtype:
        raise TypeError(f"linear: bias dtype {b.dtype} differs from input dtype {x.dtype}")
    return Linear()(x, w, b)
