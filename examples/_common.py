"""What the three examples share: the command line, the digits data, the paper's distortions, the training loop,
checkpoint and resume, figures and ``summary.json``.

The data are scikit-learn's 1,797 handwritten 8x8 digits (bundled with the package, so everything runs offline),
upsampled to 28x28 with scratchattn's own bilinear sampler, or a local ``mnist.npz`` given with ``--mnist``. The
distortions of the Spatial Transformer paper (R, RTS, P, E) are drawn afresh for every training batch and applied
with scratchattn's grid generators (``F.affine_grid``, ``F.projective_grid``, or a thin-plate-spline grid built
here) and ``F.grid_sample``; the test set is distorted once, with a fixed seed, so every run and every seed is
scored on the same images.

Reproducibility: every random draw of an epoch (the shuffle, the distortions, dropout masks) comes from
generators seeded with ``(seed, epoch)``. The random state at the start of an epoch is therefore a function of the
seed and the epoch number alone, a checkpoint written after epoch k (weights, optimiser and scheduler state,
history) is all that ``--resume`` needs, and a resumed run gives bitwise the weights of an uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

import scratchattn as sa
from scratchattn import backend
from scratchattn import functional as F

# The examples run from a checkout (``python examples/stn_digits.py``); make the sibling modules importable too.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SPLIT_SEED = 0  # the train/test split of the bundled digits (fixed: every run sees the same split)
TEST_DISTORTION_SEED = 20150605  # the fixed distortions of the test set (the STN paper's arXiv date)
TEST_COPIES = 5  # each test digit is distorted this many fixed ways
CHECKPOINT_NAME = "checkpoint.npz"
SUMMARY_NAME = "summary.json"

# Numbers of the paper's distortions: rotation range for R, and for RTS rotation, scale range and canvas size.
R_MAX_DEGREES = 90.0
RTS_MAX_DEGREES = 45.0
RTS_SCALE = (0.7, 1.2)
RTS_CANVAS = 42
# P and E follow the paper's recipes (shrink the digit to 0.75 of the frame, then perturb corners or control points
# with Gaussian noise); the noise levels are this project's choice, set so that the digits stay readable at 28x28.
# P: each of the digit's four corners moved by Gaussian noise (pixels).
P_SCALE = 0.75
P_CORNER_STD = 3.0
# E: a thin-plate spline through a 4x4 grid of control points over the 0.75-scaled digit, each moved by Gaussian
# noise (pixels).
E_SCALE = 0.75
E_POINT_STD = 1.5
E_POINTS = 4

DISTORTIONS = ("R", "RTS", "P", "E")

# --smoke: every code path on a sliver of the work (the tests run each example this way).
SMOKE_BATCHES = 2
SMOKE_BATCH_SIZE = 16
SMOKE_TEST_IMAGES = 32


# =================================================================================================================
# command line
# =================================================================================================================


def build_parser(example: str, description: str, epochs: int, batch_size: int, lr: float,
                 distortion: str = "RTS") -> argparse.ArgumentParser:
    """The options every example takes; each example adds its own and passes its default budget."""
    p = argparse.ArgumentParser(prog=f"examples/{example}.py", description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to train")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, the shuffles and the distortions")
    p.add_argument("--epochs", type=int, default=None, help=f"training epochs (default {epochs}; 1 with --smoke)")
    p.add_argument("--batch-size", type=int, default=batch_size, help="minibatch size")
    p.add_argument("--lr", type=float, default=lr, help="learning rate of the backbones")
    p.add_argument("--distortion", default=distortion, choices=DISTORTIONS,
                   help="R: rotation +-90 deg; RTS: rotation +-45 deg, scale 0.7-1.2 and translation in a 42x42 "
                        "canvas; P: projective; E: elastic (thin-plate spline)")
    p.add_argument("--mnist", metavar="PATH", default=None,
                   help="a local mnist.npz (x_train, y_train, x_test, y_test) to use instead of the bundled digits")
    p.add_argument("--train-limit", type=int, default=None, metavar="N",
                   help="train on the first N training images only (useful with --mnist on a CPU)")
    p.add_argument("--out", default=os.path.join("runs", example), help="folder for figures, summary.json and the "
                                                                        "checkpoint")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--smoke", action="store_true", help="a few batches of everything, in seconds (for the tests)")
    p.add_argument("--eval-every", type=int, default=5, help="score the test set every this many epochs (and last)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for the Numba kernels and BLAS; 0 leaves the libraries' defaults (all cores). "
                        "One is the default because on a small machine that is busy with anything else, two thread "
                        "pools (Numba's and OpenBLAS's) spinning against each other made training 8-25x slower")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--stop-after", type=int, default=None, metavar="K",
                   help="stop (as if interrupted) after epoch K; --resume continues")
    p.set_defaults(default_epochs=epochs)
    return p


def finish_args(args: argparse.Namespace) -> argparse.Namespace:
    """Fill in the defaults that depend on other options and check what argparse cannot."""
    if args.epochs is None:
        args.epochs = 1 if args.smoke else args.default_epochs
    if args.smoke:
        args.batch_size = min(args.batch_size, SMOKE_BATCH_SIZE)
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if args.eval_every < 1:
        raise SystemExit(f"--eval-every must be >= 1; got {args.eval_every}")
    if args.train_limit is not None and args.train_limit < 1:
        raise SystemExit(f"--train-limit must be >= 1; got {args.train_limit}")
    if args.device == "cuda" and not backend.cuda_is_available():
        raise SystemExit(f"--device cuda: {backend.cuda_unavailable_reason()}")
    if args.resume and not os.path.isfile(os.path.join(args.out, CHECKPOINT_NAME)):
        raise SystemExit(f"--resume: no checkpoint at {os.path.join(args.out, CHECKPOINT_NAME)}; run without "
                         "--resume first")
    if args.threads < 0:
        raise SystemExit(f"--threads must be >= 0; got {args.threads}")
    if args.threads > 0:
        limit_threads(args.threads)
    return args


def limit_threads(n: int) -> None:
    """Run the CPU work of this process on ``n`` threads: Numba's parallel kernels and the BLAS behind matmul."""
    import numba
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn, so present with the examples extra

    threadpool_limits(limits=n)  # as a plain call (not a with-block) the limit stays for the whole process
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


