"""End to end on the CPU: a small CNN (Conv2d-BatchNorm-ReLU-MaxPool-Linear) learns a synthetic task made here —
which quadrant of a noisy 12x12 image is bright, 4 classes — to a loss far below chance (log 4); a checkpoint of
model, optimiser and scheduler written with ``sa.save`` resumes to the same weights; and 200 training steps leave
the traced memory flat (each step's graph and saved arrays are freed)."""

from __future__ import annotations

import gc
import math
import time
import tracemalloc

import numpy as np

import scratchattn as sa
from scratchattn import functional as F
from scratchattn import nn, optim
from scratchattn.optim.lr_scheduler import CosineAnnealingLR

SIZE = 12


def make_quadrant_data(n: int, seed: int):
    """Images (n, 1, 12, 12): noise everywhere, one quadrant brighter by 1; the label is that quadrant."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    x = rng.normal(0.0, 0.5, (n, 1, SIZE, SIZE))
    half = SIZE // 2
    for i, q in enumerate(labels):
        r, c = divmod(int(q), 2)
        x[i, 0, r * half:(r + 1) * half, c * half:(c + 1) * half] += 1.0
    return x.astype(np.float32), labels.astype(np.int64)


def make_model():
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.MaxPool2d(3),  # 12x12 -> 4x4: each quadrant becomes a 2x2 block
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 4),
    )


def train_steps(model, opt, x, y, steps, batch=32, scheduler=None, first_step=0):
    losses = []
    for step in range(first_step, first_step + steps):
        i = (step * batch) % len(x)
        xb, yb = sa.tensor(x[i:i + batch]), y[i:i + batch]
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if scheduler is not None and (step + 1) % 8 == 0:
            scheduler.step()
        losses.append(loss.item())
    return losses


def evaluate(model, x, y):
    model.eval()
    with sa.no_grad():
        logits = model(sa.tensor(x))
        loss = F.cross_entropy(logits, y).item()
    model.train()
    return loss, float((logits.numpy().argmax(axis=1) == y).mean())


def test_cnn_learns_bright_quadrant_classification():
    sa.manual_seed(0)
    x, y = make_quadrant_data(256, seed=1)
    x_test, y_test = make_quadrant_data(256, seed=2)
    model = make_model()
    opt = optim.Adam(model.parameters(), lr=0.02)

    chance = math.log(4)
    start_loss, _ = evaluate(model, x_test, y_test)
    t0 = time.perf_counter()
    losses = train_steps(model, opt, x, y, steps=80)
    elapsed = time.perf_counter() - t0
    loss, accuracy = evaluate(model, x_test, y_test)
    print(f"chance {chance:.3f}, untrained {start_loss:.3f}, train (last 8) {np.mean(losses[-8:]):.3f}, "
          f"held-out {loss:.3f}, accuracy {accuracy:.3f}, 80 steps in {elapsed:.2f} s")
    assert start_loss > 0.8 * chance
    assert loss < 0.15 * chance, f"held-out loss {loss:.3f} is not far below chance {chance:.3f}"
    assert accuracy > 0.95


def test_checkpoint_resume_matches_an_uninterrupted_run(tmp_path):
    x, y = make_quadrant_data(128, seed=3)

    def fresh():
        sa.manual_seed(7)
        model = make_model()
        opt = optim.SGD(
            [{"params": model[0].parameters(), "lr": 0.05}, {"params": list(model[1].parameters())
                                                             + list(model[5].parameters())}],
            lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4,
        )
        return model, opt, CosineAnnealingLR(opt, T_max=4)

    model_a, opt_a, sched_a = fresh()
    train_steps(model_a, opt_a, x, y, steps=24, scheduler=sched_a)

    model_b, opt_b, sched_b = fresh()
    train_steps(model_b, opt_b, x, y, steps=12, scheduler=sched_b)
    path = tmp_path / "ckpt.npz"
    sa.save({"model": model_b.state_dict(), "optim": opt_b.state_dict(), "sched": sched_b.state_dict(),
             "step": 12}, path)

    model_c, opt_c, sched_c = fresh()
    ckpt = sa.load(path)
    model_c.load_state_dict(ckpt["model"])
    opt_c.load_state_dict(ckpt["optim"])
    sched_c.load_state_dict(ckpt["sched"])
    train_steps(model_c, opt_c, x, y, steps=12, scheduler=sched_c, first_step=ckpt["step"])

    for (name, a), (_, c) in zip(model_a.state_dict().items(), model_c.state_dict().items()):
        np.testing.assert_array_equal(a, c, err_msg=name)
    assert opt_a.param_groups[1]["lr"] == opt_c.param_groups[1]["lr"]


def test_memory_stays_flat_over_200_steps():
    """NumPy reports its buffers to tracemalloc, so a step that kept its graph (saved activations, gradients of
    intermediate tensors) would show up as growth between step 20 and step 200."""
    sa.manual_seed(0)
    x, y = make_quadrant_data(64, seed=4)
    model = make_model()
    opt = optim.Adam(model.parameters(), lr=0.01)
    train_steps(model, opt, x, y, steps=5)  # optimiser state and lazy allocations happen here
    gc.collect()
    tracemalloc.start()
    try:
        train_steps(model, opt, x, y, steps=15, first_step=5)
        gc.collect()
        after_20, _ = tracemalloc.get_traced_memory()
        train_steps(model, opt, x, y, steps=180, first_step=20)
        gc.collect()
        after_200, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    growth = after_200 - after_20
    print(f"traced memory after step 20: {after_20 / 1e3:.1f} kB, after step 200: {after_200 / 1e3:.1f} kB, "
          f"peak {peak / 1e3:.1f} kB")
    # One step's activations are ~100 kB here; 180 leaked steps would be ~18 MB.
    assert growth < 50_000, f"traced memory grew by {growth} bytes over 180 steps"
