"""The backend's device questions: which array module an argument belongs to, and on which device it lives.

These run without a GPU: a stand-in "cupy" module whose array type carries a ``.data`` attribute of its own, as a
real CuPy array does (its device memory pointer), checks that arrays are never looked through. (Looking through
``.data`` of a CuPy array took every GPU array for a NumPy one; the first GPU run found it.)
"""

from __future__ import annotations

import types

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend


class FakeDeviceArray(np.ndarray):
    """An ndarray subclass standing in for cupy.ndarray: its ``.data`` is not the array's data."""

    @property
    def data(self):
        return "a device memory pointer"


@pytest.fixture
def fake_cupy(monkeypatch):
    module = types.SimpleNamespace(ndarray=FakeDeviceArray, __name__="fake_cupy")
    monkeypatch.setattr(backend, "_cupy", module)
    return module


def test_device_arrays_are_recognised_directly_and_inside_tensors(fake_cupy):
    a = np.zeros(3).view(FakeDeviceArray)
    assert backend.is_cupy_array(a)
    assert backend.get_array_module(a) is fake_cupy
    assert backend.device_of(a) == "cuda"
    t = sa.Tensor(a)
    assert t.data is a
    assert backend.get_array_module(t) is fake_cupy
    assert backend.device_of(t) == "cuda"
    assert backend.get_array_module(np.ones(2), t) is fake_cupy


def test_host_arrays_and_others_stay_on_the_cpu(fake_cupy):
    assert backend.get_array_module(np.ones(2)) is np
    assert backend.get_array_module(sa.tensor(np.ones(2)), 3.0, None) is np
    assert backend.device_of(np.ones(2)) == "cpu"


def test_unwrap_looks_through_tensors_only():
    a = np.arange(4.0)
    t = sa.Tensor(a)
    assert backend.unwrap(t) is a
    assert backend.unwrap(a) is a  # an ndarray's own .data (a memoryview) is never taken
    assert backend.unwrap(2.5) == 2.5
