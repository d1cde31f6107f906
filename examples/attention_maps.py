"""Where attention looks: a small CNN with a CBAM block and the same CNN with a self-attention block, trained on
distorted digits, and their attention maps drawn over test digits.

Both networks are ``conv-bn-relu-pool -> attention block -> conv-bn-relu-pool -> conv-bn-relu -> global average
pool -> linear``; the attention block sits on the 21x21 feature map of the 42x42 RTS digits (the digit rotated,
scaled and placed somewhere in a larger canvas, so there is something to find):

* CBAM (Woo et al., 2018) gates channels, then pixels: its spatial gate sigmoid(conv7x7([max_c, mean_c])) is a
  map in [0, 1] of where the block lets features through;
* SelfAttention2d (SAGAN; Zhang et al., 2019) mixes into each pixel a weighted sum over all pixels; the map drawn
  is the attention each pixel *receives*, averaged over all query pixels, and ``gamma`` says how much of the
  block's output the network chose to use.

    python examples/attention_maps.py                      # the default budget (under 2 minutes on a 2-core CPU)
    python examples/attention_maps.py --device cuda --epochs 40

Outputs in ``--out`` (default ``runs/attention_maps``): ``summary.json``, ``attention_maps.png``,
``training_curves.png`` and ``checkpoint.npz`` (``--resume`` continues from it).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402 - the sibling module, importable once the path is set

import scratchattn as sa  # noqa: E402
from scratchattn import backend, nn, optim  # noqa: E402
from scratchattn import functional as F  # noqa: E402

DEFAULT_EPOCHS = 20
DEFAULT_BATCH = 64
DEFAULT_LR = 0.05
WIDTHS = (16, 32, 64)

DESCRIPTION = __doc__.split("\n\n")[0]


def conv_bn_relu(c_in: int, c_out: int, kernel: int) -> list:
    return [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class AttentionNet(nn.Module):
    """stem (conv5-bn-relu-pool) -> ``attention`` -> conv3-bn-relu-pool -> conv3-bn-relu -> mean over pixels -> linear.

    Shapes: (N, 1, S, S) -> logits (N, 10); the attention block sees (N, 16, S/2, S/2).
    """

    def __init__(self, attention: nn.Module, widths=WIDTHS, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn_relu(1, widths[0], 5), nn.MaxPool2d(2))
        self.attention = attention
        self.head = nn.Sequential(
            *conv_bn_relu(widths[0], widths[1], 3), nn.MaxPool2d(2), *conv_bn_relu(widths[1], widths[2], 3),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[2], num_classes),
        )

    def forward(self, x):
        return self.head(self.attention(self.stem(x)))


def parse_args(argv=None):
    p = C.build_parser("attention_maps", DESCRIPTION, DEFAULT_EPOCHS, DEFAULT_BATCH, DEFAULT_LR, distortion="RTS")
    return C.finish_args(p.parse_args(argv))


def build_runs(args) -> list[C.Run]:
    runs = []
    for name, label, block in (("cbam", "CBAM", lambda: nn.CBAM(WIDTHS[0], reduction=4)),
                               ("selfattn", "SelfAttention2d", lambda: nn.SelfAttention2d(WIDTHS[0], reduction=4))):
        sa.manual_seed(args.seed)
        model = AttentionNet(block()).to(args.device)
        opt = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
        runs.append(C.Run(name, label, model, opt, optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)))
    return runs


# =================================================================================================================
# the maps
# =================================================================================================================


def cbam_spatial_gate(block: nn.CBAM, features) -> np.ndarray:
    """CBAM's spatial gate (N, h, w) for the block input ``features``.

    nn.CBAM returns only its output, so the two gates are recomputed here from the block's own children with the
    formulas of its docstring: s_c = sigmoid(mlp(avg) + mlp(max)); x1 = x s_c; s_p = sigmoid(conv([max_c x1,
    mean_c x1])).
    """
    n, c = features.shape[:2]
    channel_gate = F.sigmoid(block.mlp(F.mean(features, dim=(2, 3))) + block.mlp(F.max(features, dim=(2, 3))))
    x1 = features * F.reshape(channel_gate, (n, c, 1, 1))
    pooled = F.cat([F.max(x1, dim=1, keepdim=True), F.mean(x1, dim=1, keepdim=True)], dim=1)
    return backend.to_numpy(F.sigmoid(block.spatial(pooled)).data)[:, 0]


def attention_maps(runs, x) -> dict:
    """Per run, a map (N, h, w) over the attention block's feature map for the images x (on the device)."""
    maps = {}
    for r in runs:
        model = r.model
        model.eval()
        with sa.no_grad():
            features = model.stem(sa.tensor(x))
            if isinstance(model.attention, nn.CBAM):
                maps[r.name] = cbam_spatial_gate(model.attention, features)
            else:
                model.attention(features)
                h, w = features.shape[2:]
                received = np.asarray(model.attention.last_attention).mean(axis=1)  # (N, h*w): mean over queries
                maps[r.name] = received.reshape(-1, h, w)
        model.train()
    return maps


