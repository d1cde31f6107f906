"""``save`` / ``load``: checkpoints as ``.npz`` files that NumPy writes and reads without pickle.

What can be saved: a dict (nested dicts and lists allowed) whose leaves are arrays (NumPy or CuPy — CuPy arrays
are copied to the host), Tensors (saved as their arrays), Python ``int``/``float``/``bool``/``str`` or ``None``.
That covers a model's ``state_dict()``, an optimiser's ``state_dict()``, a scheduler's and an epoch counter::

    sa.save({"model": model.state_dict(), "optim": opt.state_dict(), "epoch": 7}, "ckpt.npz")
    ckpt = sa.load("ckpt.npz")            # arrays come back as NumPy arrays, tuples as lists

File layout (a zip archive, as ``numpy.savez`` makes):

* one ``.npy`` member per array, named by its path through the nested containers joined with ``/``
  (``model/features.0.weight``); keys may therefore not contain ``/``, and must be ``str`` or ``int``;
* a member ``__scratchattn__`` holding a UTF-8 JSON document: a format marker, a version, and the tree of
  containers with the small leaves (numbers, strings) inline and a reference to the member for each array.

``load`` opens the file with ``allow_pickle=False`` and parses only JSON, so a file can never run code. Anything
that is not a file this module wrote — missing, truncated, corrupt, a foreign ``.npz``, a pickle, an object
array — raises ``ValueError`` naming the file. ``save`` writes a temporary file in the target's directory,
flushes and fsyncs it, then renames it over the target (``os.replace`` is atomic), so a crash mid-save leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import zipfile

import numpy as np

from . import backend
from .autograd import Tensor

SEPARATOR = "/"
MARKER_MEMBER = "__scratchattn__"
FORMAT_NAME = "scratchattn-checkpoint"
FORMAT_VERSION = 1

_UMASK = os.umask(0o022)  # reading the umask means setting it: put it straight back (done once, at import)
os.umask(_UMASK)


# =================================================================================================================
# save
# =================================================================================================================


def _encode(obj, path: tuple, arrays: dict):
    """The JSON node for ``obj``; arrays are collected into ``arrays`` (member name -> NumPy array)."""
    where = SEPARATOR.join(str(p) for p in path) or "<root>"
    if isinstance(obj, Tensor):
        obj = obj.data
    if backend.is_array(obj):
        array = backend.to_numpy(obj)
        if array.dtype.hasobject or array.dtype.kind not in "biufcSU":
            raise TypeError(f"save: the array at {where!r} has dtype {array.dtype}, which cannot be saved without "
                            "pickle (numeric, bool and string arrays can)")
        name = SEPARATOR.join(str(p) for p in path)
        if name in arrays or name == MARKER_MEMBER or name == "":
            raise ValueError(f"save: cannot store an array at {where!r} (the root must be a dict; the name is taken)")
        arrays[name] = array
        return {"array": name}
    if obj is None or isinstance(obj, (bool, int, str)):
        return {"value": obj}
    if isinstance(obj, (float, np.floating)):
        return {"float": _float_to_json(float(obj))}
    if isinstance(obj, np.integer):
        return {"value": int(obj)}
    if isinstance(obj, np.bool_):
        return {"value": bool(obj)}
    if isinstance(obj, dict):
        items = []
        for key, value in obj.items():
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise TypeError(f"save: keys must be str or int; got {type(key).__name__} {key!r} in {where!r}")
            if isinstance(key, str) and (SEPARATOR in key or key == ""):
                raise ValueError(f"save: key {key!r} in {where!r} is empty or contains the separator "
                                 f"{SEPARATOR!r}, which the file format reserves")
            items.append([key, _encode(value, path + (key,), arrays)])
        return {"dict": items}
    if isinstance(obj, (list, tuple)):
        return {"list": [_encode(v, path + (i,), arrays) for i, v in enumerate(obj)]}
    raise TypeError(f"save: cannot save {type(obj).__name__} at {where!r}; leaves must be arrays, Tensors, "
                    "numbers, str, bool or None, in dicts and lists")


def _float_to_json(x: float):
    # JSON has no inf/nan: write them as strings inside the "float" node, numbers otherwise.
    return x if np.isfinite(x) else repr(x)


def save(obj, path) -> None:
    """Write ``obj`` (a dict; see the module docstring for what it may hold) to ``path`` atomically.

    The file is written exactly at ``path`` (no suffix is added); ``.npz`` is the conventional one.
    """
    if not isinstance(obj, dict):
        raise TypeError(f"save: obj must be a dict (e.g. a state_dict); got {type(obj).__name__}")
    path = os.fspath(path)
    arrays: dict = {}
    tree = _encode(obj, (), arrays)  # every check happens here, before the file system is touched
    manifest = json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION, "tree": tree}, allow_nan=False)

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
                _write_member(archive, MARKER_MEMBER, np.frombuffer(manifest.encode("utf-8"), dtype=np.uint8))
                for name, array in arrays.items():
                    _write_member(archive, name, array)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))  # mkstemp makes the file private (0600); give it the usual mode
        os.replace(tmp, path)
    except BaseException:
        with _suppress_os_error():
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _file_mode(path: str) -> int:
    """The mode an overwritten file had, else what ``open(path, "w")`` would give under the current umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_UMASK


