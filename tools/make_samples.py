"""Write the app's bundled sample images (run once; the PNGs are committed, this records provenance).

    python tools/make_samples.py --cifar-root DIR   (DIR holds cifar-10-batches-py)

12 CIFAR-10 test images (the first of each class, then two more) at their native 32×32, and four
photos from scikit-image's bundled data, downscaled to 192 px on the short side but not cropped, so
the app's centre-crop + resize is visible. Licences: app/samples/LICENSES.md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLES = Path(__file__).resolve().parents[1] / "app" / "samples"  # where the app reads them
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def main() -> None:
    import skimage.data
    import torchvision

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cifar-root", default=os.environ.get("ASF_DATA_DIR"),
                    required="ASF_DATA_DIR" not in os.environ)
    args = ap.parse_args()
    ds = torchvision.datasets.CIFAR10(root=args.cifar_root, train=False, download=False)
    picked, seen = [], set()
    for i, label in enumerate(ds.targets):  # first test image of every class
        if label not in seen:
            seen.add(label)
            picked.append(i)
        if len(seen) == 10:
            break
    picked += [i for i in range(len(ds.targets)) if i not in picked][:2]
    for i in picked:
        name = ds.classes[ds.targets[i]]
        Image.fromarray(ds.data[i]).save(SAMPLES / f"cifar_{i:04d}_{name}.png", optimize=True)
    for name in PHOTOS:
        im = Image.fromarray(np.asarray(getattr(skimage.data, name)()))
        scale = 192 / min(im.size)
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
        im.save(SAMPLES / f"photo_{name}.png", optimize=True)


if __name__ == "__main__":
    main()
