"""Images in, images out: decode anything a user hands in, crop it to the model grid, build masks.

Every function takes and gives numpy: images are uint8 (H, W, 3), masks bool (H, W) with True where
a pixel is observed (asf_core.fields' convention). Bad input raises `InputError` (a ValueError) whose
message says what to change, so the UI can show it and keep serving.

Symbols: H, W image size · S model grid side (32) · N observed pixels.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from asf_core.data import center_crop_resize
from asf_core.fields import MASK_KINDS

MAX_SIDE = 4096  # larger uploads are refused before decoding (8000×8000 is 192 MB of RGB)
MIN_SIDE = 4  # a 1×1 "image" holds one colour, nothing to reconstruct
MIN_OBSERVED = 4  # fewer observed pixels than this is not a reconstruction problem (TPS needs 3)
KINDS = (*MASK_KINDS, "brush")
GREY = 128  # unobserved pixels in the observed-pixels view


class InputError(ValueError):
    """The user's image or mask cannot be used; the message says why and what to do instead."""


@dataclass
class Prepared:
    original: np.ndarray  # (H, W, 3) uint8, as uploaded after conversion to RGB
    image: np.ndarray  # (S, S, 3) uint8, centre-cropped and resized: what the models see


def _open(data: str | Path | bytes) -> Image.Image:
    try:
        im = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
        im.size  # noqa: B018  (the header is read lazily: the size is known before any decoding)
    except FileNotFoundError:
        raise InputError(f"{data}: no such file") from None
    except Image.DecompressionBombError:
        raise InputError(f"the image claims more than {Image.MAX_IMAGE_PIXELS:,} pixels: please downscale "
                         "it") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise InputError("that file is not an image (PNG, JPEG, WebP, GIF, BMP or TIFF) that can be "
                         "read") from None
    _check_size(im.width, im.height)
    try:
        im.seek(0)  # the first frame of an animated GIF / WebP / multi-page TIFF
        im = ImageOps.exif_transpose(im)  # phone photos carry their rotation in EXIF
        im.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise InputError(f"the image file is truncated or corrupt ({type(e).__name__}: {e})") from None
    return im


def _check_size(w: int, h: int) -> None:
    if max(w, h) > MAX_SIDE:
        raise InputError(f"the image is {w}×{h}: at most {MAX_SIDE} px per side, please downscale it")
    if min(w, h) < MIN_SIDE:
        raise InputError(f"the image is {w}×{h}: at least {MIN_SIDE} px per side is needed")


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    """Any PIL mode -> (H, W, 3) uint8; transparency is flattened onto white."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):  # 16-bit or float grey: rescale, not clip
        return _array_to_rgb(np.asarray(im))
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    return np.asarray(im.convert("RGB")).copy()


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if a.dtype == np.uint16 or (np.issubdtype(a.dtype, np.integer) and a.max(initial=0) > 255):
        top = 65535 if a.max(initial=0) <= 65535 else a.max()  # 16-bit, else the array's own range
        return (a.astype(np.float64) / top * 255).round().astype(np.uint8)
    is_float = np.issubdtype(a.dtype, np.floating)
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise InputError("the image holds NaN or infinite values")
    if is_float and a.max(initial=0) <= 1.0 and a.min(initial=0) >= 0:
        a = a * 255  # floats in [0, 1]
    return a.clip(0, 255).round().astype(np.uint8)


def _array_to_rgb(a: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1|2|3|4) of any numeric dtype -> (H, W, 3) uint8."""
    a = np.asarray(a)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise InputError(f"expected an image array, got dtype {a.dtype}")
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 2, 3, 4):
        a = np.moveaxis(a, 0, -1)  # channels-first (C, H, W)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 2, 3, 4):
        raise InputError(f"expected an image array (H, W) or (H, W, 1-4), got shape {a.shape}")
    _check_size(a.shape[1], a.shape[0])
    a = _to_uint8(a)
    if a.shape[-1] in (2, 4):  # grey+alpha or RGBA: flatten onto white
        alpha = a[..., -1:].astype(np.float64) / 255
        a = (a[..., :-1] * alpha + 255 * (1 - alpha)).round().astype(np.uint8)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.ascontiguousarray(a)


def to_rgb(image) -> np.ndarray:
    """A numpy array, a PIL image, a file path or encoded bytes -> (H, W, 3) uint8."""
    if image is None:
        raise InputError("no image given: pick a sample or upload one")
    if isinstance(image, (str, Path, bytes)):
        return _pil_to_rgb(_open(image))
    if isinstance(image, Image.Image):
        _check_size(*image.size)
        return _pil_to_rgb(image)
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    raise InputError(f"expected an image (numpy array, PIL image or file), got {type(image).__name__}")


