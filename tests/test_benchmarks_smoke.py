"""Smoke test of ``python -m benchmarks`` and unit tests of its harness (timing, ratios, slopes, filters, report).

The benchmarks are not part of the test suite: only ``--quick`` on a tiny subset runs here, without PyTorch
(``--no-torch``; torch is never a test dependency), in a temporary folder, to show that the command works end to end
and writes a well-formed JSON record and markdown page. The numbers themselves are checked only for sanity.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # benchmarks/ is a folder of the checkout, not part of the installed package

from benchmarks import harness, ops, report  # noqa: E402


def test_quick_run_without_torch_writes_json_and_docs(tmp_path):
    docs = tmp_path / "benchmarks.md"
    command = [sys.executable, "-m", "benchmarks", "--quick", "--no-torch",
               "--filter", "affine_grid fwd N=32", "--filter", "squeeze_excitation&NCHW fwd N=32",
               "--out", str(tmp_path), "--docs", str(docs)]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr

    (path,) = tmp_path.glob("*-quick.json")
    results = json.loads(path.read_text())
    assert results["kind"] == "cpu" and results["quick"] is True
    assert results["torch_missing_reason"] == "--no-torch"
    names = [row["name"] for row in results["cases"]]
    assert names == ["affine_grid fwd N=32 64x64", "squeeze_excitation fused NCHW fwd N=32 C=256 28x28"], names
    for row in results["cases"]:
        assert "error" not in row and "unavailable" not in row, row
        assert "torch" not in row["timings"] and row["ratio_torch"] is None
        t = row["timings"]["scratchattn"]
        assert 0 < t["minimum"] <= t["median"] < 10, t
        assert row["floor_bytes"] > 0
    se = results["cases"][1]
    assert "twin" in se["timings"] and se["ratio_twin"] > 0
    assert results["bandwidth"]["floor_bytes_per_s"] > 1e8  # any machine copies faster than 100 MB/s
    assert results["threads"]["numba_threads"] == results["threads"]["threads"]

    text = docs.read_text()
    assert "| affine_grid fwd N=32 64x64 |" in text
    assert "| squeeze_excitation fused NCHW fwd N=32 C=256 28x28 |" in text
    assert "affine_grid fwd N=32 64x64" in out.stdout  # the console table

    # --render rebuilds the page from stored full runs only: a quick run is not one, a full run is.
    from benchmarks.__main__ import main

    rendered = tmp_path / "rendered.md"
    assert main(["--render", "--out", str(tmp_path), "--docs", str(rendered)]) == 0
    assert "No full CPU run stored yet" in rendered.read_text()
    results.update(quick=False, partial=False)
    (tmp_path / "full.json").write_text(json.dumps(results))
    assert main(["--render", "--out", str(tmp_path), "--docs", str(rendered)]) == 0
    assert "| affine_grid fwd N=32 64x64 |" in rendered.read_text()
    assert "From `benchmarks/results/full.json`" in rendered.read_text()


def test_list_and_bad_filter(capsys):
    from benchmarks.__main__ import main

    assert main(["--list"]) == 0
    names = capsys.readouterr().out.splitlines()
    assert "grid_sample bilinear zeros NHWC fwd+bwd N=8 C=64 128x128->128x128" in names
    assert "train_step ST-CNN step batch=64 42x42->28x28" in names
    assert main(["--filter", "no such case", "--no-torch"]) == 2
    assert "no case matches" in capsys.readouterr().err


# -- harness ----------------------------------------------------------------------------------------------------


def test_time_interleaved_measures_a_known_duration():
    calls = {"a": 0, "b": 0}

    def sleeper(name, seconds):
        def call():
            calls[name] += 1
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:  # busy-wait: sleep() may overshoot by a scheduler tick
                pass
        return call

    timings = harness.time_interleaved({"a": sleeper("a", 2e-3), "b": sleeper("b", 4e-3)}, warmup=1, rounds=6,
                                       min_rounds=6, budget_s=10, min_sample_s=0.0)
    assert timings["a"].samples == timings["b"].samples == 6
    assert timings["a"].number == timings["b"].number == 1
    assert calls == {"a": 1 + 1 + 6, "b": 1 + 1 + 6}  # warm-up, calibration, samples
    # A busy-wait never ends early; on a loaded machine it may end late, so the upper bounds are loose.
    assert 2e-3 <= timings["a"].minimum < 2e-3 + 10e-3, timings["a"]
    assert 4e-3 <= timings["b"].minimum < 4e-3 + 10e-3, timings["b"]
    assert timings["a"].minimum <= timings["a"].q1 <= timings["a"].median <= timings["a"].q3


def test_time_interleaved_batches_short_calls_and_stops_on_budget():
    def busy(seconds):
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            pass

    timings = harness.time_interleaved({"short": lambda: busy(1e-4)}, warmup=1, rounds=1000, min_rounds=3,
                                       budget_s=0.05, min_sample_s=2e-3)
    t = timings["short"]
    assert 2 <= t.number <= 20  # a 2 ms sample holds about 20 calls of 0.1 ms (fewer if calibration ran late)
    assert 3 <= t.samples < 1000  # the 0.05 s budget stops it long before 1000 rounds
    assert 1e-4 <= t.minimum < 1e-4 + 2e-3, t  # per call, not per sample


def test_quartiles():
    assert harness.quartiles([5.0]) == (5.0, 5.0, 5.0)
    assert harness.quartiles([4.0, 1.0, 3.0, 2.0, 5.0]) == (2.0, 3.0, 4.0)


def test_fit_slope():
    sizes = [1e3, 1e4, 1e5, 1e6]
    assert report.fit_slope(sizes, [2e-9 * s for s in sizes]) == pytest.approx(1.0)
    assert report.fit_slope(sizes, [1e-12 * s * s for s in sizes]) == pytest.approx(2.0)
    assert report.fit_slope([1e3], [1.0]) is None


def _row(sa, torch=None, twin=None, target=None, twin_target=None, floor=None):
    timings = {"scratchattn": {"median": sa}}
    if torch is not None:
        timings["torch"] = {"median": torch}
    if twin is not None:
        timings["twin"] = {"median": twin}
    row = {"timings": timings, "target": target, "twin_target": twin_target, "gpu_target": None, "floor_bytes": floor}
    row["ratio_torch"], row["ratio_twin"] = report.ratio(row, "torch"), report.ratio(row, "twin")
    return row


def test_ratios_verdicts_and_floor():
    row = _row(1.0, torch=4.0, target=0.5)
    assert row["ratio_torch"] == 0.25 and report.verdict(row, "cpu") == "ok"
    assert report.verdict(_row(3.0, torch=4.0, target=0.5), "cpu") == "MISS"
    assert report.verdict(_row(3.0, torch=4.0), "cpu") == ""  # no target, no verdict
    # A twin target must hold too: fast against torch but not against the twin is a miss.
    assert report.verdict(_row(1.0, torch=4.0, twin=1.2, target=0.5, twin_target=1 / 1.5), "cpu") == "MISS"
    assert report.verdict(_row(1.0, torch=4.0, twin=2.0, target=0.5, twin_target=1 / 1.5), "cpu") == "ok"
    # 1 GB at 10 GB/s is 0.1 s; done in 0.4 s that is 25% of the floor.
    assert report.floor_fraction(_row(0.4, floor=10**9), "scratchattn", 1e10) == pytest.approx(0.25)
    assert report.floor_fraction(_row(0.4), "scratchattn", 1e10) is None
    # On the GPU the ratio target and the floor target (a fraction of copy bandwidth) must both hold.
    gpu = _row(1.0, torch=1.0)
    gpu.update(gpu_target=1.2, gpu_floor_target=0.6, floor_fraction={"scratchattn": 0.5})
    assert report.verdict(gpu, "gpu") == "MISS"
    gpu["floor_fraction"]["scratchattn"] = 0.7
    assert report.verdict(gpu, "gpu") == "ok"
    assert report.verdict(gpu, "cpu") == ""  # the CPU targets are not set on this row


def test_filter_cases():
    cases = ops.all_cases()
    assert ops.filter_cases(cases, None) == cases
    picked = ops.filter_cases(cases, ["grid_sample&NHWC&fwd+bwd&128x128"])
    assert [c.name for c in picked] == ["grid_sample bilinear zeros NHWC fwd+bwd N=8 C=64 128x128->128x128"]
    either = ops.filter_cases(cases, ["train_step", "attention"])
    assert {c.op for c in either} == {"train_step", "attention"}


def test_floor_bytes():
    # N=1 C=2 3x4 -> 5x6, fwd+bwd: fwd reads input (24) and grid (60), writes output (60); bwd reads g (60),
    # input (24), grid (60), writes grad_input (24) and grad_grid (60): 372 floats.
    assert ops.grid_sample_floor_bytes(1, 2, 3, 4, 5, 6, bwd=True) == 372 * 4
    assert ops.grid_sample_floor_bytes(1, 2, 3, 4, 5, 6, bwd=False) == (24 + 60 + 60) * 4
    assert ops.affine_grid_floor_bytes(2, 3, 4, bwd=False) == (12 + 48) * 4
    assert ops.se_floor_bytes(2, 3, 4, 5, bwd=True) == 5 * 120 * 4
