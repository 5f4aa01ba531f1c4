"""Conditional flow matching on a straight path (Lipman et al. 2023; Liu et al. 2023).

The one convention, used everywhere in ASF:
    x_t = (1 - t)·x_0 + t·x_1;   u_t = x_1 - x_0      # t=0 source, t=1 data
The flow runs on the values at the query coordinates only; observed pixels are clean conditioning.

The source x_0 is either pure noise N(0, I) (`noise`, the textbook picture) or an informed source
x_0 = b(obs, q) + σ·ε (`interp`), where b is the model's interpolation of the observations (a
thin-plate spline, or Gaussian-weighted k-nearest in older checkpoints): a data-dependent coupling
(Albergo et al., "Stochastic interpolants with data-dependent couplings", 2024), so the model starts
at interpolation quality and learns the correction.

Symbols: B batch · N observed points · Q queries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from asf_core.ops.interp import INTERPOLANTS, interpolate_obs, knn_interpolate, tps_interpolate

# re-exported: the informed source and the models share them
__all__ = ["INTERPOLANTS", "interpolate_obs", "knn_interpolate", "tps_interpolate"]

SOURCES = ("noise", "interp")
T_SAMPLERS = ("uniform", "logit_normal")


def interpolate(x_0: torch.Tensor, x_1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t on the straight path; t is (B,) and broadcasts over (B, Q, 3)."""
    t = t.view(-1, *([1] * (x_0.dim() - 1)))
    return (1 - t) * x_0 + t * x_1


def target_velocity(x_0: torch.Tensor, x_1: torch.Tensor) -> torch.Tensor:
    return x_1 - x_0


def one_step_estimate(x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """x̂1 = x_t + (1 - t)·v: at t=0 this is the model's posterior mean E[x_1 | obs]."""
    if torch.is_tensor(t) and t.dim() > 0:
        t = t.view(-1, *([1] * (x_t.dim() - 1)))
    return x_t + (1 - t) * v


def model_interp(model: torch.nn.Module) -> str:
    """The interpolant a model sees as a feature (config field `interp`; kNN before it existed)."""
    return getattr(getattr(model, "config", None), "interp", "knn")


def sample_t(
    batch: int, kind: str = "uniform", generator: torch.Generator | None = None, zero_prob: float = 0.0,
) -> torch.Tensor:
    """Training times: uniform on [0, 1], or logit-normal (SD3; mass in the middle of the path).

    With `zero_prob` > 0 that fraction of the batch (in expectation) gets t = 0 exactly. The
    regression target there is the posterior mean E[x_1 | obs] - x_0, the hardest and most
    informative point of the path (x̂1 and the first ODE steps depend on it); moving samples there
    reweights the loss over t but leaves the per-t optimum unchanged.
    """
    if not 0.0 <= zero_prob < 1.0:
        raise ValueError(f"zero_prob must be in [0, 1), got {zero_prob}")
    if kind == "uniform":
        t = torch.rand(batch, generator=generator)
    elif kind == "logit_normal":
        t = torch.sigmoid(torch.randn(batch, generator=generator))
    else:
        raise ValueError(f"unknown t sampler {kind!r}; choose from {', '.join(T_SAMPLERS)}")
    if zero_prob > 0:
        t = torch.where(torch.rand(batch, generator=generator) < zero_prob, 0.0, t)
    return t


def source_sample(
    kind: str, obs_xy: torch.Tensor, obs_rgb: torch.Tensor, query_xy: torch.Tensor,
    sigma: float = 1.0, generator: torch.Generator | None = None, interp: str = "knn",
    mean: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw x_0 (B, Q, 3) for the given source kind. The informed source is centred on `mean`, the
    model's own estimate at the queries (its `context()["interp"]`: the spline, or the grid
    encoder's x̂, which makes it the posterior-mean source of PMRF, Ohayon et al. 2025), or where
    none is given on the interpolant `interp` ("knn" or "tps")."""
    b = obs_xy.shape[0]
    q = query_xy.shape[-2]
    eps = torch.randn(b, q, 3, generator=generator).to(obs_rgb.device)
    if kind == "noise":
        return sigma * eps
    if kind == "interp":
        centre = interpolate_obs(interp, obs_xy, obs_rgb, query_xy) if mean is None else mean.detach()
        return centre + sigma * eps
    raise ValueError(f"unknown source {kind!r}; choose from {', '.join(SOURCES)}")


def model_context(model: torch.nn.Module, **inputs) -> dict | None:
    """The model's per-solve context (what depends on positions and observations alone), or None."""
    module = getattr(model, "module", model)  # a DDP wrapper
    return module.context(**inputs) if hasattr(module, "context") else None


def gaussian_velocity(
    x_t: torch.Tensor, t: torch.Tensor, mean_0: torch.Tensor | float, var_0: float,
    mean_1: torch.Tensor, var_1: torch.Tensor,
) -> torch.Tensor:
    """E[x_1 - x_0 | x_t] when x_0 ~ N(mean_0, var_0) and x_1 ~ N(mean_1, var_1) independently,
    per value, on the straight path x_t = (1-t)·x_0 + t·x_1.

    With mean_1 the interpolation of the observations this is the best velocity that ignores
    every other query: at t=0 its x̂1 is the interpolation itself, so a model that adds it to
    its output starts at interpolation quality and only has to learn the correction.
    Finite for all t in [0, 1] as long as var_1 > 0.
    """
    t = t.view(-1, *([1] * (x_t.dim() - 1))) if torch.is_tensor(t) and t.dim() > 0 else t
    mean_t = (1 - t) * mean_0 + t * mean_1
    var_t = (1 - t) ** 2 * var_0 + t**2 * var_1
    return (mean_1 - mean_0) + (t * var_1 - (1 - t) * var_0) / var_t * (x_t - mean_t)


def flow_matching_loss(
    model: torch.nn.Module, *, x_1: torch.Tensor, query_xy: torch.Tensor, obs_xy: torch.Tensor,
    obs_rgb: torch.Tensor, source: str = "noise", sigma: float = 1.0, t_sampler: str = "uniform",
    t_zero_prob: float = 0.0, generator: torch.Generator | None = None, **model_kwargs,
) -> torch.Tensor:
    """Mean squared error between the model's velocity and u_t = x_1 - x_0 at a random t.

    Args:
        x_1: (B, Q, 3) data values at the query coordinates query_xy (B, Q, 2).
    """
    b = x_1.shape[0]
    ctx = model_context(model, query_xy=query_xy, obs_xy=obs_xy, obs_rgb=obs_rgb, **model_kwargs)
    mean = None if ctx is None else ctx.get("interp")
    x_0 = source_sample(source, obs_xy, obs_rgb, query_xy, sigma, generator, model_interp(model), mean)
    t = sample_t(b, t_sampler, generator, t_zero_prob).to(x_1.device)
    extra = model_kwargs if ctx is None else {"context": ctx}
    v = model(x_t=interpolate(x_0, x_1, t), t=t, query_xy=query_xy, obs_xy=obs_xy, obs_rgb=obs_rgb, **extra)
    return F.mse_loss(v.float(), target_velocity(x_0, x_1).float())


def mean_loss(encoder: torch.nn.Module, *, x_1: torch.Tensor, query_xy: torch.Tensor, obs_xy: torch.Tensor,
              obs_rgb: torch.Tensor, **_) -> torch.Tensor:
    """Mean squared error of the grid encoder's x̂ at the queries: the posterior-mean regression
    that `--objective mean` trains the encoder on alone (it never sees x_t or t)."""
    return F.mse_loss(encoder(obs_xy, obs_rgb).mean_at(query_xy).float(), x_1.float())
