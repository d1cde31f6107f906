"""The benchmark cases: each headline op (and the training steps of the examples' networks), its shapes, the bytes
it must move, its target, and the competitors it runs against.

A :class:`Case` names one measurement (``grid_sample bilinear zeros NHWC fwd+bwd N=8 C=64 128x128->128x128``) and
knows how to build, for an :class:`Env` (CPU or GPU, with or without PyTorch), a set of zero-argument callables:

* ``scratchattn`` - the library's op (its Numba kernels on the CPU, its CUDA kernels through CuPy on the GPU);
* ``torch``       - the same computation in PyTorch, on the same data and the same device, when torch is importable;
* ``twin``        - the library's primitive twin where one exists (``F.squeeze_excitation_simple``).

"fwd" calls run the forward only, with no graph recorded by either library (their inputs do not require a
gradient); "fwd+bwd" calls run the forward and the backward of a fixed upstream gradient into fresh ``.grad``
fields; "step" calls run one optimisation step (forward, cross-entropy, backward, SGD with momentum).

The floor (``floor_bytes``) counts each input read once and each output written once, in float32: what no
implementation can avoid moving. SE's fused backward reads g and x to finish ds before it can write any element of
dx, so it moves 4 tensor sizes against the floor's 3 (its forward 3 against 2): its best possible fraction of the
floor is below 100%.

The PyTorch versions of the models are written here, layer for layer the same as ``scratchattn.models.stcnn`` and
started from the same weights (copied by parameter name), so their first losses agree; that is checked when the
case is built, so a benchmark never times two different networks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import scratchattn as sa
from scratchattn import backend
from scratchattn import functional as F

DTYPE = np.float32
ITEM = np.dtype(DTYPE).itemsize


class Unavailable(Exception):  # noqa: N818 - reads as "the case is unavailable: <why>"
    """A case cannot run here (its op is not written yet, or the device lacks something); the message says why."""


# =================================================================================================================
# the environment: device, array module, optional torch
# =================================================================================================================


class Env:
    """Where the cases run: ``device`` "cpu" or "cuda", the array module, and PyTorch (None when not importable)."""

    def __init__(self, device: str = "cpu", torch=None, seed: int = 0):
        self.device = device
        self.xp = backend.cupy_module() if device == "cuda" else np
        self.torch = torch
        self.torch_device = device
        self.seed = seed
        if device == "cuda":
            cupy = self.xp
            self.sync = lambda: cupy.cuda.Device().synchronize()
            torch_sync = torch.cuda.synchronize if torch is not None else (lambda: None)
            self.sync_all = lambda: (cupy.cuda.Device().synchronize(), torch_sync())
        else:
            self.sync = self.sync_all = None

    def rng(self, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, salt])

    def array(self, a: np.ndarray):
        """A float32 array (or int array) of ``a``'s values on the environment's device."""
        a = np.ascontiguousarray(a)
        return self.xp.asarray(a) if self.device == "cuda" else a

    def tensor(self, a: np.ndarray, requires_grad: bool = False):
        return sa.tensor(self.array(a), requires_grad=requires_grad)

    def torch_tensor(self, a: np.ndarray, requires_grad: bool = False, channels_last: bool = False):
        """A torch tensor of ``a``'s values on the device; ``channels_last`` stores an NCHW tensor as NHWC."""
        t = self.torch.from_numpy(np.ascontiguousarray(a)).to(self.torch_device)
        if channels_last:
            t = t.contiguous(memory_format=self.torch.channels_last)
        return t.requires_grad_(requires_grad)


# =================================================================================================================
# cases
# =================================================================================================================


@dataclass
class Built:
    """What a case's ``build`` returns: the competitors and the bytes the op must move (None: no floor)."""

    variants: dict[str, Callable[[], object]]
    floor_bytes: int | None = None
    note: str = ""


@dataclass
class Case:
    """One row of the benchmark table. ``target``: the largest acceptable scratchattn/torch time ratio (CPU);
    ``twin_target``: the largest acceptable scratchattn/twin ratio; ``gpu_target``: the largest acceptable
    CuPy/torch-CUDA ratio; ``gpu_floor_target``: the smallest acceptable fraction of the floor on the GPU."""

    op: str
    variant: str
    direction: str  # "fwd", "fwd+bwd" or "step"
    shape: str
    build: Callable[[Env], Built] = field(repr=False)
    target: float | None = None
    twin_target: float | None = None
    gpu_target: float | None = None
    gpu_floor_target: float | None = None  # the smallest acceptable fraction of the copy-bandwidth floor (GPU)
    size: int = 0  # output elements, for the scaling series

    @property
    def name(self) -> str:
        return " ".join(part for part in (self.op, self.variant, self.direction, self.shape) if part)


