"""``scratchattn.cuda``: is the GPU usable, and if not, why not."""

from .backend import cuda_is_available as is_available
from .backend import cuda_unavailable_reason as unavailable_reason

__all__ = ["is_available", "unavailable_reason"]
