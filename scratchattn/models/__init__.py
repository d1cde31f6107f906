"""Whole networks built from ``scratchattn.nn``: SE-ResNet, SE-Inception, the ST-CNN classifier, a tiny ViT."""

from .se_inception import ConvBNReLU, SEInception
from .se_resnet import (
    SEBasicBlock,
    SEBottleneck,
    SEResNet,
    resnet20,
    se_resnet18,
    se_resnet20,
    se_resnet32,
    se_resnet34,
    se_resnet50,
    se_resnet56,
)
from .stcnn import CNN, STCNN, localization_net
from .vit import TinyViT
