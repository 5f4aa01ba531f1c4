"""The README's results table from `asf_core.evaluate` JSONs (models first, then the baselines once).

    python tools/results_table.py docs/eval_grid_n100.json docs/eval_hybrid_n100.json
    python tools/results_table.py --onestep docs/eval_onestep_n1000.json docs/eval_photos_onestep_n56.json

Every JSON must come from the same protocol (images, masks, seed, steps, K); the baselines are
taken from the first file. With --onestep, each JSON is a column of x̂1 PSNR (one protocol per
file, e.g. CIFAR-10 and a folder of photos), with each model's gain over the thin-plate spline.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PROTOCOL = ("n", "images", "mask", "fraction", "seed", "steps", "solver", "samples")


def rows(paths: list[str]) -> list[str]:
    data = [json.loads(Path(p).read_text()) for p in paths]
    first = {k: data[0]["protocol"][k] for k in PROTOCOL}
    for path, d in zip(paths, data):
        if {k: d["protocol"][k] for k in PROTOCOL} != first:
            raise SystemExit(f"error: {path} was not evaluated under the protocol of {paths[0]}")
    k = first["samples"]
    out = [
        f"| method | one sample | mean of {k} | x̂1 | SSIM x̂1 | sample pair / error |",
        "| --- | --: | --: | --: | --: | --: |",
    ]
    models = [r for d in data for r in d["methods"] if r["kind"] == "model"]
    for r in sorted(models, key=lambda r: -r["onestep"]["psnr"]):
        out.append(
            f"| {Path(r['checkpoint']).name} | {r['sample']['psnr']:.2f} | {r['mean']['psnr']:.2f} | "
            f"**{r['onestep']['psnr']:.2f}** | {r['onestep']['ssim']:.3f} | {r['calibration']['ratio']:.2f} |"
        )
    for r in (r for r in data[0]["methods"] if r["kind"] == "baseline"):
        if "calibration" in r:  # exact samples: all three columns
            out.append(
                f"| {r['name']} (baseline) | {r['sample']['psnr']:.2f} | {r['mean']['psnr']:.2f} | "
                f"{r['onestep']['psnr']:.2f} | {r['onestep']['ssim']:.3f} | {r['calibration']['ratio']:.2f} |"
            )
        else:
            out.append(
                f"| {r['name']} (baseline) | – | – | {r['sample']['psnr']:.2f} | "
                f"{r['sample']['ssim']:.3f} | – |"
            )
    return out


def _onestep(r: dict) -> float:
    """x̂1 of a model, the one output of a deterministic baseline, the conditional mean of lmmse."""
    return r["onestep"]["psnr"] if "onestep" in r else r["sample"]["psnr"]


def onestep_rows(paths: list[str]) -> list[str]:
    data = [json.loads(Path(p).read_text()) for p in paths]
    # a folder of images is named by its last part ("photos"), not by where it was made
    cols = [f"{d['protocol']['n']} {Path(d['protocol']['images']).name}" for d in data]
    by = [{(Path(r["checkpoint"]).name if r["kind"] == "model" else r["name"]): r for r in d["methods"]}
          for d in data]
    spline = [_onestep(b["tps"]) if "tps" in b else None for b in by]
    names = list(dict.fromkeys(name for b in by for name in b))
    models = sorted((n for n in names if any(b.get(n, {}).get("kind") == "model" for b in by)),
                    key=lambda n: -_onestep(by[0][n]) if n in by[0] else 0)
    out = ["| method | " + " | ".join(f"x̂1, {c} | vs spline" for c in cols) + " |",
           "| --- |" + " --: | --: |" * len(cols)]
    for name in models + [n for n in names if n not in models]:
        cells = []
        for b, ref in zip(by, spline):
            r = b.get(name)
            gain = "–" if r is None or ref is None or name == "tps" else f"{_onestep(r) - ref:+.2f}"
            cells += ["–", "–"] if r is None else [f"{_onestep(r):.2f}", gain]
        label = name if name in models else f"{name} (baseline)"
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("json", nargs="+")
    p.add_argument("--onestep", action="store_true", help="x̂1 per JSON, side by side")
    args = p.parse_args()
    print("\n".join((onestep_rows if args.onestep else rows)(args.json)))


if __name__ == "__main__":
    main()
