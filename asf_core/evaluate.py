"""Evaluate checkpoints beside the classical baselines on exactly the same images and masks.

    python -m asf_core.evaluate --checkpoint PATH [--checkpoint PATH2 ...] --data-dir DIR --n 1000 \
        --steps 20 --samples 8 --solver heun --seed 0 --json OUT.json [--markdown OUT.md]

For each model it reports PSNR and SSIM (whole image, and missing pixels only) of one posterior
sample, of the mean of K samples, and of the one-step estimate x̂1 = x_0 + v(x_0, 0) (the posterior
mean), with NFE and seconds per image. Baselines (nearest, linear, thin-plate spline, biharmonic)
are deterministic, so their one estimate fills all three columns. PSNR is in dB on [0, 1] values,
averaged over images. Masks come from --seed, and so does every model's x_0, so the differences
between models come from the models alone.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from asf_core import baselines
from asf_core.checkpoint import CheckpointError, load_model
from asf_core.data import DataError, load_cifar10, load_image_folder, to_float
from asf_core.fields import MASK_KINDS, check_fraction, make_mask
from asf_core.metrics import image_metrics
from asf_core.models.knobs import check_knobs
from asf_core.reconstruct import reconstruct
from asf_core.sampling import METHODS, check_method, check_steps
from asf_core.train import parse_overrides

ESTIMATES = ("sample", "mean", "onestep")
METRICS = ("psnr", "ssim", "psnr_missing", "ssim_missing")


def _summarise(per_image: dict[str, list[dict[str, np.ndarray]]]) -> dict:
    return {
        est: {m: float(np.concatenate([r[m] for r in rows]).mean()) for m in METRICS}
        for est, rows in per_image.items()
    }


def calibration(samples: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """Summed over a batch, on the missing pixels: the squared distance between two samples of the
    same image, and the first sample's squared error from the truth. A calibrated sampler draws
    the truth as one more sample of the posterior, so the two are equal in expectation."""
    hidden = ~mask[:, None].expand_as(truth)
    pair = (samples[0] - samples[1])[hidden].square().sum()
    err = (samples[0] - truth)[hidden].square().sum()
    return float(pair), float(err)


def calibration_record(pair: float, err: float) -> dict:
    return {"sample_pair_msd": pair, "sample_sq_error": err, "ratio": pair / err if err else float("nan")}


def evaluate_model(model, images, masks, args, model_kwargs: dict) -> dict:
    gen = torch.Generator().manual_seed(args.seed)  # the same x_0 for every model
    per_image = {e: [] for e in ESTIMATES}
    seconds, nfe, pair, err = 0.0, 0, 0.0, 0.0
    for xb, mb in tqdm(
        list(zip(images.split(args.batch_size), masks.split(args.batch_size))), desc=model.arch, leave=False
    ):
        t0 = time.perf_counter()
        rec = reconstruct(
            model,
            xb,
            mb,
            steps=args.steps,
            solver=args.solver,
            samples=args.samples,
            generator=gen,
            **model_kwargs,
        )
        seconds += time.perf_counter() - t0
        nfe = rec.nfe
        for est in ESTIMATES:
            per_image[est].append(image_metrics(getattr(rec, est), xb, mb))
        if args.samples > 1:
            p, e = calibration(rec.samples, xb, mb)
            pair, err = pair + p, err + e
    out = {**_summarise(per_image), "nfe": nfe, "seconds_per_image": seconds / len(images)}
    if args.samples > 1:
        out["calibration"] = calibration_record(pair, err)
    return out


def evaluate_lmmse(images, masks, args) -> dict:
    """The linear-MMSE baseline with its exact posterior samples in the sample / mean columns."""
    from asf_core import lmmse

    s, gen = lmmse.stats(tuple(images.shape[-2:]), args.data_dir), torch.Generator().manual_seed(args.seed)
    per_image, seconds, pair, err = {e: [] for e in ESTIMATES}, 0.0, 0.0, 0.0
    k = max(args.samples, 2)
    for xb, mb in zip(images.split(args.batch_size), masks.split(args.batch_size)):
        t0 = time.perf_counter()
        mean, draws = lmmse.reconstruct(xb, mb, s, samples=k, generator=gen)
        seconds += time.perf_counter() - t0
        for est, out in zip(ESTIMATES, (draws[0], draws[: args.samples].mean(0), mean)):
            per_image[est].append(image_metrics(out, xb, mb))
        p, e = calibration(draws, xb, mb)
        pair, err = pair + p, err + e
    return {
        **_summarise(per_image),
        "nfe": 0,
        "seconds_per_image": seconds / len(images),
        "calibration": calibration_record(pair, err),
    }


def evaluate_baseline(name: str, images, masks, args) -> dict:
    if name == "lmmse":
        return evaluate_lmmse(images, masks, args)
    rows, seconds = [], 0.0
    for xb, mb in zip(images.split(args.batch_size), masks.split(args.batch_size)):
        t0 = time.perf_counter()
        out = baselines.reconstruct(name, xb, mb)
        seconds += time.perf_counter() - t0
        rows.append(image_metrics(out, xb, mb))
    summary = _summarise({"sample": rows})["sample"]
    return {**{e: summary for e in ESTIMATES}, "nfe": 0, "seconds_per_image": seconds / len(images)}


def markdown_table(records: list[dict], protocol: dict) -> str:
    k = protocol["samples"]
    head = (
        f"| method | NFE | s/img | PSNR 1 / {k} / x̂1 | SSIM 1 / {k} / x̂1 "
        f"| PSNR missing 1 / {k} / x̂1 | SSIM missing 1 / {k} / x̂1 |"
    )
    head += " sample pair / error |"
    lines = [head, "|" + " --- |" * 8]
    for r in records:
        cell = lambda m, f, r=r: " / ".join(format(r[e][m], f) for e in ESTIMATES)  # noqa: E731
        if r["kind"] == "baseline" and "calibration" not in r:
            cell = lambda m, f, r=r: format(r["sample"][m], f)  # noqa: E731
        lines.append(
            f"| {r['name']} | {r['nfe']} | {r['seconds_per_image']:.4f} | {cell('psnr', '.2f')} | "
            f"{cell('ssim', '.3f')} | {cell('psnr_missing', '.2f')} | {cell('ssim_missing', '.3f')} | "
            + (f"{r['calibration']['ratio']:.2f} |" if "calibration" in r else "– |")
        )
    caption = (
        f"{protocol['n']} {protocol['images']} images, {protocol['mask']} masks with "
        f"{protocol['fraction']:.0%} observed, seed {protocol['seed']}, {protocol['steps']} "
        f"{protocol['solver']} steps, K={k} samples. PSNR in dB on [0, 1]; "
        '"1 / K / x̂1" = one sample / mean of K samples / one-step estimate at t=0; '
        "baselines are deterministic (one value), except lmmse, whose samples are exact; "
        '"sample pair / error": the squared distance between two samples of an image over a '
        "sample's squared error from the truth, on the missing pixels (1 for a calibrated sampler)."
    )
    return "\n".join(lines) + "\n\n" + caption + "\n"


def repo_relative(path: str | Path) -> str:
    """A checkpoint's name as committed files should record it: relative to the repository where it
    lies inside it, else only its folder name (never a path of the machine it ran on)."""
    path, root = Path(path).resolve(), Path(__file__).resolve().parents[1]
    return str(path.relative_to(root)) if path.is_relative_to(root) else path.name


def check_device(name: str) -> torch.device:
    """The torch device called `name`, or ValueError with one line when it is not here."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device name (cpu, cuda, cuda:1, mps)") from None
    usable = {
        "cpu": lambda: True,
        "cuda": torch.cuda.is_available,
        "mps": lambda: torch.backends.mps.is_available(),
    }.get(device.type, lambda: False)
    if not usable():
        raise ValueError(f"--device {name}: no such device on this machine (use --device cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def check_writable(path: str | Path | None) -> None:
    """ValueError unless `path` can be written (its folder is made if missing); nothing is left behind."""
    if not path:
        return
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; give a file name for the output")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"):
            pass
    except OSError as e:
        raise ValueError(f"{path}: cannot be written ({e.strerror or e})") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m asf_core.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", action="append", default=[], help="run or pretrained folder (repeatable)")
    p.add_argument("--data-dir", default=None, help="CIFAR-10 root (else $ASF_DATA_DIR, else download)")
    p.add_argument("--images", default=None, help="evaluate on a folder of images instead of CIFAR-10")
    p.add_argument("--n", type=int, default=1000, help="number of test images")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--samples", type=int, default=8, help="K posterior samples per image")
    p.add_argument("--solver", default="heun", help=", ".join(METHODS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fraction", type=float, default=0.2, help="observed fraction")
    p.add_argument("--mask", default="random", help=", ".join(MASK_KINDS))
    p.add_argument(
        "--baselines",
        default="auto",
        help="comma list, none, or auto: every baseline that applies (lmmse only on 32×32 images)",
    )
    p.add_argument("--model-kwargs", default="", help='extra model knobs, e.g. "radius=0.3"')
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None, help="write the records here")
    p.add_argument("--markdown", default=None, help="write the table here (default: beside --json)")
    return p


def run(args: argparse.Namespace, command: str = "") -> dict:
    """Evaluate; `command` (how it was invoked) is recorded so a table can show what regenerates it."""
    check_fraction(args.fraction)
    check_steps(args.steps)
    check_method(args.solver)
    if args.n < 1 or args.samples < 1 or args.batch_size < 1:
        raise ValueError("--n, --samples and --batch-size must be >= 1")
    if args.mask not in MASK_KINDS:
        raise ValueError(f"unknown mask kind {args.mask!r}; choose from {', '.join(MASK_KINDS)}")
    names = [] if args.baselines in ("", "none") else args.baselines.split(",")
    if args.baselines == "auto":
        names = list(baselines.BASELINES)
    for name in names:
        if name not in baselines.BASELINES:
            raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(baselines.BASELINES)}")
    device = check_device(args.device)
    for out in (args.json, args.markdown or (args.json and Path(args.json).with_suffix(".md"))):
        check_writable(out)  # before the evaluation, not after it has run for an hour
    models = [load_model(path, device) for path in args.checkpoint]
    model_kwargs = parse_overrides(args.model_kwargs)
    for path, model in zip(args.checkpoint, models):
        check_knobs(f"--model-kwargs: {model.arch} ({Path(path).name})", model.knobs(), model_kwargs)
    if not models and not names:
        raise ValueError("nothing to evaluate: give --checkpoint and/or --baselines")
    size = models[0].checkpoint_config.get("train", {}).get("image_size", 32) if models else 32
    if args.images:
        images = to_float(load_image_folder(args.images, size=size, limit=args.n))
    else:
        images = to_float(load_cifar10("test", args.data_dir)[: args.n])
    if args.baselines == "auto" and images.shape[-2:] != (32, 32):
        names.remove("lmmse")  # its statistics are CIFAR-10's, at 32×32
    masks = make_mask(
        len(images),
        images.shape[2],
        images.shape[3],
        args.fraction,
        args.mask,
        generator=torch.Generator().manual_seed(args.seed),
    )
    protocol = {
        "n": len(images),
        "images": args.images or "CIFAR-10 test",
        "mask": args.mask,
        "fraction": args.fraction,
        "seed": args.seed,
        "steps": args.steps,
        "solver": args.solver,
        "samples": args.samples,
        "model_kwargs": model_kwargs,
        "command": command,
    }
    records = []
    for path, model in zip(args.checkpoint, models):
        rec = evaluate_model(model, images, masks, args, model_kwargs)
        label = f"{model.arch} ({Path(path).resolve().name})"
        records.append({"name": label, "kind": "model", "checkpoint": repo_relative(path), **rec})
        print(f"{label}: PSNR mean-of-{args.samples} {rec['mean']['psnr']:.2f} dB", file=sys.stderr)
    for name in names:
        records.append({"name": name, "kind": "baseline", **evaluate_baseline(name, images, masks, args)})
    result = {"protocol": protocol, "methods": records}
    table = markdown_table(records, protocol)
    print(table)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        md = Path(args.markdown) if args.markdown else Path(args.json).with_suffix(".md")
        md.write_text(table)
    elif args.markdown:
        Path(args.markdown).write_text(table)
    return result


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        run(args, command=shlex.join(["python", "-m", "asf_core.evaluate", *argv]))
    except (ValueError, DataError, CheckpointError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
