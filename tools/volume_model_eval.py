"""The 3-D grid encoder on the procedural test volumes, beside the classical 3-D baselines.

    python tools/volume_model_eval.py --model pretrained/volume_encoder_small \
        --baselines docs/eval_volumes_baselines.json --json docs/eval_volumes_model.json

Reads the protocol (volumes, grid side, seeds, fractions) from the baselines' JSON, made by
tools/volume_baselines.py, and rebuilds exactly its volumes and masks (one generator per fraction,
seeded by mask_seed); nearest is re-run on them as a check that they are the same (its PSNR must
match the JSON's), and the baselines' rows are copied beside the model's. The model sees only the
observed voxels; observed voxels are copied through, as the baselines do. PSNR in dB on [0, 1],
per volume then averaged; seconds per volume with this machine's torch threads.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from asf_core import volumes
from asf_core.models.encoder3d import fill_volumes, load_volume_encoder

if __package__ in (None, ""):  # run as `python tools/volume_model_eval.py`: make `tools` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools.train_volume_encoder import eval_table  # noqa: E402
from tools.volume_baselines import Row  # noqa: E402
from tools.volume_baselines import evaluate as evaluate_baseline  # noqa: E402


@torch.no_grad()
def evaluate_model(model, name: str, vols: torch.Tensor, mask: torch.Tensor, fraction: float) -> Row:
    """The model on every volume under its mask, one at a time so the time is per volume."""
    outs, secs = [], []
    for i in range(len(vols)):
        t0 = time.perf_counter()
        outs.append(fill_volumes(model, vols[i:i + 1], mask[i:i + 1]))
        secs.append(time.perf_counter() - t0)
    out = torch.cat(outs)
    whole, missing = volumes.volume_psnr(out, vols), volumes.volume_psnr(out, vols, ~mask)
    return Row(name, fraction, int(mask[0].sum()), float(whole.mean()), float(whole.std()),
               float(missing.mean()), float(missing.std()), float(np.mean(secs)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="release folder (config.json, model.safetensors)")
    ap.add_argument("--baselines", default="docs/eval_volumes_baselines.json")
    ap.add_argument("--json", required=True, help="results file; the table goes beside it (.md)")
    argv = sys.argv[1:] if argv is None else argv
    args = ap.parse_args(argv)
    command = shlex.join(["python", "tools/volume_model_eval.py", *argv])

    base = json.loads(Path(args.baselines).read_text())
    p = base["protocol"]
    model = load_volume_encoder(args.model)
    name = Path(args.model).name
    vols = volumes.procedural_volumes(p["n"], p["size"], p["seed"])
    rows = []
    for fraction in p["fractions"]:
        g = torch.Generator().manual_seed(p["mask_seed"])
        mask = volumes.make_mask_3d(p["n"], p["size"], fraction, g)
        check = evaluate_baseline("nearest", vols, mask, fraction)
        ref = next(r for r in base["rows"] if r["method"] == "nearest" and r["fraction"] == fraction)
        if abs(check.psnr - ref["psnr"]) > 1e-6:
            raise SystemExit(f"nearest at {fraction:.0%} gives {check.psnr:.6f} dB, the JSON "
                             f"{ref['psnr']:.6f}: these are not the baselines' volumes and masks")
        row = evaluate_model(model, name, vols, mask, fraction)
        print(f"{name} {fraction:.0%}: PSNR {row.psnr:.2f}, missing {row.psnr_missing:.2f}, "
              f"{row.seconds_per_volume:.3f} s/volume", flush=True)
        for r in (r for r in base["rows"] if r["fraction"] == fraction):
            print(f"  {r['method']:8s}: PSNR {r['psnr']:.2f}, missing {r['psnr_missing']:.2f}  "
                  f"(Δ model {row.psnr - r['psnr']:+.2f} dB)", flush=True)
        rows.append(row)

    result = {"command": command, "model": args.model,
              "protocol": {**p, "torch_threads": torch.get_num_threads()},
              "rows": [asdict(r) for r in rows], "baseline_rows": base["rows"],
              "baselines_command": base["command"]}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    md = [eval_table(result), "",
          f"{p['n']} procedural test volumes ({p['size']}³, seed {p['seed']}), random masks (seed "
          f"{p['mask_seed']}), the same volumes and masks as `{args.baselines}`; PSNR in dB on [0, 1] "
          "values, mean ± standard deviation over volumes, observed voxels copied through; seconds per "
          f"volume with {torch.get_num_threads()} torch threads (the baselines' rows are copied from "
          "their JSON).", "",
          f"Made by `{command}`; the baselines' rows by `{base['command']}`.", ""]
    out.with_suffix(".md").write_text("\n".join(md))
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
