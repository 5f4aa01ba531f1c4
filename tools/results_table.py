"""The README's results table from `asf_core.evaluate` JSONs (models first, then the baselines once).

    python tools/results_table.py docs/eval_grid_n100.json docs/eval_hybrid_n100.json

Every JSON must come from the same protocol (images, masks, seed, steps, K); the baselines are
taken from the first file.
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("json", nargs="+")
    print("\n".join(rows(p.parse_args().json)))


if __name__ == "__main__":
    main()
