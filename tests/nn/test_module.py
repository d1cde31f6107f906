"""Tests of ``nn.Parameter``, ``nn.Module``, ``nn.Sequential`` and ``nn.ModuleList``: registration, dotted names,
modes, devices and dtypes, state dicts (order, copies, round trips, casting, error reports), containers and repr.

The modules here are toy ones built from the elementary ops, so these tests do not depend on the layers.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend, nn

# =================================================================================================================
# toy modules
# =================================================================================================================


class Affine(nn.Module):
    """y = x @ w + b, with a persistent and a non-persistent buffer to exercise registration."""

    def __init__(self, n_in, n_out, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.w = nn.Parameter(rng.standard_normal((n_in, n_out)).astype(np.float32))
        self.b = nn.Parameter(np.zeros(n_out, dtype=np.float32))
        self.register_buffer("calls", np.zeros((), dtype=np.int64))
        self.register_buffer("scratch", np.ones(3, dtype=np.float32), persistent=False)

    def forward(self, x):
        return x @ self.w + self.b


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(np.ones(1, dtype=np.float32))
        self.first = Affine(4, 3, seed=1)
        self.blocks = nn.Sequential(Affine(3, 3, seed=2), Affine(3, 2, seed=3))
        self.register_buffer("stat", np.full(2, 0.5, dtype=np.float32))

    def forward(self, x):
        return self.blocks(self.first(x)) * self.scale


EXPECTED_PARAMS = ["scale", "first.w", "first.b", "blocks.0.w", "blocks.0.b", "blocks.1.w", "blocks.1.b"]
EXPECTED_STATE = [
    "scale", "stat",
    "first.w", "first.b", "first.calls",
    "blocks.0.w", "blocks.0.b", "blocks.0.calls",
    "blocks.1.w", "blocks.1.b", "blocks.1.calls",
]  # fmt: skip


# =================================================================================================================
# Parameter
# =================================================================================================================


def test_parameter_requires_grad_and_defaults_to_float32():
    p = nn.Parameter([[1, 2], [3, 4]])
    assert isinstance(p, sa.Tensor) and p.requires_grad and p.dtype == np.float32 and p.shape == (2, 2)
    q = nn.Parameter(np.zeros(3, dtype=np.float64), requires_grad=False)
    assert not q.requires_grad and q.dtype == np.float64
    t = sa.tensor(np.arange(3.0))
    assert nn.Parameter(t).data is t.data  # shares the array
    assert repr(p).startswith("Parameter containing:")


def test_parameter_rejects_integer_arrays():
    with pytest.raises(TypeError, match="floating-point"):
        nn.Parameter(np.arange(3))


# =================================================================================================================
# registration and names
# =================================================================================================================


def test_named_parameters_use_dotted_pytorch_names_in_registration_order():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == EXPECTED_PARAMS
    assert len(list(net.parameters())) == 7
    assert [n for n, _ in net.named_parameters(recurse=False)] == ["scale"]
    assert net.first.w is dict(net.named_parameters())["first.w"]


def test_buffers_children_and_modules():
    net = Net()
    assert [n for n, _ in net.named_buffers()] == [
        "stat", "first.calls", "first.scratch", "blocks.0.calls", "blocks.0.scratch", "blocks.1.calls",
        "blocks.1.scratch",
    ]  # fmt: skip
    assert all(not b.requires_grad for b in net.buffers())
    assert [n for n, _ in net.named_children()] == ["first", "blocks"]
    assert list(net.children()) == [net.first, net.blocks]
    names = [n for n, _ in net.named_modules()]
    assert names == ["", "first", "blocks", "blocks.0", "blocks.1"]
    assert len(list(net.modules())) == 5


def test_shared_parameter_and_module_are_listed_once():
    net = nn.Module()
    shared = Affine(2, 2)
    net.a = shared
    net.b = shared
    net.extra = nn.Parameter(np.zeros(1, dtype=np.float32))
    net.alias = net.extra
    assert [n for n, _ in net.named_parameters()] == ["extra", "a.w", "a.b"]
    assert [n for n, _ in net.named_modules()] == ["", "a"]
    # state_dict keeps every name, as PyTorch does, so a checkpoint of a tied model still has all its keys
    assert list(net.state_dict()) == ["extra", "alias", "a.w", "a.b", "a.calls", "b.w", "b.b", "b.calls"]


def test_setattr_moves_names_between_registries_and_checks_types():
    m = nn.Module()
    m.x = nn.Parameter(np.zeros(2, dtype=np.float32))
    assert "x" in m._parameters
    m.x = None  # allowed: an absent parameter (as bias=False)
    assert m._parameters["x"] is None and list(m.parameters()) == []
    with pytest.raises(TypeError, match="parameter 'x'"):
        m.x = np.zeros(2)
    m.child = Affine(2, 2)
    with pytest.raises(TypeError, match="child module 'child'"):
        m.child = 3
    m.child = None
    assert list(m.children()) == []
    m.register_buffer("buf", np.zeros(2))
    m.buf = np.ones(2)  # assigning an array to a buffer name keeps it a buffer
    assert isinstance(m._buffers["buf"], sa.Tensor) and np.all(m.buf.data == 1)
    m.plain = 5
    assert m.plain == 5 and "plain" not in m._parameters
    del m.buf
    assert "buf" not in m._buffers
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        _ = m.missing


def test_register_checks_names_and_kinds():
    m = nn.Module()
    with pytest.raises(ValueError, match="without '.'"):
        m.register_buffer("a.b", np.zeros(1))
    with pytest.raises(TypeError, match="Parameter or None"):
        m.register_parameter("p", np.zeros(1))
    with pytest.raises(TypeError, match="got a Parameter"):
        m.register_buffer("b", nn.Parameter(np.zeros(1, dtype=np.float32)))
    with pytest.raises(TypeError, match="Module or None"):
        m.add_module("c", 3)
    m.attr = 1
    with pytest.raises(KeyError, match="already exists"):
        m.register_buffer("attr", np.zeros(1))


def test_forgetting_super_init_is_reported():
    class Broken(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.zeros(1, dtype=np.float32))

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Broken()


def test_forward_is_required():
    with pytest.raises(NotImplementedError, match="forward"):
        nn.Module()(1)


# =================================================================================================================
# modes, gradients, devices, dtypes
# =================================================================================================================


def test_train_eval_reach_every_module():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    with pytest.raises(TypeError, match="mode must be a bool"):
        net.train("no")


def test_forward_backward_and_zero_grad():
    net = Net()
    x = sa.tensor(np.random.default_rng(5).standard_normal((5, 4)).astype(np.float32))
    y = net(x)
    assert y.shape == (5, 2)
    y.sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(np.all(p.grad == 0) for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_requires_grad_freezes_parameters():
    net = Net()
    net.first.requires_grad_(False)
    assert [n for n, p in net.named_parameters() if p.requires_grad] == EXPECTED_PARAMS[:1] + EXPECTED_PARAMS[3:]


def test_double_and_float_cast_floats_only_and_keep_the_objects():
    net = Net()
    params = list(net.parameters())
    net(sa.tensor(np.ones((2, 4), dtype=np.float32))).sum().backward()
    assert net.double() is net
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    assert all(p.dtype == np.float64 and p.grad.dtype == np.float64 for p in net.parameters())
    assert net.stat.dtype == np.float64 and net.first.scratch.dtype == np.float64
    assert net.first.calls.dtype == np.int64  # integer buffers are not cast
    net.float()
    assert all(p.dtype == np.float32 for p in net.parameters()) and net.first.calls.dtype == np.int64
    with pytest.raises(ValueError, match="float32 or float64"):
        net.to(dtype=np.int32)


def test_to_moves_in_place(device):
    net = Net()
    before = {n: p.numpy() for n, p in net.named_parameters()}
    ids = [id(p) for p in net.parameters()]
    assert net.to(device) is net
    assert [id(p) for p in net.parameters()] == ids
    assert all(t.device == device for t in list(net.parameters()) + list(net.buffers()))
    for name, p in net.named_parameters():
        np.testing.assert_array_equal(p.numpy(), before[name])
    x = sa.tensor(backend.to_device(np.ones((2, 4), dtype=np.float32), device))
    assert net(x).device == device
    net.to("cpu")
    assert all(t.device == "cpu" for t in net.buffers())
    with pytest.raises(ValueError, match="device must be one of"):
        net.to("tpu")


# =================================================================================================================
# state dicts
# =================================================================================================================


def test_state_dict_names_order_and_copies():
    net = Net()
    sd = net.state_dict()
    assert isinstance(sd, OrderedDict) and list(sd) == EXPECTED_STATE  # non-persistent 'scratch' left out
    assert sd["first.calls"].dtype == np.int64 and sd["first.calls"].shape == ()
    sd["first.w"][...] = 99.0  # a copy: the module is unchanged
    assert not np.any(net.first.w.data == 99.0)


def test_load_state_dict_round_trip():
    src, dst = Net(), Net()
    for p in src.parameters():
        p.data[...] = np.random.default_rng(p.size).standard_normal(p.shape)
    src.first.calls.data[...] = 7
    result = dst.load_state_dict(src.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    for (name, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert int(dst.first.calls.data) == 7


def test_load_state_dict_keeps_dtype_and_object_and_casts(device):
    net = Net().to(device)
    w = net.first.w
    sd = {k: backend.to_numpy(v).astype(np.float64) for k, v in Net().double().state_dict().items()}
    sd["first.w"] = sa.tensor(np.full((4, 3), 0.25))  # Tensors are accepted too
    sd["scale"] = [2.0]  # and plain numbers
    net.load_state_dict(sd)
    assert net.first.w is w and w.dtype == np.float32 and w.device == device
    assert np.all(w.numpy() == 0.25) and net.scale.numpy()[0] == 2.0
    assert net.first.calls.dtype == np.int64


def test_load_state_dict_reports_every_problem_and_loads_nothing():
    net = Net()
    before = net.state_dict()
    sd = Net().state_dict()
    for p in sd.values():
        p[...] = 3
    del sd["first.b"], sd["stat"]
    sd["bogus.weight"] = np.zeros(2)
    sd["blocks.1.w"] = np.zeros((2, 3), dtype=np.float32)
    sd["blocks.0.b"] = np.array(["a", "b", "c"])
    with pytest.raises(ValueError) as info:
        net.load_state_dict(sd)
    msg = str(info.value)
    print(msg)
    for part in ("missing keys: stat, first.b", "unexpected keys: bogus.weight",
                 "blocks.1.w: shape mismatch, expected (3, 2), given (2, 3)", "blocks.0.b: expected a numeric array"):
        assert part in msg
    for name, value in net.state_dict().items():  # nothing was loaded
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def test_load_state_dict_non_strict_returns_the_keys():
    net = Net()
    sd = Net().state_dict()
    del sd["scale"]
    sd["other"] = np.zeros(1)
    sd["first.w"][...] = 5
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["scale"] and result.unexpected_keys == ["other"]
    assert np.all(net.first.w.data == 5)
    sd["first.w"] = np.zeros((1, 1))
    with pytest.raises(ValueError, match="first.w: shape mismatch"):  # shapes are checked even when not strict
        net.load_state_dict(sd, strict=False)
    with pytest.raises(TypeError, match="dict of arrays"):
        net.load_state_dict([1, 2])


# =================================================================================================================
# containers and repr
# =================================================================================================================


def test_sequential_indexing_iteration_and_forward():
    a, b, c = Affine(4, 3, 1), Affine(3, 3, 2), Affine(3, 2, 3)
    seq = nn.Sequential(a, b, c)
    assert len(seq) == 3 and list(seq) == [a, b, c]
    assert seq[0] is a and seq[-1] is c
    sub = seq[1:]
    assert isinstance(sub, nn.Sequential) and list(sub) == [b, c] and [n for n, _ in sub.named_children()] == ["1", "2"]
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    expected = ((x @ a.w.data + a.b.data) @ b.w.data + b.b.data) @ c.w.data + c.b.data
    np.testing.assert_allclose(seq(sa.tensor(x)).numpy(), expected, rtol=1e-5)
    with pytest.raises(IndexError, match="out of range"):
        seq[3]
    with pytest.raises(TypeError, match="expected a Module"):
        nn.Sequential(a, "relu")
    seq[1] = Affine(3, 3, 9)
    assert seq[1] is not b
    named = nn.Sequential(OrderedDict([("enc", a), ("head", c)]))
    assert [n for n, _ in named.named_parameters()] == ["enc.w", "enc.b", "head.w", "head.b"]
    seq.append(Affine(2, 2))
    assert len(seq) == 4 and "3.w" in seq.state_dict()


def test_module_list_registers_its_items():
    holder = nn.Module()
    holder.layers = nn.ModuleList([Affine(2, 2), Affine(2, 2)])
    holder.layers.append(Affine(2, 1))
    assert len(holder.layers) == 3
    assert [n for n, _ in holder.named_parameters()][-2:] == ["layers.2.w", "layers.2.b"]
    assert isinstance(holder.layers[:2], nn.ModuleList) and holder.layers[-1] is list(holder.layers)[2]
    with pytest.raises(NotImplementedError):
        holder.layers(1)


def test_repr_shows_the_tree():
    class Leaf(nn.Module):
        def extra_repr(self):
            return "4, 3"

    seq = nn.Sequential(Leaf(), nn.Sequential(Leaf()))
    assert repr(seq) == "Sequential(\n  (0): Leaf(4, 3)\n  (1): Sequential(\n    (0): Leaf(4, 3)\n  )\n)"
