"""Checkpoints never lose data and never trust a file: what tests/test_serialization.py does not already cover.

* Saves killed at random moments: processes that overwrite one checkpoint in a loop are SIGKILLed at random times;
  the file left behind is always one whole version (its counter and its arrays agree), never a mix or a fragment.
* A save that fails half-way with an OS error (a full disk) leaves the old file and no temporary file.
* Hostile files: a member whose header claims an enormous shape, an archive whose members would unpack to far more
  than the file holds (a zip bomb), two members of one name, a FIFO (must not block), a link to /dev/zero, a member
  name with ``..``. Each is refused with a ValueError naming the file, quickly and without allocating the claim, or,
  for the harmless ones, loaded as data.
"""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

import scratchattn as sa

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# =================================================================================================================
# interrupted saves
# =================================================================================================================

SAVER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import scratchattn as sa

    path = sys.argv[1]
    version = 0
    while True:
        version += 1
        # 6 MB per version: a save takes long enough to be caught in the middle
        sa.save({"version": version, "w": np.full(500_000, version, np.float64),
                 "nested": {"b": np.full(250_000, -version, np.float32)}}, path)
        print(version, flush=True)
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_saves_killed_at_random_moments_leave_a_whole_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    runs = []
    for i in range(4):
        folder = tmp_path / f"run{i}"
        folder.mkdir()
        child = subprocess.Popen([sys.executable, "-c", SAVER, str(folder / "ckpt.npz")], env=env,
                                 stdout=subprocess.PIPE, text=True)
        runs.append((folder, child))
    try:
        for folder, child in runs:
            first = child.stdout.readline()  # one whole version exists from here on
            assert first.strip() == "1", f"the saver did not start: {first!r}"
            time.sleep(float(rng.uniform(0.0, 0.3)))  # then kill it somewhere in a later save
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
            last_reported = int(([line for line in child.stdout.read().split() if line] or ["1"])[-1])
            ckpt = sa.load(folder / "ckpt.npz")
            version = ckpt["version"]
            assert version in (last_reported, last_reported + 1), (version, last_reported)
            np.testing.assert_array_equal(ckpt["w"], np.full(500_000, version, np.float64))
            np.testing.assert_array_equal(ckpt["nested"]["b"], np.full(250_000, -version, np.float32))
            # A killed save may leave its temporary file (hidden, ".tmp"): never the checkpoint's own name.
            leftovers = [p.name for p in folder.iterdir() if p.name != "ckpt.npz"]
            print(f"killed after version {last_reported}: the file holds version {version}, leftovers {leftovers}")
            assert all(n.startswith(".ckpt.npz.") and n.endswith(".tmp") for n in leftovers), leftovers
    finally:
        for _, child in runs:
            if child.poll() is None:
                child.kill()
                child.wait()


def test_a_save_failing_half_way_keeps_the_old_file_and_cleans_up(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    sa.save({"version": 1, "w": np.arange(4.0)}, path)
    old = path.read_bytes()
    original = np.lib.format.write_array
    calls = []

    def write_then_fail(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the manifest is written; the first array meets a full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", write_then_fail)
    with pytest.raises(OSError, match="No space left"):
        sa.save({"version": 2, "w": np.arange(8.0)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]
    assert sa.load(path)["version"] == 1


# =================================================================================================================
# hostile files
# =================================================================================================================

MANIFEST = {"format": "scratchattn-checkpoint", "version": 1, "tree": {"dict": [["w", {"array": "w"}]]}}


def npy_member(array=None, header_shape=None, payload=b""):
    """The bytes of an .npy member: a real array, or a header claiming ``header_shape`` followed by ``payload``."""
    buffer = io.BytesIO()
    if array is not None:
        np.lib.format.write_array(buffer, array, allow_pickle=False)
        return buffer.getvalue()
    header = {"descr": "<f8", "fortran_order": False, "shape": header_shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + payload


def write_archive(path, members, compression=zipfile.ZIP_STORED, manifest=MANIFEST):
    marker = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        archive.writestr("__scratchattn__.npy", npy_member(marker))
        for name, data in members:
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize("shape", [(2**40,), (2**31,), (2**62, 2**62)], ids=["8 TiB", "16 GiB", "overflowing"])
def test_a_header_claiming_a_huge_array_is_refused_quickly(tmp_path, shape):
    path = write_archive(tmp_path / "claim.npz", [("w.npy", npy_member(header_shape=shape, payload=b"\0" * 64))])
    start = time.perf_counter()
    with pytest.raises(ValueError, match="claim.npz"):
        sa.load(path)
    assert time.perf_counter() - start < 5


def test_a_zip_bomb_is_refused_before_it_is_unpacked(tmp_path):
    # 200 MB of zeros deflate to about 200 kB; a checkpoint written by sa.save is never compressed like that.
    path = write_archive(tmp_path / "bomb.npz", [("w.npy", npy_member(np.zeros(25_000_000)))],
                         compression=zipfile.ZIP_DEFLATED)
    assert os.path.getsize(path) < 1_000_000
    with pytest.raises(ValueError, match=r"bomb.npz.*would unpack to \d+ bytes"):
        sa.load(path)


def test_two_members_of_one_name_are_refused(tmp_path):
    path = tmp_path / "twice.npz"
    with pytest.warns(UserWarning, match="Duplicate name"):
        write_archive(path, [("w.npy", npy_member(np.ones(3))), ("w.npy", npy_member(np.zeros(2)))])
    with pytest.raises(ValueError, match=r"twice.npz.*several members of one name \(\['w.npy'\]\)"):
        sa.load(path)


def test_a_compressed_but_honest_archive_still_loads(tmp_path):
    # Compression as such is not refused: a re-zipped checkpoint of ordinary weights unpacks to about its size.
    weights = np.random.default_rng(0).standard_normal(1000)
    path = write_archive(tmp_path / "zipped.npz", [("w.npy", npy_member(weights))], compression=zipfile.ZIP_DEFLATED)
    np.testing.assert_array_equal(sa.load(path)["w"], weights)


def test_a_member_name_with_dot_dots_is_only_a_name(tmp_path):
    # load never writes members anywhere, so "../../x" is a key like any other.
    manifest = {"format": "scratchattn-checkpoint", "version": 1, "tree": {"dict": [["w", {"array": "../../x"}]]}}
    path = write_archive(tmp_path / "dots.npz", [("../../x.npy", npy_member(np.ones(2)))], manifest=manifest)
    np.testing.assert_array_equal(sa.load(path)["w"], np.ones(2))
    assert not (tmp_path.parent.parent / "x.npy").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"pipe.npz.*does not exist or is not a file"):
        sa.load(fifo)  # opening a FIFO for reading would block until a writer came: it must not be opened


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_link_to_an_endless_device_is_refused(tmp_path):
    link = tmp_path / "zero.npz"
    os.symlink("/dev/zero", link)
    with pytest.raises(ValueError, match=r"zero.npz.*does not exist or is not a file"):
        sa.load(link)
