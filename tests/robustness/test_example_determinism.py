"""Two CPU runs of an example with one seed end with bitwise-equal checkpoints, also on another Numba thread count.

``examples/stn_digits.py`` (a CNN and an ST-CNN on distorted digits: convolutions, the affine grid, grid sampling,
the optimiser) runs twice with ``--smoke`` in fresh processes, one of them with ``NUMBA_NUM_THREADS=1``; every array
of the two checkpoints (weights, running statistics, optimiser state) must be equal bit for bit. It is the cheapest
example (about 3 s of CPU); the examples' own tests check that an interrupted and resumed run of it equals an
uninterrupted one, and ``test_training_robustness.py`` checks determinism for a network with every attention op.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import scratchattn as sa

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPO, "examples", "stn_digits.py")
TIMING_KEYS = {"seconds"}  # wall-clock fields differ between runs by nature


def flatten(tree, prefix=""):
    """{path: leaf} for every leaf of a loaded checkpoint, timing fields left out."""
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            if key not in TIMING_KEYS:
                out.update(flatten(value, f"{prefix}/{key}"))
        return out
    if isinstance(tree, list):
        out = {}
        for i, value in enumerate(tree):
            out.update(flatten(value, f"{prefix}/{i}"))
        return out
    return {prefix: tree}


@pytest.mark.skipif(not os.path.exists(EXAMPLE), reason="examples/stn_digits.py is not in this checkout")
def test_two_runs_of_an_example_give_bitwise_equal_checkpoints(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    runs = []
    for name, extra in (("a", {}), ("b", {"NUMBA_NUM_THREADS": "1"})):
        out = tmp_path / name
        command = [sys.executable, EXAMPLE, "--smoke", "--no-progress", "--seed", "3", "--out", str(out)]
        runs.append((out, subprocess.Popen(command, cwd=REPO, env=dict(env, **extra), stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True)))
    checkpoints = []
    for out, process in runs:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, f"{EXAMPLE} failed:\n{stdout[-2000:]}\n{stderr[-3000:]}"
        files = [f for f in os.listdir(out) if f.endswith(".npz")]
        assert len(files) == 1, files
        checkpoints.append(flatten(sa.load(out / files[0])))
    first, second = checkpoints
    assert first.keys() == second.keys()
    arrays = [k for k, v in first.items() if isinstance(v, np.ndarray) and v.dtype.kind == "f"]
    assert len(arrays) > 20, "the checkpoint holds too few arrays for the comparison to mean much"
    for key in first:
        if isinstance(first[key], np.ndarray):
            np.testing.assert_array_equal(first[key], second[key], err_msg=key)
        else:
            assert first[key] == second[key], key
