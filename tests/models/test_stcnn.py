"""Tests of the digits classifiers: ``models.CNN`` and ``models.STCNN`` (shapes, the identity transform at
initialisation against a NumPy bilinear-resize reference, gradients reaching both parts, bad arguments)."""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import functional as F
from scratchattn.models import CNN, STCNN

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def bilinear_resize_reference(image: np.ndarray, size: int) -> np.ndarray:
    """Resize one (H, W) image to (size, size) the way an identity affine grid samples it (align_corners=False,
    zeros outside): output pixel j reads input position (j + 0.5) * H / size - 0.5, bilinearly."""
    h, w = image.shape
    out = np.zeros((size, size))
    for i in range(size):
        y = (i + 0.5) * h / size - 0.5
        for j in range(size):
            x = (j + 0.5) * w / size - 0.5
            x0, y0 = int(np.floor(x)), int(np.floor(y))
            for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                    if 0 <= yy < h and 0 <= xx < w:
                        out[i, j] += wy * wx * image[yy, xx]
    return out


def random_images(n: int, size: int, seed: int = 0, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, size, size)).astype(dtype)


@pytest.mark.parametrize("in_size, side", [(28, 4), (42, 7), (16, 1)])
def test_cnn_shapes(in_size, side):
    sa.manual_seed(0)
    model = CNN(in_size=in_size, widths=(4, 6), hidden=8, num_classes=7)
    assert model.classifier[1].weight.shape == (8, 6 * side * side)
    out = model(sa.tensor(random_images(3, in_size)))
    assert out.shape == (3, 7)
    assert out.dtype == np.float32


def test_stcnn_shapes_and_parts():
    sa.manual_seed(0)
    model = STCNN(in_size=42, out_size=28, widths=(4, 6), hidden=8, loc_widths=(3, 3), loc_hidden=5)
    x = sa.tensor(random_images(2, 42))
    assert model(x).shape == (2, 10)
    assert model.last_theta.shape == (2, 2, 3)
    assert model.rectify(x).shape == (2, 1, 28, 28)
    # The two parameter groups the example trains at different rates cover every parameter exactly once.
    transformer = {id(p) for p in model.transformer.parameters()}
    backbone = {id(p) for p in model.backbone.parameters()}
    assert not transformer & backbone
    assert transformer | backbone == {id(p) for p in model.parameters()}


def test_stcnn_starts_at_identity_same_size():
    sa.manual_seed(1)
    model = STCNN(in_size=28, out_size=28, widths=(4, 6), hidden=8, loc_widths=(3, 3), loc_hidden=5)
    x = random_images(3, 28, seed=1)
    out = model.rectify(sa.tensor(x)).numpy()
    np.testing.assert_allclose(model.last_theta, np.broadcast_to(IDENTITY, (3, 2, 3)), atol=0)
    np.testing.assert_allclose(out, x, atol=1e-6)


def test_stcnn_starts_at_identity_downsampling():
    """42x42 in, 28x28 out: at initialisation the backbone sees the whole canvas resized (identity theta)."""
    sa.manual_seed(2)
    model = STCNN(in_size=42, out_size=28, widths=(4, 6), hidden=8, loc_widths=(3, 3), loc_hidden=5)
    x = random_images(2, 42, seed=2, dtype=np.float64)
    model.double()
    out = model.rectify(sa.tensor(x)).numpy()
    for k in range(2):
        np.testing.assert_allclose(out[k, 0], bilinear_resize_reference(x[k, 0], 28), atol=1e-12)


def test_gradients_reach_localisation_and_backbone():
    sa.manual_seed(3)
    model = STCNN(in_size=42, out_size=28, widths=(4, 6), hidden=8, loc_widths=(3, 3), loc_hidden=5)
    x = sa.tensor(random_images(4, 42, seed=3))
    loss = F.cross_entropy(model(x), sa.tensor(np.array([0, 1, 2, 3])))
    loss.backward()
    last = model.transformer.localization[-1]
    # The identity initialisation zeroes the last layer's weight, not its gradient: theta must be able to move.
    assert np.all(last.weight.numpy() == 0)
    assert np.abs(last.weight.grad).max() > 0
    assert np.abs(last.bias.grad).max() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and np.isfinite(p.grad).all(), name


def test_stcnn_changes_its_transform_after_a_step():
    sa.manual_seed(4)
    from scratchattn import optim

    model = STCNN(in_size=42, out_size=28, widths=(4, 6), hidden=8, loc_widths=(3, 3), loc_hidden=5)
    opt = optim.SGD(model.parameters(), lr=0.1)
    x = sa.tensor(random_images(4, 42, seed=4))
    F.cross_entropy(model(x), sa.tensor(np.array([0, 1, 2, 3]))).backward()
    opt.step()
    with sa.no_grad():
        model(x)
    assert np.abs(model.last_theta - IDENTITY).max() > 0


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"in_size": 15}, "in_size"),
        ({"widths": (4,)}, "widths"),
        ({"widths": (4, 0)}, "widths"),
        ({"hidden": 0}, "hidden"),
        ({"num_classes": 1.5}, "num_classes"),
    ],
)
def test_cnn_rejects_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        CNN(**kwargs)


@pytest.mark.parametrize(
    "kwargs, word",
    [({"in_size": 12}, "in_size"), ({"loc_widths": (3, 3, 3)}, "widths"), ({"loc_hidden": -1}, "hidden"),
     ({"out_size": 0}, "out_size")],
)
def test_stcnn_rejects_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        STCNN(**kwargs)