# =================================================================================================================
# data
# =================================================================================================================


class Dataset:
    """Images (N, 1, 28, 28) float32 in [0, 1] and labels (N,) int64, on the CPU; ``source`` names them."""

    def __init__(self, x_train, y_train, x_test, y_test, source: str):
        self.x_train, self.y_train = x_train, y_train
        self.x_test, self.y_test = x_test, y_test
        self.source = source

    def __repr__(self):
        return f"{self.source}: {len(self.x_train)} training and {len(self.x_test)} test images"


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """Resize (N, C, h, w) images to (N, C, size, size) with scratchattn's sampler (identity affine grid).

    With ``align_corners=False`` and ``padding_mode="border"`` this is the usual bilinear resize (pixel centres
    map to pixel centres, the edge pixels are repeated), as ``torch.nn.functional.interpolate`` does it.
    """
    n, c = images.shape[:2]
    identity = np.tile(np.array([[1, 0, 0], [0, 1, 0]], dtype=images.dtype), (n, 1, 1))
    with sa.no_grad():
        grid = F.affine_grid(sa.tensor(identity), (n, c, size, size), align_corners=False)
        out = F.grid_sample(sa.tensor(images), grid, padding_mode="border", align_corners=False)
    return out.numpy()


def load_digits_28() -> Dataset:
    """scikit-learn's bundled digits, /16, upsampled to 28x28, split 80/20 stratified with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8)
    images = np.clip(resize_bilinear(images, 28), 0.0, 1.0)
    labels = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(images, labels, test_size=0.2, stratify=labels, random_state=SPLIT_SEED)
    return Dataset(np.ascontiguousarray(x_tr), y_tr, np.ascontiguousarray(x_te), y_te,
                   "scikit-learn digits (8x8 upsampled to 28x28)")


def load_mnist(path: str) -> Dataset:
    """A local ``mnist.npz`` with x_train (N, 28, 28) uint8, y_train, x_test, y_test (Keras' layout); no download."""
    if not os.path.isfile(path):
        raise SystemExit(f"--mnist: no file at {path!r} (this example never downloads; pass a local mnist.npz)")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except KeyError as exc:
        raise SystemExit(f"--mnist: {path!r} lacks the array {exc}; expected x_train, y_train, x_test, y_test") from exc
    except (OSError, ValueError) as exc:
        raise SystemExit(f"--mnist: cannot read {path!r} as a .npz file: {exc}") from exc
    out = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or len(y) != len(x):
            raise SystemExit(f"--mnist: x_{split} must be (N, 28, 28) with N labels; got {x.shape} and {y.shape}")
        scale = 255.0 if x.dtype == np.uint8 or x.max() > 1.5 else 1.0
        out += [np.ascontiguousarray((x / scale).astype(np.float32)[:, None]), y.astype(np.int64)]
    return Dataset(*out, source=f"MNIST ({path})")


def load_data(args) -> Dataset:
    data = load_mnist(args.mnist) if args.mnist else load_digits_28()
    if args.train_limit is not None:
        data.x_train, data.y_train = data.x_train[: args.train_limit], data.y_train[: args.train_limit]
    return data


def prepare_data(args):
    """Everything an example trains and tests on: (data, x_test, y_test, batch_limit).

    x_test (N, 1, S, S) NumPy, the test set distorted once with a fixed seed, and y_test (N,); batch_limit caps
    the batches per epoch (None, or SMOKE_BATCHES with --smoke, which also keeps only a few test images).
    """
    data = load_data(args)
    if args.smoke:
        data.x_test, data.y_test = data.x_test[:SMOKE_TEST_IMAGES], data.y_test[:SMOKE_TEST_IMAGES]
    x_test, y_test = distorted_test_set(data, args.distortion, copies=1 if args.smoke else TEST_COPIES)
    return data, x_test, y_test, (SMOKE_BATCHES if args.smoke else None)


# =================================================================================================================
# distortions: random parameters (NumPy, on the CPU) -> a sampling grid -> F.grid_sample on the images' device
# =================================================================================================================


def distorted_size(kind: str) -> int:
    """Side of the distorted images: 42 for RTS (the digit is placed in a larger canvas), else 28."""
    return RTS_CANVAS if kind == "RTS" else 28


def _rotation(angles: np.ndarray) -> np.ndarray:
    """(N, 2, 2) rotation matrices."""
    c, s = np.cos(angles), np.sin(angles)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], 1)


