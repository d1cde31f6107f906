"""Presenting benchmark results: the console table, the JSON record, ``docs/benchmarks.md`` and the scaling plot.

A run's results are one dict (see ``benchmarks/__main__.py``) written as ``benchmarks/results/<machine>-<date>.json``.
``docs/benchmarks.md`` is generated, never edited by hand: it shows the latest full CPU run and the latest full GPU
run found in the results folder (the current run replacing the stored one of its kind), followed by the hand-written
notes of ``benchmarks/notes.md`` (what was tried to reach the targets).

Ratios are scratchattn's median time over the competitor's median time from the same run: below 1 scratchattn is
faster. The floor fraction is (bytes the op must move / copy bandwidth) / measured time: 100% would be an op that
runs as fast as a plain copy of its unavoidable traffic.
"""

from __future__ import annotations

import glob
import json
import math
import os

# =================================================================================================================
# derived numbers
# =================================================================================================================


def ratio(row: dict, other: str) -> float | None:
    timings = row.get("timings") or {}
    if "scratchattn" not in timings or other not in timings:
        return None
    return timings["scratchattn"]["median"] / timings[other]["median"]


def floor_fraction(row: dict, variant: str, bandwidth: float) -> float | None:
    timings = row.get("timings") or {}
    if not row.get("floor_bytes") or variant not in timings or not bandwidth:
        return None
    return row["floor_bytes"] / bandwidth / timings[variant]["median"]


def checks(row: dict, kind: str) -> list[tuple[str, float, float, bool]]:
    """The targets that apply to this row in this kind of run ("cpu" or "gpu"): (what, measured, target, met)."""
    found = []
    torch_target = row.get("gpu_target") if kind == "gpu" else row.get("target")
    if torch_target is not None and row.get("ratio_torch") is not None:
        found.append(("vs torch", row["ratio_torch"], torch_target, row["ratio_torch"] <= torch_target))
    if kind == "cpu" and row.get("twin_target") is not None and row.get("ratio_twin") is not None:
        found.append(("vs twin", row["ratio_twin"], row["twin_target"], row["ratio_twin"] <= row["twin_target"]))
    fraction = (row.get("floor_fraction") or {}).get("scratchattn")
    if kind == "gpu" and row.get("gpu_floor_target") is not None and fraction is not None:
        found.append(("of floor", fraction, row["gpu_floor_target"], fraction >= row["gpu_floor_target"]))
    return found


def verdict(row: dict, kind: str) -> str:
    """"ok", "MISS" or "" (no target) against the targets that apply to this kind of run ("cpu" or "gpu")."""
    found = checks(row, kind)
    if not found:
        return ""
    return "ok" if all(met for *_, met in found) else "MISS"


def fit_slope(sizes, times) -> float | None:
    """Least-squares slope of log(time) against log(size): 1 means cost proportional to size."""
    points = [(math.log(s), math.log(t)) for s, t in zip(sizes, times) if s > 0 and t and t > 0]
    if len(points) < 2:
        return None
    mx = sum(p[0] for p in points) / len(points)
    my = sum(p[1] for p in points) / len(points)
    sxx = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / sxx if sxx else None


# =================================================================================================================
# the console / markdown table
# =================================================================================================================


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return ""
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _x(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.0f}%"


def _target(row: dict, kind: str) -> str:
    parts = []
    torch_target = row.get("gpu_target") if kind == "gpu" else row.get("target")
    if torch_target is not None:
        parts.append(f"<={torch_target:g}x")
    if kind == "cpu" and row.get("twin_target") is not None:
        parts.append(f"twin<={row['twin_target']:.2f}x")
    if kind == "gpu" and row.get("gpu_floor_target") is not None:
        parts.append(f"floor>={100 * row['gpu_floor_target']:.0f}%")
    return " ".join(parts)


TABLE_HEADER = ("case", "scratchattn ms", "torch ms", "ratio", "target", "twin ms", "vs twin", "floor% sa",
                "floor% torch", "")