def _write_member(archive: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with archive.open(name + ".npy", mode="w", force_zip64=True) as member:
        np.lib.format.write_array(member, array, allow_pickle=False)


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (where the platform lets a directory be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with _suppress_os_error():
            os.fsync(fd)
    finally:
        os.close(fd)


class _suppress_os_error:
    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        return kind is not None and issubclass(kind, OSError)


# =================================================================================================================
# load
# =================================================================================================================


class _Corrupt(Exception):
    """Internal: the manifest does not describe a valid tree."""


def _decode(node, members, used: set):
    if not isinstance(node, dict) or len(node) != 1:
        raise _Corrupt(f"malformed node {str(node)[:80]}")
    (kind, value), = node.items()
    if kind == "array":
        if not isinstance(value, str) or value not in members:
            raise _Corrupt(f"the array member {value!r} is missing")
        used.add(value)
        return members[value]
    if kind == "value":
        if value is not None and not isinstance(value, (bool, int, str)):
            raise _Corrupt(f"malformed value {value!r}")
        return value
    if kind == "float":
        if isinstance(value, str) and value in ("inf", "-inf", "nan"):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Corrupt(f"malformed float {value!r}")
        return float(value)
    if kind == "list":
        if not isinstance(value, list):
            raise _Corrupt("malformed list")
        return [_decode(v, members, used) for v in value]
    if kind == "dict":
        if not isinstance(value, list):
            raise _Corrupt("malformed dict")
        out = {}
        for item in value:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], (str, int))
                    and not isinstance(item[0], bool)):
                raise _Corrupt("malformed dict item")
            out[item[0]] = _decode(item[1], members, used)
        return out
    raise _Corrupt(f"unknown node kind {kind!r}")


# sa.save stores members uncompressed, so a checkpoint unpacks to about its own size. A crafted archive could claim
# members far larger than the file (a "zip bomb": memory exhausted by a small file) or hold two members of one name
# (zipfile silently reads the last); both are refused before anything is unpacked.
MAX_EXPANSION = 100


def _check_archive(path: str) -> None:
    if not zipfile.is_zipfile(path):
        return  # not a zip: np.load says what it is (a bare .npy, a pickle, garbage)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if len(set(names)) != len(names):
            raise _Corrupt(f"it holds several members of one name ({sorted({n for n in names if names.count(n) > 1})})")
        unpacked = sum(info.file_size for info in archive.infolist())
        if unpacked > MAX_EXPANSION * os.path.getsize(path) + 2**20:
            raise _Corrupt(f"its members would unpack to {unpacked} bytes from a file of {os.path.getsize(path)}")


def load(path) -> dict:
    """Read a file written by :func:`save`. Arrays come back as NumPy arrays (load them into a model with
    ``load_state_dict``, which moves them to the model's device), tuples as lists.

    Raises ``ValueError`` naming the file when it is missing, truncated, corrupt or not a scratchattn checkpoint.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"load: {path!r} does not exist or is not a file")
    try:
        _check_archive(path)
        opened = np.load(path, allow_pickle=False)
        if not isinstance(opened, np.lib.npyio.NpzFile):  # a bare .npy array
            raise _Corrupt("it holds a single .npy array, not an .npz archive")
        with opened as npz:  # members are read lazily: read them all while the file is open
            members = {name: npz[name] for name in npz.files}
    except Exception as exc:  # noqa: BLE001 - zipfile, pickle refusal, EOF, CRC, format errors alike
        raise ValueError(f"load: cannot read {path!r} as a scratchattn checkpoint (missing, truncated or not an "
                         f".npz written by scratchattn.save): {type(exc).__name__}: {exc}") from None

    marker = members.pop(MARKER_MEMBER, None)
    if marker is None or marker.dtype != np.uint8 or marker.ndim != 1:
        raise ValueError(f"load: {path!r} is an .npz file but not a scratchattn checkpoint (no {MARKER_MEMBER!r} "
                         "member)")
    try:
        manifest = json.loads(marker.tobytes().decode("utf-8"))
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            raise _Corrupt("wrong format marker")
        if manifest.get("version") != FORMAT_VERSION:
            raise _Corrupt(f"unsupported format version {manifest.get('version')!r} (this reader knows "
                           f"{FORMAT_VERSION})")
        used: set = set()
        obj = _decode(manifest.get("tree"), members, used)
        if not isinstance(obj, dict):
            raise _Corrupt("the root is not a dict")
        if used != set(members):
            raise _Corrupt(f"members not described by the manifest: {sorted(set(members) - used)[:5]}")
    except (ValueError, _Corrupt, RecursionError) as exc:  # json errors are ValueErrors
        raise ValueError(f"load: {path!r} is a corrupt scratchattn checkpoint: {exc}") from None
    return obj