def r_theta(rng: np.random.Generator, n: int) -> np.ndarray:
    """R: rotation by a uniform angle in +-90 degrees, about the centre; (N, 2, 3) output -> input maps."""
    angles = np.deg2rad(rng.uniform(-R_MAX_DEGREES, R_MAX_DEGREES, n))
    return np.concatenate([_rotation(angles), np.zeros((n, 2, 1))], axis=2)


def rts_theta(rng: np.random.Generator, n: int, in_size: int = 28, canvas: int = RTS_CANVAS) -> np.ndarray:
    """RTS: rotate by +-45 degrees, scale by 0.7-1.2, place at a random position inside a larger canvas.

    In pixels about the centres, the digit point q lands at p = s R q + t in the canvas; the sampler needs the
    inverse, q = R^-1 (p - t) / s. In normalised coordinates (q = q_n in_size/2, p = p_n canvas/2) that is the affine
    map q_n = A p_n + b with A = (canvas / in_size) R^-1 / s and b = -A t_n, t_n = 2 t / canvas. The translation
    is uniform per axis within the room the scaled digit leaves: |t| <= (canvas - s in_size) / 2.
    """
    angles = np.deg2rad(rng.uniform(-RTS_MAX_DEGREES, RTS_MAX_DEGREES, n))
    scales = rng.uniform(*RTS_SCALE, n)
    room = (canvas - scales * in_size) / 2  # pixels of free space on each side
    t_n = rng.uniform(-1.0, 1.0, (n, 2)) * (room / (canvas / 2))[:, None]
    a = (canvas / in_size) / scales[:, None, None] * _rotation(-angles)
    b = -np.einsum("nij,nj->ni", a, t_n)
    return np.concatenate([a, b[:, :, None]], axis=2)


