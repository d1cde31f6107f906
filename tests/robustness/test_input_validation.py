"""Bad input gets a clear error; odd but valid input (strided, reversed, Fortran-order, empty) gets the right result.

Four tables, each run over the public ops and modules:

* ``BAD_CALLS``: wrong dtypes, ranks, shapes, mismatched arguments, unknown option strings, wrong types. Each must
  raise ``ValueError`` or ``TypeError`` (``NotImplementedError`` where a feature is declared missing) whose message
  names the argument and says what was expected and what was given (checked with a regex per case).
* ``LAYOUT_CASES``: every op gives the same forward and backward results on non-contiguous, negative-stride and
  Fortran-order arrays as on C-contiguous copies of them (the headline ops on every kernel path).
* ``EMPTY_BATCH_CASES``: N = 0 gives outputs and gradients of the right (empty) shapes, and zero gradients for
  parameters; ``ZERO_SIZE_CASES``: an empty spatial axis is refused with a ValueError saying so.
* Mixed devices (a GPU is needed to have two): refused with a ValueError naming the devices.
"""

from __future__ import annotations

import re

import _robust_fuzz as fuzz
import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend, models, nn
from scratchattn import functional as F

R = np.random.default_rng(0)


def f32(*shape):
    return R.standard_normal(shape).astype(np.float32)


def f64(*shape):
    return R.standard_normal(shape)


THETA = f32(2, 2, 3)
X4 = f32(2, 4, 3, 3)
W1, B1, W2, B2 = f32(2, 4), f32(2), f32(4, 2), f32(4)
Q = f32(2, 5, 4)
IMG, GRID = f32(2, 3, 4, 5), f32(2, 3, 3, 2)

# =================================================================================================================
# bad calls: (id, call, exception, regex the message must match)
# =================================================================================================================

