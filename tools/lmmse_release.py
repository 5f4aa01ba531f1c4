"""Write the app's linear-MMSE release: CIFAR-10's Gaussian at low rank, measured against the full one.

    python tools/lmmse_release.py --out pretrained/lmmse_cifar10 --rank 1536 --n 200

The full covariance (3072² float64, 75 MB) is fitted from the training images (asf_core.lmmse.stats)
and cut to its top `rank` eigenvectors in fp16 plus an isotropic rest (asf_core.lmmse.low_rank),
which is what the app serves. Both are scored on the first `n` test images with evaluate's masks
(random, 20%, seed 0), and the folder gets stats.safetensors, metrics.json and MODEL_CARD.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from asf_core import lmmse
from asf_core.data import load_cifar10, to_float
from asf_core.fields import make_mask
from asf_core.metrics import image_metrics

CARD = """# lmmse_cifar10: the linear-MMSE baseline's Gaussian

The mean and covariance of CIFAR-10's training images (with their mirror images), as the app's
`Linear-MMSE` baseline uses them: per image, the conditional mean of the missing pixels given the
observed ones, and exact samples of that conditional Gaussian (`asf_core/lmmse.py`). The full
covariance has 3072² values, so this release holds its top {rank} eigenvectors in fp16 and the mean
of the other eigenvalues as an isotropic rest (probabilistic PCA), {mb:.1f} MB.

Made by `{command}` ({seconds:.0f} s on {hardware}).

On the first {n} CIFAR-10 test images, random 20% masks, seed 0 (PSNR in dB over the whole image):

| model | conditional mean | one exact sample |
| --- | --- | --- |
| full covariance | {full_mean:.2f} | {full_sample:.2f} |
| this release (rank {rank}) | {low_mean:.2f} | {low_sample:.2f} |
"""


def score(stats: lmmse.GaussianStats, images: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    generator = torch.Generator().manual_seed(0)
    mean, draws = lmmse.reconstruct(images, masks, stats, samples=1, generator=generator)
    return {"mean": float(image_metrics(mean, images, masks)["psnr"].mean()),
            "sample": float(image_metrics(draws[0], images, masks)["psnr"].mean())}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="release folder, e.g. pretrained/lmmse_cifar10")
    ap.add_argument("--rank", type=int, default=1536, help="eigenvectors kept (1536: 9.4 MB)")
    ap.add_argument("--n", type=int, default=200, help="test images to score both models on")
    ap.add_argument("--data-dir", default=None, help="CIFAR-10 root (else $ASF_DATA_DIR)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    full = lmmse.stats((32, 32), args.data_dir)
    model = lmmse.low_rank(full, args.rank)
    images = to_float(load_cifar10("test", args.data_dir)[: args.n])
    masks = make_mask(len(images), 32, 32, 0.2, "random", generator=torch.Generator().manual_seed(0))
    scores = {"full": score(full, images, masks), "low_rank": score(model.stats(), images, masks)}
    path = lmmse.save_release(model, args.out)
    command = "python tools/lmmse_release.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    record = {"command": command, "rank": args.rank, "n": args.n, "mask": "random", "fraction": 0.2,
              "seed": 0, "psnr": scores, "bytes": path.stat().st_size, "seconds": time.perf_counter() - t0}
    (Path(args.out) / "metrics.json").write_text(json.dumps(record, indent=1) + "\n")
    (Path(args.out) / "MODEL_CARD.md").write_text(CARD.format(
        rank=args.rank, mb=record["bytes"] / 1e6, command=command, seconds=record["seconds"],
        hardware=f"{torch.get_num_threads()} CPU threads", n=args.n,
        full_mean=scores["full"]["mean"], full_sample=scores["full"]["sample"],
        low_mean=scores["low_rank"]["mean"], low_sample=scores["low_rank"]["sample"]))
    print(json.dumps(scores))


if __name__ == "__main__":
    main()