def prepare(image, size: int = 32) -> Prepared:
    """Centre-crop to a square and resize to size×size, as asf_core.data.load_image does for files,
    so the app sees an upload exactly as `asf_core.evaluate --images` would."""
    rgb = to_rgb(image)
    im = center_crop_resize(Image.fromarray(rgb), size)
    return Prepared(original=rgb, image=np.asarray(im).copy())


def references(original: np.ndarray, sizes, model_size: int = 32) -> dict[int, np.ndarray]:
    """The original as truth at finer output grids: {side: (side, side, 3) uint8} for every side in
    `sizes` above the model grid that the centre crop covers (crop side >= side), cropped exactly as
    `prepare` crops and shrunk with Lanczos (antialiased), so pixel (i, j) covers the same area as
    the field's query (i, j). A 32×32 CIFAR image has none: nothing finer is known about it."""
    side = min(original.shape[:2])
    return {int(s): np.asarray(center_crop_resize(Image.fromarray(original), int(s))).copy()
            for s in sizes if model_size < int(s) <= side}


def brush_hidden(brush, size: int = 32) -> np.ndarray:
    """Painted strokes -> (S, S) bool, True where hidden. `brush` is a gr.ImageMask value (a dict
    with `layers`), an RGBA layer (alpha = paint), or a (H, W) array (non-zero = paint)."""
    if isinstance(brush, dict):
        layers = [lay for lay in (brush.get("layers") or []) if lay is not None]
        if not layers:
            return np.zeros((size, size), bool)
        paint = np.max([_paint(np.asarray(lay)) for lay in layers], axis=0)
    else:
        paint = _paint(np.asarray(brush))
    if paint.shape != (size, size):  # area-average the strokes onto the model grid
        paint = np.asarray(Image.fromarray((paint * 255).astype(np.uint8)).resize(
            (size, size), Image.Resampling.BOX)) / 255
    return paint > 0.3  # a pixel a third covered by paint counts as painted


def _paint(layer: np.ndarray) -> np.ndarray:
    if layer.ndim == 3 and layer.shape[-1] == 4:
        return layer[..., 3].astype(np.float64) / 255
    if layer.ndim == 3:
        return (layer.max(-1) > 0).astype(np.float64)
    return (layer > 0).astype(np.float64)


def make_mask(kind: str, density: float, seed: int, size: int = 32, brush=None) -> np.ndarray:
    """(S, S) bool, True where observed: round(density·S²) pixels drawn from the kind's region.

    `random`, `center`, `stripes`, `half` are asf_core.fields.make_mask; `brush` uses the painted
    strokes as the hidden region and draws the observations from the rest in the same way
    (density 1 then keeps every unpainted pixel: plain inpainting).
    """
    from asf_core.fields import make_mask as core_mask

    if kind not in KINDS:
        raise InputError(f"unknown mask kind {kind!r}; choose from {', '.join(KINDS)}")
    if not 0 < float(density) <= 1:
        raise InputError(f"the density must be in (0, 1], got {density}")
    g = torch.Generator().manual_seed(int(seed))
    region = None
    if kind == "brush":
        painted = brush_hidden(brush, size) if brush is not None else np.zeros((size, size), bool)
        region = torch.from_numpy(~painted)
        if not region.any():
            return np.zeros((size, size), bool)  # everything painted: check_mask explains
        kind = "random"
    return core_mask(1, size, size, float(density), kind, generator=g, region=region)[0].numpy()


def check_mask(mask, size: int = 32) -> np.ndarray:
    """A usable (S, S) bool mask, or InputError saying what is wrong with it."""
    mask = np.asarray(mask)
    if mask.shape != (size, size):
        raise InputError(f"the mask must be {size}×{size}, got shape {mask.shape}")
    mask = mask.astype(bool)
    n = int(mask.sum())
    if n == 0:
        raise InputError("the mask observes no pixel: raise the density or paint less")
    if n == mask.size:
        raise InputError("the mask observes every pixel: nothing is left to reconstruct; lower the density")
    if n < MIN_OBSERVED:
        raise InputError(f"the mask observes only {n} pixel{'s' if n > 1 else ''}: at least "
                         f"{MIN_OBSERVED} are needed, raise the density")
    return mask


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling, so every model pixel stays a visible square."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def observed_view(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The observed pixels on grey: (S, S, 3) uint8."""
    return np.where(mask[..., None], image, np.uint8(GREY)).astype(np.uint8)


def to_uint8(values: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    return ((values.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.array(image, np.uint8)).permute(2, 0, 1)[None].float() / 127.5 - 1  # a copy


def colormap(values: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """(H, W) non-negative floats -> (H, W, 3) uint8 through matplotlib's magma (std maps)."""
    from matplotlib import colormaps

    vmax = float(values.max()) if vmax is None else vmax
    scaled = np.clip(values / (vmax or 1.0), 0, 1)
    return (colormaps["magma"](scaled)[..., :3] * 255).round().astype(np.uint8)
