"""``python -m benchmarks``: time every headline kernel side by side with PyTorch, print a table, record the run.

    python -m benchmarks                      # CPU: all cases, scaling, peak memory, first-call cost; writes
                                              # benchmarks/results/<machine>-<date>.json and docs/benchmarks.md
    python -m benchmarks --quick              # a few samples of each case (a smoke test; writes *-quick.json)
    python -m benchmarks --filter "grid_sample&NHWC" --filter attention   # cases matching either filter
    python -m benchmarks --threads 1          # Numba and PyTorch both on one thread
    python -m benchmarks --gpu                # CuPy kernels vs PyTorch CUDA (scripts/gpu_check.sh runs this)
    python -m benchmarks --list               # the case names

A run's sections: ``ops`` (the table), ``scaling`` (time against output size, the plot), ``memory`` (peak of
forward+backward, CPU only), ``compile`` (first-call cost with cold and warm caches, CUDA compile times). A full
run has them all; ``--quick`` and ``--filter`` default to ``ops`` alone (``--sections`` chooses). Only a full run
regenerates docs/benchmarks.md, unless ``--docs PATH`` asks for it. PyTorch is optional: without it (or with
``--no-torch``) its columns stay empty.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import time
import traceback
import tracemalloc

from . import harness, ops, report

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SECTIONS = ("ops", "scaling", "memory", "compile")

# name: (warmup, rounds, min_rounds, budget_s per case, min_sample_s)
PROFILES = {
    "cpu": (3, 40, 7, 3.0, 5e-3),
    "quick": (1, 3, 2, 0.2, 0.0),
    "gpu": (3, 40, 7, 0.6, 2e-3),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--quick", action="store_true", help="few samples a case, ops only (a smoke test)")
    p.add_argument("--gpu", action="store_true", help="CuPy kernels on the GPU vs PyTorch CUDA")
    p.add_argument("--filter", action="append", metavar="SUBSTR",
                   help="only cases whose name contains SUBSTR (case-insensitive; 'A&B' needs both; repeat the "
                        "option for cases matching any)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads for Numba and PyTorch alike (default: all cores)")
    p.add_argument("--blas-threads", type=int, default=None,
                   help="threads of NumPy's BLAS (scratchattn's matmul, conv2d, attention); default --threads. "
                        "OpenBLAS's threads spin-wait like OpenMP's, so on a busy machine 1 avoids their stalls")
    p.add_argument("--threading-layer", choices=("omp", "tbb", "workqueue"), default=None,
                   help="Numba's threading layer (default: Numba's own choice, reported)")
    p.add_argument("--omp-wait-policy", choices=("active", "passive"), default=None,
                   help="set OMP_WAIT_POLICY for both OpenMP runtimes (Numba's and PyTorch's) before they load; "
                        "passive stops idle threads spinning, which on a busy machine stalls parallel regions "
                        "(default: the runtimes' own policy)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop starting new cases after this many seconds and record the rest as not run (default: "
                        "no limit; 80 with --gpu, so that scripts/gpu_check.sh gets a table within its budget)")
    p.add_argument("--retries", type=int, default=2,
                   help="time rows measured during a stall again, after waiting for quiet cores (CPU; not --quick)")
    p.add_argument("--sections", default=None,
                   help=f"comma-separated subset of {','.join(SECTIONS)} (default: all for a full run, ops for "
                        "--quick or --filter)")
    p.add_argument("--no-torch", action="store_true", help="do not import PyTorch (its columns stay empty)")
    p.add_argument("--budget", type=float, default=None, help="seconds of timed rounds per case")
    p.add_argument("--rounds", type=int, default=None, help="most samples per variant and case")
    p.add_argument("--out", default=os.path.join(HERE, "results"), help="folder of the JSON results")
    p.add_argument("--docs", default=None,
                   help="markdown file to regenerate (default docs/benchmarks.md after a full run; 'none' to skip)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--list", action="store_true", help="print the case names and exit")
    p.add_argument("--render", action="store_true",
                   help="only regenerate the docs (default docs/benchmarks.md) from the results stored in --out")
    args = p.parse_args(argv)
    partial = bool(args.quick or args.filter)
    if args.sections is None:
        args.sections = ["ops"] if partial else list(SECTIONS)
    else:
        args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
        unknown = sorted(set(args.sections) - set(SECTIONS))
        if unknown:
            p.error(f"--sections: unknown {unknown}; choose from {SECTIONS}")
    args.partial = partial or set(args.sections) != set(SECTIONS)
    if args.docs is None:
        args.docs = None if args.partial and not args.render else os.path.join(REPO, "docs", "benchmarks.md")
    elif args.docs.lower() == "none":
        args.docs = None
    if args.threads < 1:
        p.error(f"--threads must be >= 1; got {args.threads}")
    if args.max_seconds is None and args.gpu:
        args.max_seconds = 80.0
    return args


def import_torch(args):
    """PyTorch, or None (not installed, --no-torch, or --gpu without a CUDA build); and why it is None."""
    if args.no_torch:
        return None, "--no-torch"
    try:
        import torch
    except ImportError as exc:
        return None, f"torch is not importable ({exc})"
    if args.gpu and not torch.cuda.is_available():
        return None, "this PyTorch build sees no CUDA device"
    return torch, None


# =================================================================================================================
# sections
# =================================================================================================================


def time_case(case: ops.Case, env: ops.Env, profile, bandwidth: float | None = None) -> dict:
    """Build and time one case; the row of the results (with ``unavailable`` or ``error`` when it could not run)."""
    warmup, rounds, min_rounds, budget_s, min_sample_s = profile
    row = {"name": case.name, "op": case.op, "variant": case.variant, "direction": case.direction,
           "shape": case.shape, "target": case.target, "twin_target": case.twin_target,
           "gpu_target": case.gpu_target, "gpu_floor_target": case.gpu_floor_target}
    try:
        built = case.build(env)
        timings = harness.time_interleaved(built.variants, sync=env.sync_all, warmup=warmup, rounds=rounds,
                                           min_rounds=min_rounds, budget_s=budget_s, min_sample_s=min_sample_s)
    except ops.Unavailable as exc:
        row["unavailable"] = str(exc)
        return row
    except Exception as exc:  # noqa: BLE001 - one broken case must not end the run; the row says what broke
        row["error"] = f"{type(exc).__name__}: {exc}"
        row["traceback"] = traceback.format_exc(limit=6)
        return row
    finally:
        gc.collect()
    row["floor_bytes"] = built.floor_bytes
    row["note"] = built.note
    row["timings"] = {name: t.to_dict() for name, t in timings.items()}
    row["ratio_torch"] = report.ratio(row, "torch")
    row["ratio_twin"] = report.ratio(row, "twin")
    if bandwidth:
        row["floor_fraction"] = {name: report.floor_fraction(row, name, bandwidth) for name in row["timings"]}
    return row


def wait_for_quiet(timeout_s: float) -> bool:
    """Poll the stall probe until a parallel kernel runs steadily again (stall below 2)."""
    deadline = time.perf_counter() + timeout_s
    while True:
        if harness.parallel_stall_probe(calls=30)["stall"] <= 2:
            return True
        if time.perf_counter() > deadline:
            return False
        time.sleep(5)


def out_of_time(deadline: float | None) -> bool:
    return deadline is not None and time.perf_counter() > deadline


def not_run_row(case: ops.Case) -> dict:
    return {"name": case.name, "op": case.op, "variant": case.variant, "direction": case.direction,
            "shape": case.shape, "target": case.target, "twin_target": case.twin_target,
            "gpu_target": case.gpu_target, "gpu_floor_target": case.gpu_floor_target,
            "unavailable": "not run: the --max-seconds budget was spent"}


def run_ops(cases, env, profile, bandwidth, probe: bool = False, retries: int = 0,
            quiet_timeout_s: float = 120, deadline: float | None = None) -> list[dict]:
    """Time every case; with ``probe`` (CPU), probe for stalls right after each (harness.parallel_stall_probe) and
    mark the row noisy when the probe's stall exceeds 3. Noisy rows are timed again up to ``retries`` times, each
    time after waiting for the cores to be quiet; the least noisy attempt is kept (``attempts`` counts them)."""
    rows = [not_run_row(case) if out_of_time(deadline) else _timed_row(case, env, profile, bandwidth, probe, k,
                                                                        len(cases))
            for k, case in enumerate(cases, 1)]
    for attempt in range(2, retries + 2):
        noisy = [k for k, row in enumerate(rows) if row.get("noisy")]
        if not noisy or out_of_time(deadline):
            break
        quiet = wait_for_quiet(quiet_timeout_s)
        print(f"retry {attempt - 1}/{retries}: {len(noisy)} noisy rows"
              + ("" if quiet else f" (the cores did not become quiet within {quiet_timeout_s:.0f} s)"), flush=True)
        for k in noisy:
            row = _timed_row(cases[k], env, profile, bandwidth, probe, k + 1, len(cases))
            row["attempts"] = rows[k].get("attempts", 1) + 1
            if row.get("timings") and row.get("stall", math.inf) < rows[k].get("stall", math.inf):
                rows[k] = row
            else:
                rows[k]["attempts"] = row["attempts"]
    return rows


def _timed_row(case, env, profile, bandwidth, probe, k, total) -> dict:
    """Time one case, probe for stalls after it, print its line; the row."""
    t0 = time.perf_counter()
    row = time_case(case, env, profile, bandwidth)
    if probe and row.get("timings"):
        row["stall"] = harness.parallel_stall_probe(calls=30)["stall"]
        row["noisy"] = row["stall"] > 3
    if row.get("timings"):
        t = row["timings"]
        summary = f"{t['scratchattn']['median'] * 1e3:.3g} ms"
        if row.get("ratio_torch") is not None:
            summary += f", {row['ratio_torch']:.2f}x torch"
        if row.get("ratio_twin") is not None:
            summary += f", {row['ratio_twin']:.2f}x twin"
        fraction = report.floor_fraction(row, "scratchattn", bandwidth)
        if fraction is not None:
            summary += f", {100 * fraction:.0f}% of floor"
        if row.get("noisy"):
            summary += f", NOISY (stall probe {row['stall']:.1f}x)"
    else:
        summary = row.get("unavailable") or row.get("error")
    print(f"[{k}/{total}] {case.name}: {summary} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return row


def run_scaling(env, profile) -> tuple[dict, dict]:
    warmup, rounds, min_rounds, budget_s, min_sample_s = profile
    point_profile = (warmup, rounds, min_rounds, budget_s / 2, min_sample_s)
    series, fits = {}, {}
    sides = ops.SCALING_SIDES_GPU if env.device == "cuda" else ops.SCALING_SIDES
    for name, cases in ops.scaling_series(sides).items():
        points = []
        for case in cases:
            row = time_case(case, env, point_profile)
            point = {"size": case.size, "shape": case.shape}
            if row.get("timings"):
                point["timings"] = row["timings"]
            else:
                point["unavailable"] = row.get("unavailable") or row.get("error")
            points.append(point)
        timed = [p for p in points if p.get("timings")]
        fits[name] = {}
        for variant in ("scratchattn", "torch"):
            if timed and all(variant in p["timings"] for p in timed):
                sizes = [p["size"] for p in timed]
                times = [p["timings"][variant]["median"] for p in timed]
                fits[name][f"{variant}_all"] = report.fit_slope(sizes, times)
                fits[name][f"{variant}_top"] = report.fit_slope(sizes[-3:], times[-3:])
        series[name] = points
        slope = fits[name].get("scratchattn_top")
        print(f"scaling {name}: {len(timed)}/{len(points)} sizes"
              + (f", slope of the largest three {slope:.2f}" if slope is not None else ""), flush=True)
    return series, fits


def _pool_peak_hook():
    """A CuPy memory hook that records the peak of the bytes CuPy's memory pool hands out inside its ``with`` block:
    the GPU's counterpart of tracemalloc's peak. Built on first use, so that CuPy is imported only for --gpu."""
    from scratchattn import backend

    class PoolPeak(backend.cupy_module().cuda.MemoryHook):
        name = "scratchattn_benchmark_peak"

        def __init__(self):
            self.now = self.peak = 0

        def malloc_postprocess(self, **kw):
            self.now += kw["mem_size"]
            self.peak = max(self.peak, self.now)

        def free_postprocess(self, **kw):
            self.now -= kw["mem_size"]

    return PoolPeak()


def _peak_bytes(run, device: str):
    """(what ``run()`` returned, peak bytes allocated while it ran): tracemalloc on the CPU, the pool hook on a GPU."""
    if device == "cuda":
        from scratchattn import backend

        sync = backend.cupy_module().cuda.Device().synchronize
        sync()
        with _pool_peak_hook() as hook:
            held = run()
            sync()
        return held, hook.peak
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    try:
        held = run()
        return held, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def run_memory(device: str = "cpu") -> list[dict]:
    rows = []
    for case in ops.memory_cases(device):
        row = {"name": case.name}
        try:
            run, leaves = case.setup()
            held = run()  # warm-up: compiles kernels and fills the caches that later calls reuse
            del held
            for t in leaves:
                t.grad = None
            gc.collect()
            held, peak = _peak_bytes(run, device)
            row["must_hold_bytes"] = int(sum(a.nbytes for a in held if a is not None))
            row["peak_bytes"] = int(peak)
            del held
        except ops.Unavailable as exc:
            row["unavailable"] = str(exc)
        except Exception as exc:  # noqa: BLE001
            row["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            if tracemalloc.is_tracing():
                tracemalloc.stop()
            gc.collect()
        rows.append(row)
        if "peak_bytes" in row:
            print(f"memory {row['name']}: peak {row['peak_bytes'] / 2**20:.1f} MiB, must hold "
                  f"{row['must_hold_bytes'] / 2**20:.1f} MiB", flush=True)
        else:
            print(f"memory {row['name']}: {row.get('unavailable') or row.get('error')}", flush=True)
    return rows


def run_compile(device: str) -> tuple[dict, dict | None]:
    from . import firstcall

    try:
        first = firstcall.first_call_costs(device)
        print(f"first call (cold cache): {first['cold']['total_first_calls_s']:.2f} s in all; warm: "
              f"{first['warm']['total_first_calls_s']:.2f} s", flush=True)
    except Exception as exc:  # noqa: BLE001
        first = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"first call: {first['error']}", flush=True)
    compiled = None
    if device == "cpu":
        compiled = firstcall.cuda_compile_times()
        nv, hs = compiled.get("nvrtc_s", {}), compiled.get("host_shim_s", {})
        print(f"CUDA compile: NVRTC {sum(nv.values()):.2f} s for {len(nv)} builds; host shim "
              f"{sum(hs.values()):.2f} s for {len(hs)} builds", flush=True)
    return first, compiled


# =================================================================================================================
# main
# =================================================================================================================


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render:
        if not args.docs:
            print("--render needs a docs file (--docs PATH)", file=sys.stderr)
            return 2
        docs = report.write_docs(None, args.docs, args.out, os.path.join(HERE, "notes.md"))
        print(f"docs: {os.path.relpath(docs)}")
        return 0
    cases = ops.filter_cases(ops.all_cases(), args.filter)
    if args.list:
        print("\n".join(c.name for c in cases))
        return 0
    if args.filter and not cases and "ops" in args.sections:
        print(f"no case matches {args.filter}; see --list", file=sys.stderr)
        return 2

    if args.omp_wait_policy:
        # Read by each libgomp when it loads: PyTorch's at `import torch` below, Numba's at its first parallel
        # launch (importing scratchattn and numba does not load it yet).
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    from scratchattn import backend

    kind = "gpu" if args.gpu else "cpu"
    gpu_name = None
    if args.gpu:
        reason = backend.cuda_unavailable_reason()
        if reason is not None:
            print(f"--gpu: no usable GPU: {reason}", file=sys.stderr)
            return 2
        cupy = backend.cupy_module()
        props = cupy.cuda.runtime.getDeviceProperties(0)
        gpu_name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]

    torch, torch_reason = import_torch(args)
    threads = harness.configure_threads(args.threads, torch, args.threading_layer, args.blas_threads)
    meta = harness.machine_info(gpu_name, torch)
    if args.gpu:
        meta["cupy"] = backend.cupy_module().__version__
    profile = list(PROFILES["quick" if args.quick else kind])
    if args.rounds is not None:
        profile[1] = max(1, args.rounds)
        profile[2] = min(profile[2], profile[1])
    if args.budget is not None:
        profile[3] = args.budget
    profile = tuple(profile)
    env = ops.Env("cuda" if args.gpu else "cpu", torch, seed=args.seed)

    started = time.perf_counter()
    if args.gpu:
        bandwidth = harness.copy_bandwidth(1 << 30, env.xp, sync=env.sync)
    else:
        bandwidth = harness.copy_bandwidth((64 if args.quick else 256) << 20, rounds=5 if args.quick else 15)
    threads["numba_threading_layer"] = harness.numba_threading_layer()
    stall = harness.parallel_stall_probe()
    load = meta.get("load_average", [0.0])[0]
    print(f"scratchattn benchmarks ({kind}): {meta['cpu']}, {meta['cores']} cores"
          + (f", {gpu_name}" if gpu_name else "")
          + f"; {threads['threads']} threads (Numba layer {threads['numba_threading_layer']}); torch: "
          + (meta["torch"] if torch is not None else f"none ({torch_reason})")
          + f"; copy bandwidth {bandwidth['floor_bytes_per_s'] / 1e9:.1f} GB/s; load average {load}; parallel "
          f"stall probe {stall['stall']:.1f}", flush=True)

    if stall["stall"] > 3 and not args.gpu:
        print(f"WARNING: parallel kernels stall on this machine right now (a 4 MiB parallel copy's 90th percentile is "
              f"{stall['stall']:.0f}x a serial copy): other processes compete for the cores. Numbers will be noisy"
              + ("; --omp-wait-policy passive avoids most of the stall" if not args.omp_wait_policy else "") + ".",
              flush=True)
    results = {
        "kind": kind, "quick": args.quick, "partial": args.partial,
        # A GPU run's kernels do not wait on CPU threads: the CPU load does not make it noisy.
        "noisy": not args.gpu and (load > 0.5 * args.threads or stall["stall"] > 3),
        "stall_probe": stall,
        "meta": meta, "threads": threads, "bandwidth": bandwidth, "torch_missing_reason": torch_reason,
        "settings": dict(zip(("warmup", "rounds", "min_rounds", "budget_s", "min_sample_s"), profile),
                         filters=args.filter, sections=args.sections, seed=args.seed),
        "cases": [],
    }
    deadline = None if args.max_seconds is None else time.perf_counter() + args.max_seconds
    if args.gpu:  # the rows with GPU targets first, in case the time budget ends the run early
        cases = sorted(cases, key=lambda c: c.gpu_target is None)
    skipped = []
    if "ops" in args.sections:
        results["cases"] = run_ops(cases, env, profile, bandwidth["floor_bytes_per_s"], probe=not args.gpu,
                                   retries=0 if args.quick else args.retries, deadline=deadline)
    for section in ("scaling", "memory", "compile"):
        if section not in args.sections:
            continue
        if out_of_time(deadline):
            skipped.append(section)
        elif section == "scaling":
            results["scaling"], results["scaling_fits"] = run_scaling(env, profile)
        elif section == "memory":
            results["memory"] = run_memory(env.device)
        else:
            results["first_call"], results["cuda_compile"] = run_compile(env.device)
    if skipped:
        results["sections_skipped"] = skipped
        print(f"not run (--max-seconds {args.max_seconds:g} spent): {', '.join(skipped)}", flush=True)
    results["seconds"] = time.perf_counter() - started
    try:
        results["meta"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass

    if results["cases"]:
        print()
        print(report.format_console(results))
        print()
        print(report.target_summary(results))
    path = report.write_json(results, args.out)
    print(f"\nresults: {os.path.relpath(path)}")
    if args.docs:
        docs = report.write_docs(results, args.docs, args.out, os.path.join(HERE, "notes.md"))
        print(f"docs: {os.path.relpath(docs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
