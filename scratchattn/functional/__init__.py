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
from .affine_grid import affine_grid, projective_grid
from .attention import scaled_dot_product_attention
from .gelu import gelu
from .layer_norm import layer_norm
from .squeeze_excitation import squeeze_excitation, squeeze_excitation_simple
