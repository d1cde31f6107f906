"""A small network of the library's attention blocks, its data and its training loop, for the training-robustness
tests (memory, determinism, resume); also a script that trains it and prints a digest of the weights.

``AttentionNet`` puts the headline ops in one graph: a localisation layer predicts an affine map per image
(``F.affine_grid``; the grid is sampled with ``F.grid_sample`` when the library has it), a convolution, the fused
squeeze-excitation op (``F.squeeze_excitation``, on the kernel path in force), multi-head self-attention over the
pixels (``F.scaled_dot_product_attention``) and a linear classifier. The task is made up here: which quadrant of a
noisy 8x8 image is bright.

    python tests/robustness/_robust_training.py --steps 30 [--kernels cuda-host] [--save weights.npz]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

import numpy as np

import scratchattn as sa
from scratchattn import backend, nn, optim
from scratchattn import functional as F

SIZE = 8
CHANNELS = 8


def make_data(n: int, seed: int):
    """Images (n, 1, 8, 8) of noise with one brighter quadrant, and the quadrant's index as the label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    x = rng.normal(0.0, 0.5, (n, 1, SIZE, SIZE))
    half = SIZE // 2
    for i, q in enumerate(labels):
        r, c = divmod(int(q), 2)
        x[i, 0, r * half:(r + 1) * half, c * half:(c + 1) * half] += 1.0
    return x.astype(np.float32), labels.astype(np.int64)


class AttentionNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.loc = nn.Linear(SIZE * SIZE, 6)
        self.conv = nn.Conv2d(1, CHANNELS, 3, padding=1)
        self.se1 = nn.Linear(CHANNELS, 2)
        self.se2 = nn.Linear(2, CHANNELS)
        self.attn = nn.MultiheadSelfAttention(CHANNELS, 2)
        self.head = nn.Linear(CHANNELS, 4)
        self.attn.keep_attention = False

    def forward(self, x):
        n = x.shape[0]
        identity = sa.tensor(np.tile(np.eye(2, 3, dtype=np.float32).reshape(1, 6), (n, 1)))
        theta = (identity + 0.1 * self.loc(x.reshape(n, SIZE * SIZE))).reshape(n, 2, 3)
        grid = F.affine_grid(theta, (n, 1, SIZE, SIZE), align_corners=False)
        if hasattr(F, "grid_sample"):
            x = F.grid_sample(x, grid, align_corners=False)
            extra = None
        else:  # until the sampler exists, keep the grid in the loss so that its backward runs
            extra = 1e-3 * (grid * grid).mean()
        h = F.relu(self.conv(x))
        h = F.squeeze_excitation(h, self.se1.weight, self.se1.bias, self.se2.weight, self.se2.bias)
        tokens = h.reshape(n, CHANNELS, SIZE * SIZE).transpose(1, 2)
        pooled = self.attn(tokens).mean(dim=1)
        return self.head(pooled), extra


def make_run(seed: int = 0, lr: float = 0.01):
    sa.manual_seed(seed)
    model = AttentionNet()
    return model, optim.Adam(model.parameters(), lr=lr)


def train_steps(model, opt, x, y, steps: int, first_step: int = 0, batch: int = 16):
    losses = []
    for step in range(first_step, first_step + steps):
        i = (step * batch) % len(x)
        logits, extra = model(sa.tensor(x[i:i + batch]))
        loss = F.cross_entropy(logits, y[i:i + batch])
        if extra is not None:
            loss = loss + extra
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def weights_digest(model) -> str:
    digest = hashlib.sha256()
    for name, a in model.state_dict().items():
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(backend.to_numpy(a)).tobytes())
    return digest.hexdigest()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kernels", default="numba", choices=backend.KERNEL_PATHS)
    parser.add_argument("--save", default=None)
    args = parser.parse_args(argv)
    x, y = make_data(128, seed=args.seed + 1)
    with backend.use_kernels(args.kernels):
        model, opt = make_run(args.seed)
        losses = train_steps(model, opt, x, y, args.steps)
    if args.save:
        sa.save({"model": model.state_dict()}, args.save)
    print(weights_digest(model), f"{losses[0]:.6f}", f"{losses[-1]:.6f}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
