"""Layers and attention blocks: ``Module``, ``Parameter``, the standard layers and the attention modules."""

from . import init
from .module import IncompatibleKeys, Module, ModuleList, Parameter, Sequential

# -- layers and attention blocks are exported below, one line group per module ---------------------------------
# isort: split
from .normalization_layers import LayerNorm
