"""Grid sampling, the sampler of a Spatial Transformer Network: ``F.grid_sample`` with PyTorch's semantics.

For every output pixel (n, h, w) the grid holds a point (x, y) in normalised coordinates (x = -1 the left edge of
the input, +1 the right edge; y likewise top to bottom). The input is read at that point, interpolated, and the
result is written to out[n, :, h, w]. Both the input and the grid get gradients, so a network can learn where to
look. The work happens in a hand-written kernel pair: ``kernels/cpu/grid_sample.py`` (Numba) and
``kernels/cuda/grid_sample.cu`` (CUDA, through CuPy on a GPU or the host shim on the CPU); this module validates
the input and dispatches. The full derivation is in ``docs/derivations.md``, section "Grid sampling".
"""

from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function, Tensor, as_tensor
from ..kernels.cpu import grid_sample as cpu_kernels

LAYOUTS = ("NCHW", "NHWC")


def _cuda_kernels():
    # Imported on first use: the CUDA launchers need the launcher module (and, on a GPU, CuPy), the Numba path not.
    from ..kernels.cuda import grid_sample as cuda_kernels

    return cuda_kernels


class GridSample(Function):
    """out = input sampled at grid; gradients for both. In short (derivation: docs/derivations.md, "Grid sampling"):

    Coordinates. A grid value x becomes the pixel coordinate ix = ((x + 1) W - 1) / 2 (align_corners=False; -1 and
    +1 are the outer edges of the border pixels) or ix = (x + 1) (W - 1) / 2 (True; they are the border pixels'
    centres), so d ix/d x = W / 2 or (W - 1) / 2. Padding then maps ix: "zeros" leaves it (points outside read 0);
    "border" clips it to [0, W - 1] (slope 0 where clipped); "reflection" mirrors it at the edges (slope +-1) and
    clips. Likewise y, with H.

    Taps. Every mode is a weighted sum over taps, out[n, c, h, w] = sum_k w_k inp[n, c, y_k, x_k]:

    * bilinear: the 4 pixels around (ix, iy), x0 = floor(ix), wx = ix - x0 (likewise y), with weights
      (1-wx)(1-wy), wx(1-wy), (1-wx)wy, wx wy;
    * nearest: the pixel (rint(iy), rint(ix)) (halves round to even), weight 1;
    * bicubic: the 4 x 4 pixels x0-1..x0+2 around the *unpadded* (ix, iy), with Keys' cubic weights (A = -0.75),
      the padding applied to each tap index.

    Backward, with g = dL/dout:

        dL/dinp[n, c, y_k, x_k] += w_k g[n, c, h, w]                        (taps outside the image are skipped)
        dL/dgrid[n, h, w, 0]     = sum_k dw_k/dx sum_c g[n, c, h, w] inp[n, c, y_k, x_k]           (likewise y)

    where dw_k/dx includes the chain d ix/d x times the padding slope (bilinear), or d ix/d x only (bicubic: the
    padding moves integer tap indices, which have no derivative); nearest has dL/dgrid = 0.

    Saves the input and the grid (references, no copies) and the kernel path chosen in the forward.
    """

    def __init__(self, mode: int, padding_mode: int, align_corners: bool, channels_last: bool):
        self.mode, self.padding_mode = mode, padding_mode
        self.align_corners, self.channels_last = align_corners, channels_last

    def _options(self):
        return self.mode, self.padding_mode, self.align_corners, self.kernel_channels_last

    @staticmethod
    def _planar(a):
        """An (N, H, W, 1) array seen as (N, 1, H, W): with one channel, NHWC and NCHW are the same bytes."""
        return None if a is None else a.reshape(a.shape[0], 1, a.shape[1], a.shape[2])

    def forward(self, inp, grid):
        xp = backend.get_array_module(inp)
        inp = xp.ascontiguousarray(inp)  # no copy when already contiguous
        grid = xp.ascontiguousarray(grid)
        n, h_out, w_out = grid.shape[:3]
        if self.channels_last:
            out = xp.empty((n, h_out, w_out, inp.shape[3]), dtype=inp.dtype)
        else:
            out = xp.empty((n, inp.shape[1], h_out, w_out), dtype=inp.dtype)
        self.path = backend.kernel_path(inp)
        # One channel: run the planar (NCHW) loops, which are faster for C = 1 than the pixel-vector ones.
        self.one_channel_nhwc = self.channels_last and inp.shape[3] == 1
        self.kernel_channels_last = self.channels_last and not self.one_channel_nhwc
        inp_k, out_k = (self._planar(inp), self._planar(out)) if self.one_channel_nhwc else (inp, out)
        if self.path == "numba":
            cpu_kernels.grid_sample_forward(inp_k, grid, out_k, *self._options())
        else:
            _cuda_kernels().grid_sample_forward(inp_k, grid, out_k, *self._options(), target=self.path)
        self.save_for_backward(inp, grid)
        return out

    def backward(self, grad_out):
        inp, grid = self.saved_arrays
        xp = backend.get_array_module(inp)
        grad_out = xp.ascontiguousarray(grad_out)
        grad_inp = xp.zeros_like(inp) if self.needs_input_grad[0] else None  # the kernels scatter into it
        grad_grid = xp.empty_like(grid) if self.needs_input_grad[1] else None
        if grad_inp is None and grad_grid is None:
            return None, None
        arrays = (grad_out, inp, grid, grad_inp, grad_grid)
        if self.one_channel_nhwc:
            p = self._planar
            arrays = (p(grad_out), p(inp), grid, p(grad_inp), grad_grid)
        if self.path == "numba":
            cpu_kernels.grid_sample_backward(*arrays, *self._options())
        else:
            _cuda_kernels().grid_sample_backward(*arrays, *self._options(), target=self.path)
        return grad_inp, grad_grid


