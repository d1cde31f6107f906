"""Tests of ``sa.save`` / ``sa.load``: round trips of nested checkpoints, what is refused at save time, and that
every kind of bad file (missing, empty, truncated, corrupt, foreign .npz, .npy, pickle, object arrays, a tampered
manifest) raises ValueError naming the file — including a save killed half-way, which must leave the old file."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend


def sample_checkpoint():
    rng = np.random.default_rng(0)
    return {
        "model": {
            "features.0.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
            "features.1.num_batches_tracked": np.array(5, dtype=np.int64),
            "fc.bias": rng.standard_normal(10),
            "mask": np.array([True, False]),
            "transposed": np.arange(6.0).reshape(2, 3).T,  # not C-contiguous
        },
        "optim": {
            "state": {0: {"step": 3, "exp_avg": np.ones(3, dtype=np.float32)}},
            "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 1], "nesterov": False}],
        },
        "epoch": 7,
        "best": float("-inf"),
        "nan": float("nan"),
        "name": "stn-cnn é",
        "nothing": None,
        "empty": {},
        "tensor": sa.tensor(np.array([1.5, 2.5], dtype=np.float32)),
    }


def test_round_trip(tmp_path):
    path = tmp_path / "ckpt.npz"
    obj = sample_checkpoint()
    sa.save(obj, path)
    back = sa.load(path)
    assert list(back) == list(obj)
    for key, value in obj["model"].items():
        got = back["model"][key]
        assert got.dtype == value.dtype and got.shape == value.shape, key
        np.testing.assert_array_equal(got, value)
    assert back["optim"]["state"] == {0: {"step": 3, "exp_avg": back["optim"]["state"][0]["exp_avg"]}}
    np.testing.assert_array_equal(back["optim"]["state"][0]["exp_avg"], np.ones(3, dtype=np.float32))
    assert back["optim"]["param_groups"] == [{"lr": 0.1, "betas": [0.9, 0.999], "params": [0, 1], "nesterov": False}]
    assert back["epoch"] == 7 and type(back["epoch"]) is int
    assert back["best"] == float("-inf") and np.isnan(back["nan"]) and back["name"] == "stn-cnn é"
    assert back["nothing"] is None and back["empty"] == {}
    np.testing.assert_array_equal(back["tensor"], [1.5, 2.5])
    # A plain NumPy reader sees ordinary arrays named by their paths.
    with np.load(path, allow_pickle=False) as npz:
        assert "model/features.0.weight" in npz.files


def test_model_state_dict_round_trip_and_str_path(tmp_path):
    from collections import OrderedDict

    sd = OrderedDict((f"layer{i}.weight", np.full((2, i + 1), i, dtype=np.float32)) for i in range(3))
    sa.save(sd, str(tmp_path / "model.ckpt"))  # no suffix is added
    assert os.listdir(tmp_path) == ["model.ckpt"]
    back = sa.load(str(tmp_path / "model.ckpt"))
    assert list(back) == list(sd)


def test_save_overwrites_atomically_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "c.npz"
    sa.save({"v": np.zeros(2)}, path)
    sa.save({"v": np.ones(3)}, path)
    np.testing.assert_array_equal(sa.load(path)["v"], np.ones(3))
    assert os.listdir(tmp_path) == ["c.npz"]


def test_save_from_gpu(tmp_path, device):
    x = backend.to_device(np.arange(4.0), device)
    sa.save({"x": x, "t": sa.tensor(x)}, tmp_path / "g.npz")
    back = sa.load(tmp_path / "g.npz")
    assert isinstance(back["x"], np.ndarray) and isinstance(back["t"], np.ndarray)
    np.testing.assert_array_equal(back["x"], np.arange(4.0))


@pytest.mark.parametrize(
    "obj, error, match",
    [
        ([1, 2], TypeError, "obj must be a dict"),
        ({"a/b": np.zeros(1)}, ValueError, "contains the separator '/'"),
        ({"": 1}, ValueError, "empty"),
        ({"a": {"b/c": 1}}, ValueError, "in 'a'"),
        ({1.5: 1}, TypeError, "keys must be str or int"),
        ({"f": lambda: 0}, TypeError, "cannot save function at 'f'"),
        ({"o": np.array([{}, None], dtype=object)}, TypeError, "dtype object"),
        ({"s": {1, 2}}, TypeError, "cannot save set"),
    ],
)
def test_save_refuses_what_it_cannot_store_without_touching_the_file(tmp_path, obj, error, match):
    path = tmp_path / "keep.npz"
    sa.save({"old": np.arange(3)}, path)
    with pytest.raises(error, match=match):
        sa.save(obj, path)
    np.testing.assert_array_equal(sa.load(path)["old"], np.arange(3))
    assert os.listdir(tmp_path) == ["keep.npz"]


def test_save_into_a_missing_directory_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        sa.save({"a": 1}, tmp_path / "no" / "such" / "dir.npz")


# =================================================================================================================
# bad files
# =================================================================================================================


def write_bytes(path, data: bytes):
    path.write_bytes(data)
    return path


def make_bad_file(kind, tmp_path):
    path = tmp_path / f"{kind}.npz"
    good = tmp_path / "good.npz"
    sa.save(sample_checkpoint(), good)
    blob = good.read_bytes()
    if kind == "missing":
        return path
    if kind == "directory":
        path.mkdir()
        return path
    if kind == "empty":
        return write_bytes(path, b"")
    if kind == "truncated":
        return write_bytes(path, blob[: len(blob) // 2])
    if kind == "garbage":
        return write_bytes(path, np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    if kind == "flipped":  # one corrupted byte inside an array's data: the zip CRC catches it
        data = bytearray(blob)
        start = blob.find(sample_checkpoint()["model"]["fc.bias"].tobytes())
        assert start > 0
        data[start + 5] ^= 0xFF
        return write_bytes(path, bytes(data))
    if kind == "foreign-npz":
        np.savez(path, weight=np.ones(3))
        return path
    if kind == "npy":
        np.save(path, np.ones(3))  # np.save appends .npy only to names without it; keep the name we chose
        os.replace(str(path) + ".npy", path) if os.path.exists(str(path) + ".npy") else None
        return path
    if kind == "pickle":
        return write_bytes(path, pickle.dumps({"weight": [1.0, 2.0]}))
    if kind == "object-array":
        np.savez(path, __scratchattn__=np.frombuffer(b"{}", dtype=np.uint8), w=np.array([{}, 1], dtype=object))
        return path
    def manifest(tree, fmt="scratchattn-checkpoint", version=1):
        return json.dumps({"format": fmt, "version": version, "tree": tree}).encode()

    manifest_tree = {
        "bad-json": b"{not json",
        "wrong-marker": manifest({"dict": []}, fmt="other"),
        "future-version": manifest({"dict": []}, version=99),
        "dangling-array": manifest({"dict": [["w", {"array": "nope"}]]}),
        "root-not-dict": manifest({"value": 3}),
        "bad-node": manifest({"dict": [["w", {"exec": "rm"}]]}),
        "extra-member": manifest({"dict": []}),
        "deep": ('{"format": "scratchattn-checkpoint", "version": 1, "tree": ' + '{"list": [' * 100000
                 + "]}" * 100000 + "}").encode(),
    }[kind]
    members = {"__scratchattn__": np.frombuffer(manifest_tree, dtype=np.uint8)}
    if kind == "extra-member":
        members["stray"] = np.zeros(2)
    np.savez(path, **members)
    return path


BAD_KINDS = [
    "missing", "directory", "empty", "truncated", "garbage", "flipped", "foreign-npz", "npy", "pickle",
    "object-array", "bad-json", "wrong-marker", "future-version", "dangling-array", "root-not-dict", "bad-node",
    "extra-member", "deep",
]  # fmt: skip


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_files_raise_value_error_naming_the_file(kind, tmp_path):
    path = make_bad_file(kind, tmp_path)
    with pytest.raises(ValueError) as info:
        sa.load(path)
    print(info.value)
    assert str(path) in str(info.value)


def test_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = write_bytes(tmp_path / "evil.npz", pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="evil.npz"):
        sa.load(path)
    # also as an object member inside an otherwise valid-looking archive
    with zipfile.ZipFile(tmp_path / "evil2.npz", "w") as z:
        with z.open("w.npy", "w") as f:
            np.lib.format.write_array(f, np.array([Evil()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="evil2.npz"):
        sa.load(tmp_path / "evil2.npz")
    assert not marker.exists()


# =================================================================================================================
# a save killed half-way leaves the previous checkpoint intact
# =================================================================================================================

CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import scratchattn as sa

    original = np.lib.format.write_array
    written = []

    def write_array_then_stall(*args, **kwargs):
        original(*args, **kwargs)
        written.append(1)
        if len(written) == 2:  # the marker and one 64 MB array are in the temporary file: stop here
            print("mid-save", flush=True)
            time.sleep(60)

    np.lib.format.write_array = write_array_then_stall
    big = {f"layer{i}": np.full(8 * 1024 * 1024, i, dtype=np.float64) for i in range(3)}
    sa.save(big, sys.argv[1])
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_killed_save_leaves_the_old_file(tmp_path):
    path = tmp_path / "ckpt.npz"
    sa.save({"epoch": 1, "w": np.arange(10.0)}, path)
    old_bytes = path.read_bytes()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        assert line.strip() == "mid-save", f"the child did not reach the middle of the save: {line!r}"
        temps = [p for p in os.listdir(tmp_path) if p != "ckpt.npz"]
        assert len(temps) == 1 and temps[0].endswith(".tmp")
        assert os.path.getsize(tmp_path / temps[0]) > 64 * 1024 * 1024
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert path.read_bytes() == old_bytes
    back = sa.load(path)
    assert back["epoch"] == 1
    np.testing.assert_array_equal(back["w"], np.arange(10.0))
    # The half-written temporary file is itself refused, not mistaken for a checkpoint.
    with pytest.raises(ValueError, match=r"\.tmp"):
        sa.load(tmp_path / temps[0])


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_saved_file_gets_the_usual_mode_not_the_temp_files(tmp_path):
    import stat

    path = tmp_path / "m.npz"
    sa.save({"a": 1}, path)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
    os.chmod(path, 0o640)
    sa.save({"a": 2}, path)  # an overwritten checkpoint keeps its mode
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