def homography_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(N, 3, 3) homographies H with H (src_k, 1) ~ (dst_k, 1) for four point pairs per sample (N, 4, 2).

    Fixing H[2, 2] = 1, each pair gives two linear equations in the other eight entries (the direct linear
    transform): u = (h0 x + h1 y + h2) / (h6 x + h7 y + 1), and likewise v with h3, h4, h5.
    """
    n = len(src)
    x, y = src[..., 0], src[..., 1]
    u, v = dst[..., 0], dst[..., 1]
    zero, one = np.zeros_like(x), np.ones_like(x)
    rows_u = np.stack([x, y, one, zero, zero, zero, -u * x, -u * y], -1)  # (N, 4, 8)
    rows_v = np.stack([zero, zero, zero, x, y, one, -v * x, -v * y], -1)
    a = np.concatenate([rows_u, rows_v], axis=1)  # (N, 8, 8)
    rhs = np.concatenate([u, v], axis=1)  # (N, 8)
    h = np.linalg.solve(a, rhs[..., None])[..., 0]
    return np.concatenate([h, np.ones((n, 1))], axis=1).reshape(n, 3, 3)


def p_homography(rng: np.random.Generator, n: int, size: int = 28) -> np.ndarray:
    """P: shrink the digit to 0.75 of the frame and move each of its four corners by Gaussian noise.

    The image corner q_k (normalised: (+-1, +-1)) appears at p_k = 0.75 q_k + noise in the output; the sampler
    needs the map from output to input, the homography taking each p_k back to q_k.
    """
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    moved = P_SCALE * corners + rng.normal(0.0, P_CORNER_STD / (size / 2), (n, 4, 2))
    return homography_from_points(moved, np.broadcast_to(corners, (n, 4, 2)))


def _tps_kernel(r2: np.ndarray) -> np.ndarray:
    """The thin-plate radial basis U(r) = r^2 log r^2 (0 at r = 0), from squared distances."""
    return np.where(r2 > 0, r2 * np.log(np.maximum(r2, 1e-30)), 0.0)


def e_grid(rng: np.random.Generator, n: int, size: int = 28) -> np.ndarray:
    """E: an elastic warp, as a (N, size, size, 2) sampling grid from a thin-plate spline.

    Control points p_k on a 4x4 grid over the 0.75-scaled digit are moved by Gaussian noise to p'_k; the spline
    f(p) = a0 + A p + sum_k w_k U(|p - p'_k|) is fitted through f(p'_k) = p_k / 0.75 (output -> input) by solving
    the standard (K + P) system, then evaluated at every output pixel centre. It is one more grid generator in
    front of the same F.grid_sample.
    """
    lin = np.linspace(-1, 1, E_POINTS)
    src = np.stack(np.meshgrid(lin, lin, indexing="xy"), -1).reshape(-1, 2)  # (K, 2) points of the input
    k = len(src)
    dst = E_SCALE * src + rng.normal(0.0, E_POINT_STD / (size / 2), (n, k, 2))  # where they land in the output
    kernel = _tps_kernel(((dst[:, :, None, :] - dst[:, None, :, :]) ** 2).sum(-1))  # (N, K, K)
    affine = np.concatenate([np.ones((n, k, 1)), dst], axis=2)  # (N, K, 3)
    system = np.zeros((n, k + 3, k + 3))
    system[:, :k, :k] = kernel
    system[:, :k, k:] = affine
    system[:, k:, :k] = affine.transpose(0, 2, 1)
    rhs = np.zeros((n, k + 3, 2))
    rhs[:, :k] = src
    coef = np.linalg.solve(system, rhs)  # (N, K + 3, 2): radial weights, then a0, A
    centres = (2 * np.arange(size) + 1) / size - 1  # the align_corners=False pixel centres
    pts = np.stack(np.meshgrid(centres, centres, indexing="xy"), -1).reshape(-1, 2)  # (P, 2) as (x, y)
    radial = _tps_kernel(((pts[None, :, None, :] - dst[:, None, :, :]) ** 2).sum(-1))  # (N, P, K)
    basis = np.concatenate([radial, np.ones((n, len(pts), 1)), np.broadcast_to(pts, (n, len(pts), 2))], axis=2)
    return (basis @ coef).reshape(n, size, size, 2)


def distort(images, kind: str, rng: np.random.Generator):
    """Apply fresh random distortions of ``kind`` to ``images`` (an array (N, 1, 28, 28) on any device).

    Returns the distorted images (N, 1, S, S) on the same device and dtype (S = 42 for RTS, else 28). The random
    parameters are drawn in NumPy from ``rng`` (so the same seed gives the same distortions on every device) and
    the warp runs through scratchattn's grid generators and sampler, without recording a graph.
    """
    xp = backend.get_array_module(images)
    n, c = images.shape[:2]
    size = distorted_size(kind)
    dtype = images.dtype

    def put(a):
        return sa.tensor(xp.asarray(np.ascontiguousarray(a, dtype=dtype)))

    with sa.no_grad():
        if kind == "R":
            grid = F.affine_grid(put(r_theta(rng, n)), (n, c, size, size), align_corners=False)
        elif kind == "RTS":
            grid = F.affine_grid(put(rts_theta(rng, n)), (n, c, size, size), align_corners=False)
        elif kind == "P":
            grid = F.projective_grid(put(p_homography(rng, n)), (n, c, size, size), align_corners=False)
        elif kind == "E":
            grid = put(e_grid(rng, n, size))
        else:
            raise ValueError(f"distort: kind must be one of {DISTORTIONS}; got {kind!r}")
        return F.grid_sample(sa.tensor(images), grid, align_corners=False).data


def distorted_test_set(data: Dataset, kind: str, copies: int = TEST_COPIES):
    """The test set distorted ``copies`` fixed ways (same seed for every run): images and labels, on the CPU."""
    rng = np.random.default_rng(TEST_DISTORTION_SEED)
    xs = [distort(data.x_test, kind, rng) for _ in range(copies)]
    return np.concatenate(xs), np.tile(data.y_test, copies)


# =================================================================================================================
# training
# =================================================================================================================


def epoch_rng(seed: int, epoch: int, stream: int = 0) -> np.random.Generator:
    """The NumPy generator of one epoch: a function of (seed, epoch) only, which is what makes resume exact."""
    return np.random.default_rng([seed, epoch, stream])


class Run:
    """One model under training: the model, its optimiser and scheduler, and the history of its metrics."""

    def __init__(self, name: str, label: str, model, optimizer, scheduler):
        self.name, self.label = name, label
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        # Per epoch: train_loss, train_error (running averages over the epoch's batches), lr; per evaluation:
        # test_epoch (after how many epochs) and test_error.
        self.history = {"train_loss": [], "train_error": [], "lr": [], "test_epoch": [], "test_error": []}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.history = {k: [float(v) for v in state["history"][k]] for k in self.history}
        self.history["test_epoch"] = [int(v) for v in self.history["test_epoch"]]


def count_parameters(model) -> int:
    return int(sum(p.size for p in model.parameters()))


def to_device(array: np.ndarray, device: str):
    return backend.to_device(np.ascontiguousarray(array), device)


def batches(n: int, batch_size: int, rng: np.random.Generator | None, limit: int | None = None):
    """Index arrays of the minibatches of one pass over n items (shuffled by ``rng`` unless it is None)."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    starts = list(range(0, n, batch_size))[:limit]
    return [order[s: s + batch_size] for s in starts]


