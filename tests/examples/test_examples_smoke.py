"""The examples never rot: each runs end to end with ``--smoke`` (a few batches of everything) in a subprocess and
writes its summary.json and figures; an interrupted and resumed run ends with bitwise the weights of an
uninterrupted one; and the pieces the examples share (distortion maps, data, checkpoints) do what they say."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import scratchattn as sa

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES_DIR = os.path.join(REPO, "examples")
sys.path.insert(0, EXAMPLES_DIR)

import _common as C  # noqa: E402 - examples/_common.py, importable once the path is set

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Per example: the keys summary.json must hold (the error rates among them) and the figures it must write.
EXAMPLES = {
    "stn_digits": (
        {"distortion", "cnn_test_error", "stcnn_test_error", "epochs", "seconds", "device", "transforms"},
        ("cnn_test_error", "stcnn_test_error"),
        ("rectified.png", "training_curves.png"),
    ),
    "se_resnet": (
        {"distortion", "resnet20_test_error", "se_resnet20_test_error", "resnet20_params", "se_resnet20_params",
         "epochs", "seconds", "device", "excitation_class_spread"},
        ("resnet20_test_error", "se_resnet20_test_error"),
        ("excitation.png", "training_curves.png"),
    ),
    "attention_maps": (
        {"distortion", "cbam_test_error", "selfattn_test_error", "selfattn_gamma", "epochs", "seconds", "device"},
        ("cbam_test_error", "selfattn_test_error"),
        ("attention_maps.png", "training_curves.png"),
    ),
}


def run_example(name: str, out, *extra: str, expect_ok: bool = True, env: dict | None = None):
    cmd = [sys.executable, os.path.join(EXAMPLES_DIR, f"{name}.py"), "--smoke", "--no-progress", "--out", str(out),
           *extra]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, **(env or {})})
    if expect_ok:
        assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def checkpoint_arrays(out) -> dict:
    """Every array of every model in the checkpoint of ``out``, by run and parameter name."""
    ckpt = sa.load(os.path.join(out, C.CHECKPOINT_NAME))
    return {(run, key): np.asarray(value) for run, state in ckpt["runs"].items()
            for key, value in state["model"].items()}


# =================================================================================================================
# each example end to end
# =================================================================================================================


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_smoke_run_writes_summary_and_figures(name, tmp_path):
    keys, error_keys, figures = EXAMPLES[name]
    result = run_example(name, tmp_path)
    with open(tmp_path / C.SUMMARY_NAME) as f:
        summary = json.load(f)
    assert keys <= set(summary), f"summary.json lacks {sorted(keys - set(summary))}"
    assert summary["epochs"] == 1 and summary["device"] == "cpu" and summary["smoke"] is True
    for key in error_keys:
        assert 0.0 <= summary[key] <= 1.0, (key, summary[key])
        assert f"{100 * summary[key]:.2f}%" in result.stdout  # the printed table shows the same numbers
    assert summary["seconds"] > 0
    for figure in figures:
        path = tmp_path / figure
        assert path.is_file(), f"{figure} was not written"
        with open(path, "rb") as f:
            assert f.read(8) == PNG_MAGIC
        assert path.stat().st_size > 5000, f"{figure} is suspiciously small"
    assert (tmp_path / C.CHECKPOINT_NAME).is_file()


def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    run_example("stn_digits", whole, "--epochs", "2")
    stopped = run_example("stn_digits", split, "--epochs", "2", "--stop-after", "1")
    assert "stopped after epoch 1" in stopped.stdout
    assert not (split / C.SUMMARY_NAME).exists()
    assert sa.load(split / C.CHECKPOINT_NAME)["epoch"] == 1
    after_one = checkpoint_arrays(split)

    # A checkpoint made with other settings is refused, with the difference named, and left as it was.
    refused = run_example("stn_digits", split, "--epochs", "2", "--resume", "--seed", "1", expect_ok=False)
    assert refused.returncode != 0
    assert "other settings" in refused.stderr and "seed" in refused.stderr

    resumed = run_example("stn_digits", split, "--epochs", "2", "--resume")
    assert "resumed" in resumed.stdout
    expected, got = checkpoint_arrays(whole), checkpoint_arrays(split)
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=f"{key} differs after resume")
    # The second epoch did change the weights (the comparison above is not between two untouched models).
    assert any(not np.array_equal(after_one[k], expected[k]) for k in expected)
    with open(whole / C.SUMMARY_NAME) as f:
        summary_whole = json.load(f)
    with open(split / C.SUMMARY_NAME) as f:
        summary_split = json.load(f)
    for key in ("cnn_test_error", "stcnn_test_error", "transforms"):
        assert summary_split[key] == summary_whole[key], key


def test_smoke_run_through_the_cuda_kernels_matches_numba(tmp_path):
    """SCRATCHATTN_KERNELS=cuda-host runs the .cu kernels (grid sampling, affine grid) on the CPU: training
    through them must land where training through the Numba kernels does, to float32 rounding."""
    from scratchattn.kernels.cuda import host

    reason = host.unavailable_reason()
    if reason is not None:
        pytest.skip(f"cuda-host kernel path unavailable: {reason}")
    run_example("stn_digits", tmp_path / "numba", env={"SCRATCHATTN_KERNELS": "numba"})
    run_example("stn_digits", tmp_path / "cuda", env={"SCRATCHATTN_KERNELS": "cuda-host"})
    expected, got = checkpoint_arrays(tmp_path / "numba"), checkpoint_arrays(tmp_path / "cuda")
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, atol=1e-6, err_msg=str(key))


def test_resume_without_checkpoint_says_so(tmp_path):
    import stn_digits

    with pytest.raises(SystemExit, match="no checkpoint"):
        # --threads 0: leave this test process's thread pools as they are.
        stn_digits.main(["--smoke", "--no-progress", "--threads", "0", "--resume", "--out", str(tmp_path)])


# =================================================================================================================
# the shared pieces, in process
# =================================================================================================================


def apply_affine(theta: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ theta[:, :2].T + theta[:, 2]


class FixedRng:
    """Stands in for a Generator: uniform() returns its midpoint (or the given values), normal() zeros."""

    def __init__(self, uniform_values=None):
        self.uniform_values = list(uniform_values or [])

    def uniform(self, low, high, size=None):
        if self.uniform_values:
            return np.broadcast_to(np.asarray(self.uniform_values.pop(0), dtype=np.float64), size).copy()
        return np.full(size, (np.asarray(low) + np.asarray(high)) / 2.0)

    def normal(self, loc, scale, size):
        return np.full(size, float(loc))


def test_rts_theta_places_the_digit_where_it_says():
    """Rotation a, scale s and translation t: the digit's pixel q (from its centre) lands at s R(a) q + t."""
    angle, scale, shift = 30.0, 0.8, (0.5, -0.25)  # shift as fractions of the room left in the canvas
    rng = FixedRng([[angle], [scale], [shift]])
    theta = C.rts_theta(rng, 1)[0]
    room = (42 - scale * 28) / 2
    t = np.array(shift) * room  # pixels
    q = np.array([[5.0, -3.0], [0.0, 0.0], [-7.0, 2.0]])  # digit pixels, from the centre
    a = np.deg2rad(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    p = scale * q @ rot.T + t  # canvas pixels, from the centre
    back = apply_affine(theta, p / 21.0) * 14.0  # the sampler's map, in digit pixels
    np.testing.assert_allclose(back, q, atol=1e-12)


def test_rts_translation_stays_inside_the_canvas():
    theta = C.rts_theta(np.random.default_rng(0), 2000)
    # The digit's centre (input 0, 0) sits at p with A p + b = 0; it moves at most the room the scaled digit leaves.
    centres = -np.linalg.solve(theta[:, :, :2], theta[:, :, 2:])[..., 0]
    scales = 1.5 / np.sqrt(np.abs(np.linalg.det(theta[:, :, :2])))
    room = (42 - scales * 28) / 2 / 21
    assert np.all(np.abs(centres) <= room[:, None] + 1e-12)
    assert scales.min() >= 0.7 - 1e-9 and scales.max() <= 1.2 + 1e-9


def test_homography_from_points_maps_each_pair():
    rng = np.random.default_rng(1)
    src = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) + rng.normal(0, 0.1, (3, 4, 2))
    dst = 0.8 * src + rng.normal(0, 0.1, (3, 4, 2))
    h = C.homography_from_points(src, dst)
    uvw = np.concatenate([src, np.ones((3, 4, 1))], axis=2) @ h.transpose(0, 2, 1)
    np.testing.assert_allclose(uvw[..., :2] / uvw[..., 2:], dst, atol=1e-10)


