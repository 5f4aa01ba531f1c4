"""Benchmarks of ASF architectures from the command line.

    python -m asf_core.bench scaling --arch local_implicit --preset small --sizes 32,64,128,256 \
        --json docs/scaling_local_implicit.json --plot docs/scaling_local_implicit.png
    python -m asf_core.bench compare --checkpoint A --checkpoint B ...   # see asf_core.compare
    python -m asf_core.bench nfe --checkpoint A ... --data-dir DIR        # see asf_core.nfe

`scaling`: for each resolution R, a full R×R query grid and round(0.2·R²) random observed pixels
(seeded); one forward under torch.no_grad, timed as the median of `--repeats` runs after a warm-up,
and its peak memory. Variants come from the model module's `BENCH_VARIANTS` (name -> config
overrides; a module without it has the single variant "default"); an optional module-level
`bench_estimate_bytes(config, batch, n_obs, n_queries)` lets a run that cannot fit be skipped
before it starts. Each measurement runs in a fresh subprocess, so its peak is its own: on CPU the
peak RSS (VmHWM) minus the RSS once the model and inputs exist, which also counts a few MB of
one-time allocator and thread-pool growth; on CUDA torch.cuda.max_memory_allocated over the same.

Symbols: R resolution · Q = R² queries · N observed points · B batch.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from asf_core.measure import median, peak_rss, reset_peak_rss, run_isolated, status_bytes
from asf_core.models import MODELS, check_arch, make_config, model_from_config

OBS_FRACTION = 0.2
TARGET_LINEAR_RATIO = 1.15  # time growth 64² -> 256² over linear growth in points
TARGET_PEAK_BYTES = 2 * 1024**3  # 256², batch 1, forward


def bench_hooks(arch: str) -> tuple[dict, object]:
    """(variants, estimate_fn or None) from the module that defines the architecture."""
    check_arch(arch)
    module = importlib.import_module(MODELS[arch][0].__module__)
    return getattr(module, "BENCH_VARIANTS", {"default": {}}), getattr(module, "bench_estimate_bytes", None)


def make_inputs(resolution: int, batch: int, device: torch.device, seed: int = 0) -> dict:
    """A full query grid (shared, (Q, 2)) and round(0.2·R²) random observed pixels per image.

    Observations are in row-major pixel order, as `asf_core.fields.observations` returns them.
    """
    from asf_core.fields import pixel_coords

    g = torch.Generator().manual_seed(seed)
    grid = pixel_coords(resolution, resolution)
    q = grid.shape[0]
    n = max(1, round(OBS_FRACTION * q))
    pick = torch.rand(batch, q, generator=g).argsort(1)[:, :n].sort(1).values  # (B, N)
    inputs = dict(
        x_t=torch.randn(batch, q, 3, generator=g), t=torch.full((batch,), 0.5), query_xy=grid,
        obs_xy=grid[pick], obs_rgb=torch.rand(batch, n, 3, generator=g) * 2 - 1,
    )
    return {k: v.to(device) for k, v in inputs.items()}


def measure(spec: dict) -> dict:
    """One timed forward of one variant at one size, in this process. Returns seconds, peak_bytes."""
    device = torch.device(spec["device"])
    torch.manual_seed(0)
    model = model_from_config(spec["arch"], spec["config"]).to(device).eval()
    inputs = make_inputs(spec["resolution"], spec["batch"], device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        reset_peak_rss()
        base = status_bytes("VmRSS") or peak_rss()
    times, cpu_times = [], []
    with torch.no_grad():
        for i in range(spec["repeats"] + 1):  # the first run is the warm-up
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            model(**inputs)
            sync()
            if i:
                times.append(time.perf_counter() - t0)
                cpu_times.append(time.process_time() - c0)
    peak = (torch.cuda.max_memory_allocated(device) if cuda else peak_rss()) - base
    # CPU seconds too: on a shared machine the wall clock also counts time spent descheduled
    return {"seconds": median(times), "cpu_seconds": median(cpu_times), "times": times,
            "peak_bytes": int(peak)}


def scaling(args: argparse.Namespace) -> list[dict]:
    variants, estimate = bench_hooks(args.arch)
    if args.variants:
        unknown = set(args.variants.split(",")) - set(variants)
        if unknown:
            raise SystemExit(f"unknown variant(s) {sorted(unknown)}; {args.arch} has {sorted(variants)}")
        variants = {k: v for k, v in variants.items() if k in args.variants.split(",")}
    budget = args.budget_gb * 1024**3
    records = []
    for res in [int(s) for s in args.sizes.split(",")]:
        q = res * res
        n = max(1, round(OBS_FRACTION * q))
        for name, overrides in variants.items():
            cfg = make_config(args.arch, args.preset, **overrides)
            rec = {"arch": args.arch, "variant": name, "resolution": res, "n_queries": q, "n_obs": n,
                   "seconds": None, "cpu_seconds": None, "peak_bytes": None, "preset": args.preset,
                   "batch": args.batch, "device": args.device}
            est = estimate(cfg, args.batch, n, q) if estimate else None
            if est is not None and est > budget:
                rec["reason"] = f"skipped: estimated {est / 1024**3:.1f} GiB > budget {args.budget_gb:g} GiB"
            else:
                spec = {"arch": args.arch, "config": asdict(cfg), "resolution": res,
                        "batch": args.batch, "repeats": args.repeats, "device": args.device}
                if args.in_process:
                    try:
                        out = measure(spec)
                    except (MemoryError, RuntimeError) as e:  # RuntimeError covers torch's OOM
                        out = {"reason": f"{type(e).__name__}: {str(e)[:200]}"}
                else:
                    out = run_isolated(spec, args.timeout)
                rec.update(out)
            records.append(rec)
            print(_row(rec), flush=True)
    print(summary(records))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(records, indent=1) + "\n")
    if args.plot:
        plot(records, args.plot)
    return records


HEADER = (f"{'arch':<16}{'variant':<11}{'R':>5}{'queries':>9}{'obs':>8}{'seconds':>10}{'cpu s':>9}"
          f"{'peak MiB':>10}  note")


def _row(r: dict) -> str:
    sec = f"{r['seconds']:.4f}" if r["seconds"] is not None else "-"
    cpu = f"{r['cpu_seconds']:.3f}" if r.get("cpu_seconds") is not None else "-"
    mib = f"{r['peak_bytes'] / 2**20:.0f}" if r["peak_bytes"] is not None else "-"
    return (f"{r['arch']:<16}{r['variant']:<11}{r['resolution']:>5}{r['n_queries']:>9}{r['n_obs']:>8}"
            f"{sec:>10}{cpu:>9}{mib:>10}  {r.get('reason', '')}")


def table(records: list[dict]) -> str:
    return "\n".join([HEADER] + [_row(r) for r in records])


def _points(r: dict) -> int:
    return r["n_queries"] + r["n_obs"]


def summary(records: list[dict]) -> str:
    """The scaling targets, printed and not asserted."""
    lines = []
    by = {(r["variant"], r["resolution"]): r for r in records}
    for variant in dict.fromkeys(r["variant"] for r in records):
        ok = sorted((r for r in records if r["variant"] == variant and r["seconds"] is not None),
                    key=lambda r: r["resolution"])
        a, b = by.get((variant, 64)), by.get((variant, 256))
        if a and b and a["seconds"] and b["seconds"]:
            ratio = (b["seconds"] / a["seconds"]) / (_points(b) / _points(a))
            verdict = "meets" if ratio <= TARGET_LINEAR_RATIO else "misses"
            lines.append(f"{variant}: time 64²->256² grew {b['seconds'] / a['seconds']:.1f}x for "
                         f"{_points(b) / _points(a):.0f}x points: {ratio:.2f} of linear ({verdict} target "
                         f"<= {TARGET_LINEAR_RATIO})")
            if a.get("cpu_seconds") and b.get("cpu_seconds"):
                cpu_ratio = (b["cpu_seconds"] / a["cpu_seconds"]) / (_points(b) / _points(a))
                lines.append(f"{variant}: in CPU seconds {cpu_ratio:.2f} of linear")
        if b and b["peak_bytes"] is not None:
            verdict = "meets" if b["peak_bytes"] < TARGET_PEAK_BYTES else "misses"
            lines.append(f"{variant}: 256² peak memory {b['peak_bytes'] / 2**30:.2f} GiB "
                         f"({verdict} target < 2 GiB at batch 1)")
        for r0, r1 in zip(ok, ok[1:]):
            slope = math.log(r1["seconds"] / r0["seconds"]) / math.log(_points(r1) / _points(r0))
            lines.append(f"{variant}: {r0['resolution']}²->{r1['resolution']}² time ~ points^{slope:.2f}")
        failed = [r for r in records if r["variant"] == variant and r["seconds"] is None]
        if failed:
            lines.append(f"{variant}: no result from {failed[0]['resolution']}² up "
                         f"({failed[0].get('reason', '')})")
    return "\n".join(lines)


def plot(records: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ref = None
    for variant in dict.fromkeys(r["variant"] for r in records):
        ok = [r for r in records if r["variant"] == variant and r["seconds"] is not None]
        if not ok:
            continue
        x = [_points(r) for r in ok]
        ax.loglog(x, [r["seconds"] for r in ok], "o-", label=variant)
        ref = ref or (x, ok[0]["seconds"])
    if ref:
        xs, y0 = ref
        lo, hi = min(map(_points, records)), max(map(_points, records))
        ax.loglog([lo, hi], [y0 * lo / xs[0], y0 * hi / xs[0]], "k--", lw=1, label="linear reference")
        ax.loglog([lo, hi], [y0 * (lo / xs[0]) ** 2, y0 * (hi / xs[0]) ** 2], "k:", lw=1,
                  label="quadratic reference")
    failed = [f"{r['variant']} {r['resolution']}²: {r['reason']}" for r in records if r["seconds"] is None]
    if failed:
        ax.text(0.98, 0.02, "\n".join(failed), transform=ax.transAxes, fontsize=7, va="bottom", ha="right")
    r0 = records[0]
    ax.set_xlabel("points per image (queries + observations)")
    ax.set_ylabel("forward seconds (median)")
    ax.set_title(f"{r0['arch']} ({r0['preset']}), batch {r0['batch']}, {r0['device']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m asf_core.bench", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("scaling", help="forward time and peak memory against resolution")
    s.add_argument("--arch", required=True, choices=sorted(MODELS))
    s.add_argument("--preset", default="small")
    s.add_argument("--sizes", default="32,64,128,256", help="comma-separated resolutions R")
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--variants", default=None, help="comma-separated subset of the model's variants")
    s.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    s.add_argument("--budget-gb", type=float, default=8.0, help="skip runs estimated above this")
    s.add_argument("--timeout", type=float, default=900.0, help="seconds per measurement")
    s.add_argument("--in-process", action="store_true",
                   help="measure in this process (fast, for tests); peaks are exact only where "
                        "/proc/self/clear_refs can reset VmHWM")
    s.add_argument("--json", default=None)
    s.add_argument("--plot", default=None)
    sub.add_parser("scan", add_help=False, help="selective-scan throughput: the chunked reference "
                   "against a plain loop and a cumsum formulation "
                   "(options: python -m asf_core.ops.scan_bench -h)")
    from asf_core import compare, nfe  # their sub-commands; they import nothing from here

    compare.add_parser(sub)
    nfe.add_parser(sub)
    m = sub.add_parser("measure", help="internal: one measurement from a JSON spec, printed as JSON")
    m.add_argument("spec")
    return p


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["scan"]:
        from asf_core.ops import scan_bench

        scan_bench.main(argv[1:])
        return
    args = build_parser().parse_args(argv)
    if args.command == "scaling":
        scaling(args)
    elif args.command in ("compare", "nfe"):
        from asf_core import compare, nfe
        from asf_core.checkpoint import CheckpointError
        from asf_core.data import DataError

        try:
            compare.compare(args) if args.command == "compare" else nfe.sweep(args)
        except (ValueError, DataError, CheckpointError) as e:
            sys.exit(f"error: {e}")
    elif args.command == "measure":
        try:
            print(json.dumps(measure(json.loads(args.spec))))
        except (MemoryError, RuntimeError) as e:
            print(json.dumps({"reason": f"{type(e).__name__}: {str(e)[:200]}"}))


if __name__ == "__main__":
    main()
