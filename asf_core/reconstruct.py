"""Reconstruct whole images from observed pixels with a trained velocity model.

One call draws K posterior samples by integrating the flow from x_0 (t=0) to t=1 at every query
coordinate of an output grid, and also returns the one-step estimate x̂1 = x_0 + v(x_0, 0), which
on a straight path is the model's posterior mean, and the mean of the K samples.

Symbols: B batch · K samples · N observed points · Q = H'·W' queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from asf_core.fields import observations, pixel_coords, values_to_image
from asf_core.flow import model_context, model_interp, source_sample
from asf_core.sampling import check_steps, sample, time_grid


@dataclass
class Reconstruction:
    sample: torch.Tensor  # (B, 3, H', W') the first posterior sample
    mean: torch.Tensor  # (B, 3, H', W') mean of the K samples
    onestep: torch.Tensor  # (B, 3, H', W') x̂1 at t=0 (posterior mean)
    samples: torch.Tensor  # (K, B, 3, H', W')
    nfe: int  # function evaluations per sample


def source_settings(model: torch.nn.Module) -> tuple[str, float]:
    """The flow's source x_0. A model with a prior velocity records it in its own config
    (prior_source, prior_sigma; training sets them to the source it trains from), so a model built
    in code is sampled from the source its prior describes; otherwise the training record's, else
    noise with σ = 1."""
    cfg = getattr(model, "config", None)
    if getattr(cfg, "prior", "none") != "none" and hasattr(cfg, "prior_source"):
        return cfg.prior_source, float(cfg.prior_sigma)
    train = getattr(model, "checkpoint_config", {}).get("train", {})
    return train.get("source", "noise"), float(train.get("sigma", 1.0))


@torch.no_grad()
def reconstruct(
    model: torch.nn.Module, images: torch.Tensor, mask: torch.Tensor, *, steps: int = 20,
    solver: str = "heun", samples: int = 1, out_hw: tuple[int, int] | None = None,
    source: str | None = None, sigma: float | None = None, generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None, keep_observed: bool = True, **model_kwargs,
) -> Reconstruction:
    """Sample K reconstructions of each image.

    Args:
        images: (B, 3, H, W) in [-1, 1]; only observed pixels are read.
        mask: (B, H, W) bool, True where observed (same count per image).
        out_hw: output grid (default the input's); the field is queried at its pixel centres.
        source, sigma: the flow's source (default: what the model was trained with).
        callback: the sampler's per-step callback; its tensors are (K·B, Q, 3).
        keep_observed: paste observed pixels into outputs on the input grid.
        model_kwargs: extra model knobs, e.g. `radius` for Local Implicit.
    """
    steps = check_steps(steps)
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    device = next(model.parameters()).device
    b, _, h, w = images.shape
    oh, ow = out_hw or (h, w)
    default_source, default_sigma = source_settings(model)
    source, sigma = source or default_source, default_sigma if sigma is None else sigma

    obs_xy, obs_rgb = observations(images.to(device), mask.to(device))  # (B, N, 2), (B, N, 3)
    obs_xy, obs_rgb = obs_xy.repeat(samples, 1, 1), obs_rgb.repeat(samples, 1, 1)  # (K·B, N, ·)
    query_xy = pixel_coords(oh, ow, device)  # (Q, 2)
    # what does not change along the path, computed once per solve
    ctx = model_context(model, query_xy=query_xy, obs_xy=obs_xy, obs_rgb=obs_rgb, **model_kwargs)
    mean = None if ctx is None else ctx.get("interp")
    # (K·B, Q, 3)
    x_0 = source_sample(source, obs_xy, obs_rgb, query_xy, sigma, generator, model_interp(model), mean)
    if ctx is not None:
        model_kwargs = {"context": ctx, **model_kwargs}

    def v_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tb = t.float().expand(x.shape[0])
        return model(x_t=x, t=tb, query_xy=query_xy, obs_xy=obs_xy, obs_rgb=obs_rgb, **model_kwargs).float()

    first = {}

    def on_step(info: dict) -> None:
        if info["step"] == 0:
            first["x1_hat"] = info["x1_hat"]
        if callback is not None:
            callback(info)

    result = sample(v_fn, x_0, time_grid(steps), solver, on_step)
    to_img = lambda vals: values_to_image(vals, oh, ow).clamp(-1, 1)  # noqa: E731
    all_samples = to_img(result.x).view(samples, b, 3, oh, ow)
    onestep = to_img(first["x1_hat"][:b])
    mean = all_samples.mean(0)
    if keep_observed and (oh, ow) == (h, w):
        seen, truth = mask.to(device)[:, None], images.to(device).float()
        all_samples = torch.where(seen, truth, all_samples)
        onestep, mean = torch.where(seen, truth, onestep), torch.where(seen, truth, mean)
    return Reconstruction(
        sample=all_samples[0], mean=mean, onestep=onestep, samples=all_samples, nfe=result.nfe
    )
