"""U-Net peer: a conditional flow-matching U-Net on the pixel grid (DDPM / ADM style).

What a practitioner would pick for images on a grid, so every table shows it beside the three field
architectures. The grid observation encoder (asf_core.models.encoder) reads the observations once
per solve into features and the posterior-mean estimate x̂ on the query grid; each ODE step runs a
time-conditioned U-Net (FiLM in every residual block) on [x_t, x̂, features] and adds the Gaussian
prior velocity around x̂ (asf_core.nn.PriorVelocity), so at t = 0 its x̂1 is the encoder's x̂ and
the network learns what makes a sample an image. Convolutions mix neighbouring queries, which is
what keeps samples coherent.

It answers only at the pixel centres of a square grid (32², 64², 128²…), all of them, row-major
(asf_core.fields.pixel_coords); other query sets are refused with a clear error.

Symbols: B batch · N observed points · G grid side · Q = G² queries · C channels.
Flow convention (asf_core.flow): x_t = (1 - t)·x_0 + t·x_1, t=0 source, t=1 data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from asf_core.models import encoder
from asf_core.models.encoder import GridEncoder, GridEncoderConfig, UNet, cell_centres
from asf_core.models.knobs import Knob
from asf_core.models.spec import ArchSpec
from asf_core.nn import TimeEmbedding, make_prior


@dataclass
class UNetConfig:
    encoder: dict = field(default_factory=dict)  # GridEncoderConfig fields
    widths: tuple[int, ...] = (64, 128, 256)  # the time-conditioned U-Net's channels per scale
    blocks: int = 2
    time_dim: int = 128
    prior: str = "gaussian"
    prior_source: str = "interp"  # x_0 = x̂ + σ·ε: the flow starts at the posterior mean
    prior_sigma: float = 0.3


PRESETS = {
    "paper": dict(encoder=dict(widths=(64, 128, 256), out_dim=64), widths=(128, 256, 512)),
    "small": dict(encoder=encoder.SMALL, widths=(32, 64, 128), blocks=1),
    "tiny": dict(encoder=encoder.TINY, widths=(8, 16), blocks=1, time_dim=16),
}


def grid_of(query_xy: torch.Tensor) -> int:
    """The side G of the pixel grid `query_xy` (Q, 2) or (B, Q, 2) covers, or a ValueError."""
    q = query_xy.shape[-2]
    side = math.isqrt(q)
    ref = cell_centres(side, query_xy.device)[0] if side * side == q else None
    if ref is None or not torch.allclose(query_xy.reshape(-1, q, 2), ref.expand(query_xy.reshape(-1, q,
                                                                                                 2).shape),
                                         atol=1e-5):
        raise ValueError(f"the U-Net answers only at every pixel centre of a square grid, in row-major order "
                         f"(asf_core.fields.pixel_coords); got {q} queries that are not one")
    return side


class UNetField(nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = cfg = config
        self.obs_encoder = GridEncoder(GridEncoderConfig(**cfg.encoder))
        c = self.obs_encoder.config.out_dim
        self.time_embed = TimeEmbedding(cfg.time_dim)
        self.net = UNet(3 + 3 + c, 3, tuple(cfg.widths), cfg.blocks, cond_dim=cfg.time_dim)
        nn.init.zeros_(self.net.out[-1].weight)  # v starts at the prior velocity
        nn.init.zeros_(self.net.out[-1].bias)
        self.prior = make_prior(cfg)

    def knobs(self) -> dict[str, Knob]:
        """Run-time knobs (asf_core.models.knobs): none; its capacity is fixed by the checkpoint."""
        return SPEC.knobs(self.config)

    def context(self, *, query_xy: torch.Tensor, obs_xy: torch.Tensor, obs_rgb: torch.Tensor) -> dict:
        """The encoder on the query grid, once per solve: {"grid": GridFeatures, "interp": x̂ (B, Q, 3)}."""
        side = grid_of(query_xy)
        g = self.obs_encoder(obs_xy, obs_rgb, side)
        return {"grid": g, "interp": g.mean.flatten(2).transpose(1, 2), "side": side}

    def forward(
        self, *, x_t: torch.Tensor, t: torch.Tensor, query_xy: torch.Tensor, obs_xy: torch.Tensor,
        obs_rgb: torch.Tensor, return_attention: bool = False, context: dict | None = None,
    ):
        """Velocity at every pixel of the query grid.

        Args:
            x_t: (B, G², 3) noisy values, row-major. t: (B,) in [0, 1].
            query_xy: (G², 2) or (B, G², 2), the grid's pixel centres. obs_xy (B, N, 2), obs_rgb (B, N, 3).
            return_attention: also return {} (a conv net has no attention to report).
        Returns:
            v (B, G², 3), or (v, {}) when asked.
        """
        ctx = context or self.context(query_xy=query_xy, obs_xy=obs_xy, obs_rgb=obs_rgb)
        g, side, interp = ctx["grid"], ctx["side"], ctx["interp"]
        b = x_t.shape[0]
        x = x_t.transpose(1, 2).reshape(b, 3, side, side)
        h = torch.cat([x.to(g.feat.dtype), g.mean, g.feat], 1)  # (B, 6 + C, G, G)
        v = self.net(h, self.time_embed(t)).flatten(2).transpose(1, 2)  # (B, Q, 3)
        if self.prior is not None:
            v = v + self.prior(x_t, t, interp).to(v.dtype)
        return (v, {}) if return_attention else v


# no attention to read out (convolutions), and not served by the app: its only shipped checkpoint,
# pretrained/grid_encoder_small, is the shared encoder's pre-training, not a release to compare
SPEC = ArchSpec(
    name="unet", label="U-Net",
    help="U-Net: a conditional U-Net on the pixel grid; convolutions mix neighbouring pixels.",
    model_cls=UNetField, config_cls=UNetConfig, presets=PRESETS, attention=None, in_app=False,
    full_grid=True,
)
