"""The numbers the app reports about a reconstruction: metrics on the model grid, metrics against a
finer original, and how well the spread of K samples predicts the error of their mean.

A pixel of an image is the mean of the scene over its square, so an output finer than the S×S input
is area-averaged back to S×S before it is compared with the input (psnr, ssim); where the original
photo is known at the output size, psnr_original / ssim_original compare at that size directly.

Symbols: S model grid side (32) · O output side · tensors (B, 3, H, W) in [-1, 1].
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from app import images as im
from asf_core.metrics import image_metrics, psnr, ssim, to_unit


def to_grid(x: torch.Tensor, side: int) -> torch.Tensor:
    """(B, C, O, O) -> (B, C, side, side) by area averaging (identity when O == side)."""
    return x if x.shape[-1] == side else F.interpolate(x.float(), size=(side, side), mode="area")


def grid_metrics(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor, suffix: str = "") -> dict:
    """psnr, ssim, psnr_missing, ssim_missing of `pred` (any O >= S) against the S×S truth."""
    pred = to_grid(pred, truth.shape[-1])
    return {f"{k}{suffix}": round(float(v[0]), 4) for k, v in image_metrics(pred, truth, mask).items()}


def vs_reference(pred: torch.Tensor, reference: np.ndarray, suffix: str = "") -> dict:
    """PSNR / SSIM of an O×O prediction against the original resized to O×O (every pixel)."""
    p, t = to_unit(pred), to_unit(im.to_tensor(reference))
    return {f"psnr_original{suffix}": round(float(psnr(p, t)[0]), 4),
            f"ssim_original{suffix}": round(float(ssim(p, t)[0]), 4)}


def std_error_corr(std: np.ndarray, abs_err: np.ndarray, where: np.ndarray) -> float | None:
    """Pearson correlation of per-pixel std and |error| over the pixels in `where` (None when
    either is constant there, e.g. K samples that all agree)."""
    s, e = np.asarray(std, np.float64)[where], np.asarray(abs_err, np.float64)[where]
    if s.size < 3 or s.std() < 1e-9 or e.std() < 1e-9:
        return None
    return round(float(np.corrcoef(s, e)[0, 1]), 4)


def calibration(mean: torch.Tensor, std: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor,
                reference: np.ndarray | None) -> tuple[float | None, str]:
    """Does the spread of the K samples point at the errors of their mean?

    Pearson r of the per-pixel std (1, 1, O, O) and |mean - truth| (mean over RGB, [0, 1] units)
    over the pixels the model had to fill: on the O×O grid against the original when one is known
    there (none of those pixels was observed), else on the S×S grid over the unobserved pixels (the
    observed ones have std 0 and error 0 by construction and would inflate r).
    Returns (r or None, one sentence for the UI).
    """
    side = truth.shape[-1]
    if reference is not None:
        err = (mean - im.to_tensor(reference)).abs().mean(1)[0].numpy() / 2
        where, s_map, grid = np.ones(err.shape, bool), std[0, 0].numpy(), reference.shape[0]
    else:
        err = (to_grid(mean, side) - truth).abs().mean(1)[0].numpy() / 2
        where, s_map, grid = ~mask[0].numpy(), to_grid(std, side)[0, 0].numpy(), side
    r = std_error_corr(s_map, err, where)
    if r is None:
        return None, ("Calibration: the samples agree everywhere (or the mean is exact), so their "
                      "spread cannot be compared with the error.")
    verdict = ("the spread points at the errors" if r >= 0.5 else
               "the spread points weakly at the errors" if r >= 0.2 else
               "the spread says little about the errors")
    return r, (f"Calibration: over the {int(where.sum())} unobserved pixels ({grid}×{grid}), the per-pixel "
               f"std of the samples and the |error| of their mean correlate at r = {r:.2f} ({verdict}).")


def notes(out: int, side: int, has_reference: bool) -> list[str]:
    """How the metrics of an O×O output were measured, one sentence (none when O == S)."""
    if out == side:
        return []
    if has_reference:
        return [(f"psnr_original / ssim_original compare the {out}×{out} output with the original, "
                 f"centre-cropped and resized (antialiased) to {out}×{out}; psnr / ssim compare it, "
                 f"area-averaged to {side}×{side}, with the {side}×{side} input.")]
    return [(f"No original finer than {side}×{side} is known for this image, so psnr / ssim compare the "
             f"{out}×{out} output, area-averaged to {side}×{side}, with the {side}×{side} input.")]


def radial_power(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of an (O, O, 3) uint8 image's luminance, its mean removed.

    Returns (frequency in cycles per pixel, 1/O … 1/2; mean power in that ring). PSNR rewards the
    posterior mean, which averages the plausible images and so loses power at high frequencies;
    a posterior sample keeps the original's spectrum. This curve shows the difference."""
    lum = np.asarray(image, np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0
    side = lum.shape[0]
    power = np.abs(np.fft.fft2(lum - lum.mean())) ** 2 / lum.size
    f = np.fft.fftfreq(side)
    ring = np.rint(np.hypot(*np.meshgrid(f, f, indexing="ij")) * side).astype(int)  # ring index, 1/O apart
    rings = np.arange(1, side // 2 + 1)
    total = np.bincount(ring.ravel(), power.ravel(), minlength=side)[rings]
    count = np.bincount(ring.ravel(), minlength=side)[rings]
    return rings / side, total / np.maximum(count, 1)


def fine_detail(image: np.ndarray, original: np.ndarray) -> float:
    """Power above a quarter cycle per pixel (the finest half of the frequencies), as a fraction
    of the original's: 1 keeps the original's detail, below 1 is blurrier, above 1 is noisier."""
    f, p = radial_power(image)
    _, p0 = radial_power(original)
    hi = f > 0.25
    return float(p[hi].sum() / max(p0[hi].sum(), 1e-12))
