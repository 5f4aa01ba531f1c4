"""Export a training run's EMA weights as a release folder with a model card.

    python -m asf_core.export --run runs/perceiver_io_grid --out pretrained/perceiver_io_grid \
        [--eval-json eval.json] [--dtype float16]

The release folder holds config.json, model.safetensors (fp16 by default, to stay small enough
for a Space without LFS) and MODEL_CARD.md: the exact training command, steps, images seen, wall
time, hardware, and the evaluation table written by `asf_core.evaluate`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import fields
from pathlib import Path

import torch

from asf_core.checkpoint import WEIGHTS_NAME, CheckpointError, load_model, save_pretrained
from asf_core.evaluate import markdown_table
from asf_core.train import TrainConfig

MAX_BYTES = 10_000_000
METRIC_NAMES = {"val_psnr_onestep": "x̂1", "val_psnr_sample": "one sample"}


# paths a training run records that name the machine it ran on, or its temporary run folders
PATH_FIELDS = ("out", "data_dir", "init_from", "encoder_from")


def released_train(train: dict, name: str) -> dict:
    """The training record as a release keeps it: `out` becomes runs/NAME, `data_dir` goes (the data
    is found through $ASF_DATA_DIR), and a checkpoint it started from stays only where it is a
    committed one (a path under the repository outside runs/), named relative to the repository."""
    root = Path(__file__).resolve().parents[1]
    kept = dict(train, out=f"runs/{name}", data_dir="")
    for key in ("init_from", "encoder_from"):
        path = Path(train.get(key) or "")
        where = path.resolve() if str(path) not in ("", ".") else None
        inside = where is not None and where.is_relative_to(root) and not where.is_relative_to(root / "runs")
        kept[key] = str(where.relative_to(root)) if inside else ""
    return kept


def card_table(eval_json: str | Path, release: str) -> str:
    """The card's evaluation: this release's row and the baselines' from an `asf_core.evaluate` JSON,
    with the command that regenerates them."""
    data = json.loads(Path(eval_json).read_text())
    rows = [
        r for r in data["methods"] if r["kind"] == "baseline" or Path(r.get("checkpoint", "")).name == release
    ]
    if not any(r["kind"] == "model" for r in rows):
        raise ValueError(
            f"{eval_json} has no record of {release}; evaluate pretrained/{release} into it first"
        )
    command = data["protocol"].get("command")
    return markdown_table(rows, data["protocol"]) + (f"\n```bash\n{command}\n```\n" if command else "")


def training_command(train: dict) -> str:
    """The `python -m asf_core.train` command that reproduces a run (non-default flags only)."""
    parts = ["python -m asf_core.train"]
    for f in fields(TrainConfig):
        value = train.get(f.name, f.default)
        if value == f.default and f.name not in ("arch", "preset", "max_steps"):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            parts.append(flag if value else f"--no-{f.name.replace('_', '-')}")
        else:
            parts.append(f"{flag} {value}")
    prefix = f"torchrun --nproc_per_node {train['world_size']} -m" if train.get("world_size", 1) > 1 else None
    command = " ".join(parts)
    return command.replace("python -m", prefix, 1) if prefix else command


def hardware() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores"


def parametrisation(model: dict) -> str:
    """One sentence on what the network is asked to learn."""
    kind = {"tps": "thin-plate-spline", "knn": "Gaussian k-nearest"}[model.get("interp", "knn")]
    text = f"Every query sees the {kind} interpolation of the observations at its coordinate"
    if model.get("encoder"):  # the grid encoder's estimate takes the interpolation's place
        text = (
            "The grid observation encoder (`asf_core/models/encoder.py`: the observations splatted onto "
            "the pixel grid, the thin-plate spline added, a conv U-Net) gives every query its features "
            "and a posterior-mean estimate x̂ = spline + correction at its coordinate"
        )
    if model.get("prior", "none") == "gaussian":
        text += (
            ", and the network's output is added to the velocity of an independent-Gaussian model "
            "around that estimate (`asf_core.nn.PriorVelocity`): at initialisation x̂1 is the "
            "estimate, and training learns what the other pixels add to it"
        )
    text += "."
    if model.get("decoder") == "window":
        w = model.get("decoder_window", 8)
        text += (
            f" Each query reads the scanned sequence through a window decoder: it attends to the tokens "
            f"within "
            f"{w} places of it along the Hilbert curve and along its transpose ({2 * (2 * w + 1)} slots), so "
            "the cost stays linear in the number of points."
        )
    return text


def model_card(
    name: str, config: dict, n_params: int, eval_table: str | None, hw: str, note: str = ""
) -> str:
    train = config["train"]
    hours = train.get("wall_seconds", 0) / 3600
    data = (
        "CIFAR-10 (45,000 training images; the last 5,000 held out for validation)"
        if train.get("dataset", "cifar10") == "cifar10"
        else f"`{train.get('dataset')}` images"
    )
    how = (
        "Trained to regress the posterior mean (`--objective mean`; not a sampler)"
        if train.get("objective") == "mean"
        else f"Trained by conditional flow matching from the source `{train.get('source')}` "
        f"(σ = {train.get('sigma')})"
    )
    lines = [
        f"# {name}",
        "",
        f"Architecture `{config['arch']}`, preset `{train.get('preset')}`, {n_params / 1e6:.2f}M parameters, "
        f"EMA weights (decay {train.get('ema_decay')}). {how} on {data} to reconstruct "
        f"images from {train.get('obs_fraction', 0.2):.0%} of their pixels.",
        "",
        parametrisation(config["model"]),
        "",
        *([f"**Status:** {note}", ""] if note else []),
        "## Training",
        "",
        "```bash",
        training_command(train),
        "```",
        "",
        "| steps | images seen | wall time | hardware |",
        "| --- | --- | --- | --- |",
        f"| {train.get('step')} | {train.get('images_seen'):,} | {hours:.2f} h | {hw} |",
        "",
        f"Validation ({train.get('val_n')} held-out training images, fixed masks, EMA weights, "
        f"{train.get('val_steps')} Euler steps): "
        + ", ".join(f"{METRIC_NAMES.get(k, k)} {v:.2f} dB" for k, v in config.get("metrics", {}).items()),
        "",
        "## Evaluation",
        "",
        eval_table.strip() if eval_table else "Not evaluated yet.",
        "",
        "Produced by `python -m asf_core.evaluate`; the classical baselines ran on the same images and "
        "masks.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m asf_core.export", description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="training run folder (its best/ is exported)")
    p.add_argument("--out", required=True, help="release folder, e.g. pretrained/perceiver_io_grid")
    p.add_argument("--eval", default=None, help="Markdown table from asf_core.evaluate for the card")
    p.add_argument(
        "--eval-json",
        default=None,
        help="JSON from asf_core.evaluate: the card shows this release's row and the baselines'",
    )
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    p.add_argument("--hardware", default=None, help="what it was trained on (default: this machine)")
    p.add_argument("--note", default="", help="a status line for the card, e.g. what it falls short of")
    args = p.parse_args(argv)
    try:  # read before anything is written
        table = card_table(args.eval_json, Path(args.out).name) if args.eval_json else None
        table = Path(args.eval).read_text() if args.eval else table
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"error: evaluation table: {e}")
    try:
        model = load_model(args.run)
    except CheckpointError as e:
        sys.exit(f"error: {e}")
    config = model.checkpoint_config
    config["train"] = released_train(config["train"], Path(args.out).name)
    out = save_pretrained(
        model,
        args.out,
        arch=config["arch"],
        train=config["train"],
        metrics=config.get("metrics"),
        dtype=getattr(torch, args.dtype),
    )
    size = (out / WEIGHTS_NAME).stat().st_size
    if size > MAX_BYTES:
        sys.exit(f"error: {out / WEIGHTS_NAME} is {size / 1e6:.1f} MB, over the 10 MB limit for a release")
    n_params = sum(p.numel() for p in model.parameters())
    card = model_card(Path(args.out).name, config, n_params, table, args.hardware or hardware(), args.note)
    (out / "MODEL_CARD.md").write_text(card)
    print(f"wrote {out} ({size / 1e6:.1f} MB weights)")


if __name__ == "__main__":
    main()
