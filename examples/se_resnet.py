"""Squeeze-and-Excitation: SE-ResNet-20 against the plain ResNet-20 on distorted digits, and what the gates learn.

Both networks (the CIFAR layout: a 3x3 stem and three stages of three basic blocks, widths 16, 32 and 64) are
trained side by side on the same batches of distorted digits (default R: rotations of up to 90 degrees; any of
R, RTS, P, E with ``--distortion``; a local MNIST with ``--mnist``). The example prints the test error and the
parameter count of each, and draws the picture of Hu et al. (2018), figure 6: the mean excitation of every channel,
per class, at an early, a middle and the last stage. The paper found the early gates nearly the same for every
class (general features) and the later ones increasingly class-specific.

    python examples/se_resnet.py                         # the default budget (a few minutes on a 2-core CPU)
    python examples/se_resnet.py --device cuda --epochs 30

Outputs in ``--out`` (default ``runs/se_resnet``): ``summary.json``, ``excitation.png``, ``training_curves.png``
and ``checkpoint.npz`` (``--resume`` continues from it).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402 - the sibling module, importable once the path is set

import scratchattn as sa  # noqa: E402
from scratchattn import optim  # noqa: E402
from scratchattn.models import resnet20, se_resnet20  # noqa: E402

DEFAULT_EPOCHS = 8
DEFAULT_BATCH = 64
DEFAULT_LR = 0.05  # SGD, momentum 0.9, weight decay 5e-4, cosine decay: the usual CIFAR ResNet recipe
WEIGHT_DECAY = 5e-4

DESCRIPTION = __doc__.split("\n\n")[0]


def parse_args(argv=None):
    p = C.build_parser("se_resnet", DESCRIPTION, DEFAULT_EPOCHS, DEFAULT_BATCH, DEFAULT_LR, distortion="R")
    p.add_argument("--reduction", type=int, default=16, help="SE reduction ratio r (hidden width C / r)")
    args = C.finish_args(p.parse_args(argv))
    if args.reduction < 1:
        p.error(f"--reduction must be >= 1; got {args.reduction}")
    return args


def build_runs(args) -> list[C.Run]:
    runs = []
    for name, label, build in (("resnet20", "ResNet-20", lambda: resnet20(in_channels=1)),
                               ("se_resnet20", "SE-ResNet-20",
                                lambda: se_resnet20(reduction=args.reduction, in_channels=1))):
        sa.manual_seed(args.seed)
        model = build().to(args.device)
        opt = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=WEIGHT_DECAY)
        runs.append(C.Run(name, label, model, opt, optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)))
    return runs


# =================================================================================================================
# the excitation picture
# =================================================================================================================


def chosen_se_blocks(model) -> dict:
    """The SE block ending each stage, named as in the paper's figure (SE_<stage>_<block>): early, middle, last."""
    chosen = {}
    for s, stage in enumerate(model.stages()):
        blocks = list(stage)
        chosen[f"SE_{s + 1}_{len(blocks)}"] = blocks[-1].se
    return chosen


def excitation_by_class(model, x_test, y_test, num_classes: int = 10) -> dict:
    """Mean excitation (num_classes, C) of each chosen SE block over the test images of each class."""
    blocks = chosen_se_blocks(model)
    sums = {name: None for name in blocks}
    seen = [0]  # images scored so far: predict() goes through x_test in order

    def collect(_model, xb):
        labels = y_test[seen[0]: seen[0] + len(xb)]
        seen[0] += len(xb)
        for name, se in blocks.items():
            s = np.asarray(se.last_excitation, dtype=np.float64)  # (n, C)
            if sums[name] is None:
                sums[name] = np.zeros((num_classes, s.shape[1]))
            np.add.at(sums[name], labels, s)

    C.predict(model, x_test, inspect=collect)
    counts = np.bincount(y_test, minlength=num_classes).astype(np.float64)
    return {name: total / np.maximum(counts, 1)[:, None] for name, total in sums.items()}


def class_specificity(mean_exc: np.ndarray) -> float:
    """Mean over channels of the standard deviation across classes of the mean excitation: 0 = class-agnostic."""
    return float(mean_exc.std(axis=0).mean())


def plot_excitation(by_class: dict, out: str) -> str:
    plt = C.pyplot()
    fig, axes = plt.subplots(1, len(by_class), figsize=(4.2 * len(by_class), 3.4), sharey=True)
    colors = plt.get_cmap("tab10")
    for ax, (name, mean_exc) in zip(np.atleast_1d(axes), by_class.items()):
        channels = np.arange(mean_exc.shape[1])
        for k in range(mean_exc.shape[0]):
            ax.plot(channels, mean_exc[k], color=colors(k), linewidth=0.9, label=f"class {k}")
        ax.plot(channels, mean_exc.mean(axis=0), color="black", linewidth=1.8, label="all")
        ax.set(title=f"{name}  (class spread {class_specificity(mean_exc):.3f})", xlabel="channel index",
               ylim=(0, 1))
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("mean excitation")
    np.atleast_1d(axes)[-1].legend(fontsize=6, ncol=2, loc="lower right")
    fig.suptitle("SE-ResNet-20: mean excitation per channel, per class, at the end of each stage", fontsize=10, y=1.03)
    return C.save_figure(fig, out, "excitation.png")


# =================================================================================================================
# main
# =================================================================================================================


def main(argv=None) -> dict | None:
    started = time.perf_counter()
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    data, x_test, y_test, batch_limit = C.prepare_data(args)

    runs = build_runs(args)
    config = {**C.base_config(args, data), "example": "se_resnet", "reduction": args.reduction}
    seconds, x_test_dev = C.train_all(args, runs, config, data, x_test, y_test, batch_limit)
    if seconds is None:
        return None

    t0 = time.perf_counter()
    errors = {r.name: r.history["test_error"][-1] for r in runs}
    by_class = excitation_by_class(runs[1].model, x_test_dev, y_test)
    figures = [plot_excitation(by_class, args.out),
               C.plot_curves(runs, args.out, title=f"{args.distortion} digits, {args.epochs} epochs")]
    seconds += time.perf_counter() - t0

    summary = {
        **C.common_summary(args, data, x_test, seconds, started, figures),
        "resnet20_test_error": errors["resnet20"],
        "se_resnet20_test_error": errors["se_resnet20"],
        "resnet20_params": C.count_parameters(runs[0].model),
        "se_resnet20_params": C.count_parameters(runs[1].model),
        "reduction": args.reduction,
        "excitation_class_spread": {name: class_specificity(m) for name, m in by_class.items()},
    }
    C.write_summary(args.out, summary)

    print()
    print(f"Test error on {args.distortion}-distorted digits ({len(x_test)} images), {args.epochs} epochs, "
          f"{seconds:.0f} s on {args.device}:{C.smoke_note(args)}")
    print(f"  {'model':<13} {'params':>9} {'test error':>11}")
    for r in runs:
        print(f"  {r.label:<13} {C.count_parameters(r.model):>9,} {C.percent(errors[r.name]):>11}")
    spread = ", ".join(f"{k} {v:.3f}" for k, v in summary["excitation_class_spread"].items())
    print(f"  class-specificity of the excitations (std across classes, mean over channels): {spread}")
    print(f"  figures and summary.json in {args.out}")
    return summary


if __name__ == "__main__":
    main()