def test_elastic_grid_without_noise_is_the_plain_zoom():
    grid = C.e_grid(FixedRng(), 2, 28)  # no noise: control points at 0.75 q, so the warp is p -> p / 0.75
    centres = (2 * np.arange(28) + 1) / 28 - 1
    expected = np.stack(np.meshgrid(centres, centres, indexing="xy"), -1) / C.E_SCALE
    np.testing.assert_allclose(grid[0], expected, atol=1e-9)
    np.testing.assert_allclose(grid[1], expected, atol=1e-9)


def test_epoch_rng_depends_on_seed_and_epoch_only():
    a = C.epoch_rng(3, 7).random(5)
    np.testing.assert_array_equal(a, C.epoch_rng(3, 7).random(5))
    assert not np.array_equal(a, C.epoch_rng(3, 8).random(5))
    assert not np.array_equal(a, C.epoch_rng(4, 7).random(5))


def test_batches_cover_every_index_once():
    parts = C.batches(10, 4, np.random.default_rng(0))
    assert [len(p) for p in parts] == [4, 4, 2]
    assert sorted(np.concatenate(parts).tolist()) == list(range(10))
    assert len(C.batches(10, 4, None, limit=2)) == 2


def test_identity_resize_matches_numpy_bilinear():
    """The 8x8 -> 28x28 upsampling of the bundled digits is the usual bilinear resize with clamped edges."""
    image = np.random.default_rng(2).random((1, 1, 8, 8)).astype(np.float64)
    out = C.resize_bilinear(image, 28)[0, 0]
    expected = np.zeros((28, 28))
    for i in range(28):
        y = min(max((i + 0.5) * 8 / 28 - 0.5, 0.0), 7.0)
        y0 = min(int(np.floor(y)), 6)
        for j in range(28):
            x = min(max((j + 0.5) * 8 / 28 - 0.5, 0.0), 7.0)
            x0 = min(int(np.floor(x)), 6)
            fy, fx = y - y0, x - x0
            expected[i, j] = ((1 - fy) * (1 - fx) * image[0, 0, y0, x0] + (1 - fy) * fx * image[0, 0, y0, x0 + 1]
                              + fy * (1 - fx) * image[0, 0, y0 + 1, x0] + fy * fx * image[0, 0, y0 + 1, x0 + 1])
    np.testing.assert_allclose(out, expected, atol=1e-12)


