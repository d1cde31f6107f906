"""Layers and attention blocks: ``Module``, ``Parameter``, the standard layers and the attention modules."""
