"""Layers and attention blocks: ``Module``, ``Parameter``, the standard layers and the attention modules."""

from . import init
from .layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Identity,
    Linear,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Tanh,
)
from .module import IncompatibleKeys, Module, ModuleList, Parameter, Sequential

# -- layers and attention blocks are exported below, one line group per module ---------------------------------
# isort: split
from .channel_attention import CBAM, ECA, SEBlock, eca_kernel_size, scSE
from .normalization_layers import LayerNorm
from .registry import ATTENTION_BLOCKS, attention_names, create_attention, register_attention
from .self_attention import MultiheadSelfAttention, NonLocalBlock, SelfAttention2d
from .spatial_transformer import SpatialTransformer
