"""How fast the app answers, measured through the same Reconstructor the UI calls.

    python -m tools.app_bench                     # every shipped checkpoint, 20 Euler steps, 32x32
    python -m tools.app_bench --steps 20 --repeats 5 --json docs/app_speed.json

For each method it times, on a bundled sample with a 20% random mask: the first streamed frame
after the call (what the user waits for after clicking), the whole run, and a locality map for one
pixel (attention + gradient influence). The first call of each model (load, warm-up) is reported
apart, as the cold start. The figures are medians over --repeats runs; the targets of the app issue
(first frame < 1 s, run < 3 s, locality < 1 s on 2 CPU cores) are printed beside them, not asserted.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from app.handlers import samples
from app.inference import Frame, Reconstructor, Result, arch_specs

TARGETS = {"first_frame_s": 1.0, "run_s": 3.0, "locality_s": 1.0}


def time_run(rec: Reconstructor, image, mask, method: str, steps: int, solver: str) -> dict:
    start = time.perf_counter()
    first = None
    for item in rec.run(image, mask, method, steps=steps, solver=solver, seed=0):
        if isinstance(item, Frame) and first is None:
            first = time.perf_counter() - start
        if isinstance(item, Result):
            result = item
    total = time.perf_counter() - start
    return {"first_frame_s": first if first is not None else total, "run_s": total,
            "psnr": result.metrics.get("psnr")}


def time_locality(rec: Reconstructor, image, mask, method: str) -> float:
    start = time.perf_counter()
    rec.locality(image, mask, method, (16, 16))
    return time.perf_counter() - start


def bench(rec: Reconstructor, methods: list[str], steps: int, solver: str, repeats: int,
          threads: int) -> list[dict]:
    torch.set_num_threads(threads)
    image = rec.prepare(samples()[0][0]).image
    mask = rec.make_mask("random", 0.2, seed=0)
    rows = []
    for method in methods:
        cold_start = time.perf_counter()
        cold = time_run(rec, image, mask, method, steps, solver)  # loads the checkpoint, warms up
        cold["run_s"] = time.perf_counter() - cold_start
        runs = [time_run(rec, image, mask, method, steps, solver) for _ in range(repeats)]
        row = {"method": method, "steps": steps, "solver": solver, "threads": threads,
               "cold_run_s": cold["run_s"], "psnr": runs[-1]["psnr"]}
        for key in ("first_frame_s", "run_s"):
            row[key] = statistics.median(r[key] for r in runs)
        if method in arch_specs():
            time_locality(rec, image, mask, method)  # warm-up
            row["locality_s"] = statistics.median(time_locality(rec, image, mask,
                                                                method) for _ in range(repeats))
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    def cell(row, key):
        value = row.get(key)
        if value is None:
            return "–"
        mark = "" if key not in TARGETS else (" ✓" if value <= TARGETS[key] else " ✗")
        return f"{value:.2f}{mark}"

    lines = ["| method | first frame (s) | whole run (s) | locality map (s) | cold first run (s) |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['method']} | {cell(r, 'first_frame_s')} | {cell(r, 'run_s')} | "
                     f"{cell(r, 'locality_s')} | {cell(r, 'cold_run_s')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.app_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="", help="comma-separated (default: every runnable method)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--solver", default="euler")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", default="", help="also write the records here")
    args = parser.parse_args(argv)
    rec = Reconstructor()
    methods = [m for m in args.methods.split(",") if m] or rec.methods()
    unknown = sorted(set(methods) - set(rec.methods()))
    if unknown:
        parser.error(f"not runnable here: {', '.join(unknown)}; runnable: {', '.join(rec.methods())}")
    rows = bench(rec, methods, args.steps, args.solver, args.repeats, args.threads)
    print(f"{platform.machine()}, {args.threads} threads, torch {torch.__version__}; "
          f"{args.steps} {args.solver} steps on a 32x32 sample, median of {args.repeats}; "
          "targets: first frame < 1 s, run < 3 s, "
          f"locality < 1 s")
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
