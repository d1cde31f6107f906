"""Training with the attention blocks: flat memory over 200 steps, every graph freed after backward, bitwise-equal
weights from two runs with one seed (also with another Numba thread count), and a resumed run equal to an
uninterrupted one. The network (``_robust_training.AttentionNet``) chains the affine grid, the fused
squeeze-excitation op and multi-head self-attention, on the Numba path and on the CUDA kernels through the host shim.

(The end-to-end test in tests/test_end_to_end.py does the memory and resume checks for a plain CNN; the examples'
own tests run their ``--resume``.)
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import tracemalloc
import weakref

import _robust_training as training
import numpy as np
import pytest

import scratchattn as sa
from scratchattn import backend

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def live_functions() -> int:
    gc.collect()
    return sum(isinstance(o, sa.Function) for o in gc.get_objects())


def test_memory_stays_flat_over_200_steps(kernel_path):
    if kernel_path.name == "cupy":
        pytest.skip("tracemalloc sees host memory only; the GPU run is covered by the device-side checks")
    x, y = training.make_data(128, seed=1)
    model, opt = training.make_run(seed=0)
    training.train_steps(model, opt, x, y, steps=20)  # optimiser state, caches and kernels settle here
    functions_before = live_functions()
    tracemalloc.start()
    try:
        training.train_steps(model, opt, x, y, steps=30, first_step=20)
        gc.collect()
        after_50, _ = tracemalloc.get_traced_memory()
        training.train_steps(model, opt, x, y, steps=150, first_step=50)
        gc.collect()
        after_200, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    growth = after_200 - after_50
    print(f"{kernel_path}: traced memory after step 50 {after_50 / 1e3:.1f} kB, after step 200 "
          f"{after_200 / 1e3:.1f} kB (growth {growth} B), peak {peak / 1e3:.1f} kB")
    # One step's activations and saved arrays are about 250 kB: 150 leaked steps would be tens of MB.
    assert growth < 64_000, f"traced memory grew by {growth} bytes over 150 steps"
    assert live_functions() == functions_before == 0, "graph nodes outlived their step"


def test_every_op_releases_what_it_saved_after_backward(kernel_path):
    if kernel_path.name == "cupy":
        pytest.skip("the same engine code runs on the GPU; checked here on host arrays")
    x, y = training.make_data(16, seed=1)
    model, _ = training.make_run(seed=0)
    logits, extra = model(sa.tensor(x))
    loss = sa.functional.cross_entropy(logits, y) + (0 if extra is None else extra)

    functions, stack, saved = [], [loss], []
    while stack:  # every Function of the graph, and weak references to every array it saved
        t = stack.pop()
        fn = t.creator
        if fn is None or any(fn is f for f in functions):
            continue
        functions.append(fn)
        saved += [weakref.ref(a) for a in getattr(fn, "saved_arrays", ()) if isinstance(a, np.ndarray)
                  and a.base is None]  # owners only: views share a buffer that an input may keep alive
        stack.extend(fn.inputs)
    names = {type(f).__name__ for f in functions}
    assert {"AffineGrid", "GridSample", "SqueezeExcitation", "ScaledDotProductAttention"} <= names, names
    assert saved, "no op saved anything: the check would prove nothing"

    loss.backward()
    for fn in functions:
        assert fn.released, type(fn).__name__
        leftover = set(vars(fn)) - set(sa.Function._ENGINE_ATTRS)
        assert not leftover, f"{type(fn).__name__} still holds {sorted(leftover)} after backward"
    del logits, extra, loss, fn, t
    gc.collect()
    # Arrays the test and the model hold themselves, and the scratch buffers conv2d hands back to its bounded
    # workspace for the next step (functional/conv.py, Workspace): kept on purpose, not leaked.
    from scratchattn.functional import conv

    kept = [x, y] + [p.data for p in model.parameters()] + [a for v in conv.WORKSPACE.spare.values() for a in v]
    alive = [r() for r in saved if r() is not None and not any(r() is a for a in kept)]
    assert not alive, f"{len(alive)} saved arrays outlived the backward pass: {[a.shape for a in alive]}"


def _train_in_subprocess(env_extra: dict, kernels: str, steps: int = 100) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), **env_extra)
    return subprocess.Popen([sys.executable, os.path.join(HERE, "_robust_training.py"), "--steps", str(steps),
                             "--kernels", kernels], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("kernels", ["numba", "cuda-host"])
def test_two_cpu_runs_give_bitwise_equal_weights(kernels):
    if kernels == "cuda-host":
        from conftest import host_shim_skip_reason

        reason = host_shim_skip_reason()
        if reason is not None:
            pytest.skip(f"cuda-host kernel path unavailable: {reason}")
    # Fresh processes (nothing shared but the compiled-kernel caches); the second runs Numba on one thread, which
    # must not change a bit either (the kernels split work independently of the thread count). The host shim runs
    # blocks one after another (SCRATCHATTN_HOST_THREADS=1), so its atomicAdd scatters happen in a fixed order.
    settings = [{}, {"NUMBA_NUM_THREADS": "1", "SCRATCHATTN_HOST_THREADS": "1"}]
    processes = [_train_in_subprocess(env, kernels) for env in settings]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in processes]
    for _, err, code in results:
        assert code == 0, err[-3000:]
    digests = [out.split()[0] for out, _, _ in results]
    print(kernels, [out.strip() for out, _, _ in results])
    assert len(set(digests)) == 1, f"the runs differ: {digests}"
    first_loss, last_loss = (float(v) for v in results[0][0].split()[1:])
    assert last_loss < 0.8 * first_loss, "the network did not learn: the check would compare untrained weights"


def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path):
    x, y = training.make_data(128, seed=1)
    model_a, opt_a = training.make_run(seed=3)
    training.train_steps(model_a, opt_a, x, y, steps=40)

    model_b, opt_b = training.make_run(seed=3)
    training.train_steps(model_b, opt_b, x, y, steps=20)
    path = tmp_path / "ckpt.npz"
    sa.save({"model": model_b.state_dict(), "optim": opt_b.state_dict(), "step": 20}, path)
    del model_b, opt_b

    model_c, opt_c = training.make_run(seed=99)  # other initial weights: everything must come from the file
    ckpt = sa.load(path)
    model_c.load_state_dict(ckpt["model"])
    opt_c.load_state_dict(ckpt["optim"])
    training.train_steps(model_c, opt_c, x, y, steps=20, first_step=ckpt["step"])

    for (name, a), (_, c) in zip(model_a.state_dict().items(), model_c.state_dict().items()):
        np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(c), err_msg=name)