def _check_tensor(name: str, x, shape_text: str) -> Tensor:
    if not isinstance(x, Tensor) and not backend.is_array(x):
        raise TypeError(f"grid_sample: {name} must be a Tensor of shape {shape_text}; got {type(x).__name__}")
    x = as_tensor(x)
    if x.dtype not in backend.FLOAT_DTYPES:
        raise TypeError(f"grid_sample: {name} must be float32 or float64; got dtype {x.dtype}")
    return x


def _check_choice(name: str, value, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"grid_sample: {name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def grid_sample(input, grid, mode: str = "bilinear", padding_mode: str = "zeros", align_corners: bool = False,
                layout: str = "NCHW") -> Tensor:
    """Sample ``input`` at the points of ``grid`` (PyTorch's ``grid_sample``, same conventions and results).

    Args:
        input: Tensor (N, C, H_in, W_in) for ``layout="NCHW"``, or (N, H_in, W_in, C) for ``"NHWC"`` (channels
            last: the channels of one pixel are contiguous, which the kernels read as one vector: faster).
            float32 or float64, CPU or CUDA. H_in, W_in >= 1; N, C may be 0.
        grid: Tensor (N, H_out, W_out, 2) of (x, y) in normalised coordinates, -1 to 1 across the input; same
            dtype and device as ``input``. Points outside [-1, 1] are padded as ``padding_mode`` says.
        mode: "bilinear", "nearest" (rounding halves to even; no gradient for the grid) or "bicubic" (A = -0.75).
        padding_mode: "zeros" (outside reads 0), "border" (clip to the edge pixels) or "reflection" (mirror at the
            edges).
        align_corners: True: -1 and +1 are the centres of the corner pixels; False: their outer edges.
        layout: "NCHW" or "NHWC", the layout of ``input`` and of the output.

    Returns:
        Tensor (N, C, H_out, W_out) ("NCHW") or (N, H_out, W_out, C) ("NHWC"), differentiable w.r.t. both
        ``input`` and ``grid``. Formulas: :class:`GridSample`; derivation: ``docs/derivations.md``, "Grid sampling".

    Non-finite and huge grid points never read or write out of bounds; what they give (tested):

    * "zeros": a point farther than a pixel outside the image, NaN and +-Inf included, gives 0 in every mode, and
      its gradients are 0. (PyTorch's CUDA kernels give 0 too; its CPU kernels give NaN for NaN and Inf.)
    * "border", "reflection" with bilinear or nearest: as PyTorch, NaN samples the first pixel of its axis; +-Inf
      and +-1e30 clip to the edge pixels ("border"); +-Inf reflect to NaN, hence the first pixel ("reflection"),
      and a huge finite value is folded into the image exactly (fmod). The gradient of a clipped coordinate is 0.
    * "border", "reflection" with bicubic: not the first pixel with gradient 0 as above. The weights are
      polynomials in ix - floor(ix), which is NaN for NaN and +-Inf, so the output is NaN there, and so are the
      gradients (the grid's at that point, the input's at its taps), as in PyTorch.

    Example::

        x = sa.tensor(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))
        theta = sa.tensor([[[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]]])   # read 0.5 to the right: 1 pixel of 4
        y = F.grid_sample(x, F.affine_grid(theta, (1, 1, 4, 4)))   # x moved left by a pixel, zeros at the right
    """
    _check_choice("layout", layout, LAYOUTS)
    channels_last = layout == "NHWC"
    input_shape = "(N, H_in, W_in, C)" if channels_last else "(N, C, H_in, W_in)"
    input = _check_tensor("input", input, input_shape)
    grid = _check_tensor("grid", grid, "(N, H_out, W_out, 2)")
    mode_code = cpu_kernels.MODES[_check_choice("mode", mode, tuple(cpu_kernels.MODES))]
    padding_code = cpu_kernels.PADDING_MODES[_check_choice("padding_mode", padding_mode,
                                                           tuple(cpu_kernels.PADDING_MODES))]
    if not isinstance(align_corners, (bool, np.bool_)):
        raise TypeError(f"grid_sample: align_corners must be a bool; got {align_corners!r}")

    if input.ndim == 5:
        raise NotImplementedError("grid_sample: 3-D (volumetric) sampling of a 5-D input is not implemented; "
                                  f"input must be 4-D {input_shape}, got shape {input.shape}")
    if input.ndim != 4:
        raise ValueError(f"grid_sample: input must be 4-D {input_shape} for layout {layout!r}; "
                         f"got shape {input.shape}")
    if grid.ndim != 4 or grid.shape[3] != 2:
        raise ValueError(f"grid_sample: grid must have shape (N, H_out, W_out, 2); got shape {grid.shape}")
    if grid.shape[0] != input.shape[0]:
        raise ValueError(f"grid_sample: grid and input must have the same batch size N; got input {input.shape} "
                         f"and grid {grid.shape}")
    spatial = input.shape[1:3] if channels_last else input.shape[2:4]
    if min(spatial) < 1:
        raise ValueError(f"grid_sample: input must have non-empty spatial dimensions H_in, W_in; got input shape "
                         f"{input.shape} for layout {layout!r}")
    if input.dtype != grid.dtype:
        raise TypeError(f"grid_sample: input and grid must have the same dtype; got input {input.dtype} and grid "
                        f"{grid.dtype}")
    if input.device != grid.device:
        raise ValueError(f"grid_sample: input and grid must be on the same device; got input on {input.device!r} "
                         f"and grid on {grid.device!r}")
    return GridSample(mode_code, padding_code, bool(align_corners), channels_last)(input, grid)