def table_rows(results: dict) -> list[tuple[str, ...]]:
    kind, bandwidth = results["kind"], results["bandwidth"]["floor_bytes_per_s"]
    rows = []
    for row in results["cases"]:
        if row.get("unavailable") or row.get("error"):
            why = row.get("unavailable") or f"ERROR: {row['error']}"
            rows.append((row["name"], "n/a", "", "", _target(row, kind), "", "", "", "", why[:90]))
            continue
        timings = row["timings"]
        rows.append((
            row["name"],
            _ms(timings["scratchattn"]["median"]),
            _ms(timings.get("torch", {}).get("median")),
            _x(row.get("ratio_torch")),
            _target(row, kind),
            _ms(timings.get("twin", {}).get("median")),
            _x(row.get("ratio_twin")),
            _pct(floor_fraction(row, "scratchattn", bandwidth)),
            _pct(floor_fraction(row, "torch", bandwidth)),
            " ".join(filter(None, [verdict(row, kind), "noisy" if row.get("noisy") else ""])),
        ))
    return rows


def format_console(results: dict) -> str:
    rows = [TABLE_HEADER] + table_rows(results)
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_HEADER))]
    widths[-1] = min(widths[-1], 90)
    lines = []
    for k, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:-1], widths[1:-1])] + [r[-1]]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def format_markdown_table(results: dict) -> str:
    rows = table_rows(results)
    header = "| " + " | ".join(TABLE_HEADER[:-1]) + " | |"
    align = "|:--|" + "--:|" * (len(TABLE_HEADER) - 2) + ":--|"
    body = ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join([header, align, *body])


def describe_setup(results: dict) -> str:
    meta, bw = results["meta"], results["bandwidth"]
    lines = [f"- machine: {meta.get('gpu') + ' / ' if meta.get('gpu') else ''}{meta['cpu']}, {meta['cores']} cores "
             f"(`{meta['machine']}`), {meta['platform']}",
             f"- date: {meta['date']}; load average at start {meta.get('load_average')}, at the end "
             f"{meta.get('load_average_end')}; stall probe (90th percentile of a 4 MiB parallel copy / the serial "
             f"copy's median) {results.get('stall_probe', {}).get('stall', float('nan')):.1f}"
             + (" (**noisy**: other jobs were competing for the cores)" if results.get("noisy") else ""),
             f"- versions: Python {meta['python']}, NumPy {meta['numpy']}, Numba {meta['numba']}, "
             f"PyTorch {meta['torch'] or 'not installed'}" + (f", CuPy {meta['cupy']}" if meta.get("cupy") else "")]
    git = meta.get("git")
    if git:
        lines.append(f"- code: commit `{git['commit']}`" + (
            f" plus uncommitted changes to {', '.join(f'`{f}`' for f in git['uncommitted'])}"
            if git["uncommitted"] else ""))
    if results["kind"] == "cpu":
        th = results["threads"]
        lines.append(f"- threads: {th['threads']} for both libraries (numba.set_num_threads -> {th['numba_threads']}, "
                     f"torch.set_num_threads -> {th.get('torch_threads', 'n/a')}, NumPy's BLAS -> "
                     f"{th.get('blas_threads') or 'not controlled'}); Numba threading layer "
                     f"`{th.get('numba_threading_layer')}`; environment "
                     f"{meta.get('environment') or 'default (no thread variables set)'}")
    copies = ", ".join(f"{k} {v / 1e9:.1f} GB/s" for k, v in bw.items() if k not in ("array_bytes",
                                                                                       "floor_bytes_per_s"))
    lines.append(f"- copy bandwidth (read + write, {bw['array_bytes'] >> 20} MiB float32 array): {copies}; "
                 f"floor uses {bw['floor_bytes_per_s'] / 1e9:.1f} GB/s")
    s = results["settings"]
    lines.append(f"- timing: float32, medians of up to {s['rounds']} interleaved samples after {s['warmup']} warm-up "
                 f"calls (budget {s['budget_s']} s a case){'; QUICK run: few samples' if results.get('quick') else ''}")
    return "\n".join(lines)


