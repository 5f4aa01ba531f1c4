"""Image quality: PSNR and SSIM on [0, 1] values, on the whole image or on the missing pixels only.

PSNR is computed per image and then averaged (the convention of the reference figures in the data
README). SSIM is scikit-image's (Wang et al. 2004, 7×7 window), averaged over the pixels in question.

Symbols: B batch · H, W image size; images come in as (B, 3, H, W) in [-1, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import structural_similarity


def to_unit(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) float64 in [0, 1], clipped."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).double().numpy()


def psnr(pred: np.ndarray, target: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """Per-image PSNR in dB of (B, H, W, 3) arrays in [0, 1]; `where` (B, H, W) selects pixels."""
    err = (pred - target) ** 2
    if where is None:
        mse = err.reshape(len(err), -1).mean(1)
    else:
        w = where[..., None].astype(np.float64)
        mse = (err * w).reshape(len(err), -1).sum(1) / np.maximum(w.reshape(len(w), -1).sum(1) * 3, 1)
    return 10 * np.log10(1.0 / np.maximum(mse, 1e-12))


def ssim(pred: np.ndarray, target: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """Per-image SSIM of (B, H, W, 3) arrays in [0, 1]; `where` averages the SSIM map over pixels."""
    out = []
    for i in range(len(pred)):
        _, smap = structural_similarity(
            target[i], pred[i], data_range=1.0, channel_axis=-1, full=True, win_size=7
        )
        smap = smap.mean(-1)  # (H, W)
        out.append(smap.mean() if where is None else smap[where[i]].mean())
    return np.asarray(out)


def image_metrics(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-image psnr, ssim, psnr_missing and ssim_missing; mask (B, H, W) is True where observed."""
    p, t = to_unit(pred), to_unit(target)
    missing = ~mask.cpu().numpy()
    return {
        "psnr": psnr(p, t),
        "ssim": ssim(p, t),
        "psnr_missing": psnr(p, t, missing),
        "ssim_missing": ssim(p, t, missing),
    }