BAD_CALLS = [
    # -- affine_grid / projective_grid ----------------------------------------------------------------------------
    ("affine theta int", lambda: F.affine_grid(THETA.astype(np.int32), (2, 1, 3, 3)), TypeError,
     r"theta must be float32 or float64; got dtype int32"),
    ("affine theta float16", lambda: F.affine_grid(THETA.astype(np.float16), (2, 1, 3, 3)), TypeError,
     r"theta must be float32 or float64; got dtype float16"),
    ("affine theta list", lambda: F.affine_grid(THETA.tolist(), (2, 1, 3, 3)), TypeError,
     r"theta must be a Tensor of shape \(N, 2, 3\); got list"),
    ("affine theta None", lambda: F.affine_grid(None, (2, 1, 3, 3)), TypeError,
     r"theta must be a Tensor.*got NoneType"),
    ("affine theta 2x2", lambda: F.affine_grid(f32(2, 2, 2), (2, 1, 3, 3)), ValueError,
     r"theta must have shape \(N, 2, 3\).*got shape \(2, 2, 2\)"),
    ("affine theta rank 2", lambda: F.affine_grid(f32(2, 3), (1, 1, 3, 3)), ValueError,
     r"theta must have shape \(N, 2, 3\).*got shape \(2, 3\)"),
    ("affine size N mismatch", lambda: F.affine_grid(THETA, (3, 1, 3, 3)), ValueError,
     r"size\[0\] \(N\) must equal the batch of the parameters \(2\); got size \(3, 1, 3, 3\)"),
    ("affine size 3 entries", lambda: F.affine_grid(THETA, (2, 3, 3)), ValueError,
     r"size must have 4 entries \(N, C, H, W\); got 3"),
    ("affine size float", lambda: F.affine_grid(THETA, (2, 1, 3.0, 3)), TypeError,
     r"size must be a tuple or list of ints \(N, C, H, W\); got \(2, 1, 3.0, 3\)"),
    ("affine size None", lambda: F.affine_grid(THETA, None), TypeError, r"size must be a tuple or list of ints"),
    ("affine size zero H", lambda: F.affine_grid(THETA, (2, 1, 0, 3)), ValueError,
     r"size entries C, H and W must be positive; got size \(2, 1, 0, 3\)"),
    ("affine size negative", lambda: F.affine_grid(THETA, (2, -1, 3, 3)), ValueError, r"must be positive"),
    ("affine 3-D size", lambda: F.affine_grid(THETA, (2, 1, 3, 3, 3)), NotImplementedError,
     r"3-D \(volumetric\) grids are not supported"),
    ("affine align_corners str", lambda: F.affine_grid(THETA, (2, 1, 3, 3), align_corners="yes"), TypeError,
     r"align_corners must be a bool; got 'yes'"),
    ("projective 2x3", lambda: F.projective_grid(THETA, (2, 1, 3, 3)), ValueError,
     r"homography must have shape \(N, 3, 3\).*got shape \(2, 2, 3\)"),
    # -- squeeze_excitation ---------------------------------------------------------------------------------------
    ("se x int", lambda: F.squeeze_excitation(X4.astype(np.int64), W1, B1, W2, B2), TypeError,
     r"x must be float32 or float64; got int64"),
    ("se x float16", lambda: F.squeeze_excitation(X4.astype(np.float16), W1, B1, W2, B2), TypeError,
     r"x must be float32 or float64; got float16"),
    ("se x str", lambda: F.squeeze_excitation("abc", W1, B1, W2, B2), TypeError, r"x must be float32 or float64"),
    ("se x 3-D", lambda: F.squeeze_excitation(X4[0], W1, B1, W2, B2), ValueError,
     r"x must be 4-D \(N, C, H, W\) for layout 'NCHW'; got shape \(4, 3, 3\)"),
    ("se x 5-D NHWC", lambda: F.squeeze_excitation(X4[None], W1, B1, W2, B2, layout="NHWC"), ValueError,
     r"x must be 4-D \(N, H, W, C\) for layout 'NHWC'; got shape \(1, 2, 4, 3, 3\)"),
    ("se w1 dtype", lambda: F.squeeze_excitation(X4, W1.astype(np.float64), B1, W2, B2), TypeError,
     r"w1 must have x's dtype float32; got float64"),
    ("se w1 1-D", lambda: F.squeeze_excitation(X4, B1, B1, W2, B2), ValueError,
     r"w1 must be 2-D \(C_r, C\) with C_r >= 1; got shape \(2,\)"),
    ("se w1 channels", lambda: F.squeeze_excitation(X4, f32(2, 5), B1, W2, B2), ValueError,
     r"w1 must have shape \(2, 4\); got \(2, 5\)"),
    ("se w2 shape", lambda: F.squeeze_excitation(X4, W1, B1, W1, B2), ValueError,
     r"w2 must have shape \(4, 2\); got \(2, 4\)"),
    ("se b1 shape", lambda: F.squeeze_excitation(X4, W1, B2, W2, B2), ValueError, r"b1 must have shape \(2,\); got"),
    ("se b2 dtype", lambda: F.squeeze_excitation(X4, W1, B1, W2, B2.astype(np.float64)), TypeError,
     r"b2 must have x's dtype float32; got float64"),
    ("se layout lowercase", lambda: F.squeeze_excitation(X4, W1, B1, W2, B2, layout="nchw"), ValueError,
     r"layout must be one of \('NCHW', 'NHWC'\); got 'nchw'"),
    ("se layout None", lambda: F.squeeze_excitation(X4, W1, B1, W2, B2, layout=None), ValueError,
     r"layout must be one of .*got None"),
    ("se simple layout", lambda: F.squeeze_excitation_simple(X4, W1, B1, W2, B2, layout="NHCW"), ValueError,
     r"layout must be one of .*got 'NHCW'"),
    ("se H = 0", lambda: F.squeeze_excitation(f32(2, 4, 0, 3), W1, B1, W2, B2), ValueError,
     r"x needs at least one channel and one pixel; got shape \(2, 4, 0, 3\)"),
    # -- scaled_dot_product_attention -----------------------------------------------------------------------------
    ("attention q 1-D", lambda: F.scaled_dot_product_attention(Q[0, 0], Q, Q), ValueError,
     r"q must have at least 2 dims \(\.\.\., L, features\); got shape \(4,\)"),
    ("attention k int", lambda: F.scaled_dot_product_attention(Q, Q.astype(np.int32), Q), TypeError,
     r"k must be float32 or float64; got int32"),
    ("attention mixed dtypes", lambda: F.scaled_dot_product_attention(Q, Q, Q.astype(np.float64)), TypeError,
     r"q, k and v must share one dtype; got float32, float32, float64"),
    ("attention feature mismatch", lambda: F.scaled_dot_product_attention(Q, f32(2, 5, 3), Q), ValueError,
     r"q and k must have the same feature size \(last dim\); got q \(2, 5, 4\) and k \(2, 5, 3\)"),
    ("attention key mismatch", lambda: F.scaled_dot_product_attention(Q, Q, f32(2, 6, 4)), ValueError,
     r"k and v must have the same number of keys \(dim -2\); got k \(2, 5, 4\) and v \(2, 6, 4\)"),
    ("attention no keys", lambda: F.scaled_dot_product_attention(Q, f32(2, 0, 4), f32(2, 0, 4)), ValueError,
     r"k must have at least one key \(Lk > 0\); got k \(2, 0, 4\)"),
    ("attention batch", lambda: F.scaled_dot_product_attention(Q, f32(3, 5, 4), f32(3, 5, 4)), ValueError,
     r"batch dims .* must broadcast; got q \(2, 5, 4\), k \(3, 5, 4\)"),
    ("attention mask int", lambda: F.scaled_dot_product_attention(Q, Q, Q, mask=np.ones((5, 5), int)), TypeError,
     r"mask must be boolean or of q's dtype float32; got int64"),
    ("attention mask shape", lambda: F.scaled_dot_product_attention(Q, Q, Q, mask=np.ones((4, 5), bool)), ValueError,
     r"mask must broadcast to the scores' shape \(\.\.\., Lq, Lk\) = \(2, 5, 5\); got mask shape \(4, 5\)"),
    ("attention scale str", lambda: F.scaled_dot_product_attention(Q, Q, Q, scale="a"), TypeError,
     r"scale must be a real number or None; got 'a'"),
    ("attention scale bool", lambda: F.scaled_dot_product_attention(Q, Q, Q, scale=True), TypeError,
     r"scale must be a real number or None; got True"),
    # -- grid_sample ----------------------------------------------------------------------------------------------
    ("grid_sample input int", lambda: F.grid_sample(IMG.astype(np.int32), GRID), TypeError,
     r"input must be float32 or float64; got dtype int32"),
    ("grid_sample input list", lambda: F.grid_sample(IMG.tolist(), GRID), TypeError,
     r"input must be a Tensor of shape \(N, C, H_in, W_in\); got list"),
    ("grid_sample dtypes", lambda: F.grid_sample(IMG, GRID.astype(np.float64)), TypeError,
     r"input and grid must have the same dtype; got input float32 and grid float64"),
    ("grid_sample grid last dim 3", lambda: F.grid_sample(IMG, f32(2, 3, 3, 3)), ValueError,
     r"grid must have shape \(N, H_out, W_out, 2\); got shape \(2, 3, 3, 3\)"),
    ("grid_sample grid 3-D", lambda: F.grid_sample(IMG, f32(2, 3, 2)), ValueError,
     r"grid must have shape \(N, H_out, W_out, 2\); got shape \(2, 3, 2\)"),
    ("grid_sample batch", lambda: F.grid_sample(IMG, f32(3, 3, 3, 2)), ValueError,
     r"grid and input must have the same batch size N; got input \(2, 3, 4, 5\) and grid \(3, 3, 3, 2\)"),
    ("grid_sample mode", lambda: F.grid_sample(IMG, GRID, mode="area"), ValueError,
     r"mode must be one of 'bilinear', 'nearest', 'bicubic'; got 'area'"),
    ("grid_sample padding", lambda: F.grid_sample(IMG, GRID, padding_mode="wrap"), ValueError,
     r"padding_mode must be one of 'zeros', 'border', 'reflection'; got 'wrap'"),
    ("grid_sample layout", lambda: F.grid_sample(IMG, GRID, layout="NCWH"), ValueError,
     r"layout must be one of 'NCHW', 'NHWC'; got 'NCWH'"),
    ("grid_sample align_corners", lambda: F.grid_sample(IMG, GRID, align_corners=1), TypeError,
     r"align_corners must be a bool; got 1"),
    ("grid_sample input 3-D", lambda: F.grid_sample(IMG[0], GRID), ValueError,
     r"input must be 4-D \(N, C, H_in, W_in\) for layout 'NCHW'; got shape \(3, 4, 5\)"),
    ("grid_sample input 5-D", lambda: F.grid_sample(IMG[None], GRID), NotImplementedError,
     r"3-D \(volumetric\) sampling of a 5-D input is not implemented"),
    ("grid_sample H = 0", lambda: F.grid_sample(f32(2, 3, 0, 5), GRID), ValueError,
     r"input must have non-empty spatial dimensions H_in, W_in; got input shape \(2, 3, 0, 5\)"),
    ("grid_sample NHWC rank", lambda: F.grid_sample(f32(2, 4, 5), GRID, layout="NHWC"), ValueError,
     r"input must be 4-D \(N, H_in, W_in, C\) for layout 'NHWC'"),
    ("SpatialTransformer localization", lambda: nn.SpatialTransformer("x"), TypeError,
     r"localization must be an nn.Module; got str"),
    ("SpatialTransformer mode", lambda: nn.SpatialTransformer(nn.Linear(4, 6), mode="area"), ValueError,
     r"mode must be one of \('bilinear', 'nearest', 'bicubic'\); got 'area'"),
    ("SpatialTransformer out_size", lambda: nn.SpatialTransformer(nn.Linear(4, 6), out_size=(0, 3)), ValueError,
     r"out_size must be None or \(H_out, W_out\), two positive ints; got \(0, 3\)"),
    ("SpatialTransformer theta size", lambda: nn.SpatialTransformer(nn.Sequential(nn.Flatten(), nn.Linear(16, 5))),
     ValueError, r"the last nn.Linear of localization must have 6 outputs .*got weight of shape \(5, 16\)"),
    ("SpatialTransformer input rank", lambda: nn.SpatialTransformer(nn.Linear(4, 6))(sa.tensor(f32(1, 4, 4))),
     ValueError, r"SpatialTransformer: input must have shape \(N, C, H, W\); got shape \(1, 4, 4\)"),
    # -- generic ops ----------------------------------------------------------------------------------------------
    ("relu int", lambda: F.relu(np.arange(3)), TypeError,
     r"relu: input must be a floating-point tensor; got dtype int64"),
    ("softmax dim str", lambda: F.softmax(Q, dim="a"), TypeError, r"softmax: dim must be an int; got 'a'"),
    ("softmax dim out of range", lambda: F.softmax(Q, dim=5), ValueError, r"dim 5 is out of range for a tensor with 3"),
    ("gelu approximate", lambda: F.gelu(Q, approximate="fast"), ValueError,
     r"approximate must be 'none' or 'tanh'; got 'fast'"),
    ("linear weight 1-D", lambda: F.linear(f32(3, 4), f32(4)), ValueError,
     r"weight must have shape \(out_features, in_features\); got \(4,\)"),
    ("linear in_features", lambda: F.linear(f32(3, 5), f32(2, 4)), ValueError,
     r"input's last dim must equal weight's in_features 4; got input shape \(3, 5\)"),
    ("linear dtype", lambda: F.linear(f64(3, 4), f32(2, 4)), TypeError,
     r"weight dtype float32 differs from input dtype float64"),
    ("conv input 3-D", lambda: F.conv2d(f32(1, 5, 5), f32(2, 1, 3, 3)), ValueError,
     r"input must have shape \(N, C, H, W\); got \(1, 5, 5\)"),
    ("conv channels", lambda: F.conv2d(f32(1, 4, 5, 5), f32(2, 3, 3, 3)), ValueError, r"weight has 3 input channels"),
    ("conv stride 0", lambda: F.conv2d(f32(1, 1, 5, 5), f32(2, 1, 3, 3), stride=0), ValueError,
     r"stride must be >= 1; got 0"),
    ("conv padding string", lambda: F.conv2d(f32(1, 1, 5, 5), f32(2, 1, 3, 3), padding="full"), ValueError,
     r"padding string must be 'valid' or 'same'; got 'full'"),
    ("max_pool kernel 0", lambda: F.max_pool2d(f32(1, 1, 4, 4), 0), ValueError, r"kernel_size must be >= 1; got 0"),
    ("max_pool H = 0", lambda: F.max_pool2d(f32(1, 1, 0, 4), 2), ValueError,
     r"kernel_size \(2, 2\) is larger than the padded input height 0"),
    ("adaptive H = 0", lambda: F.adaptive_avg_pool2d(f32(1, 1, 0, 4), 2), ValueError,
     r"input must have non-empty spatial dims; got \(1, 1, 0, 4\)"),
    ("global_avg H = 0", lambda: F.global_avg_pool2d(f32(1, 1, 4, 0)), ValueError,
     r"input must have non-empty spatial dims; got \(1, 1, 4, 0\)"),
    ("conv H = 0", lambda: F.conv2d(f32(1, 1, 0, 5), f32(2, 1, 3, 3)), ValueError,
     r"the dilated kernel \(3\) is larger than the padded input height \(0\)"),
    ("avg_pool 3-D", lambda: F.avg_pool2d(f32(1, 4, 4), 2), ValueError, r"input must have shape \(N, C, H, W\)"),
    ("adaptive output 0", lambda: F.adaptive_avg_pool2d(f32(1, 1, 4, 4), 0), ValueError,
     r"output_size entries must be positive ints"),
    ("batch_norm running shape", lambda: F.batch_norm(f32(4, 3), np.zeros(2, np.float32), np.ones(2, np.float32)),
     ValueError, r"running_mean must have shape \(3,\); got \(2,\)"),
    ("layer_norm shape", lambda: F.layer_norm(f32(2, 3), (4,)), ValueError,
     r"x's trailing dims must equal normalized_shape \(4,\); got x shape \(2, 3\)"),
    ("batch_norm training N = 0", lambda: F.batch_norm(f32(0, 3), np.zeros(3, np.float32), np.ones(3, np.float32),
                                                         training=True), ValueError,
     r"training needs more than one value per channel to estimate a variance; got input shape \(0, 3\)"),
    ("dropout p", lambda: F.dropout(f32(3), 2.0), ValueError, r"p must be a probability in \[0, 1\]; got 2.0"),
    ("cross_entropy float target", lambda: F.cross_entropy(f32(3, 4), np.array([0.0, 1.0, 2.0])), TypeError,
     r"target must hold integer class labels \(e.g. int64\); got dtype float64"),
    ("cross_entropy bool target", lambda: F.cross_entropy(f32(3, 4), np.zeros(3, bool)), TypeError,
     r"target must hold integer class labels.*got dtype bool"),
    ("cross_entropy label range", lambda: F.cross_entropy(f32(3, 4), np.array([0, 1, 4])), ValueError,
     r"target labels must lie in \[0, 3\] for 4 classes; found 4"),
    ("cross_entropy negative label", lambda: F.cross_entropy(f32(3, 4), np.array([0, -1, 2])), ValueError,
     r"target labels must lie in \[0, 3\].*found -1"),
    ("cross_entropy target shape", lambda: F.cross_entropy(f32(3, 4), np.zeros((3, 1), int)), ValueError,
     r"target must have shape \(3,\) to match input \(3, 4\); got \(3, 1\)"),
    ("cross_entropy reduction", lambda: F.cross_entropy(f32(3, 4), np.zeros(3, int), reduction="avg"), ValueError,
     r"reduction must be one of \('mean', 'sum', 'none'\); got 'avg'"),
    ("mse shape", lambda: F.mse_loss(f32(3, 4), f32(4, 3)), ValueError,
     r"target must have the shape of input \(3, 4\); got \(4, 3\)"),
    ("mse int target", lambda: F.mse_loss(f32(3, 4), np.zeros((3, 4), int)), TypeError,
     r"target must be floating point; got dtype int64"),
    ("pad mode", lambda: F.pad(f32(1, 1, 3, 3), (1, 1), mode="wrap"), ValueError,
     r"mode must be one of \('constant', 'reflect', 'replicate', 'circular'\); got 'wrap'"),
    ("cat empty", lambda: F.cat([]), ValueError, r"tensors must be a non-empty list or tuple of tensors; got \[\]"),
    ("matmul inner", lambda: F.matmul(f32(2, 3), f32(4, 3)), ValueError, r"inner dims differ: a \(2, 3\) has 3, b"),
    ("add a string", lambda: F.add(sa.tensor(f32(3)), "a"), TypeError,
     r"operands must be Tensors, arrays or numbers; got str 'a'"),
    ("add None", lambda: sa.tensor(f32(3)) + None, TypeError, r"operands must be .*got NoneType"),
    ("to unknown device", lambda: sa.tensor(f32(3)).to("tpu"), ValueError,
     r"device must be one of \('cpu', 'cuda'\); got 'tpu'"),
    ("requires_grad on ints", lambda: sa.tensor(np.ones(3, int), requires_grad=True), TypeError,
     r"requires_grad=True needs a floating-point array; got dtype int64"),
    ("backward grad shape", lambda: sa.tensor(f32(2, 3), requires_grad=True).sum().backward(np.ones(3)), ValueError,
     r"grad must have shape \(\); got \(3,\)"),
    # -- modules --------------------------------------------------------------------------------------------------
    ("Linear in_features 0", lambda: nn.Linear(0, 3), ValueError, r"Linear: in_features must be a positive int; got 0"),
    ("Linear in_features str", lambda: nn.Linear("3", 3), ValueError, r"in_features must be a positive int; got '3'"),
    ("Linear forward width", lambda: nn.Linear(3, 2)(f32(4, 4)), ValueError,
     r"input's last dim must equal weight's in_features 3; got input shape \(4, 4\)"),
    ("Linear forward float64", lambda: nn.Linear(3, 2)(f64(4, 3)), TypeError,
     r"weight dtype float32 differs from input dtype float64"),
    ("Conv2d padding", lambda: nn.Conv2d(3, 2, 3, padding="full"), ValueError,
     r"padding must be an int, a pair, 'valid' or 'same'; got 'full'"),
    ("Conv2d channels", lambda: nn.Conv2d(3, 2, 3)(f32(1, 4, 5, 5)), ValueError, r"weight has 3 input channels"),
    ("BatchNorm2d channels", lambda: nn.BatchNorm2d(3)(f32(2, 4, 5, 5)), ValueError,
     r"BatchNorm2d\(3\): input must have shape \(N, C, H, W\) with C = 3; got \(2, 4, 5, 5\)"),
    ("LayerNorm shape", lambda: nn.LayerNorm(-1), ValueError, r"normalized_shape must be positive int\(s\); got"),
    ("MHSA heads", lambda: nn.MultiheadSelfAttention(6, 4), ValueError,
     r"dim must be divisible by heads; got dim 6, heads 4"),
    ("MHSA input width", lambda: nn.MultiheadSelfAttention(8, 2)(f32(2, 5, 6)), ValueError,
     r"input must have shape \(N, L, 8\); got \(2, 5, 6\)"),
    ("SelfAttention2d channels", lambda: nn.SelfAttention2d(8)(f32(2, 4, 3, 3)), ValueError,
     r"SelfAttention2d: input must have shape \(N, 8, H, W\); got \(2, 4, 3, 3\)"),
    ("NonLocalBlock channels", lambda: nn.NonLocalBlock(8)(f32(2, 4, 3, 3)), ValueError,
     r"NonLocalBlock: input must have shape \(N, 8, H, W\); got \(2, 4, 3, 3\)"),
    ("TinyViT image size", lambda: models.TinyViT()(f32(2, 1, 27, 28)), ValueError,
     r"TinyViT: input must have shape \(N, 1, 28, 28\); got \(2, 1, 27, 28\)"),
    ("SEBlock reduction", lambda: nn.SEBlock(16, reduction=2.5), ValueError,
     r"SEBlock: reduction must be a positive int; got 2.5"),
    ("SEBlock layout", lambda: nn.SEBlock(16, layout="nhwc"), ValueError,
     r"SEBlock: layout must be one of \('NCHW', 'NHWC'\); got 'nhwc'"),
    ("SEBlock channels", lambda: nn.SEBlock(16)(f32(2, 8, 3, 3)), ValueError,
     r"SEBlock: input must have 16 channels, shape \(N, 16, H, W\); got \(2, 8, 3, 3\)"),
    ("SEBlock rank", lambda: nn.SEBlock(16)(f32(16, 3, 3)), ValueError,
     r"SEBlock: input must be 4-D \(N, C, H, W\); got shape \(16, 3, 3\)"),
    ("SEBlock dtype", lambda: nn.SEBlock(16)(f64(1, 16, 3, 3)), TypeError,
     r"w1 must have x's dtype float64; got float32"),
    ("CBAM kernel_size", lambda: nn.CBAM(16, kernel_size=4), ValueError, r"CBAM: kernel_size must be odd.*got 4"),
    ("CBAM channels", lambda: nn.CBAM(16)(f32(2, 8, 3, 3)), ValueError, r"CBAM: input must have 16 channels"),
    ("ECA channels 0", lambda: nn.ECA(0), ValueError, r"ECA: channels must be a positive int; got 0"),
    ("eca_kernel_size 0", lambda: nn.eca_kernel_size(0), ValueError,
     r"eca_kernel_size: channels must be a positive int; got 0"),
    ("scSE channels", lambda: nn.scSE(16)(f32(2, 8, 3, 3)), ValueError, r"scSE: input must have 16 channels"),
    ("create_attention name", lambda: nn.create_attention("nope", 16), ValueError,
     r"unknown attention 'nope'; known names: .*se"),
    ("SEResNet classes", lambda: models.se_resnet20(num_classes=0), ValueError,
     r"SEResNet: num_classes must be a positive int; got 0"),
    ("max over an empty axis", lambda: F.max(f32(2, 0), dim=1), ValueError,
     r"max: cannot reduce over an empty axis; got shape \(2, 0\) and dim 1"),
    ("Module.to dtype", lambda: nn.Linear(3, 2).to(dtype=np.int32), ValueError,
     r"dtype must be float32 or float64; got int32"),
    ("load_state_dict shape",
     lambda: nn.Linear(3, 2).load_state_dict({"weight": np.zeros((3, 3)), "bias": np.zeros(2)}), ValueError,
     r"weight: shape mismatch, expected \(2, 3\), given \(3, 3\)"),
    ("load_state_dict missing", lambda: nn.Linear(3, 2).load_state_dict({"weight": np.zeros((2, 3))}), ValueError,
     r"missing keys: bias"),
    ("load_state_dict unexpected", lambda: nn.Linear(3, 2).load_state_dict(
        {"weight": np.zeros((2, 3)), "bias": np.zeros(2), "extra": np.zeros(1)}), ValueError,
     r"unexpected keys: extra"),
    ("load_state_dict strings", lambda: nn.Linear(3, 2).load_state_dict({"weight": "abc", "bias": np.zeros(2)}),
     ValueError, r"weight: expected a numeric array, got dtype <U3"),
    ("load_state_dict list", lambda: nn.Linear(3, 2).load_state_dict([1, 2]), TypeError,
     r"expected a dict of arrays; got list"),
]