def target_summary(results: dict) -> str:
    kind = results["kind"]
    missed = [r for r in results["cases"] if verdict(r, kind) == "MISS"]
    met = [r for r in results["cases"] if verdict(r, kind) == "ok"]
    absent = [r for r in results["cases"] if (r.get("unavailable") or r.get("error")) and _target(r, kind)]
    noisy = sum(1 for r in results["cases"] if r.get("noisy"))
    text = [f"Targets: {len(met)} met, {len(missed)} missed, {len(absent)} not measured."
            + (f" {noisy} rows are marked noisy: right after them a parallel copy stalled (its 90th percentile "
               "above 3x a serial copy), so other processes were competing for the cores." if noisy else "")]
    for r in missed:
        parts = []
        for what, value, target, met in checks(r, kind):
            shown = f"{100 * value:.0f}% (>= {100 * target:.0f}%)" if what == "of floor" else \
                f"{value:.3f}x (<= {target:.3f}x)"
            parts.append(f"{what} {shown} {'ok' if met else 'MISSED'}")
        text.append(f"- MISS {r['name']}: " + "; ".join(parts))
    for r in absent:
        text.append(f"- not measured: {r['name']} ({(r.get('unavailable') or r.get('error'))[:100]})")
    return "\n".join(text)


# =================================================================================================================
# the other sections
# =================================================================================================================


def scaling_markdown(results: dict, image: str | None) -> str:
    scaling = results.get("scaling")
    if not scaling:
        return "Not measured in this run."
    parts = []
    if image:
        parts.append(f"![time against output size]({image})\n")
    parts.append("| series | sizes (elements) | slope scratchattn (all / largest 3) | slope torch (all / largest 3) | "
                 "ns per element at the largest size |")
    parts.append("|:--|--:|--:|--:|--:|")
    for name, points in scaling.items():
        fits = results.get("scaling_fits", {}).get(name, {})
        sizes = [p["size"] for p in points if p.get("timings")]
        largest = [p for p in points if p.get("timings")][-1:] or [None]

        def fmt(v):
            return "" if v is None else f"{v:.2f}"

        ns = ""
        if largest[0] is not None:
            ns = f"{largest[0]['timings']['scratchattn']['median'] / largest[0]['size'] * 1e9:.2f}"
        size_text = f"{min(sizes):,} - {max(sizes):,}" if sizes else ""
        parts.append(f"| {name} | {size_text} | {fmt(fits.get('scratchattn_all'))} / "
                     f"{fmt(fits.get('scratchattn_top'))} | {fmt(fits.get('torch_all'))} / "
                     f"{fmt(fits.get('torch_top'))} | {ns} |")
    parts.append("\nA slope of 1.00 on log-log axes is cost proportional to size. Small sizes sit above the line: "
                 "the fixed cost of a call (Python, validation, waking the threads) dominates there.")
    return "\n".join(parts)


def first_call_markdown(results: dict) -> str:
    fc, cc = results.get("first_call"), results.get("cuda_compile")
    if not fc and not cc:
        return "Not measured in this run."
    parts = []
    if fc and "cold" in fc:
        parts.append("Fresh processes; tiny float32 inputs; forward+backward; cold = empty compilation cache, warm = "
                     "the cache the cold run filled.\n")
        parts.append("| | cold | warm |\n|:--|--:|--:|")
        parts.append(f"| import scratchattn | {fc['cold']['import_s']:.2f} s | {fc['warm']['import_s']:.2f} s |")
        for name in fc["cold"]["first_call_s"]:
            parts.append(f"| first call: {name} | {fc['cold']['first_call_s'][name]:.2f} s | "
                         f"{fc['warm']['first_call_s'][name]:.3f} s |")
        parts.append(f"| all first calls | {fc['cold']['total_first_calls_s']:.2f} s | "
                     f"{fc['warm']['total_first_calls_s']:.2f} s |")
        parts.append(f"| whole process | {fc['cold']['process_s']:.2f} s | {fc['warm']['process_s']:.2f} s |")
    elif fc:
        parts.append(f"First-call measurement failed: {fc.get('error')}")
    if cc:
        parts.append("\nCUDA sources, compiled in this process:\n")
        parts.append("| file, dtype | NVRTC (PTX, compute_90) | host shim (C++ -O2, fresh cache) |\n|:--|--:|--:|")
        keys = list(dict.fromkeys(list(cc.get("nvrtc_s", {})) + list(cc.get("host_shim_s", {}))))
        for key in keys:
            nv, hs = cc.get("nvrtc_s", {}).get(key), cc.get("host_shim_s", {}).get(key)
            parts.append(f"| {key} | {'' if nv is None else f'{nv * 1e3:.0f} ms'} | "
                         f"{'' if hs is None else f'{hs:.2f} s'} |")
        for key in ("nvrtc_unavailable", "host_shim_unavailable"):
            if cc.get(key):
                parts.append(f"\n{key.replace('_', ' ')}: {cc[key]}")
    return "\n".join(parts)


