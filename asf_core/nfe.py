"""PSNR against the number of function evaluations: `python -m asf_core.bench nfe`.

    python -m asf_core.bench nfe --checkpoint pretrained/perceiver_io_grid \
        --checkpoint pretrained/local_implicit_grid --checkpoint pretrained/mamba_d16_grid \
        --data-dir DIR --n 100 --steps 1,2,5,10,20,50 --solvers euler,heun \
        --radii 0.15,0.3,0.45 --json docs/nfe.json --plot docs/nfe.png

One posterior sample per image, for every checkpoint x solver x step count (and every radius of a
Local Implicit checkpoint), on the same CIFAR-10 test images, masks and x_0 (`--seed`), with the
thin-plate spline on those images as the reference line. NFE is steps x evaluations per step
(Heun: 2). Each point is written to the JSON as soon as it is measured, and `--resume` skips the
points already there, so a long sweep survives being stopped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from asf_core import baselines
from asf_core.checkpoint import load_model
from asf_core.data import load_cifar10, load_image_folder, to_float
from asf_core.evaluate import evaluate_model
from asf_core.fields import make_mask
from asf_core.metrics import image_metrics
from asf_core.sampling import METHODS, check_method


def _key(p: dict) -> tuple:
    return (p["checkpoint"], p["solver"], p["steps"], p.get("radius"))


def sweep(args: argparse.Namespace) -> dict:
    steps = [int(s) for s in args.steps.split(",")]
    solvers = args.solvers.split(",")
    for s in solvers:
        check_method(s)
    radii = [float(r) for r in args.radii.split(",")] if args.radii else []
    if args.images:
        images = to_float(load_image_folder(args.images, size=32, limit=args.n))
    else:
        images = to_float(load_cifar10("test", args.data_dir)[: args.n])
    masks = make_mask(len(images), 32, 32, 0.2, generator=torch.Generator().manual_seed(args.seed))
    out = Path(args.json) if args.json else None
    result = json.loads(out.read_text()) if (args.resume and out and out.exists()) else {"points": []}
    done = {_key(p) for p in result["points"]}
    result["protocol"] = {"n": len(images), "images": args.images or "CIFAR-10 test", "seed": args.seed,
                          "samples": 1, "mask": "random 20%"}
    if "tps" not in result:
        result["tps"] = tps_psnr(images, masks)

    for path in args.checkpoint:
        model = load_model(path)
        name = Path(path).resolve().name
        # a model whose spec has a radius knob is swept over --radii; the others run as they are
        for radius in (radii if "radius" in model.knobs() and radii else [None]):
            kwargs = {} if radius is None else {"radius": radius}
            for solver in solvers:
                for n_steps in steps:
                    point = {"checkpoint": path, "name": name, "arch": model.arch, "solver": solver,
                             "steps": n_steps, "nfe": n_steps * METHODS[solver], "radius": radius}
                    if _key(point) in done:
                        continue
                    ev = argparse.Namespace(batch_size=args.batch_size, steps=n_steps, solver=solver,
                                            samples=1, seed=args.seed)
                    rec = evaluate_model(model, images, masks, ev, kwargs)
                    point.update(psnr_sample=rec["sample"]["psnr"], psnr_onestep=rec["onestep"]["psnr"],
                                 ssim_sample=rec["sample"]["ssim"],
                                 seconds_per_image=rec["seconds_per_image"])
                    result["points"].append(point)
                    print(f"{name} r={radius} {solver} {n_steps} steps (NFE {point['nfe']}): "
                          f"sample {point['psnr_sample']:.2f} dB, x̂1 {point['psnr_onestep']:.2f}", flush=True)
                    if out:
                        out.parent.mkdir(parents=True, exist_ok=True)
                        out.write_text(json.dumps(result, indent=1) + "\n")
    if args.plot:
        plot(result, args.plot)
    return result


def tps_psnr(images: torch.Tensor, masks: torch.Tensor) -> float:
    """Thin-plate spline PSNR on these images and masks (asf_core.baselines, scipy)."""
    rows = [image_metrics(baselines.reconstruct("tps", x, m), x, m)["psnr"]
            for x, m in zip(images.split(50), masks.split(50))]
    return float(np.concatenate(rows).mean())


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.8))
    series = {}
    for p in result["points"]:
        label = p["name"] + (f" r={p['radius']:g}" if p.get("radius") is not None else "")
        series.setdefault((label, p["solver"]), []).append(p)
    colours = {}
    for (label, solver), pts in series.items():
        pts = sorted(pts, key=lambda p: p["nfe"])
        colour = colours.setdefault(label, f"C{len(colours)}")
        ax.semilogx([p["nfe"] for p in pts], [p["psnr_sample"] for p in pts],
                    "o-" if solver == "heun" else "s--",
                    color=colour, label=f"{label}, {solver}", ms=4)
    ax.axhline(result["tps"], color="k", lw=1, ls=":", label=f"thin-plate spline {result['tps']:.2f} dB")
    proto = result["protocol"]
    ax.set_xlabel("function evaluations (NFE)")
    ax.set_ylabel("PSNR of one sample (dB)")
    ax.set_title(f"One posterior sample against NFE, {proto['n']} {proto['images']} images, 20% observed",
                 fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def add_parser(sub) -> None:
    p = sub.add_parser("nfe", help="PSNR of one sample against NFE, per checkpoint and solver")
    p.add_argument("--checkpoint", action="append", default=[], required=True)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--images", default=None, help="a folder of images instead of CIFAR-10 test")
    p.add_argument("--n", type=int, default=100, help="number of test images")
    p.add_argument("--steps", default="1,2,5,10,20,50")
    p.add_argument("--solvers", default="euler,heun")
    p.add_argument("--radii", default="0.15,0.3,0.45",
                   help="radii for checkpoints with a radius knob ('' = their own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--resume", action="store_true", help="keep the points already in --json")
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None)