def plot_maps(runs, x_test, y_test, maps: dict, out: str, per_row: int = 8) -> str:
    plt = C.pyplot()
    size = x_test.shape[-1]
    rows = 1 + len(runs)
    fig, axes = plt.subplots(rows, per_row, figsize=(1.45 * per_row, 1.55 * rows))
    for k in range(per_row):
        axes[0, k].imshow(x_test[k, 0], cmap="gray", vmin=0, vmax=1)
        axes[0, k].set_title(f"label {y_test[k]}", fontsize=7)
        for row, r in enumerate(runs, start=1):
            m = maps[r.name][k]
            axes[row, k].imshow(x_test[k, 0], cmap="gray", vmin=0, vmax=1)
            # The map covers the same field of view as the image: stretch it over the image's extent.
            axes[row, k].imshow(m, cmap="inferno", alpha=0.6, extent=(-0.5, size - 0.5, size - 0.5, -0.5),
                                vmin=m.min(), vmax=m.max())
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("input", fontsize=8)
    for row, r in enumerate(runs, start=1):
        axes[row, 0].set_ylabel(r.label, fontsize=7)
    fig.suptitle("CBAM's spatial gate and the attention each pixel receives in SelfAttention2d "
                 "(bright = more)", fontsize=9)
    return C.save_figure(fig, out, "attention_maps.png")


# =================================================================================================================
# main
# =================================================================================================================


def main(argv=None) -> dict | None:
    started = time.perf_counter()
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    data, x_test, y_test, batch_limit = C.prepare_data(args)

    runs = build_runs(args)
    config = {**C.base_config(args, data), "example": "attention_maps"}
    seconds, x_test_dev = C.train_all(args, runs, config, data, x_test, y_test, batch_limit)
    if seconds is None:
        return None

    t0 = time.perf_counter()
    errors = {r.name: r.history["test_error"][-1] for r in runs}
    shown = 8
    maps = attention_maps(runs, x_test_dev[:shown])
    figures = [plot_maps(runs, x_test[:shown], y_test[:shown], maps, args.out),
               C.plot_curves(runs, args.out, title=f"{args.distortion} digits, {args.epochs} epochs")]
    seconds += time.perf_counter() - t0
    gamma = float(backend.to_numpy(runs[1].model.attention.gamma.data)[0])

    summary = {
        **C.common_summary(args, data, x_test, seconds, started, figures),
        "cbam_test_error": errors["cbam"],
        "selfattn_test_error": errors["selfattn"],
        "cbam_params": C.count_parameters(runs[0].model),
        "selfattn_params": C.count_parameters(runs[1].model),
        "selfattn_gamma": gamma,
    }
    C.write_summary(args.out, summary)

    print()
    print(f"Test error on {args.distortion}-distorted digits ({len(x_test)} images), {args.epochs} epochs, "
          f"{seconds:.0f} s on {args.device}:{C.smoke_note(args)}")
    print(f"  {'model':<16} {'params':>8} {'test error':>11}")
    for r in runs:
        print(f"  {r.label:<16} {C.count_parameters(r.model):>8,} {C.percent(errors[r.name]):>11}")
    print(f"  SelfAttention2d gamma (how much attention output is mixed in): {gamma:.3f}")
    print(f"  figures and summary.json in {args.out}")
    return summary


if __name__ == "__main__":
    main()
