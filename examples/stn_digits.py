"""Spatial Transformer Networks on distorted digits: a CNN against the same CNN behind a spatial transformer.

This reproduces the distorted-MNIST experiment of Jaderberg et al. (2015), section 4.1, on the handwritten digits
bundled with scikit-learn (or a local MNIST with ``--mnist``). Every training batch is distorted afresh (R: rotation;
RTS: rotation, scale and translation in a 42x42 canvas; P: projective; E: elastic) with scratchattn's own grid
generators and sampler; the test set is distorted five fixed ways per digit. Both models see the same batches.
The ST-CNN's localisation network learns, with no supervision of the transform, to undo the distortion: the
figure ``rectified.png`` shows distorted test digits beside what the ST-CNN's classifier actually sees.

    python examples/stn_digits.py                         # the default budget (a few minutes on a 2-core CPU)
    python examples/stn_digits.py --device cuda --epochs 100
    python examples/stn_digits.py --distortion R --seed 1

Outputs in ``--out`` (default ``runs/stn_digits``): ``summary.json``, ``rectified.png``, ``training_curves.png``
and ``checkpoint.npz`` (after every epoch; ``--resume`` continues from it and reaches the same weights).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402 - the sibling module, importable once the path is set

import scratchattn as sa  # noqa: E402
from scratchattn import backend, optim  # noqa: E402
from scratchattn.models import CNN, STCNN  # noqa: E402

# The default budget: chosen (measured, see docs/results.md) so that the run finishes in under 5 minutes on a
# 2-core CPU and the ST-CNN's advantage on RTS is clear. Longer runs (--epochs) shrink the gap, as the CNN
# catches up.
DEFAULT_EPOCHS = 30
DEFAULT_BATCH = 64
DEFAULT_LR = 0.05  # SGD with momentum 0.9 and cosine decay: trains the CNN baseline properly (Adam leaves it behind)
LOC_LR_SCALE = 0.1  # the localisation net at a tenth of the rate, else the transform may collapse to a fixed zoom
COLLAPSE_SPREAD = 0.01  # a spread of the learned transforms below this means one transform for every image

DESCRIPTION = __doc__.split("\n\n")[0]


def parse_args(argv=None):
    p = C.build_parser("stn_digits", DESCRIPTION, DEFAULT_EPOCHS, DEFAULT_BATCH, DEFAULT_LR)
    p.add_argument("--loc-lr-scale", type=float, default=LOC_LR_SCALE,
                   help="learning rate of the localisation network relative to --lr")
    p.add_argument("--widths", default="32,64", help="channels of the two convolutions of the backbone")
    p.add_argument("--hidden", type=int, default=128, help="width of the backbone's hidden linear layer")
    p.add_argument("--loc-widths", default="20,20", help="channels of the localisation network's convolutions")
    p.add_argument("--loc-hidden", type=int, default=50, help="width of the localisation network's hidden layer")
    args = C.finish_args(p.parse_args(argv))
    for name in ("widths", "loc_widths"):
        try:
            value = tuple(int(v) for v in getattr(args, name).split(","))
        except ValueError:
            value = ()
        if len(value) != 2 or min(value) < 1:
            p.error(f"--{name.replace('_', '-')} must be two positive ints like 32,64; got {getattr(args, name)!r}")
        setattr(args, name, value)
    return args


# =================================================================================================================
# models and their optimisers
# =================================================================================================================


def build_runs(args, in_size: int) -> list[C.Run]:
    """The CNN baseline and the ST-CNN, each with SGD (momentum 0.9) and a cosine schedule to 0 over the epochs;
    the ST-CNN's transformer (its localisation network) is a parameter group at ``loc_lr_scale`` times the rate."""
    sa.manual_seed(args.seed)
    cnn = CNN(in_size=in_size, widths=args.widths, hidden=args.hidden).to(args.device)
    sa.manual_seed(args.seed)
    stcnn = STCNN(in_size=in_size, out_size=28, widths=args.widths, hidden=args.hidden, loc_widths=args.loc_widths,
                  loc_hidden=args.loc_hidden).to(args.device)

    cnn_opt = optim.SGD(cnn.parameters(), lr=args.lr, momentum=0.9)
    st_opt = optim.SGD(
        [
            {"params": list(stcnn.backbone.parameters())},
            {"params": list(stcnn.transformer.parameters()), "lr": args.lr * args.loc_lr_scale},
        ],
        lr=args.lr,
        momentum=0.9,
    )
    return [
        C.Run("cnn", "CNN", cnn, cnn_opt, optim.lr_scheduler.CosineAnnealingLR(cnn_opt, T_max=args.epochs)),
        C.Run("stcnn", "ST-CNN", stcnn, st_opt, optim.lr_scheduler.CosineAnnealingLR(st_opt, T_max=args.epochs)),
    ]


def run_config(args, data: C.Dataset) -> dict:
    """The settings a checkpoint must share with the run that resumes it."""
    return {**C.base_config(args, data), "example": "stn_digits", "loc_lr_scale": args.loc_lr_scale,
            "widths": list(args.widths), "hidden": args.hidden, "loc_widths": list(args.loc_widths),
            "loc_hidden": args.loc_hidden}


# =================================================================================================================
# evaluation: test error, learned transforms
# =================================================================================================================


def learned_transforms(stcnn, x_test) -> np.ndarray:
    """The ST-CNN's transforms theta (N, 2, 3) of every test image (x_test on the model's device)."""
    thetas = []
    C.predict(stcnn, x_test, inspect=lambda model, _xb: thetas.append(np.array(model.last_theta, np.float64)))
    return np.concatenate(thetas)


