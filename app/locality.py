"""Where does one output pixel look? Attention and gradient-influence maps for a clicked pixel.

Each model reports its own attention (asf_core models' `return_attention=True`), read as weights
over the tokens [observations; queries] and drawn on the pixel grid:
    local_implicit  the mean over layers and heads of its neighbour weights (all inside the radius)
    perceiver_io    attention rollout (Abnar & Zuidema 2020) query → latents → inputs: the decoder
                    row, times each processor's (A + I)/2 (residual blocks), times the encoder
    mamba           the query's cross-attention over the scanned sequence
Attention says where a layer looks, not what moves the answer, so beside it every model gets the
same gradient influence |∂x̂1(q)/∂obs_i| (asf_core.influence), in two parts: the total, and the
network alone, |∂(x̂1 - b)(q)/∂obs_i|, where b is the estimate every model adds through its prior
velocity (the spline, or the grid encoder's x̂). b is shared between architectures and dominates
the total, so the totals look alike; the network's part is where the mixers differ. Every map is
normalised to shares (sum 1), so one colour scale compares all architectures. Both are taken at t = 0 with x_t at
the source's mean (zeros for a noise source, the kNN interpolation for `interp`), where x̂1 is the
model's posterior mean.

Symbols: N observed pixels · Q = S² queries · T = N + Q tokens · M latents · K neighbour slots.
"""

from __future__ import annotations

import numpy as np
import torch

from app.images import to_tensor
from asf_core.fields import observations, pixel_coords
from asf_core.flow import model_context, model_interp, source_sample
from asf_core.influence import gradient_influence
from asf_core.reconstruct import source_settings


def _token_pixels(token_xy: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """(T,) flat pixel index of every token in [tokens; queries]: the pixel each leading token
    (an observation, or a grid encoder's cell) lies in, then query j at pixel j."""
    h, w = shape
    xy = token_xy[0].detach().numpy()
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


def _attention_tokens(arch: str, maps: dict, q: int) -> np.ndarray:
    """(T,) attention weights of query q over the tokens [obs; queries]."""
    if arch == "local_implicit":
        idx, valid = maps["neighbors"][0, q], maps["valid"][0, q]  # (K,)
        w = torch.stack([layer[0, :, q] for layer in maps["weights"]]).mean((0, 1)) * valid  # (K,)
        n_tokens = maps["n_obs"] + maps["neighbors"].shape[1]
        return torch.zeros(n_tokens).index_add_(0, idx, w.float()).numpy()
    if arch == "perceiver_io":
        r = maps["decoder"][0, :, q].mean(0)  # (M,)
        for a in reversed(maps["processor"]):
            a = a[0].mean(0)  # (M, M)
            r = r @ (0.5 * a + 0.5 * torch.eye(a.shape[0]))
        return (r @ maps["encoder"][0].mean(0)).numpy()  # (T,)
    if arch == "mamba":
        return maps["cross_attention"][0, :, q].mean(0).numpy()
    raise ValueError(f"no attention map for {arch!r}")


@torch.no_grad()
def locality(model: torch.nn.Module, arch: str, image: np.ndarray, mask: np.ndarray,
             pixel: tuple[int, int], **model_kwargs) -> dict:
    """Maps for output pixel (row, col) of a model reconstructing `image` (S, S, 3) under `mask`.

    Returns a dict of numpy / floats: `attention`, `influence`, `influence_network` (S, S) shares
    summing to 1, `influence_total` / `influence_network_total` (the raw sums of |∂x̂1/∂obs| and
    |∂(x̂1 - b)/∂obs|), `r50_*`/`r90_*` (pixels holding 50 / 90% of each map), `radius_px` (Local Implicit's radius, in pixels), and for MAMBA `scan_path` (T, 2)
    (row, col) in the first layer's scan order with `scan_is_obs` (T,).
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
    t = torch.zeros(1)
    _, maps = model(x_t=x_t, t=t, query_xy=query_xy, obs_xy=obs_xy, obs_rgb=obs_rgb,
                    return_attention=True, **model_kwargs)
    attention = _share(_on_grid(_attention_tokens(arch, maps, q), _token_pixels(maps["token_xy"], (h, w)), (h, w)))
    pixels = _token_pixels(obs_xy, (h, w))  # observations, then queries: what the gradient is taken of
    grads = {part: gradient_influence(model, q, query_xy=query_xy, obs_xy=obs_xy, obs_rgb=obs_rgb, x_t=x_t,
                                      t=0.0, part=part, **model_kwargs)[0].numpy()  # (N,)
             for part in ("total", "network")}
    on_grid = {part: _share(_on_grid(g, pixels[: g.shape[0]], (h, w))) for part, g in grads.items()}
    out = {
        "pixel": (row, col), "attention": attention, "influence": on_grid["total"],
        "influence_network": on_grid["network"], "influence_total": float(grads["total"].sum()),
        "influence_network_total": float(grads["network"].sum()),
    }
    for name in ("attention", "influence", "influence_network"):
        out[f"r50_{name}"] = mass_radius(out[name], (row, col), 0.5)
        out[f"r90_{name}"] = mass_radius(out[name], (row, col), 0.9)
    if arch == "local_implicit":
        out["radius_px"] = float(maps["radius"][0]) * w / 2  # coordinates span 2 units over W pixels
    if arch == "mamba" and maps.get("scan_order") is not None:
        order = maps["scan_order"][0].numpy()  # (T,) token indices
        flat = _token_pixels(maps["token_xy"], (h, w))[order]
        out["scan_path"] = np.stack([flat // w, flat % w], -1)
        out["scan_is_obs"] = order < maps["n_obs"]
    return out
