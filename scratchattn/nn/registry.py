"""``create_attention(name, channels, **kw)``: build any attention block that keeps a feature map's shape, by name.

Networks that can take "some attention block after each stage" (SE-ResNet variants, the examples' comparisons)
ask for it by a string, so that the choice is one argument and a config file can hold it. Every registered
factory is called as ``factory(channels, **kw)`` and returns a Module mapping (N, C, H, W) to (N, C, H, W).

To add a block, add a line to ``ATTENTION_BLOCKS`` (inside the library) or call :func:`register_attention`
(from user code).
"""

from __future__ import annotations

from .channel_attention import CBAM, ECA, SEBlock, scSE
from .self_attention import NonLocalBlock, SelfAttention2d

# name -> factory(channels, **kw). Names are lowercase.
ATTENTION_BLOCKS = {
    "se": SEBlock,
    "cbam": CBAM,
    "eca": ECA,
    "scse": scSE,
    "self_attention2d": SelfAttention2d,
    "nonlocal": NonLocalBlock,
}


def register_attention(name: str, factory) -> None:
    """Make ``create_attention(name, channels, **kw)`` call ``factory(channels, **kw)``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"register_attention: name must be a non-empty str; got {name!r}")
    if not callable(factory):
        raise TypeError(f"register_attention: factory must be callable; got {type(factory).__name__}")
    ATTENTION_BLOCKS[name.lower()] = factory


def attention_names() -> list[str]:
    """The names :func:`create_attention` knows, sorted."""
    return sorted(ATTENTION_BLOCKS)


def create_attention(name: str, channels: int, **kw):
    """The attention block registered as ``name`` (case-insensitive) for ``channels`` channels.

    ``kw`` goes to the block's constructor (``reduction=8``, ``kernel_size=5``, ...). Example::

        block = nn.create_attention("cbam", 64, reduction=8)     # == nn.CBAM(64, reduction=8)
    """
    if not isinstance(name, str):
        raise TypeError(f"create_attention: name must be a str, one of {attention_names()}; got {name!r}")
    factory = ATTENTION_BLOCKS.get(name.lower())
    if factory is None:
        raise ValueError(f"create_attention: unknown attention {name!r}; known names: {', '.join(attention_names())}")
    return factory(channels, **kw)


__all__ = ["ATTENTION_BLOCKS", "attention_names", "create_attention", "register_attention"]
