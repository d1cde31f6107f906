"""Tests of ``nn.SpatialTransformer``: identity at initialisation, known warps, ``last_theta``, gradients to the
localisation network (float64 gradcheck of the whole block), bad input. Every test runs through each kernel path.

The exact-value tests use sizes with W - 1 and H - 1 powers of two and align_corners=True: then the base
coordinates and their unnormalisation to pixel indices are exact in binary floating point, so sampling at the
identity (or at a one-pixel shift) must reproduce the input bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend, nn


class Localization(nn.Module):
    """A tiny localisation network: flatten -> Linear -> Linear(6). Two linears, so the identity initialisation
    must find the last one."""

    def __init__(self, features: int, hidden: int = 3):
        super().__init__()
        self.fc1 = nn.Linear(features, hidden)
        self.fc2 = nn.Linear(hidden, 6)

    def forward(self, x):
        return self.fc2(self.fc1(x.reshape(x.shape[0], -1)))


class ConstantTheta(nn.Module):
    """A localisation 'network' without any nn.Linear: a learned theta shared by the batch."""

    def __init__(self, theta):
        super().__init__()
        self.theta = nn.Parameter(np.asarray(theta, dtype=np.float64).reshape(1, 6))

    def forward(self, x):
        zeros = backend.get_array_module(x.data).zeros((x.shape[0], self.theta.shape[1]), dtype=x.dtype)
        return self.theta + sa.tensor(zeros)  # one row per sample


def make_block(shape, kernel_path, dtype=np.float32, **kwargs):
    n, c, h, w = shape
    sa.manual_seed(0)
    block = nn.SpatialTransformer(Localization(c * h * w), **kwargs).to(kernel_path.device, dtype=dtype)
    return block


def make_input(shape, kernel_path, dtype, seed=0):
    data = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return data, sa.tensor(kernel_path.array(data))


def set_bias(block, theta):
    fc = block.localization.fc2
    fc.bias.data = backend.to_device(np.asarray(theta, dtype=fc.bias.dtype).reshape(6), fc.bias.device)


# =================================================================================================================
# initialisation and known warps
# =================================================================================================================


def test_last_linear_starts_at_the_identity():
    block = nn.SpatialTransformer(Localization(12))
    fc2, fc1 = block.localization.fc2, block.localization.fc1
    np.testing.assert_array_equal(fc2.weight.numpy(), np.zeros((6, 3)))
    np.testing.assert_array_equal(fc2.bias.numpy(), [1, 0, 0, 0, 1, 0])
    assert np.abs(fc1.weight.numpy()).max() > 0  # only the last Linear is reset
    assert fc2.weight.dtype == np.float32  # parameters keep their dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 5, 9), (1, 1, 3, 5), (3, 2, 2, 2)])
def test_identity_at_init_reproduces_the_input_exactly_with_align_corners(kernel_path, shape, dtype):
    block = make_block(shape, kernel_path, dtype, align_corners=True)
    data, x = make_input(shape, kernel_path, dtype)
    y = block(x)
    assert y.shape == shape and y.dtype == dtype and y.device == kernel_path.device
    np.testing.assert_array_equal(y.numpy(), data)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 2, 6, 1), (2, 1, 1, 4)])
def test_identity_at_init_reproduces_the_input_without_align_corners(kernel_path, shape, dtype):
    block = make_block(shape, kernel_path, dtype, align_corners=False)
    data, x = make_input(shape, kernel_path, dtype)
    atol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(block(x).numpy(), data, rtol=0, atol=atol)


def test_one_pixel_translation_shifts_the_image(kernel_path):
    # With align_corners=True one pixel of a W = 9 axis is 2 / (W - 1) = 0.25 in normalised units. theta's
    # translation maps output pixel j to input pixel j + 1: the image moves one pixel left, zeros come in.
    shape = (2, 2, 5, 9)
    block = make_block(shape, kernel_path, np.float64, align_corners=True)
    set_bias(block, [1, 0, 0.25, 0, 1, 0])
    data, x = make_input(shape, kernel_path, np.float64)
    y = block(x).numpy()
    np.testing.assert_array_equal(y[..., :-1], data[..., 1:])
    np.testing.assert_array_equal(y[..., -1], 0)
    # and down by one row (output row i reads input row i - 1; H = 5 -> one row is 2 / 4 = 0.5)
    set_bias(block, [1, 0, 0, 0, 1, -0.5])
    y = block(x).numpy()
    np.testing.assert_array_equal(y[:, :, 1:], data[:, :, :-1])
    np.testing.assert_array_equal(y[:, :, 0], 0)


def test_out_size_resamples_on_the_output_grid(kernel_path):
    # Identity, align_corners=True, 9 x 9 -> 5 x 3: output pixel (i, j) reads input pixel (2 i, 4 j).
    shape = (1, 2, 9, 9)
    block = make_block(shape, kernel_path, np.float64, align_corners=True, out_size=(5, 3))
    data, x = make_input(shape, kernel_path, np.float64)
    y = block(x)
    assert y.shape == (1, 2, 5, 3)
    np.testing.assert_array_equal(y.numpy(), data[:, :, ::2, ::4])


def test_last_theta_is_a_numpy_copy_of_the_transform(kernel_path):
    shape = (3, 1, 3, 5)
    block = make_block(shape, kernel_path, np.float32)
    assert block.last_theta is None
    _, x = make_input(shape, kernel_path, np.float32)
    block(x)
    assert isinstance(block.last_theta, np.ndarray) and block.last_theta.shape == (3, 2, 3)
    np.testing.assert_array_equal(block.last_theta, np.tile([[1, 0, 0], [0, 1, 0]], (3, 1, 1)))
    set_bias(block, [0.5, 0, 0.1, 0, 0.5, -0.2])
    block(x)
    np.testing.assert_allclose(block.last_theta, np.tile([[0.5, 0, 0.1], [0, 0.5, -0.2]], (3, 1, 1)), atol=1e-7)
    block.last_theta[:] = 7  # a copy: scribbling on it changes nothing in the block
    block(x)
    assert block.last_theta[0, 0, 0] == pytest.approx(0.5)


def test_localization_without_a_linear_is_used_as_it_is(kernel_path):
    theta = [0.5, 0.0, 0.0, 0.0, 0.5, 0.0]
    block = nn.SpatialTransformer(ConstantTheta(theta), align_corners=True).to(kernel_path.device)
    np.testing.assert_array_equal(block.localization.theta.numpy().ravel(), theta)  # not reset
    shape = (2, 1, 5, 9)
    data, x = make_input(shape, kernel_path, np.float64)
    y = block(x).numpy()
    # Zoom by 2 about the centre (x' = x / 2): output pixel (i, j) reads input (1 + i / 2, 2 + j / 2), a lattice
    # point when i and j are even.
    np.testing.assert_allclose(y[:, :, ::2, ::2], data[:, :, 1:4, 2:7], rtol=0, atol=1e-15)


# =================================================================================================================
# gradients
# =================================================================================================================


def swap_in(module, name, tensor):
    """Make ``module.<name>`` the given Tensor (gradcheck hands the function its own float64 copies of the
    parameters, and the gradients must reach those copies)."""
    module._parameters[name] = tensor


@pytest.mark.parametrize("align_corners", [False, True])
def test_gradcheck_of_the_whole_block(kernel_path, align_corners):
    shape = (2, 2, 4, 5)
    block = make_block(shape, kernel_path, np.float64, align_corners=align_corners, out_size=(3, 4))
    loc = block.localization
    rng = np.random.default_rng(1)
    # Away from the identity, so the sample points are not on the pixel lattice (where bilinear sampling has kinks).
    set_bias(block, [0.9, 0.1, 0.05, -0.15, 0.8, 0.1])
    loc.fc2.weight.data = kernel_path.array(0.05 * rng.standard_normal((6, 3)))
    params = [(loc.fc1, "weight"), (loc.fc1, "bias"), (loc.fc2, "weight"), (loc.fc2, "bias")]
    _, x = make_input(shape, kernel_path, np.float64, seed=2)
    x.requires_grad_(True)

    def run(x, *tensors):
        for (module, name), t in zip(params, tensors):
            swap_in(module, name, t)
        return block(x)

    inputs = [x] + [sa.tensor(getattr(m, name).data, requires_grad=True) for m, name in params]
    assert sa.gradcheck(run, inputs)


def test_gradient_reaches_the_localization_parameters(kernel_path):
    shape = (2, 1, 5, 6)
    block = make_block(shape, kernel_path, np.float32)
    _, x = make_input(shape, kernel_path, np.float32)
    target = sa.tensor(kernel_path.array(np.random.default_rng(3).standard_normal((2, 1, 5, 6)).astype(np.float32)))
    ((block(x) - target) ** 2).sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
    assert np.abs(backend.to_numpy(block.localization.fc2.weight.grad)).max() > 0
    assert np.abs(backend.to_numpy(block.localization.fc2.bias.grad)).max() > 0


# =================================================================================================================
# bad input
# =================================================================================================================


class WrongOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(x.reshape(x.shape[0], -1))


@pytest.mark.parametrize(
    "build, error, words",
    [
        (lambda: nn.SpatialTransformer(lambda x: x), TypeError, "localization must be an nn.Module"),
        (lambda: nn.SpatialTransformer(Localization(4), out_size=(0, 3)), ValueError, "out_size"),
        (lambda: nn.SpatialTransformer(Localization(4), out_size=5), ValueError, "out_size"),
        (lambda: nn.SpatialTransformer(Localization(4), mode="linear"), ValueError, "mode must be one of"),
        (lambda: nn.SpatialTransformer(Localization(4), padding_mode="wrap"), ValueError, "padding_mode"),
        (lambda: nn.SpatialTransformer(Localization(4), align_corners=1), TypeError, "align_corners"),
        (lambda: nn.SpatialTransformer(WrongOutputs()), ValueError, "must have 6 outputs"),
        (lambda: nn.SpatialTransformer(nn.Linear(4, 6, bias=False)), ValueError, "needs a bias"),
    ],
)
def test_bad_construction(build, error, words):
    with pytest.raises(error) as info:
        build()
    assert words in str(info.value), str(info.value)


def test_bad_forward_input():
    block = nn.SpatialTransformer(Localization(4))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        block(sa.tensor(np.zeros((2, 4), np.float32)))
    with pytest.raises(TypeError, match="must be a Tensor"):
        block(np.zeros((1, 1, 2, 2), np.float32))
    wrong = nn.SpatialTransformer(ConstantTheta(np.zeros(6)))
    wrong.localization.theta = nn.Parameter(np.zeros((1, 5)))
    with pytest.raises(ValueError, match=r"localization must return \(N, 6\)"):
        wrong(sa.tensor(np.zeros((1, 1, 2, 2))))