def memory_markdown(results: dict) -> str:
    memory = results.get("memory")
    if not memory:
        return "Not measured in this run."
    if results.get("kind") == "gpu":
        how = ("Peak of the bytes CuPy's memory pool handed out (a CuPy memory hook, sizes rounded up to the pool's "
               "512-byte blocks) during one forward+backward")
        blind = "Workspace that cuBLAS keeps for itself is not counted.\n"
    else:
        how = "Peak of NumPy allocations (tracemalloc) during one forward+backward"
        blind = "Arrays Numba allocates inside a kernel are not seen by tracemalloc.\n"
    parts = [f"{how}, inputs and upstream gradient allocated beforehand, against what the call must hand back (its "
             f"output and the input gradients). {blind}",
             "| case | must hold | peak | peak / must hold |", "|:--|--:|--:|--:|"]
    for m in memory:
        if m.get("unavailable") or m.get("error"):
            parts.append(f"| {m['name']} | n/a | | {(m.get('unavailable') or m.get('error'))[:80]} |")
            continue
        parts.append(f"| {m['name']} | {m['must_hold_bytes'] / 2**20:.1f} MiB | {m['peak_bytes'] / 2**20:.1f} MiB | "
                     f"{m['peak_bytes'] / m['must_hold_bytes']:.2f} |")
    return "\n".join(parts)


# =================================================================================================================
# files
# =================================================================================================================


def results_filename(results: dict) -> str:
    """``<machine>-<date>.json`` for a full run (the day's last full run replaces earlier ones); runs that are not
    full add their UTC time and ``quick`` or ``partial``, so they never overwrite a full run or each other."""
    date, clock = results["meta"]["date"].split(" ")[:2]
    if results.get("quick") or results.get("partial"):
        kind = "quick" if results.get("quick") else "partial"
        return f"{results['meta']['machine']}-{date}-{clock.replace(':', '')}-{kind}.json"
    return f"{results['meta']['machine']}-{date}.json"


def write_json(results: dict, folder: str) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, results_filename(results))
    with open(path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, sort_keys=False)
        f.write("\n")
    return path


def latest_stored(folder: str, kind: str) -> dict | None:
    """The most recent full (not --quick) run of ``kind`` stored in ``folder``, by its recorded date."""
    best = None
    for path in glob.glob(os.path.join(folder, "*.json")):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        if data.get("kind") != kind or data.get("quick") or data.get("partial"):
            continue
        if best is None or data["meta"]["date"] > best["meta"]["date"]:
            best = data
            best["_file"] = os.path.basename(path)
    return best