def cross_entropy_step(run: Run, x, y) -> tuple[float, float]:
    """One optimisation step of ``run`` on the batch (x, y); returns (loss, error rate) of the batch."""
    run.model.train()
    logits = run.model(sa.tensor(x))
    loss = F.cross_entropy(logits, sa.tensor(y))
    run.optimizer.zero_grad()
    loss.backward()
    run.optimizer.step()
    predicted = backend.to_numpy(logits.data.argmax(axis=1))
    return float(loss.item()), float((predicted != backend.to_numpy(y)).mean())


def predict(model, x, batch_size: int = 256, inspect=None) -> np.ndarray:
    """Class predictions (N,) for the images x (on the model's device), in eval mode without a graph.

    ``inspect(model, x_batch)``, when given, is called after each batch's forward (to read what a module kept,
    such as the spatial transformer's ``last_theta``).
    """
    model.eval()
    out = []
    with sa.no_grad():
        for s in range(0, len(x), batch_size):
            xb = x[s: s + batch_size]
            out.append(backend.to_numpy(model(sa.tensor(xb)).data.argmax(axis=1)))
            if inspect is not None:
                inspect(model, xb)
    model.train()
    return np.concatenate(out)


def progress_bar(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="batch", dynamic_ncols=True, leave=True)


def base_config(args, data: Dataset) -> dict:
    """The settings every example's checkpoint must share with the run that resumes it (examples add theirs)."""
    return {"seed": args.seed, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
            "distortion": args.distortion, "data": data.source, "train_images": len(data.x_train),
            "smoke": args.smoke, "device": args.device}


