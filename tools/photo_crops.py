"""A folder of 32×32 real-photo crops that are not CIFAR-10, for `evaluate --images`.

    python tools/photo_crops.py --out runs/photos --per-photo 8 --seed 0
    python -m asf_core.evaluate --images runs/photos --n 56 ... --json docs/eval_photos_onestep_n56.json

From the photographs bundled with scikit-image (nothing is downloaded): square crops of 96-192
pixels at random places, downscaled (antialiased) to 32×32, so each crop has CIFAR's scale of
detail without being a CIFAR image. The seed fixes every crop, so the folder can be made again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")


def bundled() -> dict[str, np.ndarray]:
    """The bundled photos as RGB uint8, skipping any this scikit-image would have to download."""
    out = {}
    for name in PHOTOS:
        try:
            img = getattr(skimage.data, name)()
        except Exception as e:  # noqa: BLE001 - a photo that needs the network is left out, not fatal
            print(f"skipped {name}: {type(e).__name__}")
            continue
        out[name] = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
    return out


def crops(photos: dict[str, np.ndarray], per_photo: int, seed: int, size: int = 32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, img in photos.items():
        h, w = img.shape[:2]
        for i in range(per_photo):
            side = int(rng.integers(96, min(192, h, w) + 1))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = Image.fromarray(img[y:y + side, x:x + side]).resize((size, size), Image.LANCZOS)
            out[f"{name}_{i}"] = np.asarray(crop)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder to write the PNGs to")
    ap.add_argument("--per-photo", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    made = crops(bundled(), args.per_photo, args.seed)
    for name, crop in made.items():
        Image.fromarray(crop).save(out / f"{name}.png")
    print(f"{len(made)} crops in {out}")


if __name__ == "__main__":
    main()
