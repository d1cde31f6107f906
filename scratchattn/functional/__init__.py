"""Differentiable ops: one Function per op, forward and backward written out, plus a lowercase wrapper.

Usage: ``from scratchattn import functional as F``; ``F.grid_sample(x, grid)``, ``F.relu(x)``, ...
"""

from .basic import (
    abs,
    add,
    broadcast_to,
    cast,
    div,
    exp,
    flatten,
    getitem,
    log,
    matmul,
    max,
    mean,
    mul,
    neg,
    permute,
    pow,
    reshape,
    sqrt,
    sub,
    sum,
    to_device,
    transpose,
    unbroadcast,
)

# -- more ops are exported below, one line group per module ---------------------------------------------------
# isort: split
from .activation import log_softmax, relu, sigmoid, softmax, tanh
from .affine_grid import affine_grid, projective_grid
from .attention import scaled_dot_product_attention
from .conv import conv2d
from .dropout import dropout
from .gelu import gelu
from .grid_sample import grid_sample
from .layer_norm import layer_norm
from .linear import linear
from .loss import cross_entropy, mse_loss
from .normalization import batch_norm
from .pooling import adaptive_avg_pool2d, avg_pool2d, global_avg_pool2d, max_pool2d
from .shape import cat, concat, pad, stack
from .squeeze_excitation import squeeze_excitation, squeeze_excitation_simple
