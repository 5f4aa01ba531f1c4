"""Classical interpolation baselines behind the same `reconstruct` interface as the models.

nearest and linear: `scipy.interpolate.griddata` (linear is Delaunay, with nearest outside the
convex hull); thin-plate spline: `scipy.interpolate.RBFInterpolator`; biharmonic:
`skimage.restoration.inpaint_biharmonic`; linear-MMSE: the conditional mean of a Gaussian fitted
to CIFAR-10's training images (asf_core.lmmse). Every method sees only the observed pixels.

Symbols: B batch · N observed points · Q queries · H, W image size.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.interpolate import RBFInterpolator, griddata
from skimage.restoration import inpaint_biharmonic

from asf_core.fields import observations, pixel_coords, values_to_image


def _nearest(xy: np.ndarray, rgb: np.ndarray, q: np.ndarray) -> np.ndarray:
    return griddata(xy, rgb, q, method="nearest")


def _linear(xy: np.ndarray, rgb: np.ndarray, q: np.ndarray) -> np.ndarray:
    out = griddata(xy, rgb, q, method="linear")
    hole = np.isnan(out).any(-1)  # outside the convex hull
    if hole.any():
        out[hole] = griddata(xy, rgb, q[hole], method="nearest")
    return out


def _thin_plate(xy: np.ndarray, rgb: np.ndarray, q: np.ndarray) -> np.ndarray:
    if len(xy) < 3:  # the spline's affine part needs 3 points
        return _nearest(xy, rgb, q)
    return RBFInterpolator(xy, rgb, kernel="thin_plate_spline")(q)


POINT_METHODS = {"nearest": _nearest, "linear": _linear, "tps": _thin_plate}
BASELINES = (*POINT_METHODS, "biharmonic", "lmmse")


def reconstruct_points(
    name: str, obs_xy: torch.Tensor, obs_rgb: torch.Tensor, query_xy: torch.Tensor
) -> torch.Tensor:
    """Interpolate observations at arbitrary query coordinates (not `biharmonic`, which needs a grid).

    Args:
        obs_xy (B, N, 2), obs_rgb (B, N, 3), query_xy (Q, 2) or (B, Q, 2).
    Returns:
        (B, Q, 3) float32 in [-1, 1].
    """
    fn = POINT_METHODS[name]
    b = obs_xy.shape[0]
    if query_xy.dim() == 2:
        query_xy = query_xy.expand(b, -1, -1)
    out = [
        fn(obs_xy[i].double().cpu().numpy(), obs_rgb[i].double().cpu().numpy(),
           query_xy[i].double().cpu().numpy())
        for i in range(b)
    ]
    return torch.from_numpy(np.stack(out)).float().clamp(-1, 1)


def reconstruct(
    name: str, images: torch.Tensor, mask: torch.Tensor, out_hw: tuple[int, int] | None = None
) -> torch.Tensor:
    """Fill an image from its observed pixels.

    Args:
        name: one of BASELINES.
        images: (B, 3, H, W) in [-1, 1]; only pixels where mask is True are read.
        mask: (B, H, W) bool, True where observed.
        out_hw: output resolution (default H, W); biharmonic works on the input grid only.
    Returns:
        (B, 3, H', W') in [-1, 1].
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    b, _, h, w = images.shape
    oh, ow = out_hw or (h, w)
    if name == "lmmse":
        from asf_core import lmmse

        if (oh, ow) != (h, w):
            raise ValueError("the linear-MMSE baseline works on the input grid only")
        return lmmse.reconstruct(images.cpu(), mask.cpu(), lmmse.stats((h, w)))[0]
    if name == "biharmonic":
        if (oh, ow) != (h, w):
            raise ValueError("biharmonic inpainting works on the input grid only")
        imgs = images.detach().cpu().permute(0, 2, 3, 1).double().numpy()
        holes = ~mask.cpu().numpy()
        out = np.stack([inpaint_biharmonic(imgs[i], holes[i], channel_axis=-1) for i in range(b)])
        return torch.from_numpy(out).float().permute(0, 3, 1, 2).clamp(-1, 1)
    obs_xy, obs_rgb = observations(images.cpu(), mask.cpu())
    values = reconstruct_points(name, obs_xy, obs_rgb, pixel_coords(oh, ow))
    out = values_to_image(values, oh, ow)
    if (oh, ow) == (h, w):  # keep the observed pixels exactly
        out = torch.where(mask[:, None].cpu(), images.cpu().float(), out)
    return out

