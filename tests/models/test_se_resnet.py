"""Tests of the SE-ResNet blocks and builders: structure, parameter counts, SE placement, forward and gradients."""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import models


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def se_gates(out, se):
    """The SE gates of an NCHW NumPy array, from the SEBlock's weights."""
    z = out.mean(axis=(2, 3))
    w1, b1, w2, b2 = (p.numpy().astype(np.float64) for p in (se.fc1.weight, se.fc1.bias, se.fc2.weight, se.fc2.bias))
    return sigmoid(np.maximum(z @ w1.T + b1, 0) @ w2.T + b2)


def count(module):
    return sum(p.size for p in module.parameters())


# =================================================================================================================
# parameter counts, computed from the architecture by formula
# =================================================================================================================


def se_params(c, reduction):
    hidden = max(1, c // reduction)
    return c * hidden + hidden + hidden * c + c  # fc1 weight + bias, fc2 weight + bias


def cifar_resnet_params(n, num_classes=10, reduction=16, use_se=True, in_channels=3):
    """Parameters of the CIFAR ResNet with n basic blocks per stage (depth 6 n + 2)."""
    total = in_channels * 16 * 9 + 2 * 16  # stem conv (no bias) + its batch norm
    c_in = 16
    for width in (16, 32, 64):
        for _ in range(n):
            total += c_in * width * 9 + 2 * width + width * width * 9 + 2 * width  # conv-BN-conv-BN
            if use_se:
                total += se_params(width, reduction)
            if c_in != width:  # first block of stages 2 and 3: 1x1 projection + BN
                total += c_in * width + 2 * width
            c_in = width
    return total + 64 * num_classes + num_classes


def imagenet_se_params(blocks_out_channels, reduction=16):
    return sum(se_params(c, reduction) for c in blocks_out_channels)


def test_se_resnet20_parameter_count():
    model = models.se_resnet20()
    assert count(model) == cifar_resnet_params(3)
    # The plain ResNet-20 has the well-known 0.27M parameters (272,474 with projection shortcuts).
    assert count(models.resnet20()) == cifar_resnet_params(3, use_se=False) == 272474
    assert count(models.se_resnet32(num_classes=100)) == cifar_resnet_params(5, num_classes=100)
    assert count(models.se_resnet56(reduction=8, in_channels=1)) == cifar_resnet_params(9, reduction=8, in_channels=1)


def test_reduction_reaches_every_block():
    model = models.se_resnet20(reduction=4)
    blocks = model.se_blocks()
    assert len(blocks) == 9
    for se in blocks:
        assert se.fc1.weight.shape == (se.channels // 4, se.channels)
    assert models.resnet20().se_blocks() == []


def test_imagenet_builders_parameter_counts():
    # torchvision's ResNet-18/34/50 have 11,689,512 / 21,797,672 / 25,557,032 parameters; SE adds its two layers
    # to every block (output widths 64, 128, 256, 512, times 4 for bottlenecks).
    basic18 = [64] * 2 + [128] * 2 + [256] * 2 + [512] * 2
    basic34 = [64] * 3 + [128] * 4 + [256] * 6 + [512] * 3
    bottleneck50 = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3
    assert count(models.se_resnet18()) == 11689512 + imagenet_se_params(basic18)
    assert count(models.se_resnet34()) == 21797672 + imagenet_se_params(basic34)
    model50 = models.se_resnet50()
    assert count(model50) == 25557032 + imagenet_se_params(bottleneck50)
    assert count(model50) == 28088024  # the paper's "28.1M" for SE-ResNet-50


# =================================================================================================================
# forward on tiny inputs
# =================================================================================================================


def test_se_resnet20_forward_backward():
    rng = np.random.default_rng(0)
    model = models.se_resnet20(num_classes=7)
    x = sa.tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    logits = model(x)
    assert logits.shape == (2, 7) and logits.dtype == np.float32
    assert np.isfinite(logits.numpy()).all()
    logits.sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())
    for se in model.se_blocks():  # each SE block kept its gates
        assert se.last_excitation.shape == (2, se.channels)
        assert ((se.last_excitation > 0) & (se.last_excitation < 1)).all()


@pytest.mark.parametrize("builder", [models.se_resnet18, models.se_resnet50])
def test_imagenet_builders_forward(builder):
    model = builder(num_classes=5)
    model.eval()
    x = sa.tensor(np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32))
    with sa.no_grad():
        logits = model(x)
    assert logits.shape == (1, 5) and np.isfinite(logits.numpy()).all()


