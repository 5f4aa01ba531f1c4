"""Validation curves of training runs, as one JSON for docs/ (no paths: each run by its folder name).

    python tools/run_curves.py runs/encoder runs/local_implicit ... --json docs/grid_encoder_curves.json
    python tools/run_curves.py runs/hybrid_grid --json docs/grid_encoder_curves.json --update  # add one run

Per run: its command-line settings (those a reader needs to repeat it), and every validation event
(step, training images, wall seconds, x̂1 and one-sample PSNR on the held-out validation images).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KEEP = (
    "arch",
    "preset",
    "objective",
    "model_overrides",
    "source",
    "sigma",
    "lr",
    "batch_size",
    "n_queries",
    "max_steps",
    "freeze_encoder",
    "val_n",
    "val_steps",
)


def folder_name(path: str) -> str:
    """A checkpoint's name: runs/encoder/best -> encoder, pretrained/grid_encoder_small -> itself."""
    p = Path(path)
    return "" if not path else (p.parent.name if p.name in ("best", "last") else p.name)


def curve(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = json.loads((run / "last" / "config.json").read_text())["train"]
    val = [
        {k: r[k] for k in ("step", "images_seen", "wall_seconds", "val_psnr_onestep", "val_psnr_sample")}
        for r in rows
        if "val_psnr_onestep" in r
    ]
    rates = [r["images_per_s"] for r in rows if "images_per_s" in r]
    return {
        "run": run.name,
        "settings": {k: train.get(k) for k in KEEP},
        "encoder_from": folder_name(train.get("encoder_from") or ""),
        "images_per_s_median": sorted(rates)[len(rates) // 2] if rates else None,
        "validation": val,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--json", required=True)
    p.add_argument(
        "--update",
        action="store_true",
        help="keep the runs already in --json that are not given here (their folders may be gone)",
    )
    args = p.parse_args()
    curves = [curve(Path(r)) for r in args.runs]
    if args.update and Path(args.json).exists():
        given = {c["run"] for c in curves}
        kept = [c for c in json.loads(Path(args.json).read_text())["runs"] if c["run"] not in given]
        curves = kept + curves
    Path(args.json).write_text(json.dumps({"runs": curves}, indent=1) + "\n")
    print("| run | images | x̂1 (dB) | one sample (dB) | images/s |\n| --- | --- | --- | --- | --- |")
    for c in curves:
        last = c["validation"][-1]
        print(
            f"| {c['run']} | {last['images_seen']:,} | {last['val_psnr_onestep']:.2f} | "
            f"{last['val_psnr_sample']:.2f} | {c['images_per_s_median']:.1f} |"
        )


if __name__ == "__main__":
    main()