def transform_stats(theta: np.ndarray) -> dict:
    """How much the learned transforms vary across test images (zero spread = a collapsed transformer)."""
    a = theta[:, :, :2]
    zoom = np.sqrt(np.abs(np.linalg.det(a)))  # area scale of the output frame inside the input
    angle = np.degrees(np.arctan2(a[:, 1, 0] - a[:, 0, 1], a[:, 0, 0] + a[:, 1, 1]))
    spread = float(theta.reshape(len(theta), -1).std(axis=0).mean())
    return {"theta_spread": spread, "theta_mean": theta.mean(axis=0).round(4).tolist(),
            "zoom_mean": float(zoom.mean()), "zoom_std": float(zoom.std()),
            "rotation_deg_std": float(angle.std()), "collapsed": bool(spread < COLLAPSE_SPREAD)}


# =================================================================================================================
# figures
# =================================================================================================================


def frame_outline(theta: np.ndarray, size: int) -> np.ndarray:
    """The corners of the transformer's output frame, mapped into input pixel coordinates (5 points, closed)."""
    corners = np.array([[-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1], [-1, -1, 1]], dtype=np.float64)
    xy = corners @ theta.T  # normalised input coordinates (align_corners=False)
    return ((xy + 1) * size - 1) / 2


def plot_rectified(model, x_test, y_test, out: str, device: str, per_class: int = 2) -> str:
    """Distorted test digits (with the region the transformer samples outlined) beside the ST-CNN's outputs."""
    plt = C.pyplot()
    picks = np.concatenate([np.flatnonzero(y_test == k)[:per_class] for k in range(10)])
    picks = picks[: 10 * per_class]
    xb = C.to_device(x_test[picks], device)
    model.eval()
    with sa.no_grad():
        rectified = backend.to_numpy(model.rectify(sa.tensor(xb)).data)
        thetas = np.array(model.last_theta, dtype=np.float64)
    model.train()
    inputs = x_test[picks]
    cols = len(picks) // 2 if len(picks) > 10 else len(picks)
    rows = 2 * ((len(picks) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.45 * rows))
    axes = np.atleast_2d(axes)
    for k in range(len(picks)):
        block, col = divmod(k, cols)
        ax_in, ax_out = axes[2 * block, col], axes[2 * block + 1, col]
        ax_in.imshow(inputs[k, 0], cmap="gray", vmin=0, vmax=1)
        outline = frame_outline(thetas[k], inputs.shape[-1])
        ax_in.plot(outline[:, 0], outline[:, 1], color="tab:orange", linewidth=1)
        ax_in.set_xlim(-0.5, inputs.shape[-1] - 0.5)
        ax_in.set_ylim(inputs.shape[-1] - 0.5, -0.5)
        ax_out.imshow(rectified[k, 0], cmap="gray", vmin=0, vmax=1)
    for k, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if (k // (2 * cols)) * cols + k % cols >= len(picks):  # panels past the last pair stay blank
            ax.set_axis_off()
    for block in range(rows // 2):
        axes[2 * block, 0].set_ylabel("input", fontsize=8)
        axes[2 * block + 1, 0].set_ylabel("ST output", fontsize=8)
    fig.suptitle("Distorted test digits (orange: the region the transformer samples) and the ST-CNN's rectified "
                 "view", fontsize=9)
    return C.save_figure(fig, out, "rectified.png")


# =================================================================================================================
# main
# =================================================================================================================


def main(argv=None) -> dict | None:
    started = time.perf_counter()
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    data, x_test, y_test, batch_limit = C.prepare_data(args)

    runs = build_runs(args, C.distorted_size(args.distortion))
    seconds, x_test_dev = C.train_all(args, runs, run_config(args, data), data, x_test, y_test, batch_limit)
    if seconds is None:
        return None

    t0 = time.perf_counter()
    errors = {r.name: r.history["test_error"][-1] for r in runs}  # scored after the last epoch
    stcnn = runs[1].model
    stats = transform_stats(learned_transforms(stcnn, x_test_dev))
    figures = [plot_rectified(stcnn, x_test, y_test, args.out, args.device),
               C.plot_curves(runs, args.out, title=f"{args.distortion} digits, {args.epochs} epochs")]
    seconds += time.perf_counter() - t0

    summary = {
        **C.common_summary(args, data, x_test, seconds, started, figures),
        "cnn_test_error": errors["cnn"],
        "stcnn_test_error": errors["stcnn"],
        "loc_lr_scale": args.loc_lr_scale,
        "cnn_params": C.count_parameters(runs[0].model),
        "stcnn_params": C.count_parameters(stcnn),
        "transforms": stats,
    }
    C.write_summary(args.out, summary)

    print()
    print(f"Test error on {args.distortion}-distorted digits ({len(x_test)} images), {args.epochs} epochs, "
          f"{seconds:.0f} s on {args.device}:{C.smoke_note(args)}")
    print(f"  {'model':<8} {'params':>9} {'test error':>11}")
    for r in runs:
        print(f"  {r.label:<8} {C.count_parameters(r.model):>9,} {C.percent(errors[r.name]):>11}")
    verdict = "COLLAPSED to one transform for every image" if stats["collapsed"] else "varies with the input"
    print(f"  learned transforms: spread {stats['theta_spread']:.3f}, zoom {stats['zoom_mean']:.2f} +- "
          f"{stats['zoom_std']:.2f}, rotation std {stats['rotation_deg_std']:.1f} deg ({verdict})")
    print(f"  figures and summary.json in {args.out}")
    return summary


if __name__ == "__main__":
    main()
