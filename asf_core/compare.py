"""The architecture comparison table, measured: `python -m asf_core.bench compare`.

    python -m asf_core.bench compare --checkpoint pretrained/perceiver_io_grid \
        --checkpoint pretrained/local_implicit_grid --checkpoint pretrained/mamba_d16_grid \
        --eval-json docs/eval_standard.json --json docs/compare.json --readme README.md

For each checkpoint, in a fresh process on the same threads and the same batch size: parameters,
training throughput (flow-matching steps with AdamW, `--n-queries` query pixels per image, as
`asf_core.train` runs them), the time of one CIFAR-10 epoch (50,000 images) at that rate, peak
training memory, and sampling latency at batch 1 and batch 64. Quality (PSNR of one sample, the
mean of K and x̂1, SSIM) comes from the evaluation command's JSON (`--eval-json`, matched by
checkpoint folder name, baselines included), since the standard protocol takes hours per model
on a CPU; without one, `--eval-n` images are evaluated here. Every figure is also given as a
ratio to Perceiver IO, beside the claims of the ASF description.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import torch

from asf_core.checkpoint import load_model
from asf_core.measure import median, peak_rss, reset_peak_rss, run_isolated, status_bytes
from asf_core.models import SPECS

EPOCH_IMAGES = 50_000  # the CIFAR-10 training set
README_START, README_END = "<!-- bench compare: start -->", "<!-- bench compare: end -->"
# the ASF description's claims, per architecture: PSNR range, epoch time and memory vs Perceiver IO
CLAIMS = {
    "perceiver_io": {"psnr": "22-24 dB", "epoch": "1", "memory": "8 GB = 1"},
    "local_implicit": {"psnr": "23-25 dB", "epoch": "1.10 (10% slower)", "memory": "7 GB = 0.88"},
    "mamba": {"psnr": "23-26 dB", "epoch": "0.70-0.80 (20-30% faster)", "memory": "6 GB = 0.75"},
}


def train_throughput(model: torch.nn.Module, batch: int, n_queries: int, steps: int, warmup: int) -> dict:
    """Images per second of full training steps (loss, backward, clip, AdamW) on synthetic
    32x32 images, which cost the same as CIFAR-10's; and the process's peak memory meanwhile."""
    from asf_core.data import synthetic_images
    from asf_core.train import TrainConfig, make_batch, train_step

    train = getattr(model, "checkpoint_config", {}).get("train", {})
    cfg = TrainConfig(batch_size=batch, n_queries=n_queries, source=train.get("source", "noise"),
                      sigma=float(train.get("sigma", 1.0)))
    images = synthetic_images(256, 32)
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    extra_kwargs = getattr(model, "training_kwargs", None)
    model.train()
    times = []
    for i in range(warmup + steps):
        batch_ = make_batch(images, cfg, gen, torch.device("cpu"))
        extra = extra_kwargs(batch, gen) if extra_kwargs else {}
        t0 = time.perf_counter()
        train_step(model, model, batch_, opt, cfg, gen, extra)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    model.eval()
    per_step = median(times)
    return {"train_images_per_s": batch / per_step, "train_step_seconds": per_step,
            "epoch_minutes": EPOCH_IMAGES / (batch / per_step) / 60}


def sampling_latency(model: torch.nn.Module, batch: int, steps: int, solver: str, repeats: int) -> float:
    """Median seconds of one whole reconstruction (one sample per image) of a 32x32 batch."""
    from asf_core.fields import make_mask
    from asf_core.reconstruct import reconstruct

    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, 32, 32, generator=g) * 2 - 1
    mask = make_mask(batch, 32, 32, 0.2, generator=g)
    times = []
    for i in range(repeats + 1):  # the first run is the warm-up
        t0 = time.perf_counter()
        reconstruct(model, images, mask, steps=steps, solver=solver, generator=g)
        if i:
            times.append(time.perf_counter() - t0)
    return median(times)


def measure(spec: dict) -> dict:
    """Everything measured for one checkpoint, in this process (run it in a fresh one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(spec["threads"])
    try:
        return _measure(spec)
    finally:
        torch.set_num_threads(threads)


def _measure(spec: dict) -> dict:
    torch.manual_seed(0)
    reset_peak_rss()
    base = status_bytes("VmRSS") or peak_rss()
    model = load_model(spec["checkpoint"])
    out = {"arch": model.arch, "params": sum(p.numel() for p in model.parameters())}
    n_queries = 32 * 32 if SPECS[model.arch].full_grid else spec["n_queries"]
    out["train_queries"] = n_queries
    out.update(train_throughput(model, spec["batch"], n_queries, spec["train_steps"], spec["warmup"]))
    out["train_peak_bytes"] = int(peak_rss() - base)
    for b in spec["latency_batches"]:
        repeats = spec["repeats"] if b == 1 else 1
        out[f"latency_b{b}_s"] = sampling_latency(model, b, spec["steps"], spec["solver"], repeats)
    return out


def quality_records(eval_jsons: list[str]) -> tuple[dict[str, dict], list[dict], dict | None]:
    """Model records by checkpoint folder name, baseline records, and the protocol, from the
    evaluation command's JSON files (later files override earlier ones)."""
    models, baselines, protocol = {}, {}, None
    for path in eval_jsons:
        data = json.loads(Path(path).read_text())
        if protocol is None:
            protocol = data["protocol"]
        elif {k: data["protocol"][k] for k in ("n", "seed", "steps", "solver", "samples")} != {
                k: protocol[k] for k in ("n", "seed", "steps", "solver", "samples")}:
            raise ValueError(f"{path}: its protocol differs from {eval_jsons[0]}'s; "
                             "a table must compare one protocol")
        for r in data["methods"]:
            if r["kind"] == "model":
                models[Path(r["checkpoint"]).resolve().name] = r
            else:
                baselines[r["name"]] = r
    return models, list(baselines.values()), protocol


def evaluate_here(checkpoints: list[str], args) -> list[str]:
    """Run the evaluation command on --eval-n images and return its JSON path."""
    from asf_core import evaluate

    path = str(Path(args.json or "compare.json").with_name("compare_eval.json"))
    evaluate.run(evaluate.build_parser().parse_args(
        [a for c in checkpoints for a in ("--checkpoint", c)]
        + ["--n", str(args.eval_n), "--steps", str(args.eval_steps), "--solver", args.eval_solver,
           "--samples", str(args.eval_samples), "--seed", "0", "--json", path]
        + (["--data-dir", args.data_dir] if args.data_dir else [])))
    return [path]


def _ratio(x: float | None, ref: float | None) -> str:
    return f"{x / ref:.2f}" if x is not None and ref else "-"


def render(rows: list[dict], baselines: list[dict], protocol: dict | None, setup: dict) -> str:
    """The README section: quality beside the baselines, then cost as ratios to Perceiver IO."""
    k = protocol["samples"] if protocol else "K"
    lines = [f"| method | params | PSNR 1 / {k} / x̂1 (dB) | SSIM 1 / {k} / x̂1 | claimed PSNR |",
             "| --- | --: | --- | --- | --- |"]
    for r in rows:
        q = r.get("quality")
        psnr = (" / ".join(f"{q[e]['psnr']:.2f}" for e in ("sample", "mean", "onestep")) if q
                else "not evaluated")
        ssim = " / ".join(f"{q[e]['ssim']:.3f}" for e in ("sample", "mean", "onestep")) if q else "-"
        lines.append(f"| {r['name']} | {r.get('params', 0) / 1e6:.2f}M | {psnr} | {ssim} | "
                     f"{CLAIMS.get(r.get('arch'), {}).get('psnr', '-')} |")
    for b in baselines:
        if "onestep" in b:  # a baseline with exact samples (linear-MMSE): all three, as for a model
            psnr, ssim = (" / ".join(f"{b[e][m]:{f}}" for e in ("sample", "mean", "onestep"))
                          for m, f in (("psnr", ".2f"), ("ssim", ".3f")))
        else:
            psnr, ssim = f"{b['sample']['psnr']:.2f}", f"{b['sample']['ssim']:.3f}"
        lines.append(f"| {b['name']} (baseline) | - | {psnr} | {ssim} | - |")
    if protocol:
        lines += ["", f"Quality: {protocol['n']} {protocol['images']} images, {protocol['fraction']:.0%} "
                      f"{protocol['mask']} masks, seed {protocol['seed']}, {protocol['steps']} "
                      f"{protocol['solver']} steps, K={k} (`python -m asf_core.evaluate`)."]
    ref = next((r for r in rows if r.get("arch") == "perceiver_io" and "reason" not in r), {})
    lat_head = " / ".join(f"b={b}" for b in setup["latency_batches"])
    lines += ["", "| method | train img/s | epoch (min) | epoch vs Perceiver IO | claimed | peak train "
              f"memory (MiB) | memory vs Perceiver IO | claimed | sample latency {lat_head} (s) |",
              "| --- | --: | --: | --: | --- | --: | --: | --- | --- |"]
    for r in rows:
        if "reason" in r:
            lines.append(f"| {r['name']} | {r['reason']} | | | | | | | |")
            continue
        claim = CLAIMS.get(r["arch"], {})
        lat = " / ".join(f"{r[f'latency_b{b}_s']:.2f}" for b in setup["latency_batches"])
        lines.append(
            f"| {r['name']} | {r['train_images_per_s']:.1f} | {r['epoch_minutes']:.0f} | "
            f"{_ratio(r['epoch_minutes'], ref.get('epoch_minutes'))} | {claim.get('epoch', '-')} | "
            f"{r['train_peak_bytes'] / 2**20:.0f} | "
            f"{_ratio(r['train_peak_bytes'], ref.get('train_peak_bytes'))} | {claim.get('memory', '-')} | "
            f"{lat} |")
    lines += ["", f"Cost: {setup['threads']} CPU thread(s), batch {setup['batch']} with "
                  f"{setup['n_queries']} query pixels per image for training (all 1,024 for a model "
                  "that answers only on the full grid, the U-Net; median of "
                  f"{setup['train_steps']} steps), epoch = {EPOCH_IMAGES:,} images at that rate; latency is "
                  f"one 32x32 reconstruction, {setup['steps']} {setup['solver']} steps, one sample per "
                  "image; "
                  f"peak memory is the process's resident high-water mark above its size before the model "
                  f"loaded. Measured by `python -m asf_core.bench compare` on {setup['machine']}."]
    return "\n".join(lines) + "\n"


def update_readme(path: str, section: str) -> None:
    """Replace the text between the compare markers, or append a section with them."""
    text = Path(path).read_text()
    block = f"{README_START}\n{section}{README_END}"
    if README_START in text and README_END in text:
        text = re.sub(re.escape(README_START) + ".*?" + re.escape(README_END), lambda _: block, text,
                      flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n## Architecture comparison\n\n" + block + "\n"
    Path(path).write_text(text)


def compare(args) -> dict:
    if not args.checkpoint:
        raise ValueError("give at least one --checkpoint")
    if args.readme and not Path(args.readme).is_file():  # before the measurements, not after
        raise ValueError(f"--readme {args.readme}: no such file")
    for path in args.eval_json:
        if not Path(path).is_file():
            raise ValueError(f"--eval-json {path}: no such file")
    import os
    import platform

    setup = {"threads": args.threads, "batch": args.batch, "n_queries": args.n_queries,
             "train_steps": args.train_steps, "warmup": 2, "steps": args.steps, "solver": args.solver,
             "repeats": args.repeats, "latency_batches": [int(b) for b in args.latency_batches.split(",")],
             "machine": args.machine
             or f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores"}
    eval_jsons = args.eval_json or (evaluate_here(args.checkpoint, args) if args.eval_n else [])
    quality, baselines, protocol = quality_records(eval_jsons) if eval_jsons else ({}, [], None)
    rows = []
    for path in args.checkpoint:
        spec = {**setup, "checkpoint": path}
        rec = {"name": Path(path).resolve().name, "checkpoint": path}
        rec.update(measure(spec) if args.in_process
                   else run_isolated(spec, args.timeout, ("asf_core.compare",)))
        rec["quality"] = quality.get(rec["name"])
        rows.append(rec)
        print(json.dumps({k: v for k, v in rec.items() if k != "quality"}), flush=True)
    section = render(rows, baselines, protocol, setup)
    print(section)
    result = {"setup": setup, "protocol": protocol, "rows": rows, "baselines": baselines}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    if args.readme:
        update_readme(args.readme, section)
    return result


def add_parser(sub) -> None:
    c = sub.add_parser("compare", help="the architecture comparison table (quality, speed, memory)")
    c.add_argument("--checkpoint", action="append", default=[], help="pretrained or run folder (repeatable)")
    c.add_argument("--eval-json", action="append", default=[],
                   help="evaluation command JSON with these checkpoints (repeatable; one protocol)")
    c.add_argument("--eval-n", type=int, default=0,
                   help="without --eval-json: evaluate this many test images here")
    c.add_argument("--eval-steps", type=int, default=20)
    c.add_argument("--eval-solver", default="heun")
    c.add_argument("--eval-samples", type=int, default=8)
    c.add_argument("--data-dir", default=None)
    c.add_argument("--batch", type=int, default=32, help="training batch, the same for every model")
    c.add_argument("--n-queries", type=int, default=256)
    c.add_argument("--train-steps", type=int, default=10)
    c.add_argument("--steps", type=int, default=20, help="ODE steps of the latency measurement")
    c.add_argument("--solver", default="euler")
    c.add_argument("--latency-batches", default="1,64")
    c.add_argument("--repeats", type=int, default=3, help="latency repeats at batch 1 (batch 64: one)")
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--machine", default="", help="how to describe this machine in the table")
    c.add_argument("--timeout", type=float, default=1800.0, help="seconds per checkpoint")
    c.add_argument("--in-process", action="store_true", help="measure in this process (tests)")
    c.add_argument("--json", default=None)
    c.add_argument("--readme", default=None, help="write the table between the compare markers here")


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))