@pytest.mark.parametrize("kind", C.DISTORTIONS)
def test_distort_is_seeded_and_keeps_dtype(kind):
    images = np.random.default_rng(3).random((4, 1, 28, 28)).astype(np.float32)
    a = C.distort(images, kind, np.random.default_rng(5))
    b = C.distort(images, kind, np.random.default_rng(5))
    size = C.distorted_size(kind)
    assert a.shape == (4, 1, size, size) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, C.distort(images, kind, np.random.default_rng(6)))
    assert np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1 + 1e-6


def write_fake_mnist(path, n_train: int = 40, n_test: int = 20) -> None:
    rng = np.random.default_rng(7)
    np.savez(path, x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
             y_train=np.arange(n_train) % 10, x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
             y_test=np.arange(n_test) % 10)


def test_mnist_file_is_read_and_scaled(tmp_path):
    path = tmp_path / "mnist.npz"
    write_fake_mnist(path)
    data = C.load_mnist(str(path))
    assert data.x_train.shape == (40, 1, 28, 28) and data.x_test.shape == (20, 1, 28, 28)
    assert data.x_train.dtype == np.float32 and data.x_train.max() <= 1.0
    with np.load(path) as raw:
        np.testing.assert_array_equal(data.x_train[:, 0], raw["x_train"] / np.float32(255))
        np.testing.assert_array_equal(data.y_test, raw["y_test"])


def test_mnist_bad_files_are_refused_by_name(tmp_path):
    with pytest.raises(SystemExit, match="no file"):
        C.load_mnist(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(SystemExit, match="y_train"):
        C.load_mnist(str(tmp_path / "partial.npz"))
    np.savez(tmp_path / "shape.npz", x_train=np.zeros((2, 32, 32), np.uint8), y_train=np.zeros(2),
             x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.zeros(2))
    with pytest.raises(SystemExit, match="x_train must be"):
        C.load_mnist(str(tmp_path / "shape.npz"))


def test_smoke_run_on_a_local_mnist_file(tmp_path):
    path = tmp_path / "mnist.npz"
    write_fake_mnist(path)
    result = run_example("stn_digits", tmp_path / "out", "--mnist", str(path), "--distortion", "P")
    assert "MNIST" in result.stdout
    with open(tmp_path / "out" / C.SUMMARY_NAME) as f:
        summary = json.load(f)
    assert summary["train_images"] == 40 and summary["distortion"] == "P"