def _leaves_fwd_bwd(run_sa, leaves, upstream):
    """A scratchattn fwd+bwd call: reset the leaves' gradients, run, backpropagate the fixed upstream gradient."""

    def call():
        for t in leaves:
            t.grad = None
        run_sa().backward(upstream)

    return call


def _torch_fwd_bwd(run_torch, leaves, upstream):
    def call():
        for t in leaves:
            t.grad = None
        run_torch().backward(upstream)

    return call


# -- the floors: bytes each op must move, inputs read once and outputs written once ------------------------------


def affine_grid_floor_bytes(n: int, h: int, w: int, bwd: bool) -> int:
    """fwd: read theta (N x 6), write the grid (N H W 2); bwd: read the grid's gradient, write theta's."""
    return (6 * n + 2 * n * h * w) * ITEM * (2 if bwd else 1)


def grid_sample_floor_bytes(n: int, c: int, h: int, w: int, h_out: int, w_out: int, bwd: bool) -> int:
    """fwd: read input and grid, write output; bwd: read output gradient, input and grid, write both gradients."""
    inp, grid, out = n * c * h * w, n * h_out * w_out * 2, n * c * h_out * w_out
    elems = inp + grid + out
    if bwd:
        elems += out + inp + grid + inp + grid
    return elems * ITEM


def se_floor_bytes(n: int, c: int, h: int, w: int, bwd: bool) -> int:
    """fwd: read x, write y (2 sizes); bwd: read g and x, write dx (3 more). The weights are negligible."""
    return (5 if bwd else 2) * n * c * h * w * ITEM


# -- affine_grid ------------------------------------------------------------------------------------------------


def random_theta(rng: np.random.Generator, n: int, spread: float = 1.0) -> np.ndarray:
    """Affine maps near the identity: rotation up to 20 degrees, scale 0.8-1.25, shift up to 0.15 (times spread)."""
    angle = np.radians(rng.uniform(-20, 20, n)) * spread
    scale = np.exp(rng.uniform(np.log(0.8), np.log(1.25), n) * spread)
    shift = rng.uniform(-0.15, 0.15, (n, 2)) * spread
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    theta = np.stack([np.stack([cos, -sin, shift[:, 0]], 1), np.stack([sin, cos, shift[:, 1]], 1)], 1)
    return theta.astype(DTYPE)


def numpy_affine_grid(theta: np.ndarray, h: int, w: int) -> np.ndarray:
    """grid (N, H, W, 2) for align_corners=False, computed here so the sampler cases do not depend on F.affine_grid."""
    xs = (2 * np.arange(w) + 1) / w - 1
    ys = (2 * np.arange(h) + 1) / h - 1
    base = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None], np.ones((h, w))), -1)  # (H, W, 3)
    return np.einsum("hwk,njk->nhwj", base, theta.astype(np.float64)).astype(DTYPE)


def affine_grid_case(n: int, h: int, w: int, direction: str, target: float | None = None) -> Case:
    def build(env: Env) -> Built:
        rng = env.rng(1)
        theta_np = random_theta(rng, n)
        upstream_np = rng.standard_normal((n, h, w, 2), dtype=DTYPE)
        size = (n, 1, h, w)
        bwd = direction == "fwd+bwd"
        theta = env.tensor(theta_np, requires_grad=bwd)
        variants = {}
        if bwd:
            upstream = env.array(upstream_np)
            variants["scratchattn"] = _leaves_fwd_bwd(lambda: F.affine_grid(theta, size), [theta], upstream)
        else:
            variants["scratchattn"] = lambda: F.affine_grid(theta, size)
        if env.torch is not None:
            tf = env.torch.nn.functional
            theta_t = env.torch_tensor(theta_np, requires_grad=bwd)
            if bwd:
                upstream_t = env.torch_tensor(upstream_np)
                variants["torch"] = _torch_fwd_bwd(lambda: tf.affine_grid(theta_t, size, align_corners=False),
                                                   [theta_t], upstream_t)
            else:
                variants["torch"] = lambda: tf.affine_grid(theta_t, size, align_corners=False)
        return Built(variants, affine_grid_floor_bytes(n, h, w, bwd))

    return Case("affine_grid", "", direction, f"N={n} {h}x{w}", build, target=target, size=n * h * w * 2)


