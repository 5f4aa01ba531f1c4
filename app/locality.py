"""Where does one output pixel look? Attention and gradient-influence maps for a clicked pixel.

Each model reports its own attention (`return_attention=True`), and its spec's `attention(maps, q)`
(asf_core.models.spec) reads it as weights over the tokens [observations; queries] with whatever
else bounds it (a radius, a scan order); here they are drawn on the pixel grid.
Attention says where a layer looks, not what moves the answer, so beside it every model gets the
same gradient influence |∂x̂1(q)/∂obs_i| (asf_core.influence), in two parts: the total, and the
network alone, |∂(x̂1 - b)(q)/∂obs_i|, where b is the estimate every model adds through its prior
velocity (the spline, or the grid encoder's x̂). b is shared between architectures and dominates
the total, so the totals look alike; the network's part is where the mixers differ. Every map is
normalised to shares (sum 1), so one colour scale compares all architectures. Both are taken at
t = 0 with x_t at the source's mean (zeros for a noise source, the kNN interpolation for `interp`),
where x̂1 is the model's posterior mean.

Symbols: N observed pixels · Q = S² queries · T = N + Q tokens · M latents · K neighbour slots.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from app.images import to_tensor
from asf_core.fields import observations, pixel_coords
from asf_core.flow import model_context, model_interp, source_sample
from asf_core.influence import gradient_influence
from asf_core.models.spec import Attention
from asf_core.reconstruct import source_settings


def _token_pixels(xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(T,) flat pixel index of every token in [tokens; queries]: the pixel each leading token
    (an observation, or a grid encoder's cell) at xy (N, 2) lies in, then query j at pixel j."""
    h, w = shape
    col = np.clip(np.floor((xy[:, 0] + 1) / 2 * w), 0, w - 1).astype(int)
    row = np.clip(np.floor((xy[:, 1] + 1) / 2 * h), 0, h - 1).astype(int)
    return np.concatenate([row * w + col, np.arange(h * w)])


def _on_grid(weights: np.ndarray, pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape[0] * shape[1])
    np.add.at(out, pixels, weights)
    return out.reshape(shape)


def _share(m: np.ndarray) -> np.ndarray:
    total = m.sum()
    return m / total if total > 0 else m


def mass_radius(share: np.ndarray, pixel: tuple[int, int], fraction: float) -> float:
    """The smallest distance (in pixels) from `pixel` holding `fraction` of a share map's mass."""
    rr, cc = np.indices(share.shape)
    dist = np.hypot(rr - pixel[0], cc - pixel[1]).reshape(-1)
    order = np.argsort(dist, kind="stable")
    cum = np.cumsum(share.reshape(-1)[order])
    if cum[-1] <= 0:
        return float("nan")
    return float(dist[order][np.searchsorted(cum, fraction * cum[-1])])


@torch.no_grad()
def locality(model: torch.nn.Module, read_attention: Callable[[dict, int], Attention] | None,
             image: np.ndarray, mask: np.ndarray, pixel: tuple[int, int], **model_kwargs) -> dict:
    """Maps for output pixel (row, col) of a model reconstructing `image` (S, S, 3) under `mask`.

    `read_attention` is the architecture's spec.attention (None: it reports no attention).
    Returns a dict of numpy / floats: `attention` (None without a read-out), `influence`,
    `influence_network` (S, S) shares summing to 1, `influence_total` / `influence_network_total`
    (the raw sums of |∂x̂1/∂obs| and |∂(x̂1 - b)/∂obs|), `r50_*`/`r90_*` (pixels holding 50 / 90% of
    each map), and where the read-out has them `radius_px` (how far a query may look, in pixels)
    and `scan_path` (T, 2) (row, col) in the first layer's scan order with `scan_is_obs` (T,).
    """
    h, w = mask.shape
    row, col = int(pixel[0]), int(pixel[1])
    if not (0 <= row < h and 0 <= col < w):
        raise ValueError(f"pixel ({row}, {col}) is outside the {h}×{w} grid")
    q = row * w + col
    images = to_tensor(image)  # (1, 3, S, S) in [-1, 1]
    obs_xy, obs_rgb = observations(images, torch.from_numpy(np.array(mask, bool))[None])  # (1, N, 2|3)
    query_xy = pixel_coords(h, w)  # (Q, 2)
    source, _ = source_settings(model)
    ctx = model_context(model, query_xy=query_xy, obs_xy=obs_xy, obs_rgb=obs_rgb, **model_kwargs)
    x_t = source_sample(source, obs_xy, obs_rgb, query_xy, sigma=0.0, interp=model_interp(model),
                        mean=None if ctx is None else ctx.get("interp"))  # its mean
    att = None
    if read_attention is not None:
        _, maps = model(x_t=x_t, t=torch.zeros(1), query_xy=query_xy, obs_xy=obs_xy, obs_rgb=obs_rgb,
                        return_attention=True, **model_kwargs)
        att = read_attention(maps, q)
    # observations, then queries: what the gradient is taken of
    pixels = _token_pixels(obs_xy[0].numpy(), (h, w))
    grads = {part: gradient_influence(model, q, query_xy=query_xy, obs_xy=obs_xy, obs_rgb=obs_rgb, x_t=x_t,
                                      t=0.0, part=part, **model_kwargs)[0].numpy()  # (N,)
             for part in ("total", "network")}
    on_grid = {part: _share(_on_grid(g, pixels[: g.shape[0]], (h, w))) for part, g in grads.items()}
    out = {
        "pixel": (row, col), "attention": None, "influence": on_grid["total"],
        "influence_network": on_grid["network"], "influence_total": float(grads["total"].sum()),
        "influence_network_total": float(grads["network"].sum()),
    }
    if att is not None:
        out["attention"] = _share(_on_grid(att.weights, _token_pixels(att.token_xy, (h, w)), (h, w)))
    for name in ("attention", "influence", "influence_network"):
        if out[name] is not None:
            out[f"r50_{name}"] = mass_radius(out[name], (row, col), 0.5)
            out[f"r90_{name}"] = mass_radius(out[name], (row, col), 0.9)
    if att is not None and att.radius is not None:
        out["radius_px"] = att.radius_px(w)
    if att is not None and att.scan_order is not None:
        order = att.scan_order  # (T,) token indices
        flat = _token_pixels(att.token_xy, (h, w))[order]
        out["scan_path"] = np.stack([flat // w, flat % w], -1)
        out["scan_is_obs"] = order < len(att.token_xy)
    return out