@pytest.mark.parametrize(("call", "error", "pattern"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_input_raises_a_clear_error(call, error, pattern):
    with pytest.raises(error) as info:
        call()
    assert info.type is error or issubclass(info.type, error)
    message = str(info.value)
    assert re.search(pattern, message), f"message {message!r} does not match {pattern!r}"


def test_a_failed_load_state_dict_changes_nothing():
    layer = nn.Linear(3, 2)
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    with pytest.raises(ValueError):
        layer.load_state_dict({"weight": np.full((2, 3), 7.0), "bias": np.zeros(5)})
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


# =================================================================================================================
# memory layouts: strided, reversed and Fortran-order inputs give the results of contiguous ones
# =================================================================================================================


def run_with_layout(fn, arrays, grad_seed, view, differentiable):
    """Forward and backward of ``fn`` on ``arrays`` laid out as ``view``; returns (output, grads) as NumPy."""
    tensors = [sa.Tensor(fuzz.make_view(a, view), requires_grad=i in differentiable) for i, a in enumerate(arrays)]
    out = fn(*tensors)
    grad = np.random.default_rng(grad_seed).standard_normal(out.shape).astype(out.dtype)
    out.backward(fuzz.make_view(grad, view) if grad.ndim else grad)
    return out.numpy(), [t.grad for t in tensors if t.requires_grad]


def _se(layout):
    def call(x, w1, b1, w2, b2):
        return F.squeeze_excitation(x, w1, b1, w2, b2, layout=layout)

    return call


def _batch_norm(x, w, b):
    running = np.zeros(x.shape[1]), np.ones(x.shape[1])
    return F.batch_norm(x, *running, w, b, training=True)


# (id, fn, input arrays (float64), indices of the differentiable inputs)
HEADLINE_LAYOUT_CASES = [
    ("grid_sample bilinear", lambda x, g: F.grid_sample(x, g), [f64(2, 3, 4, 5), 0.8 * f64(2, 3, 4, 2)], {0, 1}),
    ("grid_sample bicubic NHWC reflection", lambda x, g: F.grid_sample(x, g, mode="bicubic", padding_mode="reflection",
                                                                        layout="NHWC"),
     [f64(2, 4, 5, 3), 1.3 * f64(2, 3, 4, 2)], {0, 1}),
    ("affine_grid", lambda t: F.affine_grid(t, (2, 1, 4, 5), align_corners=False), [f64(2, 2, 3)], {0}),
    ("squeeze_excitation NCHW", _se("NCHW"), [f64(2, 4, 3, 5), f64(2, 4), f64(2), f64(4, 2), f64(4)], {0, 1, 2, 3, 4}),
    ("squeeze_excitation NHWC", _se("NHWC"), [f64(2, 3, 5, 4), f64(2, 4), f64(2), f64(4, 2), f64(4)], {0, 1, 2, 3, 4}),
]
GENERIC_LAYOUT_CASES = [
    ("projective_grid", lambda h: F.projective_grid(h, (2, 1, 3, 4)),
     [np.eye(3) + 0.1 * f64(2, 3, 3)], {0}),
    ("squeeze_excitation_simple", lambda *a: F.squeeze_excitation_simple(*a),
     [f64(2, 4, 3, 5), f64(2, 4), f64(2), f64(4, 2), f64(4)], {0, 1, 2, 3, 4}),
    ("scaled_dot_product_attention", lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, mask=m),
     [f64(2, 3, 4), f64(2, 5, 4), f64(2, 5, 3), f64(3, 5)], {0, 1, 2, 3}),
    ("linear", F.linear, [f64(3, 4), f64(2, 4), f64(2)], {0, 1, 2}),
    ("conv2d", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), [f64(2, 3, 5, 6), f64(4, 3, 3, 3), f64(4)],
     {0, 1, 2}),
    ("max_pool2d", lambda x: F.max_pool2d(x, 2), [f64(2, 3, 4, 6)], {0}),
    ("avg_pool2d", lambda x: F.avg_pool2d(x, 3, stride=2, padding=1), [f64(2, 3, 5, 6)], {0}),
    ("adaptive_avg_pool2d", lambda x: F.adaptive_avg_pool2d(x, (2, 3)), [f64(2, 3, 5, 7)], {0}),
    ("global_avg_pool2d", F.global_avg_pool2d, [f64(2, 3, 5, 7)], {0}),
    ("batch_norm", _batch_norm, [f64(4, 3, 2, 5), f64(3), f64(3)], {0, 1, 2}),
    ("layer_norm", lambda x, w, b: F.layer_norm(x, (5,), w, b), [f64(3, 4, 5), f64(5), f64(5)], {0, 1, 2}),
    ("softmax", lambda x: F.softmax(x, dim=1), [f64(3, 4, 5)], {0}),
    ("log_softmax", lambda x: F.log_softmax(x, dim=-1), [f64(3, 4, 5)], {0}),
    ("relu", F.relu, [f64(3, 4)], {0}),
    ("sigmoid", F.sigmoid, [f64(3, 4)], {0}),
    ("tanh", F.tanh, [f64(3, 4)], {0}),
    ("gelu", F.gelu, [f64(3, 4)], {0}),
    ("cross_entropy", lambda x, t: F.cross_entropy(x, t), [f64(4, 5), np.array([0, 4, 2, 1])], {0}),
    ("mse_loss", F.mse_loss, [f64(3, 4), f64(3, 4)], {0, 1}),
    ("pad reflect", lambda x: F.pad(x, (1, 2, 2, 1), mode="reflect"), [f64(2, 3, 4, 5)], {0}),
    ("cat", lambda a, b: F.cat([a, b], dim=1), [f64(2, 3, 4), f64(2, 1, 4)], {0, 1}),
    ("matmul", F.matmul, [f64(2, 3, 4), f64(4, 5)], {0, 1}),
]


