"""Images as continuous fields: pixel-centre coordinates, observation masks and query sets.

Convention: coordinates are (x, y) in [-1, 1]², x along columns, y along rows, at pixel centres;
values are RGB in [-1, 1]. A mask is boolean (B, H, W), True where a pixel is observed.

Symbols: B batch · H, W image size · N observed points · Q queries.
"""

from __future__ import annotations

import torch

MASK_KINDS = ("random", "center", "stripes", "half")


def check_fraction(fraction: float) -> float:
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"observed fraction must be in (0, 1], got {fraction}")
    return float(fraction)


def pixel_coords(h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Pixel-centre coordinates of an h×w grid, row-major: (H·W, 2) as (x, y) in [-1, 1]."""
    if h < 1 or w < 1:
        raise ValueError(f"grid size must be positive, got {h}x{w}")
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1).reshape(h * w, 2)


def image_to_values(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, H·W, 3), row-major like `pixel_coords`."""
    return images.flatten(2).transpose(1, 2)


def values_to_image(values: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, H·W, 3) -> (B, 3, H, W)."""
    return values.transpose(1, 2).reshape(values.shape[0], values.shape[2], h, w)


def _region(kind: str, h: int, w: int) -> torch.Tensor:
    """Where observations may fall for a structured mask: (H, W) bool."""
    ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    if kind == "random":
        return torch.ones(h, w, dtype=torch.bool)
    if kind == "center":  # a hole of half the side in the middle
        return ~((ii >= h // 4) & (ii < h - h // 4) & (jj >= w // 4) & (jj < w - w // 4))
    if kind == "stripes":  # horizontal bands, 4 pixels of every 8 hidden (scaled with the size)
        band = max(1, h // 8)
        return (ii // band) % 2 == 0
    if kind == "half":  # only the left half is seen
        return jj < w // 2
    raise ValueError(f"unknown mask kind {kind!r}; choose from {', '.join(MASK_KINDS)}")


def make_mask(
    batch: int, h: int, w: int, fraction: float = 0.2, kind: str = "random",
    generator: torch.Generator | None = None, region: torch.Tensor | None = None,
) -> torch.Tensor:
    """Observation masks with exactly round(fraction·H·W) observed pixels per image.

    The pixels are drawn uniformly from the kind's region (the whole image for `random`); when the
    region holds fewer pixels than asked for, all of it is observed. Every image in the batch has
    the same count, so observations stack into (B, N, ·) tensors.

    Returns:
        (B, H, W) bool, True where observed.
    """
    fraction = check_fraction(fraction)
    region = (_region(kind, h, w) if region is None else region.bool()).flatten()
    allowed = region.nonzero().squeeze(1)
    n = min(int(round(fraction * h * w)), allowed.numel())
    n = max(n, 1)
    scores = torch.rand(batch, allowed.numel(), generator=generator)
    picked = allowed[scores.argsort(dim=1)[:, :n]]  # (B, N)
    mask = torch.zeros(batch, h * w, dtype=torch.bool)
    mask.scatter_(1, picked, True)
    return mask.view(batch, h, w)


def observations(images: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Observed coordinates and values of images under a mask with equal counts per image.

    Args:
        images: (B, 3, H, W) in [-1, 1].
        mask: (B, H, W) bool.
    Returns:
        obs_xy (B, N, 2) and obs_rgb (B, N, 3), in row-major pixel order.
    """
    b, _, h, w = images.shape
    flat = mask.reshape(b, h * w)
    counts = flat.sum(1)
    if (counts != counts[0]).any():
        raise ValueError("every mask in a batch must observe the same number of pixels")
    if counts[0] == 0:
        raise ValueError("the mask observes no pixel: at least one is needed")
    idx = flat.nonzero()[:, 1].view(b, -1).to(images.device)  # (B, N)
    xy = pixel_coords(h, w, images.device)[idx]  # (B, N, 2)
    rgb = image_to_values(images).gather(1, idx[..., None].expand(-1, -1, 3))  # (B, N, 3)
    return xy, rgb