def train(args, runs: list[Run], config: dict, x_train, y_train, x_test, y_test,
          batch_limit: int | None = None) -> float | None:
    """Train every run for ``args.epochs`` epochs on freshly distorted batches; returns the seconds it took.

    All runs see the same batches (the same digits, the same distortions), one step each per batch. The test set
    (already distorted, on the device) is scored every ``args.eval_every`` epochs and after the last one. A checkpoint
    is written after every epoch; with ``args.resume`` training continues from it. Returns None when stopped
    early by ``--stop-after`` (the run is then to be resumed).
    """
    start_epoch, seconds = 0, 0.0
    if args.resume:
        start_epoch, seconds = load_checkpoint(args.out, config, runs)
        print(f"resumed from {os.path.join(args.out, CHECKPOINT_NAME)} after epoch {start_epoch}")
    xp = backend.get_array_module(x_train)
    n_batches = len(batches(len(x_train), args.batch_size, None, batch_limit))
    bar = progress_bar((args.epochs - start_epoch) * n_batches, not args.no_progress, "train")
    try:
        for epoch in range(start_epoch, args.epochs):
            t0 = time.perf_counter()
            rng = epoch_rng(args.seed, epoch)
            sa.manual_seed(int(np.random.SeedSequence([args.seed, epoch]).generate_state(1)[0]))  # dropout masks
            sums = {r.name: np.zeros(2) for r in runs}
            count = 0
            for idx in batches(len(x_train), args.batch_size, rng, batch_limit):
                idx_dev = xp.asarray(idx)
                xb = distort(x_train[idx_dev], args.distortion, rng)
                yb = y_train[idx_dev]
                for r in runs:
                    loss, err = cross_entropy_step(r, xb, yb)
                    sums[r.name] += np.array([loss, err]) * len(idx)
                count += len(idx)
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, **{f"{r.name}_loss": f"{sums[r.name][0] / count:.3f}" for r in runs})
            for r in runs:
                r.history["train_loss"].append(float(sums[r.name][0] / count))
                r.history["train_error"].append(float(sums[r.name][1] / count))
                r.history["lr"].append(float(r.optimizer.param_groups[0]["lr"]))
                r.scheduler.step()
            if (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs:
                for r in runs:
                    r.history["test_epoch"].append(epoch + 1)
                    r.history["test_error"].append(error_rate(r.model, x_test, y_test))
            seconds += time.perf_counter() - t0
            save_checkpoint(args.out, epoch + 1, config, runs, seconds)
            if args.stop_after is not None and epoch + 1 == args.stop_after and epoch + 1 < args.epochs:
                bar.close()
                print(f"stopped after epoch {epoch + 1} (--stop-after); continue with --resume")
                return None
    finally:
        bar.close()
    return seconds


def train_all(args, runs: list[Run], config: dict, data: Dataset, x_test, y_test, batch_limit):
    """Print the setting and the parameter counts, then :func:`train`; returns (seconds or None, test set on the
    device) so that an example can score and draw on the same arrays."""
    x_test_dev = to_device(x_test, args.device)
    print(f"{data}; test: {len(x_test)} distorted ({args.distortion}); device {args.device}; "
          f"{args.epochs} epochs of batch {args.batch_size}")
    for r in runs:
        print(f"  {r.label}: {count_parameters(r.model):,} parameters")
    seconds = train(args, runs, config, to_device(data.x_train, args.device), to_device(data.y_train, args.device),
                    x_test_dev, y_test, batch_limit)
    return seconds, x_test_dev


def common_summary(args, data: Dataset, x_test, seconds: float, started: float, figures: list[str]) -> dict:
    """The fields every example's summary.json shares (each example adds its own numbers)."""
    return {
        "distortion": args.distortion,
        "epochs": args.epochs,
        "seconds": round(seconds, 2),
        "device": args.device,
        "seed": args.seed,
        "data": data.source,
        "train_images": len(data.x_train),
        "test_images": len(x_test),
        "batch_size": args.batch_size,
        "lr": args.lr,
        "smoke": args.smoke,
        "wall_seconds_this_process": round(time.perf_counter() - started, 2),
        "figures": [os.path.basename(f) for f in figures],
    }


def error_rate(model, x, y: np.ndarray, inspect=None) -> float:
    """Fraction of the images x (on the model's device) whose predicted class differs from y (NumPy)."""
    return float((predict(model, x, inspect=inspect) != y).mean())


# =================================================================================================================
# checkpoint and resume
# =================================================================================================================


def save_checkpoint(out: str, epoch: int, config: dict, runs: list[Run], seconds: float) -> None:
    """Write everything a resumed run needs after ``epoch`` completed epochs (atomic: sa.save renames)."""
    sa.save({"epoch": epoch, "seconds": seconds, "config": json.dumps(config, sort_keys=True),
             "runs": {r.name: r.state_dict() for r in runs}}, os.path.join(out, CHECKPOINT_NAME))


def load_checkpoint(out: str, config: dict, runs: list[Run]) -> tuple[int, float]:
    """Restore ``runs`` from the checkpoint in ``out``; returns (completed epochs, seconds spent so far).

    The checkpoint must come from a run with the same settings (a different --epochs would change the learning
    rate schedule, a different seed the data order): otherwise it is refused with the differences listed.
    """
    path = os.path.join(out, CHECKPOINT_NAME)
    if not os.path.isfile(path):
        raise SystemExit(f"--resume: no checkpoint at {path}; run without --resume first")
    ckpt = sa.load(path)
    saved = json.loads(ckpt["config"])
    if saved != config:
        diff = ", ".join(f"{k}: {saved.get(k)!r} there, {config.get(k)!r} now"
                         for k in sorted(set(saved) | set(config)) if saved.get(k) != config.get(k))
        raise SystemExit(f"--resume: the checkpoint in {out} was made with other settings ({diff})")
    for r in runs:
        r.load_state_dict(ckpt["runs"][r.name])
    return int(ckpt["epoch"]), float(ckpt["seconds"])


# =================================================================================================================
# figures and summary
# =================================================================================================================


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: str, name: str) -> str:
    path = os.path.join(out, name)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return path


def plot_curves(runs: list[Run], out: str, name: str = "training_curves.png", title: str = "") -> str:
    """Training loss and train/test error of every run, per epoch."""
    plt = pyplot()
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 3.6))
    for r in runs:
        epochs = np.arange(1, len(r.history["train_loss"]) + 1)
        (line,) = ax_loss.plot(epochs, r.history["train_loss"], label=r.label)
        ax_err.plot(epochs, 100 * np.asarray(r.history["train_error"]), color=line.get_color(), alpha=0.5,
                    linestyle="--", label=f"{r.label} train")
        ax_err.plot(r.history["test_epoch"], 100 * np.asarray(r.history["test_error"]), color=line.get_color(),
                    marker="o", label=f"{r.label} test")
    ax_loss.set(xlabel="epoch", ylabel="training loss (cross-entropy)", yscale="log")
    ax_err.set(xlabel="epoch", ylabel="error %", yscale="log")
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, out, name)


def write_summary(out: str, summary: dict) -> str:
    path = os.path.join(out, SUMMARY_NAME)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)
    return path


def smoke_note(args) -> str:
    return "  (--smoke: a few batches only; these numbers mean nothing)" if args.smoke else ""


def percent(x: float) -> str:
    return f"{100 * x:.2f}%"