def check_layouts(fn, arrays, differentiable):
    expected_out, expected_grads = run_with_layout(fn, arrays, 1, "contiguous", differentiable)
    for view in ("reversed", "strided", "fortran"):
        out, grads = run_with_layout(fn, arrays, 1, view, differentiable)
        np.testing.assert_allclose(out, expected_out, rtol=1e-12, atol=1e-12, err_msg=f"output, {view}")
        for i, (g, e) in enumerate(zip(grads, expected_grads)):
            np.testing.assert_allclose(backend.to_numpy(g), backend.to_numpy(e), rtol=1e-12, atol=1e-12,
                                       err_msg=f"gradient {i}, {view}")


@pytest.mark.parametrize(("fn", "arrays", "differentiable"), [c[1:] for c in HEADLINE_LAYOUT_CASES],
                         ids=[c[0] for c in HEADLINE_LAYOUT_CASES])
def test_headline_ops_accept_any_memory_layout(kernel_path, fn, arrays, differentiable):
    if kernel_path.name == "cupy":  # CuPy arrays: the same views, made on the GPU
        pytest.skip("layouts of CuPy arrays are covered by the fuzz tests' cupy path")
    check_layouts(fn, arrays, differentiable)


@pytest.mark.parametrize(("fn", "arrays", "differentiable"), [c[1:] for c in GENERIC_LAYOUT_CASES],
                         ids=[c[0] for c in GENERIC_LAYOUT_CASES])