def plot_scaling(results: dict, path: str) -> str | None:
    """Log-log plot of time per call against output size for each scaling series; None without matplotlib."""
    scaling = results.get("scaling")
    if not scaling:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    all_sizes = []
    for k, (name, points) in enumerate(scaling.items()):
        points = [p for p in points if p.get("timings")]
        if not points:
            continue
        color = colors[k % len(colors)]
        sizes = [p["size"] for p in points]
        all_sizes += sizes
        ax.loglog(sizes, [p["timings"]["scratchattn"]["median"] * 1e3 for p in points], "o-", color=color,
                  label=f"{name}: scratchattn")
        if all("torch" in p["timings"] for p in points):
            ax.loglog(sizes, [p["timings"]["torch"]["median"] * 1e3 for p in points], "s--", color=color, alpha=0.6,
                      label=f"{name}: torch")
    if not all_sizes:
        plt.close(fig)
        return None
    lo, hi = min(all_sizes), max(all_sizes)
    y_lo, y_hi = ax.get_ylim()
    ref = y_hi / 4  # a slope-1 guide ending near the top right
    ax.loglog([lo, hi], [ref * lo / hi, ref], ":", color="gray", label="slope 1 (linear cost)")
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlabel("output elements")
    ax.set_ylabel("median time per call (ms)")
    where = results["meta"].get("gpu") or f"{results['meta']['cpu']}, {results['threads']['threads']} threads"
    ax.set_title(f"Time against output size ({where}, float32)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6.5, loc="upper left")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _section(results: dict | None, kind: str, image: str | None) -> str:
    title = "CPU: Numba kernels vs PyTorch (CPU)" if kind == "cpu" else "GPU: CUDA kernels (CuPy) vs PyTorch CUDA"
    if results is None:
        command = "python -m benchmarks" + (" --gpu" if kind == "gpu" else "")
        return f"## {title}\n\nNo full {kind.upper()} run stored yet (`{command}`).\n"
    source = results.get("_file") or results_filename(results)
    return "\n\n".join([
        f"## {title}",
        f"From `benchmarks/results/{source}`.",
        describe_setup(results),
        format_markdown_table(results),
        "Columns: median ms per call; ratio = scratchattn / torch (below 1: scratchattn is faster); vs twin = fused "
        "/ primitive twin; floor% = time to move the op's unavoidable bytes at copy bandwidth / measured time.",
        target_summary(results),
        f"### Scaling ({kind.upper()})",
        scaling_markdown(results, image),
        f"### First-call cost ({kind.upper()})",
        first_call_markdown(results),
        f"### Peak memory of forward+backward ({kind.upper()})",
        memory_markdown(results),
    ]) + "\n"


def write_docs(current: dict | None, docs_path: str, results_folder: str, notes_path: str) -> str:
    """Regenerate ``docs_path`` (and its scaling plots) from the current run and the latest stored full run of the
    other kind; with ``current`` None, from the latest stored full runs of both kinds."""
    runs = {"cpu": latest_stored(results_folder, "cpu"), "gpu": latest_stored(results_folder, "gpu")}
    if current is not None:
        runs[current["kind"]] = current
    docs_dir = os.path.dirname(os.path.abspath(docs_path))
    images = {}
    for kind, run in runs.items():
        if run is None:
            continue
        name = f"bench_scaling{'_gpu' if kind == 'gpu' else ''}.png"
        image_path = os.path.join(docs_dir, "img", name)
        plot_scaling(run, image_path)  # None (and the old file kept) without matplotlib
        if os.path.exists(image_path) and run.get("scaling"):
            images[kind] = f"img/{name}"
    notes = ""
    if os.path.exists(notes_path):
        with open(notes_path, encoding="utf-8") as f:
            notes = f.read().strip()
    text = "\n".join([
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m benchmarks` (benchmarks/report.py) from benchmarks/results/*.json; do not edit "
        "by hand. The last section comes from benchmarks/notes.md. -->",
        "",
        "scratchattn's headline kernels timed side by side with PyTorch in one process, float32, with the same "
        "number of threads, against the memory-bandwidth floor of a large array copy measured in the same run. "
        "Regenerate with `make bench` (CPU) or `python -m benchmarks --gpu` (GPU); targets are those of issue 8.",
        "",
        _section(runs["cpu"], "cpu", images.get("cpu")),
        _section(runs["gpu"], "gpu", images.get("gpu")),
        notes,
        "",
    ])
    os.makedirs(docs_dir, exist_ok=True)
    with open(docs_path, "w", encoding="utf-8") as f:
        f.write(text)
    return docs_path
