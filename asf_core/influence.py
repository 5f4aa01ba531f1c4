"""Gradient influence of the observed pixels on one query, for any ASF model.

Attention maps exist only for some architectures and show where a layer looks, not what moves the
answer. The gradient of the model's one-step estimate of the clean value,
    x̂_1(q) = x_t(q) + (1 - t)·v(x_t, t)(q)      (at t = 0 and x_t = 0: the posterior mean),
with respect to each observed colour asks every model the same question: how much does pixel i
change what the model predicts at q. Flow convention (asf_core.flow): x_t = (1 - t)·x_0 + t·x_1.

Every ASF model adds a prior velocity centred on its own estimate b(q) (`context()["interp"]`: the
thin-plate spline, or the grid encoder's x̂), so at t = 0 its x̂1 is b plus a learned correction.
With `part="network"` the gradient is of the correction x̂1 - b alone: what the architecture's
mixer adds. The total is dominated by b where b is shared (the same spline for every point
model, the same encoder for every grid model), which is why totals look alike across mixers.

Symbols: B batch · N observed points · Q queries.
"""

from __future__ import annotations

import torch
from torch import nn

from asf_core.flow import model_context

PARTS = ("total", "network")


def gradient_influence(
    model: nn.Module, query_index: int, *, query_xy: torch.Tensor, obs_xy: torch.Tensor,
    obs_rgb: torch.Tensor, x_t: torch.Tensor | None = None, t: float | torch.Tensor = 0.0,
    part: str = "total", **model_kwargs,
) -> torch.Tensor:
    """|∂ x̂_1(q) / ∂ obs_rgb_i|, summed over the 3×3 colour Jacobian entries: (B, N), ≥ 0.

    Args:
        model: any model with the shared signature `model(x_t=, t=, query_xy=, obs_xy=, obs_rgb=)`.
        query_index: which query q (an index into the Q queries).
        query_xy: (B, Q, 2) or (Q, 2). obs_xy: (B, N, 2). obs_rgb: (B, N, 3).
        x_t: (B, Q, 3) query state; zeros (the mean of the noise) by default.
        t: time in [0, 1], a float or (B,).
        part: "total" (of x̂1) or "network" (of x̂1 - b, b the model's own estimate; needs a model
            with `context()`).
        model_kwargs: passed through to the model (e.g. a radius).
    Returns:
        (B, N) influence of each observation on query q. The model runs in eval mode (dropout off)
        and is put back in its previous mode; batch elements are independent, so one backward per
        output channel serves the whole batch.
    """
    b = obs_rgb.shape[0]
    q = query_xy.shape[-2]
    if not -q <= query_index < q:
        raise IndexError(f"query_index {query_index} out of range for {q} queries")
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; choose from {', '.join(PARTS)}")
    if x_t is None:
        x_t = obs_rgb.new_zeros(b, q, 3)
    t = torch.as_tensor(t, dtype=obs_rgb.dtype, device=obs_rgb.device).expand(b).contiguous()
    obs = obs_rgb.detach().clone().requires_grad_(True)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            ctx = model_context(model, query_xy=query_xy, obs_xy=obs_xy, obs_rgb=obs, **model_kwargs)
            if part == "network" and (ctx is None or ctx.get("interp") is None):
                raise ValueError("this model has no estimate b of its own to subtract: use part='total'")
            extra = model_kwargs if ctx is None else {"context": ctx}
            v = model(x_t=x_t, t=t, query_xy=query_xy, obs_xy=obs_xy, obs_rgb=obs, **extra)
            x1 = x_t[:, query_index] + (1 - t)[:, None] * v[:, query_index]  # (B, 3)
            if part == "network":
                x1 = x1 - ctx["interp"][:, query_index]
            influence = obs.new_zeros(b, obs.shape[1])
            for c in range(x1.shape[-1]):  # one row of the colour Jacobian at a time, so signs can't cancel
                (g,) = torch.autograd.grad(x1[:, c].sum(), obs, retain_graph=c < x1.shape[-1] - 1)
                influence += g.abs().sum(-1)
    finally:
        model.train(was_training)
    return influence.detach()