def test_generic_ops_accept_any_memory_layout(fn, arrays, differentiable):
    check_layouts(fn, arrays, differentiable)


def test_a_view_that_aliases_the_output_buffer_is_not_clobbered():
    # An op must not write its result into its input's memory: the input keeps its values after forward/backward.
    x = f64(2, 4, 3, 5)
    x_view = fuzz.make_view(x, "reversed")
    keep = x_view.copy()
    t = sa.tensor(x_view, requires_grad=True)
    F.squeeze_excitation(t, f64(2, 4), None, f64(4, 2), None).sum().backward()
    np.testing.assert_array_equal(x_view, keep)


# =================================================================================================================
# empty batches: N = 0 runs forward and backward, with empty outputs and zero parameter gradients
# =================================================================================================================

EMPTY_BATCH_CASES = [
    # (id, fn, input arrays, expected output shape); inputs 1.. are parameters (their gradient must be all zero)
    ("affine_grid", lambda t: F.affine_grid(t, (0, 1, 3, 4)), [f64(0, 2, 3)], (0, 3, 4, 2)),
    ("projective_grid", lambda h: F.projective_grid(h, (0, 1, 3, 4)), [f64(0, 3, 3)], (0, 3, 4, 2)),
    ("squeeze_excitation", lambda *a: F.squeeze_excitation(*a), [f64(0, 4, 3, 3), f64(2, 4), f64(2), f64(4, 2),
                                                               f64(4)], (0, 4, 3, 3)),
    ("squeeze_excitation NHWC", lambda *a: F.squeeze_excitation(*a, layout="NHWC"),
     [f64(0, 3, 3, 4), f64(2, 4), f64(2), f64(4, 2), f64(4)], (0, 3, 3, 4)),
    ("attention N = 0", lambda q, k, v: F.scaled_dot_product_attention(q, k, v), [f64(0, 3, 4), f64(0, 5, 4),
                                                                                  f64(0, 5, 2)], (0, 3, 2)),
    ("attention Lq = 0", lambda q, k, v: F.scaled_dot_product_attention(q, k, v), [f64(2, 0, 4), f64(2, 5, 4),
                                                                                   f64(2, 5, 2)], (2, 0, 2)),
    ("linear", F.linear, [f64(0, 4), f64(2, 4), f64(2)], (0, 2)),
    ("conv2d", lambda x, w, b: F.conv2d(x, w, b, padding=1), [f64(0, 3, 4, 4), f64(2, 3, 3, 3), f64(2)], (0, 2, 4, 4)),
    ("max_pool2d", lambda x: F.max_pool2d(x, 2), [f64(0, 3, 4, 4)], (0, 3, 2, 2)),
    ("avg_pool2d", lambda x: F.avg_pool2d(x, 2), [f64(0, 3, 4, 4)], (0, 3, 2, 2)),
    ("adaptive_avg_pool2d", lambda x: F.adaptive_avg_pool2d(x, 3), [f64(0, 3, 4, 4)], (0, 3, 3, 3)),
    ("global_avg_pool2d", F.global_avg_pool2d, [f64(0, 3, 4, 4)], (0, 3, 1, 1)),
    ("batch_norm eval", lambda x, w, b: F.batch_norm(x, np.zeros(3), np.ones(3), w, b), [f64(0, 3, 2, 2), f64(3),
                                                                                        f64(3)], (0, 3, 2, 2)),
    ("layer_norm", lambda x, w, b: F.layer_norm(x, (4,), w, b), [f64(0, 4), f64(4), f64(4)], (0, 4)),
    ("softmax", lambda x: F.softmax(x, dim=1), [f64(0, 3)], (0, 3)),
    ("gelu", F.gelu, [f64(0, 3)], (0, 3)),
    ("dropout", lambda x: F.dropout(x, 0.5), [f64(0, 3)], (0, 3)),
    ("pad", lambda x: F.pad(x, (1, 1), mode="reflect"), [f64(0, 3, 4)], (0, 3, 6)),
    ("cat", lambda a, b: F.cat([a, b]), [f64(0, 3), f64(0, 3)], (0, 3)),
    ("max over H, W", lambda x: F.max(x, dim=(2, 3)), [f64(0, 3, 2, 2)], (0, 3)),
    ("grid_sample N = 0", lambda x, g: F.grid_sample(x, g), [f64(0, 3, 4, 5), f64(0, 2, 3, 2)], (0, 3, 2, 3)),
    ("grid_sample C = 0", lambda x, g: F.grid_sample(x, g), [f64(2, 0, 4, 5), f64(2, 2, 3, 2)], (2, 0, 2, 3)),
    ("grid_sample H_out = 0", lambda x, g: F.grid_sample(x, g, mode="bicubic"), [f64(2, 3, 4, 5), f64(2, 0, 3, 2)],
     (2, 3, 0, 3)),
]