# =================================================================================================================
# the blocks: SE placement, shortcut, gradients
# =================================================================================================================


def randomize(module, rng):
    with sa.no_grad():
        for p in module.parameters():
            p.data[...] = rng.standard_normal(p.shape) * 0.5
        for name, b in module.named_buffers():
            if name.endswith("running_var"):
                b.data[...] = rng.uniform(0.5, 2.0, b.shape)
            elif name.endswith("running_mean"):
                b.data[...] = rng.standard_normal(b.shape) * 0.1
    return module


def test_basic_block_puts_se_after_the_last_bn_before_the_addition():
    rng = np.random.default_rng(2)
    block = randomize(models.SEBasicBlock(4, 6, stride=2, reduction=2), rng).eval()
    x = sa.tensor(rng.standard_normal((2, 4, 6, 5)).astype(np.float32))
    with sa.no_grad():
        y = block(x).numpy()
        branch = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x))))).numpy().astype(np.float64)
        shortcut = block.downsample(x).numpy().astype(np.float64)
    s = se_gates(branch, block.se)
    expected = np.maximum(branch * s[:, :, None, None] + shortcut, 0)
    assert y.shape == (2, 6, 3, 3)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    # SE changes the output: without it the block would give relu(branch + shortcut).
    assert np.abs(y - np.maximum(branch + shortcut, 0)).max() > 1e-2


def test_identity_shortcut_and_projection():
    assert models.SEBasicBlock(8, 8).downsample is None
    proj = models.SEBasicBlock(8, 16).downsample
    assert proj[0].weight.shape == (16, 8, 1, 1) and proj[0].stride == (1, 1)
    assert models.SEBasicBlock(8, 8, stride=2).downsample[0].stride == (2, 2)
    bottleneck = models.SEBottleneck(16, 4)  # 16 -> 4*4 = 16 channels, stride 1: identity
    assert bottleneck.downsample is None and bottleneck.se.channels == 16
    assert models.SEBottleneck(8, 4, stride=2).downsample[0].weight.shape == (16, 8, 1, 1)
    assert models.SEBasicBlock(8, 8, use_se=False).se is None


def test_bottleneck_forward():
    rng = np.random.default_rng(3)
    block = randomize(models.SEBottleneck(8, 4, stride=2, reduction=4), rng).eval()
    x = sa.tensor(rng.standard_normal((2, 8, 5, 5)).astype(np.float32))
    with sa.no_grad():
        y = block(x).numpy()
        out = block.relu(block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x))))))
        branch = block.bn3(block.conv3(out)).numpy().astype(np.float64)
        shortcut = block.downsample(x).numpy().astype(np.float64)
    expected = np.maximum(branch * se_gates(branch, block.se)[:, :, None, None] + shortcut, 0)
    assert y.shape == (2, 16, 3, 3)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("block_type", [models.SEBasicBlock, models.SEBottleneck])
def test_block_gradcheck(block_type):
    rng = np.random.default_rng(4)
    block = randomize(block_type(4, 2 if block_type is models.SEBottleneck else 4, stride=2, reduction=2), rng)
    block = block.double().eval()
    x = sa.tensor(rng.standard_normal((2, 4, 4, 3)), requires_grad=True)
    assert sa.gradcheck(lambda t: block(t), [x], atol=1e-6, rtol=1e-4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="stem must be one of"):
        models.SEResNet(models.SEBasicBlock, (1, 1, 1), stem="tiny")
    with pytest.raises(ValueError, match="layers needs 3 block counts"):
        models.SEResNet(models.SEBasicBlock, (1, 1), stem="cifar")
    with pytest.raises(ValueError, match="reduction must be a positive int"):
        models.se_resnet20(reduction=0)
    with pytest.raises(ValueError, match="stride must be a positive int"):
        models.SEBasicBlock(4, 4, stride=0)
    with pytest.raises(ValueError, match="input must be 4-D"):
        models.se_resnet20()(sa.tensor(np.zeros((3, 8, 8), np.float32)))