# -- grid_sample ------------------------------------------------------------------------------------------------


def _grid_sample_op():
    if not hasattr(F, "grid_sample"):
        raise Unavailable("F.grid_sample is not written yet (scratchattn/functional/grid_sample.py)")
    return F.grid_sample


def grid_sample_case(n: int, c: int, h: int, w: int, h_out: int, w_out: int, mode: str, padding: str, layout: str,
                     direction: str, target: float | None = None, gpu_target: float | None = None) -> Case:
    def build(env: Env) -> Built:
        grid_sample = _grid_sample_op()
        rng = env.rng(2)
        x_nchw = rng.standard_normal((n, c, h, w), dtype=DTYPE)
        # Transforms a little wider than the identity, so some points fall outside and the padding mode matters.
        grid_np = numpy_affine_grid(random_theta(rng, n, spread=1.3), h_out, w_out)
        g_nchw = rng.standard_normal((n, c, h_out, w_out), dtype=DTYPE)
        nhwc = layout == "NHWC"
        x_np = x_nchw.transpose(0, 2, 3, 1) if nhwc else x_nchw
        g_np = g_nchw.transpose(0, 2, 3, 1) if nhwc else g_nchw
        bwd = direction == "fwd+bwd"
        x, grid = env.tensor(x_np, requires_grad=bwd), env.tensor(grid_np, requires_grad=bwd)

        def run_sa():
            return grid_sample(x, grid, mode=mode, padding_mode=padding, align_corners=False, layout=layout)

        variants = {"scratchattn": _leaves_fwd_bwd(run_sa, [x, grid], env.array(g_np)) if bwd else run_sa}
        if env.torch is not None:
            tf = env.torch.nn.functional
            x_t = env.torch_tensor(x_nchw, requires_grad=bwd, channels_last=nhwc)
            grid_t = env.torch_tensor(grid_np, requires_grad=bwd)
            g_t = env.torch_tensor(g_nchw, channels_last=nhwc)

            def run_torch():
                return tf.grid_sample(x_t, grid_t, mode=mode, padding_mode=padding, align_corners=False)

            variants["torch"] = _torch_fwd_bwd(run_torch, [x_t, grid_t], g_t) if bwd else run_torch
        return Built(variants, grid_sample_floor_bytes(n, c, h, w, h_out, w_out, bwd))

    shape = f"N={n} C={c} {h}x{w}->{h_out}x{w_out}"
    return Case("grid_sample", f"{mode} {padding} {layout}", direction, shape, build, target=target,
                gpu_target=gpu_target, size=n * c * h_out * w_out)


# -- squeeze-excitation -----------------------------------------------------------------------------------------


