"""Whole networks built from ``scratchattn.nn``: SE-ResNet, SE-Inception, the ST-CNN classifier, a tiny ViT."""

from .vit import TinyViT
