"""Perceiver IO velocity field (Jaegle et al., "Perceiver IO", 2021), the ASF baseline.

Observed pixels (clean) and query tokens (coordinates + noisy values x_t) are both read into M
learned latents by cross-attention, the latents are refined by self-attention, and every query
reads its velocity back from the latents. Queries exchange information only through the latent
bottleneck, which is what keeps samples coherent rather than per-pixel noise. Time enters every
block through adaLN-Zero (FiLM).

Symbols: B batch · N observed points · Q queries · M latents · D width · H heads.
Flow convention (asf_core.flow): x_t = (1 - t)·x_0 + t·x_1, t=0 source, t=1 data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from einops import repeat
from torch import nn

from asf_core.models import encoder
from asf_core.models.knobs import Knob
from asf_core.models.spec import ArchSpec, Attention, token_xy
from asf_core.nn import (
    Block,
    FourierFeatures,
    OutputHead,
    TimeEmbedding,
    make_grid_reader,
    make_neighbor_encoder,
    make_prior,
    point_context,
)


@dataclass
class PerceiverIOConfig:
    d_model: int = 512
    num_latents: int = 512
    num_layers: int = 4  # latent self-attention blocks
    num_heads: int = 8
    num_fourier_feats: int = 256
    fourier_scale: float = 3.0
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    interp_feature: bool = True  # queries also see the interpolation of the observations at their coordinate
    interp: str = "knn"  # that interpolation: "knn" (Gaussian k-nearest) or "tps" (thin-plate spline)
    # "gaussian": add the independent-Gaussian velocity around the interpolation (nn.PriorVelocity);
    # prior_source / prior_sigma are the training source's, set by the training command
    prior: str = "none"
    prior_source: str = "interp"
    prior_sigma: float = 0.3
    neighbor_k: int = 0  # > 0: queries also read their k nearest observations (nn.NeighborEncoder)
    neighbor_hidden: int = 128
    # GridEncoderConfig fields: the grid observation encoder; empty: none
    encoder: dict = field(default_factory=dict)
    # the mixer reads the encoder's features pooled by this, as tokens at the cell centres
    token_pool: int = 2


PRESETS = {
    # ~19M parameters, the 512-latent bottleneck of the ASF description
    "paper": dict(prior="gaussian", interp="tps", num_layers=2),
    # the grid observation encoder (asf_core.models.encoder) with a Perceiver IO mixer
    "small": dict(prior="gaussian", encoder=encoder.SMALL, d_model=128, num_latents=96, num_layers=3,
                  num_heads=4,
                  num_fourier_feats=64),
    # 3.0M; the neighbour encoder is what takes it above thin-plate spline (docs/training_curves.md)
    "small_point": dict(prior="gaussian", interp="tps", d_model=160, num_latents=128, num_layers=4,
                        num_heads=5,
                        num_fourier_feats=128, neighbor_k=16),
    "tiny": dict(d_model=32, num_latents=16, num_layers=1, num_heads=2, num_fourier_feats=16, mlp_ratio=2.0),
    "tiny_grid": dict(encoder=encoder.TINY, prior="gaussian", d_model=32, num_latents=16, num_layers=1,
                      num_heads=2,
                      num_fourier_feats=16, mlp_ratio=2.0),
}


class PerceiverIO(nn.Module):
    def __init__(self, config: PerceiverIOConfig):
        super().__init__()
        self.config = cfg = config
        d = cfg.d_model
        self.fourier = FourierFeatures(cfg.num_fourier_feats, cfg.fourier_scale)
        self.time_embed = TimeEmbedding(d)
        # the grid encoder has its own
        self.obs_in = None if cfg.encoder else nn.Linear(self.fourier.out_dim + 3, d)
        self.query_in = nn.Linear(self.fourier.out_dim + (6 if cfg.interp_feature else 3), d)
        self.prior = make_prior(cfg)
        self.neighbor_enc = make_neighbor_encoder(cfg)
        self.obs_encoder, self.grid_in, self.cell_in = make_grid_reader(cfg, self.fourier.out_dim)
        self.uses_interp = cfg.interp_feature or self.prior is not None or self.neighbor_enc is not None
        self.latents = nn.Parameter(torch.randn(cfg.num_latents, d) * 0.02)
        kw = dict(heads=cfg.num_heads, cond_dim=d, mlp_ratio=cfg.mlp_ratio, dropout=cfg.dropout)
        self.encoder = Block(d, cross=True, **kw)
        self.processor = nn.ModuleList(Block(d, **kw) for _ in range(cfg.num_layers))
        self.decoder = Block(d, cross=True, **kw)
        self.head = OutputHead(d, d)

    def knobs(self) -> dict[str, Knob]:
        """Run-time knobs (asf_core.models.knobs): none; its capacity is fixed by the checkpoint."""
        return SPEC.knobs(self.config)

    def context(self, *, query_xy: torch.Tensor, obs_xy: torch.Tensor, obs_rgb: torch.Tensor) -> dict:
        """What a forward computes from positions and observations alone: the interpolation, the
        neighbour encoding, observation tokens and query Fourier features. An ODE solve changes
        only x_t and t, so it computes this once and passes it to every step as `forward(context=...)`."""
        return point_context(self, query_xy, obs_xy, obs_rgb)

    def forward(
        self, *, x_t: torch.Tensor, t: torch.Tensor, query_xy: torch.Tensor, obs_xy: torch.Tensor,
        obs_rgb: torch.Tensor, return_attention: bool = False, context: dict | None = None,
    ):
        """Velocity of the query values.

        Args:
            x_t: (B, Q, 3) noisy query values. t: (B,) in [0, 1].
            query_xy: (B, Q, 2) or (Q, 2) in [-1, 1]. obs_xy: (B, N, 2). obs_rgb: (B, N, 3) in [-1, 1].
            return_attention: also return {"encoder": (B, H, M, N+Q), "processor": [(B, H, M, M)],
                "decoder": (B, H, Q, M), "n_obs": N, "token_xy": (B, N, 2)}: N tokens
                (observations, or the grid encoder's cells) before the Q queries.
            context: `self.context(...)` of these same positions and observations, to skip recomputing it.
        Returns:
            v (B, Q, 3), or (v, attention) when asked.
        """
        b = x_t.shape[0]
        ctx = context or self.context(query_xy=query_xy, obs_xy=obs_xy, obs_rgb=obs_rgb)
        interp, obs = ctx["interp"], ctx["obs"]
        c = self.time_embed(t)  # (B, D)
        feats = [ctx["query_fourier"].expand(b, -1, -1), x_t]
        if self.config.interp_feature:  # what interpolation predicts here: the model learns the correction
            feats.append(interp)
        qry = self.query_in(torch.cat(feats, dim=-1))  # (B, Q, D)
        if ctx["neighbor_feat"] is not None:
            qry = qry + ctx["neighbor_feat"]
        inputs = torch.cat([obs, qry], dim=1)  # (B, N+Q, D)

        z = repeat(self.latents, "m d -> b m d", b=b)
        z, w_enc = self.encoder(z, c, inputs, need_weights=return_attention)  # (B, M, D)
        w_proc = []
        for block in self.processor:
            z, w = block(z, c, need_weights=return_attention)
            w_proc.append(w)
        out, w_dec = self.decoder(qry, c, z, need_weights=return_attention)  # (B, Q, D)
        v = self.head(out, c)  # (B, Q, 3)
        if self.prior is not None:
            v = v + self.prior(x_t, t, interp).to(v.dtype)
        if return_attention:
            return v, {"encoder": w_enc, "processor": w_proc, "decoder": w_dec, "n_obs": obs.shape[1],
                       "token_xy": ctx["obs_xy"]}
        return v


def attention(maps: dict, q: int) -> Attention:
    """Attention rollout (Abnar & Zuidema 2020) of query q through the latents to the input tokens:
    the decoder row, times each processor block's (A + I)/2 (the residual), times the encoder."""
    r = maps["decoder"][0, :, q].mean(0)  # (M,)
    for a in reversed(maps["processor"]):
        a = a[0].mean(0)  # (M, M)
        r = r @ (0.5 * a + 0.5 * torch.eye(a.shape[0]))
    weights = (r @ maps["encoder"][0].mean(0)).float().numpy()  # (N + Q,)
    return Attention(weights=np.asarray(weights), token_xy=token_xy(maps))


SPEC = ArchSpec(
    name="perceiver_io", label="Perceiver IO",
    help="Perceiver IO: every pixel reads a 128-latent summary of all observations (global).",
    model_cls=PerceiverIO, config_cls=PerceiverIOConfig, presets=PRESETS, attention=attention,
    attention_help="rolled out through its latents",
    releases={"perceiver_io_grid": {}},
)
