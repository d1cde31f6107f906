"""Tests of the standard layers and ``nn.init``: each layer's forward against a NumPy computation written here,
a float64 gradcheck through the layer (input and parameters), the default initialisations (bounds and spread),
running statistics of batch norm, constructor checks, reprs and PyTorch's state-dict names.

gradcheck builds float64 copies of its inputs; ``functional_call`` below runs a layer with those copies in place
of its parameters, so the check covers the parameters' gradients too.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend, nn
from scratchattn.nn import init

# =================================================================================================================
# helpers and NumPy references
# =================================================================================================================


def functional_call(module, tensors: dict, *args):
    """``module(*args)`` with the parameters named in ``tensors`` replaced by the given Tensors for one call."""
    owners = {}
    for name, t in tensors.items():
        *path, leaf = name.split(".")
        owner = module
        for part in path:
            owner = owner._modules[part]
        owners[name] = (owner, leaf, owner._parameters[leaf])
        owner._parameters[leaf] = t
    try:
        return module(*args)
    finally:
        for owner, leaf, original in owners.values():
            owner._parameters[leaf] = original


def gradcheck_layer(layer, x, **kwargs):
    """float64 gradcheck of ``layer`` with respect to its input and every parameter."""
    layer.double()
    names = [n for n, _ in layer.named_parameters()]
    params = [p for _, p in layer.named_parameters()]

    def fn(x, *ps):
        return functional_call(layer, dict(zip(names, ps)), x)

    return sa.gradcheck(fn, [sa.tensor(x, requires_grad=True)] + params, **kwargs)


def rng(seed=0):
    return np.random.default_rng(seed)


def ref_conv2d(x, w, b, stride, padding, dilation, groups):
    """Direct loops: out[n, o, i, j] = b[o] + sum_{c in group(o), u, v} w[o, c, u, v] x[n, c, i s + u d - p, ...]."""
    n, c, h, wid = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.zeros((n, c, h + 2 * ph, wid + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wid] = x
    h_out = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (wid + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, o, h_out, w_out))
    og = o // groups
    for oc in range(o):
        g = oc // og
        for i in range(h_out):
            for j in range(w_out):
                rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
                cols = slice(j * sw, j * sw + dw * (kw - 1) + 1, dw)
                patch = xp[:, g * cg:(g + 1) * cg, rows, cols]
                out[:, oc, i, j] = (patch * w[oc]).sum(axis=(1, 2, 3)) + (b[oc] if b is not None else 0)
    return out


def ref_pool(x, k, s, p, reduce, pad_value):
    n, c, h, w = x.shape
    xp = np.full((n, c, h + 2 * p[0], w + 2 * p[1]), pad_value, dtype=np.float64)
    xp[:, :, p[0]:p[0] + h, p[1]:p[1] + w] = x
    h_out, w_out = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
    out = np.zeros((n, c, h_out, w_out))
    for i in range(h_out):
        for j in range(w_out):
            out[:, :, i, j] = reduce(xp[:, :, i * s[0]:i * s[0] + k[0], j * s[1]:j * s[1] + k[1]], axis=(2, 3))
    return out


def ref_adaptive_avg(x, out_size):
    n, c, h, w = x.shape
    oh, ow = out_size
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        r0, r1 = (i * h) // oh, -((-(i + 1) * h) // oh)
        for j in range(ow):
            c0, c1 = (j * w) // ow, -((-(j + 1) * w) // ow)
            out[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return out


# =================================================================================================================
# Linear
# =================================================================================================================


@pytest.mark.parametrize("bias", [True, False])
def test_linear_forward_and_gradcheck(bias):
    sa.manual_seed(1)
    layer = nn.Linear(5, 3, bias=bias)
    assert layer.weight.shape == (3, 5) and layer.weight.dtype == np.float32
    assert (layer.bias is None) == (not bias) and len(list(layer.parameters())) == (2 if bias else 1)
    x = rng().standard_normal((4, 5)).astype(np.float32)
    expected = x.astype(np.float64) @ layer.weight.data.T.astype(np.float64)
    if bias:
        expected += layer.bias.data
    np.testing.assert_allclose(layer(sa.tensor(x)).numpy(), expected, rtol=1e-5, atol=1e-6)
    # batched leading dims
    assert layer(sa.tensor(rng(1).standard_normal((2, 3, 5)).astype(np.float32))).shape == (2, 3, 3)
    assert gradcheck_layer(layer, rng(2).standard_normal((3, 5)))


def test_linear_default_init_bounds_and_spread():
    sa.manual_seed(0)
    layer = nn.Linear(144, 200)
    bound = 1 / math.sqrt(144)
    w, b = layer.weight.data, layer.bias.data
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    # U(-bound, bound) has std bound / sqrt(3); 28 800 draws pin it within ~1%
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.03 and abs(w.mean()) < 0.02 * bound
    assert np.abs(w).max() > 0.99 * bound  # the bound is reached, not a smaller one


def test_seed_makes_initialisation_reproducible():
    sa.manual_seed(42)
    a = nn.Linear(6, 4).state_dict()
    sa.manual_seed(42)
    b = nn.Linear(6, 4).state_dict()
    c = nn.Linear(6, 4).state_dict()
    np.testing.assert_array_equal(a["weight"], b["weight"])
    assert not np.array_equal(a["weight"], c["weight"])


# =================================================================================================================
# Conv2d
# =================================================================================================================

CONV_CASES = [
    dict(stride=1, padding=0, dilation=1, groups=1),
    dict(stride=2, padding=1, dilation=1, groups=1),
    dict(stride=(1, 2), padding=(2, 1), dilation=(2, 1), groups=1),
    dict(stride=1, padding=1, dilation=1, groups=2),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_conv2d_forward_and_gradcheck(case):
    sa.manual_seed(3)
    layer = nn.Conv2d(4, 6, kernel_size=(3, 2), **case)
    assert layer.weight.shape == (6, 4 // case["groups"], 3, 2) and layer.bias.shape == (6,)
    x = rng(4).standard_normal((2, 4, 7, 6)).astype(np.float32)
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    expected = ref_conv2d(x.astype(np.float64), layer.weight.data.astype(np.float64), layer.bias.data,
                          pair(case["stride"]), pair(case["padding"]), pair(case["dilation"]), case["groups"])
    got = layer(sa.tensor(x)).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert gradcheck_layer(layer, rng(5).standard_normal((1, 4, 5, 5)))


def test_conv2d_same_padding_and_no_bias():
    layer = nn.Conv2d(2, 3, 3, padding="same", bias=False)
    assert layer.bias is None and [n for n, _ in layer.named_parameters()] == ["weight"]
    x = rng(6).standard_normal((1, 2, 5, 4)).astype(np.float32)
    expected = ref_conv2d(x, layer.weight.data, None, (1, 1), (1, 1), (1, 1), 1)
    np.testing.assert_allclose(layer(sa.tensor(x)).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_conv2d_default_init_uses_fan_in_per_group():
    sa.manual_seed(0)
    layer = nn.Conv2d(8, 64, 3, groups=2)
    bound = 1 / math.sqrt(4 * 3 * 3)  # fan_in = in_channels / groups * kh * kw
    w = layer.weight.data
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.98 * bound
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.05
    assert np.abs(layer.bias.data).max() <= bound


# =================================================================================================================
# BatchNorm
# =================================================================================================================


def test_batchnorm2d_training_forward_running_stats_and_eval():
    bn = nn.BatchNorm2d(3, momentum=0.2)
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    np.testing.assert_array_equal(bn.weight.data, np.ones(3))
    np.testing.assert_array_equal(bn.bias.data, np.zeros(3))
    np.testing.assert_array_equal(bn.running_var.data, np.ones(3))
    bn.weight.data[...] = [1.0, 2.0, -0.5]
    bn.bias.data[...] = [0.0, 0.3, 1.0]
    x = (rng(7).standard_normal((4, 3, 5, 2)) * [[[[1.0]], [[3.0]], [[0.5]]]] + 2.0).astype(np.float32)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(0, 2, 3))
    var = x64.var(axis=(0, 2, 3))
    shape = (1, 3, 1, 1)
    expected = (x64 - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + 1e-5) * bn.weight.data.reshape(shape) \
        + bn.bias.data.reshape(shape)
    np.testing.assert_allclose(bn(sa.tensor(x)).numpy(), expected, rtol=1e-4, atol=1e-5)
    m = 4 * 5 * 2
    np.testing.assert_allclose(bn.running_mean.data, 0.2 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.data, 0.8 + 0.2 * var * m / (m - 1), rtol=1e-5)
    assert int(bn.num_batches_tracked.data) == 1

    bn.eval()
    expected_eval = (x64 - bn.running_mean.data.reshape(shape)) / np.sqrt(bn.running_var.data.reshape(shape) + 1e-5) \
        * bn.weight.data.reshape(shape) + bn.bias.data.reshape(shape)
    np.testing.assert_allclose(bn(sa.tensor(x)).numpy(), expected_eval, rtol=1e-4, atol=1e-5)
    assert int(bn.num_batches_tracked.data) == 1  # evaluation does not count


def test_batchnorm_momentum_none_is_a_cumulative_average():
    bn = nn.BatchNorm1d(2, momentum=None)
    batches = [rng(s).standard_normal((6, 2)).astype(np.float32) + s for s in range(3)]
    for b in batches:
        bn(sa.tensor(b))
    np.testing.assert_allclose(bn.running_mean.data, np.mean([b.mean(axis=0) for b in batches], axis=0), rtol=1e-5)
    assert int(bn.num_batches_tracked.data) == 3


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_gradcheck(training):
    bn = nn.BatchNorm2d(3)
    bn.weight.data[...] = [0.5, 1.5, -1.0]
    bn.bias.data[...] = [0.1, -0.2, 0.3]
    bn.running_mean.data[...] = [0.1, 0.2, -0.3]
    bn.running_var.data[...] = [0.5, 2.0, 1.5]
    bn.train(training)
    assert gradcheck_layer(bn, rng(8).standard_normal((2, 3, 3, 2)))


@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 6)])
def test_batchnorm1d_forward_and_gradcheck(shape):
    bn = nn.BatchNorm1d(4)
    x = rng(9).standard_normal(shape)
    axes = (0,) if len(shape) == 2 else (0, 2)
    keep = (1, 4) if len(shape) == 2 else (1, 4, 1)
    expected = (x - x.mean(axis=axes).reshape(keep)) / np.sqrt(x.var(axis=axes).reshape(keep) + 1e-5)
    np.testing.assert_allclose(bn(sa.tensor(x.astype(np.float32))).numpy(), expected, rtol=1e-4, atol=1e-5)
    assert gradcheck_layer(bn, x)


def test_batchnorm_without_tracking_or_affine():
    bn = nn.BatchNorm2d(2, affine=False, track_running_stats=False)
    assert list(bn.parameters()) == [] and list(bn.state_dict()) == []
    x = rng(10).standard_normal((3, 2, 2, 2)).astype(np.float32)
    bn.eval()  # no running statistics: batch statistics even in evaluation
    expected = (x - x.mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(x.var(axis=(0, 2, 3), keepdims=True) + 1e-5)
    np.testing.assert_allclose(bn(sa.tensor(x)).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_batchnorm_checks_its_input():
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\): input must have shape \(N, C, H, W\) with C = 3"):
        nn.BatchNorm2d(3)(sa.tensor(np.zeros((2, 4, 2, 2), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"\(N, C\) or \(N, C, L\)"):
        nn.BatchNorm1d(3)(sa.tensor(np.zeros((2, 3, 2, 2), dtype=np.float32)))


def test_batchnorm_double_keeps_the_counter_an_int():
    bn = nn.BatchNorm2d(2).double()
    assert bn.running_mean.dtype == np.float64 and bn.num_batches_tracked.dtype == np.int64
    bn(sa.tensor(rng(11).standard_normal((2, 2, 2, 2))))
    assert bn.running_mean.dtype == np.float64


# =================================================================================================================
# activations, pooling, flatten, identity, dropout
# =================================================================================================================


@pytest.mark.parametrize(
    "layer, reference",
    [
        (nn.ReLU(), lambda x: np.maximum(x, 0)),
        (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
        (nn.Tanh(), np.tanh),
        (nn.Identity(3, foo=1), lambda x: x),
    ],
    ids=["relu", "sigmoid", "tanh", "identity"],
)
def test_elementwise_layers(layer, reference):
    x = rng(12).standard_normal((3, 4))
    x[np.abs(x) < 0.05] = 0.5  # keep ReLU's gradcheck away from its kink
    np.testing.assert_allclose(layer(sa.tensor(x)).numpy(), reference(x), rtol=1e-12)
    assert sa.gradcheck(lambda t: layer(t) * 1.0, [sa.tensor(x, requires_grad=True)])


@pytest.mark.parametrize("k, s, p", [(2, None, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 0))])
def test_max_pool(k, s, p):
    layer = nn.MaxPool2d(k, s, p)
    x = rng(13).permutation(2 * 3 * 7 * 6).reshape(2, 3, 7, 6) / 10.0  # distinct values: no ties
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    expected = ref_pool(x, pair(k), pair(s if s is not None else k), pair(p), np.max, -np.inf)
    np.testing.assert_array_equal(layer(sa.tensor(x)).numpy(), expected)
    assert gradcheck_layer(layer, x)


@pytest.mark.parametrize("k, s, p", [(2, None, 0), (3, 2, 1)])
def test_avg_pool(k, s, p):
    layer = nn.AvgPool2d(k, s, p)
    x = rng(14).standard_normal((2, 3, 7, 6))
    expected = ref_pool(x, (k, k), (s or k, s or k), (p, p), np.mean, 0.0)  # count_include_pad=True
    np.testing.assert_allclose(layer(sa.tensor(x)).numpy(), expected, rtol=1e-12)
    assert gradcheck_layer(layer, x)


@pytest.mark.parametrize("size", [1, (3, 2), (5, None)])
def test_adaptive_avg_pool(size):
    layer = nn.AdaptiveAvgPool2d(size)
    x = rng(15).standard_normal((2, 3, 7, 5))
    pair = (size, size) if isinstance(size, int) else (size[0], size[1] if size[1] is not None else 5)
    np.testing.assert_allclose(layer(sa.tensor(x)).numpy(), ref_adaptive_avg(x, pair), rtol=1e-12)
    assert gradcheck_layer(layer, x)


def test_flatten():
    x = rng(16).standard_normal((2, 3, 4, 5))
    assert nn.Flatten()(sa.tensor(x)).shape == (2, 60)
    np.testing.assert_array_equal(nn.Flatten(0, 1)(sa.tensor(x)).numpy(), x.reshape(6, 4, 5))
    np.testing.assert_array_equal(nn.Flatten(start_dim=2)(sa.tensor(x)).numpy(), x.reshape(2, 3, 20))
    assert gradcheck_layer(nn.Flatten(), x)


def test_dropout_train_and_eval():
    layer = nn.Dropout(0.25)
    x = np.ones((200, 50))
    sa.manual_seed(0)
    y = layer(sa.tensor(x)).numpy()
    kept = y != 0
    assert set(np.unique(y)) == {0.0, 1 / 0.75}
    assert abs(kept.mean() - 0.75) < 0.02
    layer.eval()
    t = sa.tensor(x)
    assert layer(t) is t

    layer.train()

    def same_mask(t):  # reseeding makes every forward draw the same mask, so central differences apply
        sa.manual_seed(5)
        return layer(t)

    assert sa.gradcheck(same_mask, [sa.tensor(rng(17).standard_normal((4, 6)), requires_grad=True)])


# =================================================================================================================
# constructor checks, reprs, names, devices
# =================================================================================================================


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: nn.Linear(0, 3), ValueError, "Linear: in_features must be a positive int; got 0"),
        (lambda: nn.Linear(3, 2.5), ValueError, "out_features"),
        (lambda: nn.Linear(3, 2, bias=1), TypeError, "bias must be a bool"),
        (lambda: nn.Conv2d(3, 4, 0), ValueError, "kernel_size must be a positive int"),
        (lambda: nn.Conv2d(3, 4, (3, 3, 3)), TypeError, "kernel_size must be an int or a pair"),
        (lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError, "divisible by groups"),
        (lambda: nn.Conv2d(3, 4, 3, padding=-1), ValueError, "padding must be an int >= 0; got -1"),
        (lambda: nn.Conv2d(3, 4, 3, padding="full"), ValueError, "'valid' or 'same'"),
        (lambda: nn.Conv2d(3, 4, 3, stride=2, padding="same"), ValueError, "needs stride 1"),
        (lambda: nn.BatchNorm2d(0), ValueError, "num_features"),
        (lambda: nn.BatchNorm2d(3, momentum=1.5), ValueError, "momentum must be a number in"),
        (lambda: nn.BatchNorm2d(3, eps=-1), ValueError, "eps"),
        (lambda: nn.MaxPool2d(2, padding=2), ValueError, "at most half the kernel size"),
        (lambda: nn.AvgPool2d(2, stride=0), ValueError, "stride must be a positive int"),
        (lambda: nn.AdaptiveAvgPool2d(0), ValueError, "output_size"),
        (lambda: nn.Dropout(1.2), ValueError, r"Dropout: p must be a number in \[0, 1\]; got 1.2"),
        (lambda: nn.Flatten(1.0), TypeError, "start_dim must be an int"),
    ],
)
def test_constructor_checks(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_reprs_and_pytorch_state_dict_names():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Dropout(0.1), nn.Linear(32, 4),
    )
    assert repr(model[0]) == "Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"
    assert repr(model[1]) == "BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"
    assert repr(model[6]) == "Linear(in_features=32, out_features=4, bias=True)"
    assert repr(model[2]) == "ReLU()" and repr(model[5]) == "Dropout(p=0.1)"
    assert list(model.state_dict()) == [
        "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked",
        "6.weight", "6.bias",
    ]  # fmt: skip


def test_layers_on_device(device):
    sa.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 3))
    x = rng(18).standard_normal((2, 2, 5, 5)).astype(np.float32)
    expected = model(sa.tensor(x)).numpy()
    model.to(device)
    model[1].running_mean.data[...] = 0  # undo the first call's update so both calls see the same state
    model[1].running_var.data[...] = 1
    y = model(sa.tensor(backend.to_device(x, device)))
    assert y.device == device
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-6)
    y.sum().backward()
    assert all(backend.device_of(p.grad) == device for p in model.parameters())


# =================================================================================================================
# nn.init
# =================================================================================================================


def test_init_functions_fill_in_place_with_the_documented_scales():
    sa.manual_seed(0)
    w = nn.Parameter(np.zeros((300, 100, 3), dtype=np.float32))
    data = w.data
    fan_in, fan_out = 100 * 3, 300 * 3
    assert init.calculate_fan_in_and_fan_out(w) == (fan_in, fan_out)

    assert init.kaiming_uniform_(w) is w and w.data is data and w.dtype == np.float32
    bound = math.sqrt(2.0) * math.sqrt(3.0 / fan_in)  # gain(leaky_relu, a=0) = sqrt(2)
    assert np.abs(w.data).max() <= bound and np.abs(w.data).max() > 0.99 * bound

    init.kaiming_uniform_(w, mode="fan_out", nonlinearity="relu")
    assert np.abs(w.data).max() <= math.sqrt(2.0) * math.sqrt(3.0 / fan_out)

    init.xavier_uniform_(w, gain=2.0)
    bound = 2.0 * math.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(w.data).max() <= bound and np.abs(w.data).max() > 0.99 * bound

    init.normal_(w, mean=1.0, std=0.5)
    assert abs(w.data.mean() - 1.0) < 0.01 and abs(w.data.std() - 0.5) < 0.01

    init.kaiming_normal_(w, nonlinearity="relu")
    assert abs(w.data.std() / (math.sqrt(2.0) / math.sqrt(fan_in)) - 1) < 0.02

    init.xavier_normal_(w)
    assert abs(w.data.std() / math.sqrt(2.0 / (fan_in + fan_out)) - 1) < 0.02

    init.uniform_(w, -0.1, 0.3)
    assert w.data.min() >= -0.1 and w.data.max() <= 0.3 and abs(w.data.mean() - 0.1) < 0.005
    init.zeros_(w)
    assert not w.data.any()
    init.ones_(w)
    assert np.all(w.data == 1)
    init.constant_(w, 0.25)
    assert np.all(w.data == 0.25)
    assert w.data is data


def test_init_checks():
    with pytest.raises(TypeError, match="must be a Tensor"):
        init.zeros_(np.zeros(3))
    with pytest.raises(ValueError, match="at least 2 dims"):
        init.kaiming_uniform_(nn.Parameter(np.zeros(3, dtype=np.float32)))
    with pytest.raises(ValueError, match="mode must be"):
        init.kaiming_uniform_(nn.Parameter(np.zeros((2, 2), dtype=np.float32)), mode="fan")
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.calculate_gain("swish")
    assert init.calculate_gain("tanh") == 5 / 3 and init.calculate_gain("leaky_relu", math.sqrt(5)) == math.sqrt(1 / 3)