@pytest.mark.parametrize(("fn", "arrays", "shape"), [c[1:] for c in EMPTY_BATCH_CASES],
                         ids=[c[0] for c in EMPTY_BATCH_CASES])
def test_empty_batch_runs_forward_and_backward(fn, arrays, shape):
    tensors = [sa.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    assert out.shape == shape
    out.sum().backward()
    for i, t in enumerate(tensors):
        assert t.grad is not None and t.grad.shape == t.shape, (i, None if t.grad is None else t.grad.shape)
        assert not np.any(t.grad), f"input {i} got a nonzero gradient from an empty batch"


@pytest.mark.parametrize(("loss", "target"), [(F.cross_entropy, np.zeros(0, int)), (F.mse_loss, np.zeros((0, 4)))])
def test_mean_loss_of_an_empty_batch_is_nan_as_in_pytorch(loss, target):
    x = sa.tensor(np.zeros((0, 4)), requires_grad=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = loss(x, target)
        assert np.isnan(value.item())
        value.backward()
    assert x.grad.shape == (0, 4)


@pytest.mark.parametrize("make", [
    lambda: (nn.Linear(4, 2), (0, 4)),
    lambda: (nn.Conv2d(3, 2, 3, padding=1), (0, 3, 5, 5)),
    lambda: (nn.Flatten(), (0, 3, 2)),
    lambda: (nn.MultiheadSelfAttention(8, 2), (0, 5, 8)),
    lambda: (nn.SelfAttention2d(8), (0, 8, 3, 3)),
    lambda: (nn.NonLocalBlock(8).eval(), (0, 8, 3, 3)),
    lambda: (models.TinyViT(), (0, 1, 28, 28)),
    lambda: (nn.SEBlock(16), (0, 16, 3, 3)),
    lambda: (nn.CBAM(16), (0, 16, 3, 3)),
    lambda: (nn.ECA(16), (0, 16, 3, 3)),
    lambda: (nn.scSE(16), (0, 16, 3, 3)),
    lambda: (models.se_resnet20().eval(), (0, 3, 32, 32)),
    lambda: (nn.SpatialTransformer(nn.Sequential(nn.Flatten(), nn.Linear(16, 6))), (0, 1, 4, 4)),
], ids=["Linear", "Conv2d", "Flatten", "MultiheadSelfAttention", "SelfAttention2d", "NonLocalBlock (eval)", "TinyViT",
        "SEBlock", "CBAM", "ECA", "scSE", "se_resnet20 (eval)", "SpatialTransformer"])
def test_modules_take_an_empty_batch(make):
    module, shape = make()
    x = sa.tensor(np.zeros(shape, np.float32), requires_grad=True)
    out = module(x)
    assert out.shape[0] == 0
    out.sum().backward()
    assert x.grad.shape == shape
    for name, p in module.named_parameters():
        assert p.grad is None or not np.any(p.grad), name


# =================================================================================================================
# mixed devices
# =================================================================================================================

MIXED_DEVICE_CALLS = [
    ("squeeze_excitation", lambda g: F.squeeze_excitation(g(X4), W1, B1, W2, B2), r"w1 must be on x's device 'cuda'"),
    ("attention", lambda g: F.scaled_dot_product_attention(g(Q), Q, Q), r"all inputs must be on one device"),
    ("linear", lambda g: F.linear(g(f32(3, 4)), f32(2, 4)), r"all inputs must be on one device"),
    ("Linear module", lambda g: nn.Linear(4, 2)(g(f32(3, 4))), r"all inputs must be on one device"),
    ("add", lambda g: g(f32(3)) + sa.tensor(f32(3)), r"all inputs must be on one device"),
    ("grid_sample", lambda g: F.grid_sample(g(IMG), GRID), r"input and grid must be on the same device"),
]


@pytest.mark.gpu
@pytest.mark.parametrize(("call", "pattern"), [c[1:] for c in MIXED_DEVICE_CALLS],
                         ids=[c[0] for c in MIXED_DEVICE_CALLS])
def test_mixed_devices_are_refused(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(lambda a: sa.tensor(a, device="cuda"))
