"""Hybrid velocity field: radius-limited local attention alternating with a bidirectional selective scan.

The two directions the Local Implicit and MAMBA models take, in one stack. Each layer first scans
all tokens, the observation tokens (or the grid encoder's cells) and the queries, as one sequence
along a Hilbert curve, forward and backward (MAMBA's `BiMambaLayer`; odd layers scan the transposed
curve), so every token hears the whole image at a cost linear in the number of points; then every
query attends to its neighbours within the radius among the scanned observation tokens and the
other queries (Local Implicit's `LocalLayer`, with its relative-position bias), which sharpens what
the scan smeared along the curve. Unlike in Local Implicit, the observation tokens are updated by
the scans, so the keys a query attends to already carry context from far away.

The radius is a live knob as in Local Implicit (trained over [radius_min, radius_max], embedded
into the time conditioning); d_state, like the other sizes, is fixed by the checkpoint.

Symbols: B batch · N observation tokens · Q queries · L = N + Q · K neighbour slots · D width.
Flow convention (asf_core.flow): x_t = (1 - t)·x_0 + t·x_1, t=0 source, t=1 data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from asf_core.models import encoder, local_implicit
from asf_core.models.local_implicit import LocalImplicit, LocalImplicitConfig, LocalLayer
from asf_core.models.mamba import D_STATE_RANGE, BiMambaLayer, scan_order
from asf_core.models.spec import ArchSpec, Attention
from asf_core.ops.curves import ORDERS


@dataclass
class HybridConfig(LocalImplicitConfig):
    # num_layers counts (scan, local attention) pairs; the local-attention fields are Local Implicit's
    d_state: int = 16  # S of the scans, in [8, 32]
    d_conv: int = 4
    expand: int = 2
    dt_rank: int = 0  # 0: ceil(d_model / 16)
    share_directions: bool = False
    scan_order: str = "hilbert"
    alternate_transpose: bool = True  # odd layers scan the transposed curve
    curve_bits: int = 10
    use_fast_path: bool = True  # mamba_ssm's CUDA scan when installed and on CUDA

    def __post_init__(self):
        lo, hi = D_STATE_RANGE
        if not lo <= self.d_state <= hi:
            raise ValueError(f"d_state must be in [{lo}, {hi}], got {self.d_state}")
        if self.scan_order not in ORDERS:
            raise ValueError(f"unknown scan_order {self.scan_order!r}; choose from {', '.join(ORDERS)}")
        if self.attention_impl != "sparse":
            raise ValueError("the hybrid has no dense reference; attention_impl must be 'sparse'")


PRESETS = {
    # the grid observation encoder with two (scan, local attention) pairs: 3.1M parameters, as the
    # others' small
    "small": dict(
        prior="gaussian",
        encoder=encoder.SMALL,
        d_model=96,
        num_layers=2,
        num_heads=4,
        num_fourier_feats=64,
        mlp_ratio=2.0,
        dropout=0.0,
        max_neighbors=32,
        bias_hidden=16,
        d_state=16,
    ),
    "paper": dict(
        prior="gaussian", d_model=512, num_layers=3, num_heads=8, mlp_ratio=2.0, share_directions=True
    ),
    "tiny": dict(
        d_model=32,
        num_layers=2,
        num_heads=2,
        num_fourier_feats=16,
        mlp_ratio=2.0,
        dropout=0.0,
        max_neighbors=16,
        bias_hidden=8,
        d_state=8,
    ),
    "tiny_grid": dict(
        encoder=encoder.TINY,
        prior="gaussian",
        d_model=32,
        num_layers=2,
        num_heads=2,
        num_fourier_feats=16,
        mlp_ratio=2.0,
        dropout=0.0,
        max_neighbors=16,
        bias_hidden=8,
        d_state=8,
    ),
}


class Hybrid(LocalImplicit):
    """Local Implicit's context (observation tokens, neighbour lists, radius) and head, with a
    bidirectional scan over [obs; queries] before each local-attention layer."""

    def __init__(self, config: HybridConfig):
        super().__init__(config)
        self.type_embed = nn.Parameter(torch.randn(2, config.d_model) * 0.02)  # obs / query, as in MAMBA
        self.scans = nn.ModuleList(BiMambaLayer(config, i) for i in range(config.num_layers))
        self.layers = nn.ModuleList(LocalLayer(config) for _ in range(config.num_layers))

    def orders(self, xy: torch.Tensor, n: int, values: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer scan orders (B, L) over [obs; queries]: the curve, its transpose on odd layers."""
        cfg = self.config
        is_query = torch.arange(xy.shape[1], device=xy.device) >= n
        with torch.no_grad():
            curves = [
                scan_order(xy, is_query, values, cfg.scan_order, cfg.curve_bits, transpose=t)
                for t in ((False, True) if cfg.alternate_transpose else (False,))
            ]
        return [curves[i % len(curves)] for i in range(cfg.num_layers)]

    def forward(
        self,
        *,
        x_t: torch.Tensor,
        t: torch.Tensor,
        query_xy: torch.Tensor,
        obs_xy: torch.Tensor,
        obs_rgb: torch.Tensor,
        return_attention: bool = False,
        radius=None,
        context: dict | None = None,
    ):
        """Velocity of the query values; the arguments and maps are Local Implicit's (see there)."""
        cfg = self.config
        b = x_t.shape[0]
        ctx = context or self.context(query_xy=query_xy, obs_xy=obs_xy, obs_rgb=obs_rgb, radius=radius)
        interp, nb = ctx["interp"], ctx["neighbors"]
        c = self.time_embed(t) + ctx["radius_embed"]  # (B, D)
        feats = [ctx["query_fourier"].expand(b, -1, -1), x_t]
        if cfg.interp_feature:
            feats.append(interp)
        x = self.query_in(torch.cat(feats, -1)) + self.type_embed[1]  # (B, Q, D)
        if ctx["neighbor_feat"] is not None:
            x = x + ctx["neighbor_feat"]
        obs = (ctx["obs"] + self.type_embed[0]).expand(b, -1, -1)  # (B, N, D)
        n = obs.shape[1]
        xy = torch.cat([ctx["obs_xy"].expand(b, -1, -1), ctx["query_xy"].expand(b, -1, -1)], 1)  # (B, L, 2)
        orders = self.orders(xy, n, torch.cat([ctx["obs_values"].expand(b, -1, -1), x_t], 1))
        weights = []
        for scan, local, order, layer_bias in zip(self.scans, self.layers, orders, ctx["biases"]):
            seq = torch.cat([obs, x], 1)  # (B, L, D) as [obs; queries]
            gather = order[..., None].expand_as(seq)
            scanned = scan(seq.gather(1, gather), c)  # (B, L, D) in scan order
            seq = torch.empty_like(seq).scatter_(1, gather, scanned)  # back to [obs; queries]
            obs, x = seq[:, :n], seq[:, n:]
            x, w = local(x, obs, c, nb, layer_bias, need_weights=return_attention)
            weights.append(w)
        v = self.head(x, c)  # (B, Q, 3)
        if self.prior is not None:
            v = v + self.prior(x_t, t, interp).to(v.dtype)
        if not return_attention:
            return v
        return v, {
            "neighbors": nb["idx"],
            "valid": nb["valid"],
            "weights": weights,
            "radius": ctx["radius"],
            "n_obs": n,
            "token_xy": ctx["obs_xy"],
            "scan_order": orders[0] if orders else None,
        }


def attention(maps: dict, q: int) -> Attention:
    """Local Implicit's read-out (query q's neighbour weights, inside the radius), the first scan's order."""
    local = local_implicit.attention(maps, q)
    order = maps["scan_order"]
    return Attention(
        weights=local.weights,
        token_xy=local.token_xy,
        radius=local.radius,
        scan_order=None if order is None else np.asarray(order[0].numpy()),
    )


SPEC = ArchSpec(
    name="hybrid",
    label="Hybrid",
    help="Hybrid: a Hilbert-curve scan over all tokens, then attention within the radius, in every layer.",
    model_cls=Hybrid,
    config_cls=HybridConfig,
    presets=PRESETS,
    knobs=local_implicit.knobs,
    attention=attention,
    attention_help="its neighbours within the radius (after the scans)",
    releases={"hybrid_grid": {}},
)
