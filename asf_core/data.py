"""Image sources: CIFAR-10 (Krizhevsky 2009) through torchvision, a folder of images, synthetic fields.

Everything is returned as a uint8 tensor (N, 3, H, W) held in memory (CIFAR-10 is 180 MB), so the
training loop indexes batches directly instead of running a DataLoader per step.

Splits: `train` is the first 45,000 training images, `val` the last 5,000 (for model selection),
`test` the 10,000 test images (for reported numbers only).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

SPLITS = ("train", "val", "test")
VAL_SIZE = 5_000
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class DataError(RuntimeError):
    """The data cannot be found or read; the message says what to do."""


def default_data_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "asf" / "data"


def resolve_data_dir(data_dir: str | Path | None) -> tuple[Path, bool]:
    """(root, download): an explicit --data-dir or ASF_DATA_DIR must exist; the default cache downloads."""
    chosen = data_dir or os.environ.get("ASF_DATA_DIR")
    if chosen:
        root = Path(chosen).expanduser()
        if not root.is_dir():
            raise DataError(f"data dir {root} does not exist (omit --data-dir to download CIFAR-10 to "
                            f"{default_data_dir()})")
        return root, False
    return default_data_dir(), True


def load_cifar10(split: str = "train", data_dir: str | Path | None = None) -> torch.Tensor:
    """CIFAR-10 images of a split as uint8 (N, 3, 32, 32)."""
    import torchvision

    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    root, download = resolve_data_dir(data_dir)
    try:
        ds = torchvision.datasets.CIFAR10(root=str(root), train=split != "test", download=download)
    except RuntimeError as e:  # torchvision's "Dataset not found or corrupted"
        raise DataError(f"CIFAR-10 not found under {root} ({e}); pass the folder holding "
                        "cifar-10-batches-py") from None
    except OSError as e:  # no network for the download
        raise DataError(f"could not download CIFAR-10 to {root} ({e}); pass --data-dir with a local "
                        "copy") from None
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32)
    if split == "train":
        return images[:-VAL_SIZE]
    if split == "val":
        return images[-VAL_SIZE:]
    return images


def center_crop_resize(im: Image.Image, size: int | None) -> Image.Image:
    """The largest centred square, resized to size×size (bicubic up, Lanczos down)."""
    s = min(im.size)
    left, top = (im.width - s) // 2, (im.height - s) // 2
    im = im.crop((left, top, left + s, top + s))
    if size is not None and s != size:
        im = im.resize((size, size), Image.Resampling.BICUBIC if s < size else Image.Resampling.LANCZOS)
    return im


def load_image(path: str | Path, size: int | None = None) -> torch.Tensor:
    """One image file as uint8 (3, S, S): RGB, centre-cropped to a square, resized to `size`."""
    try:
        with Image.open(path) as im:
            im.seek(0)  # first frame of an animation
            im = im.convert("RGB")
    except Image.DecompressionBombError:
        raise DataError(f"{path}: claims more than {Image.MAX_IMAGE_PIXELS:,} pixels (a decompression "
                        "bomb?)") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None
    im = center_crop_resize(im, size)
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)


def load_image_folder(folder: str | Path, size: int = 32, limit: int | None = None) -> torch.Tensor:
    """Every image in a folder (sorted by name), centre-cropped and resized: uint8 (N, 3, size, size)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise DataError(f"image folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return torch.stack([load_image(p, size) for p in files])


def synthetic_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random colour fields (sums of random plane waves): uint8 (N, 3, S, S), for tests and demos."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    freq = torch.randn(n, 3, 4, 2, generator=g) * 2.5  # 4 waves per channel
    phase = torch.rand(n, 3, 4, 1, 1, generator=g) * 6.2832
    arg = freq[..., 0, None, None] * xx + freq[..., 1, None, None] * yy + phase
    field = torch.sin(arg).mean(2)  # (N, 3, S, S) in [-1, 1]
    return ((field * 0.9 + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def load_images(
    dataset: str, split: str, data_dir: str | Path | None = None, size: int = 32, limit: int | None = None
) -> torch.Tensor:
    """Dispatch on --dataset: `cifar10`, `synthetic`, or a path to a folder of images."""
    if dataset == "cifar10":
        images = load_cifar10(split, data_dir)
    elif dataset == "synthetic":
        offsets = {"train": 0, "val": 1, "test": 2}
        images = synthetic_images(limit or 512, size, seed=offsets[split])
    else:
        images = load_image_folder(dataset, size)
    return images[:limit] if limit else images


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] -> float32 in [-1, 1]."""
    return images.float() / 127.5 - 1
