"""The classical 3-D baselines on procedural test volumes: PSNR over the volume and the missing voxels.

    python tools/volume_baselines.py --n 20 --json docs/eval_volumes_baselines.json

N test volumes (asf_core.volumes, TEST_SEED, 32³ by default), random masks with 20% and 5% of the
voxels observed (one mask per volume and fraction, drawn from --mask-seed and shared by every
method), each method in asf_core.baselines3d. PSNR in dB on [0, 1] values, per volume then
averaged; seconds are wall time per volume on this machine's CPU threads. Writes the JSON (with the
command that made it) and a markdown table beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from asf_core import baselines3d, volumes


@dataclass
class Protocol:
    n: int
    size: int
    seed: int
    mask_seed: int
    fractions: list[float]
    methods: list[str]
    rbf_neighbors: int
    torch_threads: int
    openblas_threads: str | None  # OPENBLAS_NUM_THREADS as set, or None for OpenBLAS's default


@dataclass
class Row:
    method: str
    fraction: float
    observed_voxels: int
    psnr: float
    psnr_std: float
    psnr_missing: float
    psnr_missing_std: float
    seconds_per_volume: float


def evaluate(name: str, vols: torch.Tensor, mask: torch.Tensor, fraction: float) -> Row:
    """One method on every volume under its mask, one volume at a time so the time is per volume."""
    outs, secs = [], []
    for i in range(len(vols)):
        t0 = time.perf_counter()
        outs.append(baselines3d.reconstruct_volume(name, vols[i:i + 1], mask[i:i + 1]))
        secs.append(time.perf_counter() - t0)
    out = torch.cat(outs)
    whole = volumes.volume_psnr(out, vols)
    missing = volumes.volume_psnr(out, vols, ~mask)
    return Row(name, fraction, int(mask[0].sum()), float(whole.mean()), float(whole.std()),
               float(missing.mean()), float(missing.std()), float(np.mean(secs)))


def markdown(command: str, protocol: Protocol, rows: list[Row]) -> str:
    lines = [
        "| method | observed | PSNR volume | PSNR missing | s/volume |",
        "| --- | --: | --: | --: | --: |",
    ]
    for r in rows:
        lines.append(f"| {r.method} | {r.fraction:.0%} ({r.observed_voxels}) "
                     f"| {r.psnr:.2f} ± {r.psnr_std:.2f} | {r.psnr_missing:.2f} ± {r.psnr_missing_std:.2f} "
                     f"| {r.seconds_per_volume:.3f} |")
    p = protocol
    lines += [
        "",
        f"{p.n} procedural test volumes ({p.size}³, seed {p.seed}), random masks (seed {p.mask_seed}), "
        "PSNR in dB on [0, 1] values, mean ± standard deviation over volumes; rbf is a thin-plate spline "
        f"fitted on each query's {p.rbf_neighbors} nearest observations; seconds per volume with "
        f"{p.torch_threads} torch threads, OPENBLAS_NUM_THREADS={p.openblas_threads or 'unset'}.",
        "",
        f"Made by `{command}`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="test volumes")
    ap.add_argument("--size", type=int, default=volumes.VOLUME_SIZE, help="grid side D")
    ap.add_argument("--seed", type=int, default=volumes.TEST_SEED, help="volume seed (default: test split)")
    ap.add_argument("--mask-seed", type=int, default=0)
    ap.add_argument("--fractions", type=float, nargs="+", default=list(volumes.OBSERVED_FRACTIONS))
    ap.add_argument("--methods", nargs="+", default=list(baselines3d.METHODS_3D),
                    choices=list(baselines3d.METHODS_3D))
    ap.add_argument("--json", required=True, help="results file; the table goes beside it (.md)")
    argv = sys.argv[1:] if argv is None else argv
    args = ap.parse_args(argv)
    command = shlex.join(["python", "tools/volume_baselines.py", *argv])

    protocol = Protocol(args.n, args.size, args.seed, args.mask_seed, args.fractions, args.methods,
                        baselines3d.RBF_NEIGHBORS, torch.get_num_threads(),
                        os.environ.get("OPENBLAS_NUM_THREADS"))
    vols = volumes.procedural_volumes(args.n, args.size, args.seed)
    rows = []
    for fraction in args.fractions:
        g = torch.Generator().manual_seed(args.mask_seed)
        mask = volumes.make_mask_3d(args.n, args.size, fraction, g)
        for name in args.methods:
            row = evaluate(name, vols, mask, fraction)
            print(f"{name:8s} {fraction:.0%}: PSNR {row.psnr:.2f}, missing {row.psnr_missing:.2f}, "
                  f"{row.seconds_per_volume:.3f} s/volume", flush=True)
            rows.append(row)

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": command, "protocol": asdict(protocol),
                               "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(command, protocol, rows))
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