def se_case(n: int, c: int, h: int, w: int, layout: str, direction: str, reduction: int = 16,
            target: float | None = None, twin_target: float | None = None, gpu_target: float | None = None) -> Case:
    hidden = max(1, c // reduction)

    def build(env: Env) -> Built:
        rng = env.rng(3)
        x_nchw = rng.standard_normal((n, c, h, w), dtype=DTYPE)
        g_nchw = rng.standard_normal((n, c, h, w), dtype=DTYPE)
        bound1, bound2 = 1 / math.sqrt(c), 1 / math.sqrt(hidden)
        params_np = [rng.uniform(-bound1, bound1, (hidden, c)), rng.uniform(-bound1, bound1, hidden),
                     rng.uniform(-bound2, bound2, (c, hidden)), rng.uniform(-bound2, bound2, c)]
        params_np = [p.astype(DTYPE) for p in params_np]
        nhwc = layout == "NHWC"
        x_np = x_nchw.transpose(0, 2, 3, 1) if nhwc else x_nchw
        g_np = g_nchw.transpose(0, 2, 3, 1) if nhwc else g_nchw
        bwd = direction == "fwd+bwd"
        x = env.tensor(x_np, requires_grad=bwd)
        params = [env.tensor(p, requires_grad=bwd) for p in params_np]
        upstream = env.array(g_np)

        def variant(op):
            def run():
                return op(x, *params, layout=layout)
            return _leaves_fwd_bwd(run, [x, *params], upstream) if bwd else run

        variants = {"scratchattn": variant(F.squeeze_excitation), "twin": variant(F.squeeze_excitation_simple)}
        if env.torch is not None:
            torch, tf = env.torch, env.torch.nn.functional
            x_t = env.torch_tensor(x_nchw, requires_grad=bwd, channels_last=nhwc)
            params_t = [env.torch_tensor(p, requires_grad=bwd) for p in params_np]
            g_t = env.torch_tensor(g_nchw, channels_last=nhwc)

            def run_torch():
                w1, b1, w2, b2 = params_t
                s = torch.sigmoid(tf.linear(tf.relu(tf.linear(x_t.mean((2, 3)), w1, b1)), w2, b2))
                return x_t * s[:, :, None, None]

            variants["torch"] = _torch_fwd_bwd(run_torch, [x_t, *params_t], g_t) if bwd else run_torch
        return Built(variants, se_floor_bytes(n, c, h, w, bwd))

    shape = f"N={n} C={c} {h}x{w}"
    return Case("squeeze_excitation", f"fused {layout}", direction, shape, build, target=target,
                twin_target=twin_target, gpu_target=gpu_target, size=n * c * h * w)


# -- scaled dot-product attention -------------------------------------------------------------------------------


def sdpa_case(batch: tuple[int, ...], length: int, dim: int, direction: str) -> Case:
    def build(env: Env) -> Built:
        rng = env.rng(4)
        shape = (*batch, length, dim)
        q_np, k_np, v_np, g_np = (rng.standard_normal(shape, dtype=DTYPE) for _ in range(4))
        bwd = direction == "fwd+bwd"
        q, k, v = (env.tensor(a, requires_grad=bwd) for a in (q_np, k_np, v_np))

        def run_sa():
            return F.scaled_dot_product_attention(q, k, v)

        variants = {"scratchattn": _leaves_fwd_bwd(run_sa, [q, k, v], env.array(g_np)) if bwd else run_sa}
        if env.torch is not None:
            tf = env.torch.nn.functional
            q_t, k_t, v_t = (env.torch_tensor(a, requires_grad=bwd) for a in (q_np, k_np, v_np))

            def run_torch():
                return tf.scaled_dot_product_attention(q_t, k_t, v_t)

            variants["torch"] = _torch_fwd_bwd(run_torch, [q_t, k_t, v_t], env.torch_tensor(g_np)) if bwd \
                else run_torch
        return Built(variants, None, note="compute-bound (three batched matrix products): no bandwidth floor")

    batch_text = " ".join(f"{k}={v}" for k, v in zip(("B", "heads"), batch))
    return Case("attention", "sdpa", direction, f"{batch_text} L={length} d={dim}", build)


# -- training steps of the examples' networks -------------------------------------------------------------------

# The main example's settings (examples/stn_digits.py, RTS distortion): 42x42 canvas, 28x28 transformer output,
# batch 64, backbone widths (32, 64) and hidden 128, localisation widths (20, 20) and hidden 50, SGD momentum 0.9.
STEP_BATCH, STEP_IN, STEP_OUT = 64, 42, 28
STEP_LR = 1e-4  # small, so that thousands of steps on one batch stay far from overflow


def _conv_side(size: int) -> int:
    for _ in range(2):
        size = (size - 4) // 2
    return size


def torch_models(torch):
    """PyTorch twins of ``scratchattn.models.stcnn``'s CNN and STCNN, with the same parameter names."""
    tnn, tf = torch.nn, torch.nn.functional

    def features(in_channels, widths):
        return tnn.Sequential(tnn.Conv2d(in_channels, widths[0], 5), tnn.ReLU(), tnn.MaxPool2d(2),
                              tnn.Conv2d(widths[0], widths[1], 5), tnn.ReLU(), tnn.MaxPool2d(2))

    class CNN(tnn.Module):
        def __init__(self, in_size, widths=(32, 64), hidden=128, classes=10):
            super().__init__()
            side = _conv_side(in_size)
            self.features = features(1, widths)
            self.classifier = tnn.Sequential(tnn.Flatten(), tnn.Linear(widths[1] * side * side, hidden), tnn.ReLU(),
                                             tnn.Linear(hidden, classes))

        def forward(self, x):
            return self.classifier(self.features(x))

    class Transformer(tnn.Module):
        def __init__(self, in_size, out_size, widths=(20, 20), hidden=50):
            super().__init__()
            side = _conv_side(in_size)
            self.out_size = out_size
            self.localization = tnn.Sequential(features(1, widths), tnn.Flatten(),
                                               tnn.Linear(widths[1] * side * side, hidden), tnn.ReLU(),
                                               tnn.Linear(hidden, 6))

        def forward(self, x):
            theta = self.localization(x).view(-1, 2, 3)
            grid = tf.affine_grid(theta, (x.shape[0], x.shape[1], self.out_size, self.out_size), align_corners=False)
            return tf.grid_sample(x, grid, align_corners=False)

    class STCNN(tnn.Module):
        def __init__(self, in_size, out_size):
            super().__init__()
            self.transformer = Transformer(in_size, out_size)
            self.backbone = CNN(out_size)

        def forward(self, x):
            return self.backbone(self.transformer(x))

    return CNN, STCNN


def _copy_weights(model, torch_model, torch) -> None:
    """Load scratchattn's weights into the torch twin, by parameter name (the names are the same by design)."""
    theirs = dict(torch_model.named_parameters())
    ours = dict(model.named_parameters())
    if sorted(theirs) != sorted(ours):
        raise RuntimeError(f"the torch twin's parameters {sorted(theirs)} differ from scratchattn's {sorted(ours)}")
    with torch.no_grad():
        for name, p in ours.items():
            if tuple(theirs[name].shape) != tuple(p.shape):
                raise RuntimeError(f"parameter {name}: torch shape {tuple(theirs[name].shape)} != {p.shape}")
            theirs[name].copy_(torch.from_numpy(np.ascontiguousarray(backend.to_numpy(p.data))))


def train_step_case(model_name: str, target: float | None = None) -> Case:
    def build(env: Env) -> Built:
        from scratchattn import optim

        try:
            from scratchattn.models.stcnn import CNN, STCNN
        except ImportError as exc:
            raise Unavailable(f"scratchattn.models.stcnn is not importable ({exc})") from exc
        if model_name == "ST-CNN":
            _grid_sample_op()
        rng = env.rng(5)
        x_np = rng.uniform(0, 1, (STEP_BATCH, 1, STEP_IN, STEP_IN)).astype(DTYPE)
        y_np = rng.integers(0, 10, STEP_BATCH)
        sa.manual_seed(env.seed)
        model = CNN(in_size=STEP_IN) if model_name == "CNN" else STCNN(in_size=STEP_IN, out_size=STEP_OUT)
        model.to(env.device)
        model.train()
        opt = optim.SGD(model.parameters(), lr=STEP_LR, momentum=0.9)
        x, y = env.tensor(x_np), sa.tensor(env.array(y_np))

        def sa_step():
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss

        variants = {"scratchattn": sa_step}
        if env.torch is not None:
            torch = env.torch
            torch_cnn, torch_stcnn = torch_models(torch)
            twin = torch_cnn(STEP_IN) if model_name == "CNN" else torch_stcnn(STEP_IN, STEP_OUT)
            twin.to(env.torch_device).train()
            _copy_weights(model, twin, torch)
            twin_opt = torch.optim.SGD(twin.parameters(), lr=STEP_LR, momentum=0.9)
            x_t, y_t = env.torch_tensor(x_np), torch.from_numpy(y_np).to(env.torch_device)

            def torch_step():
                loss = torch.nn.functional.cross_entropy(twin(x_t), y_t)
                twin_opt.zero_grad()
                loss.backward()
                twin_opt.step()
                return loss

            # Same network, same weights, same batch: the first losses must agree, or the comparison is void.
            ours, theirs = float(sa_step().item()), float(torch_step().item())
            if not math.isclose(ours, theirs, rel_tol=1e-3, abs_tol=1e-4):
                raise RuntimeError(f"{model_name}: first-step losses differ (scratchattn {ours}, torch {theirs}); "
                                   "the torch twin is not the same network")
            variants["torch"] = torch_step
        return Built(variants, None, note="one SGD step: forward, cross-entropy, backward, update")

    shape = f"batch={STEP_BATCH} {STEP_IN}x{STEP_IN}" + (f"->{STEP_OUT}x{STEP_OUT}" if model_name == "ST-CNN" else "")
    return Case("train_step", model_name, "step", shape, build, target=target)


# =================================================================================================================
# the case lists
# =================================================================================================================

GS_SHAPES = {  # (n, c, h, w, h_out, w_out)
    "medium": (32, 16, 64, 64, 64, 64),
    "large": (8, 64, 128, 128, 128, 128),
    "mnist": (256, 1, 28, 28, 28, 28),
}


def _grid_sample_target(shape: str, mode: str, padding: str, layout: str) -> float | None:
    """The CPU targets of issue 8: bilinear NHWC <= 0.5x, NCHW <= 1.0x, the MNIST-sized call <= 1.5x."""
    if mode != "bilinear" or padding != "zeros":
        return None
    if shape == "mnist":
        return 1.5
    return 0.5 if layout == "NHWC" else 1.0


def all_cases() -> list[Case]:
    """Every case of the main table, in the order it is printed."""
    cases: list[Case] = []
    for n, h, w in ((32, 64, 64), (8, 128, 128), (256, 28, 28)):
        cases.append(affine_grid_case(n, h, w, "fwd"))
        cases.append(affine_grid_case(n, h, w, "fwd+bwd", target=0.5))
    for shape_name, dims in GS_SHAPES.items():
        # Every mode x padding at the medium shape; the target configurations (bilinear, zeros) at all three.
        modes = ("bilinear", "nearest", "bicubic") if shape_name == "medium" else ("bilinear",)
        paddings = ("zeros", "reflection") if shape_name == "medium" else ("zeros",)
        for mode in modes:
            for padding in paddings:
                for layout in ("NCHW", "NHWC"):
                    for direction in ("fwd", "fwd+bwd"):
                        target = _grid_sample_target(shape_name, mode, padding, layout)
                        gpu_target = 1.2 if (mode, padding) == ("bilinear", "zeros") else None
                        case = grid_sample_case(*dims, mode, padding, layout, direction, target, gpu_target)
                        if shape_name == "large" and gpu_target is not None:
                            case.gpu_floor_target = 0.6  # issue 8: 60% of copy bandwidth at the large shapes
                        cases.append(case)
    for n, c, h, w in ((32, 256, 28, 28), (8, 64, 128, 128)):
        for layout in ("NCHW", "NHWC"):
            for direction, target in (("fwd", 1.0), ("fwd+bwd", 0.5)):
                case = se_case(n, c, h, w, layout, direction, target=target, twin_target=1 / 1.5, gpu_target=1.2)
                if (n, c, h, w) == (8, 64, 128, 128):
                    case.gpu_floor_target = 0.6
                cases.append(case)
    for batch, length, dim in (((32,), 64, 64), ((8, 4), 256, 32)):
        for direction in ("fwd", "fwd+bwd"):
            cases.append(sdpa_case(batch, length, dim, direction))
    cases.append(train_step_case("CNN"))
    cases.append(train_step_case("ST-CNN", target=1.5))
    return cases


def filter_cases(cases: list[Case], patterns: list[str] | None) -> list[Case]:
    """The cases whose name contains any of the patterns (case-insensitive); all of them when there is none.

    Inside one pattern, ``&`` joins substrings that must all appear: ``"grid_sample&NHWC&fwd+bwd"``.
    """
    if not patterns:
        return cases
    alternatives = [[part.strip().lower() for part in p.split("&") if part.strip()] for p in patterns]
    return [c for c in cases if any(all(part in c.name.lower() for part in parts) for parts in alternatives)]


# -- scaling: time against output size over two decades ---------------------------------------------------------

SCALING_SIDES = (16, 32, 64, 128, 256)
SCALING_SIDES_GPU = (64, 128, 256, 512, 1024)  # a GPU needs far more work before launch overhead stops dominating


def scaling_series(sides=SCALING_SIDES) -> dict[str, list[Case]]:
    """Series of one op at growing output sizes (same input size as output, N=8): the plot of docs/benchmarks.md."""
    return {
        "grid_sample bilinear NHWC fwd+bwd (C=16)": [
            grid_sample_case(8, 16, s, s, s, s, "bilinear", "zeros", "NHWC", "fwd+bwd") for s in sides],
        "grid_sample bilinear NCHW fwd (C=16)": [
            grid_sample_case(8, 16, s, s, s, s, "bilinear", "zeros", "NCHW", "fwd") for s in sides],
        "squeeze_excitation fused NCHW fwd+bwd (C=64)": [
            se_case(8, 64, s, s, "NCHW", "fwd+bwd", reduction=16) for s in sides],
        # N=64: the grid is 2 numbers a pixel, so a smaller batch would stay in the regime of fixed per-call cost.
        "affine_grid fwd+bwd (N=64)": [affine_grid_case(64, s, s, "fwd+bwd") for s in sides],
    }


# -- peak memory of forward+backward (NumPy path) ---------------------------------------------------------------


@dataclass
class MemoryCase:
    """``setup()`` builds the inputs and returns ``(run, leaves)``: ``run()`` does one forward+backward and returns
    the arrays the caller ends up holding (the output and the input gradients), whose total is what the op must
    allocate; ``leaves`` are the inputs whose ``.grad`` the harness clears between runs."""

    name: str
    setup: Callable[[], tuple[Callable[[], list], list]]


def memory_cases(device: str = "cpu") -> list[MemoryCase]:
    """The peak-memory cases, their inputs built on ``device``."""

    def on(a, requires_grad=False):
        return sa.tensor(backend.to_device(a, device), requires_grad=requires_grad)

    def grid_sample_setup(layout):
        def setup():
            grid_sample = _grid_sample_op()
            rng = np.random.default_rng(6)
            n, c, h, w = 8, 64, 128, 128
            shape = (n, c, h, w) if layout == "NCHW" else (n, h, w, c)
            x = on(rng.standard_normal(shape, dtype=DTYPE), requires_grad=True)
            grid = on(numpy_affine_grid(random_theta(rng, n, 1.3), h, w), requires_grad=True)
            g = backend.to_device(rng.standard_normal(shape, dtype=DTYPE), device)

            def run():
                y = grid_sample(x, grid, layout=layout)
                y.backward(g)
                return [y.data, x.grad, grid.grad]

            return run, [x, grid]
        return setup

    def se_setup(op, layout):
        def setup():
            rng = np.random.default_rng(7)
            n, c, h, w, hidden = 8, 64, 128, 128, 4
            shape = (n, c, h, w) if layout == "NCHW" else (n, h, w, c)
            x = on(rng.standard_normal(shape, dtype=DTYPE), requires_grad=True)
            params = [on((rng.standard_normal(s) * 0.1).astype(DTYPE), requires_grad=True)
                      for s in ((hidden, c), (hidden,), (c, hidden), (c,))]
            g = backend.to_device(rng.standard_normal(shape, dtype=DTYPE), device)

            def run():
                y = op(x, *params, layout=layout)
                y.backward(g)
                return [y.data, x.grad] + [p.grad for p in params]

            return run, [x, *params]
        return setup

    def affine_setup():
        rng = np.random.default_rng(8)
        theta = on(random_theta(rng, 32), requires_grad=True)
        g = backend.to_device(rng.standard_normal((32, 128, 128, 2), dtype=DTYPE), device)

        def run():
            grid = F.affine_grid(theta, (32, 1, 128, 128))
            grid.backward(g)
            return [grid.data, theta.grad]

        return run, [theta]

    return [
        MemoryCase("affine_grid fwd+bwd N=32 128x128", affine_setup),
        MemoryCase("grid_sample bilinear zeros NCHW fwd+bwd N=8 C=64 128x128", grid_sample_setup("NCHW")),
        MemoryCase("grid_sample bilinear zeros NHWC fwd+bwd N=8 C=64 128x128", grid_sample_setup("NHWC")),
        MemoryCase("squeeze_excitation fused NCHW fwd+bwd N=8 C=64 128x128", se_setup(F.squeeze_excitation, "NCHW")),
        MemoryCase("squeeze_excitation fused NHWC fwd+bwd N=8 C=64 128x128", se_setup(F.squeeze_excitation, "NHWC")),
        MemoryCase("squeeze_excitation twin NCHW fwd+bwd N=8 C=64 128x128",
                   se_setup(F.squeeze_excitation_simple, "NCHW")),
    ]
