"""Mamba velocity field: the point set read as one Hilbert-ordered sequence by selective SSMs.

Mamba-1 blocks (Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", 2023)
scan a sequence that holds the observed pixels (coordinates + RGB) and the noisy queries
(coordinates + x_t), interleaved along a Hilbert curve over their coordinates, so that what is near
in the image is near in the sequence. Each layer scans both ways (a forward and a reversed block,
summed, as in Vision Mamba, Zhu et al. 2024) and alternates between the Hilbert curve and its
transpose (as in 2-D Mamba variants such as PlainMamba), so no pair of neighbours is always far
apart. Time enters every layer through adaLN-Zero (FiLM). The queries then read the sequence by
cross-attention and a zero-initialised head gives their velocity. With `decoder="window"` (the
presets) each query attends to the tokens within `decoder_window` places of it along each curve,
which after the scans carry the whole sequence's context: cost O((N + Q)·D² + Q·K·D), linear in
N + Q. `decoder="global"` (the first checkpoints) attends to every token: O(Q·(N + Q)·D), which
dominates from 128² on.

The order is computed from the points alone (coordinates, ties by token type, then values), so the
model is a function of the point SET: permuting the inputs permutes the outputs.

`MambaBlock` has the parameter names, shapes and initialisation of `mamba_ssm.Mamba`, so one state
dict loads strictly into both; it calls mamba_ssm's CUDA scan when installed and on CUDA.

Symbols: B batch · N observed points · Q queries · L = N + Q tokens · D width (d_model) ·
E = expand·D inner width · S state size (d_state) · R dt rank · H heads.
Flow convention (asf_core.flow): x_t = (1 - t)·x_0 + t·x_1, t=0 source, t=1 data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from einops import repeat
from torch import nn

from asf_core.models import encoder
from asf_core.models.knobs import Knob
from asf_core.models.spec import ArchSpec, Attention, token_xy
from asf_core.nn import (
    Block,
    FiLM,
    FourierFeatures,
    OutputHead,
    TimeEmbedding,
    make_grid_reader,
    make_neighbor_encoder,
    make_prior,
    modulate,
    point_context,
)
from asf_core.ops.curves import ORDERS, curve_key, lexsort
from asf_core.ops.selective_scan import selective_scan

D_STATE_RANGE = (8, 32)


class MambaBlock(nn.Module):
    """Mamba-1 mixer on (B, L, D), parameter-compatible with `mamba_ssm.Mamba` (same arguments).

    in_proj → split x, z → causal depthwise conv + SiLU → x_proj → (dt, B, C) → dt_proj (weight;
    its bias enters the scan as delta_bias with softplus) → selective scan (gated by SiLU(z)) →
    out_proj. No inference cache: the ASF models always see the whole sequence.
    """

    def __init__(
        self, d_model, d_state=16, d_conv=4, expand=2, dt_rank="auto", dt_min=0.001, dt_max=0.1,
        dt_init="random", dt_scale=1.0, dt_init_floor=1e-4, conv_bias=True, bias=False,
        use_fast_path=True, layer_idx=None, device=None, dtype=None,
    ):
        kw = {"device": device, "dtype": dtype}
        super().__init__()
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else dt_rank
        self.use_fast_path, self.layer_idx = use_fast_path, layer_idx

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias, **kw)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner,
                                padding=d_conv - 1, bias=conv_bias, **kw)
        self.act = nn.SiLU()
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **kw)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **kw)

        # dt_proj weight scaled so dt keeps unit-ish variance at init (as mamba_ssm)
        dt_init_std = self.dt_rank ** -0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, dt_init_std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
        else:
            raise ValueError(f"dt_init must be 'random' or 'constant', got {dt_init!r}")
        # bias = softplus⁻¹(dt), dt log-uniform in [dt_min, dt_max]: every channel starts with its
        # own time scale, from remembering ~1000 steps to ~10
        dt = torch.exp(
            torch.rand(self.d_inner, **kw) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        inv_dt = dt + torch.log(-torch.expm1(-dt))
        with torch.no_grad():
            self.dt_proj.bias.copy_(inv_dt)
        self.dt_proj.bias._no_reinit = True  # a global zero-init of biases must leave this one

        # S4D-real: A = -(1..S) per channel, kept as log in fp32
        A = repeat(torch.arange(1, d_state + 1, dtype=torch.float32, device=device), "n -> d n",
                   d=self.d_inner).contiguous()
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))  # skip, fp32
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **kw)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, L, D)."""
        # Everything stays channel-last (B, L, ·) and reaches the scan as transposed (B, ·, L) views:
        # the reference scan reads chunk rows directly and elementwise ops see one layout, where
        # mamba_ssm's channel-major copies dominated the CPU time; the CUDA kernel makes its inputs
        # contiguous itself. Same maths as mamba_ssm.Mamba.forward without a cache.
        x, z = self.in_proj(hidden_states).chunk(2, dim=-1)  # (B, L, E) each
        x = self.act(self.causal_conv(x))
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)  # (B, L, E); the bias goes in as delta_bias
        A = -torch.exp(self.A_log.float())  # (E, S)
        y = selective_scan(
            x.mT, dt.mT, A, B.mT, C.mT, self.D.float(), z=z.mT, delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True, impl="auto" if self.use_fast_path else "ref",
        )  # (B, E, L) view of channel-last memory
        return self.out_proj(y.mT)  # (B, L, D)

    def causal_conv(self, x: torch.Tensor) -> torch.Tensor:
        """conv1d(x)[..., :L] on channel-last x (B, L, E), with the same weights (E, 1, K):
        y_l = Σ_j w_j x_{l+j-K+1} + b, as K shifted multiply-adds (a depthwise conv with a 4-tap
        kernel is cheaper this way on CPU than through the convolution kernels and their backward)."""
        seqlen, k = x.shape[1], self.d_conv
        w = self.conv1d.weight[:, 0]  # (E, K)
        xp = F.pad(x, (0, 0, k - 1, 0))  # (B, L+K-1, E), zeros before the first step
        y = xp[:, :seqlen] * w[:, 0]
        for j in range(1, k):
            y = torch.addcmul(y, xp[:, j:j + seqlen], w[:, j])
        return y if self.conv1d.bias is None else y + self.conv1d.bias


@dataclass
class MambaConfig:
    d_model: int = 512
    num_layers: int = 6  # bidirectional Mamba layers
    d_state: int = 16  # S, in [8, 32]
    d_conv: int = 4
    expand: int = 2
    dt_rank: int = 0  # 0: ceil(d_model / 16), mamba_ssm's "auto"
    share_directions: bool = False  # one MambaBlock scans both ways (half the layer parameters)
    num_heads: int = 8  # of the query cross-attention
    num_fourier_feats: int = 256
    fourier_scale: float = 3.0
    mlp_ratio: float = 4.0  # of the cross-attention block
    decoder: str = "global"  # "window": queries attend to their curve neighbours; "global": to all
    decoder_window: int = 8  # tokens on each side of a query, on each curve ("window" decoder)
    dropout: float = 0.0
    scan_order: str = "hilbert"  # "hilbert" | "raster" | "zigzag" | "random"
    alternate_transpose: bool = True  # odd layers scan the transposed curve (x ↔ y)
    curve_bits: int = 10  # coordinates quantised to a 2^bits grid for the curve
    use_fast_path: bool = True  # mamba_ssm's CUDA scan when installed and on CUDA
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

    def __post_init__(self):
        lo, hi = D_STATE_RANGE
        if not lo <= self.d_state <= hi:
            raise ValueError(f"d_state must be in [{lo}, {hi}], got {self.d_state}")
        if self.scan_order not in ORDERS:
            raise ValueError(f"unknown scan_order {self.scan_order!r}; choose from {', '.join(ORDERS)}")
        if self.decoder not in ("window", "global"):
            raise ValueError(f"decoder must be 'window' or 'global', got {self.decoder!r}")
        if self.decoder_window < 1:
            raise ValueError(f"decoder_window must be >= 1, got {self.decoder_window}")


PRESETS = {
    # ~19.7M parameters (separate directions: ~31M)
    "paper": dict(prior="gaussian", interp="tps", d_model=512, num_layers=6, d_state=16, expand=2,
                  dropout=0.1,
                  share_directions=True, mlp_ratio=2.0, decoder="window"),
    # the grid observation encoder (asf_core.models.encoder) with a selective-scan mixer
    "small": dict(prior="gaussian", encoder=encoder.SMALL, d_model=96, num_layers=3, d_state=16, expand=2,
                  num_heads=4,
                  num_fourier_feats=64, mlp_ratio=2.0, decoder="window"),
    # ~0.23M, sized for 2 CPU cores: the scans are ~half of a step
    "small_point": dict(prior="gaussian", interp="tps", d_model=64, num_layers=2, d_state=8, expand=2,
                        num_heads=4,
                        num_fourier_feats=64, mlp_ratio=2.0, decoder="window"),
    "tiny": dict(d_model=32, num_layers=2, d_state=8, expand=2, num_heads=2, num_fourier_feats=16,
                 mlp_ratio=2.0),
    "tiny_grid": dict(encoder=encoder.TINY, prior="gaussian", d_model=32, num_layers=2, d_state=8, expand=2,
                      num_heads=2,
                      num_fourier_feats=16,
                 mlp_ratio=2.0),
}


class BiMambaLayer(nn.Module):
    """x ← x + g·[M_fwd(h) + flip(M_bwd(flip(h)))],  h = FiLM(LN(x)): a causal scan each way, so
    every token hears the whole sequence; adaLN-Zero makes the layer the identity at init."""

    def __init__(self, cfg: MambaConfig, layer_idx: int):
        super().__init__()
        d = cfg.d_model
        kw = dict(d_state=cfg.d_state, d_conv=cfg.d_conv, expand=cfg.expand,
                  dt_rank=cfg.dt_rank or "auto", use_fast_path=cfg.use_fast_path)
        self.norm = nn.LayerNorm(d, elementwise_affine=False)
        self.film = FiLM(d, d, chunks=3)
        self.fwd = MambaBlock(d, layer_idx=2 * layer_idx, **kw)
        # shared: the same block runs on the reversed sequence (kept as None, not an alias, so the
        # state dict holds each tensor once, as safetensors requires)
        self.bwd = None if cfg.share_directions else MambaBlock(d, layer_idx=2 * layer_idx + 1, **kw)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.film(c)  # each (B, 1, D)
        h = modulate(self.norm(x), shift, scale)  # (B, L, D), in scan order
        h = self.fwd(h) + (self.bwd or self.fwd)(h.flip(1)).flip(1)
        return x + gate * self.drop(h)


def scan_order(xy: torch.Tensor, is_query: torch.Tensor, values: torch.Tensor, order: str = "hilbert",
               bits: int = 10, transpose: bool = False) -> torch.Tensor:
    """The token order of one layer: (B, L) indices into the token list, sorted along the curve.

    Ties (tokens in one grid cell) go by token type (observations first), then exact x, y, then the
    values, so the order depends on the point set and not on the order it was passed in.

    Args:
        xy: (B, L, 2) coordinates in [-1, 1]. is_query: (L,) or (B, L) bool. values: (B, L, 3).
    """
    key = curve_key(xy, order, bits, transpose)  # (B, L)
    kind = is_query.long().expand_as(key)
    return lexsort([key, kind, xy[..., 0], xy[..., 1], *values.unbind(-1)])


class MambaField(nn.Module):
    def __init__(self, config: MambaConfig):
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
        # a learned type vector on top of the separate input maps: the SSM mixes both kinds in one
        # stream, so each token carries its kind in the residual explicitly
        self.type_embed = nn.Parameter(torch.randn(2, d) * 0.02)
        self.layers = nn.ModuleList(BiMambaLayer(cfg, i) for i in range(cfg.num_layers))
        self.decoder = Block(d, cfg.num_heads, cond_dim=d, cross=True, mlp_ratio=cfg.mlp_ratio,
                             dropout=cfg.dropout)
        self.head = OutputHead(d, d)

    def orders(self, xy: torch.Tensor, is_query: torch.Tensor, values: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer token orders (B, L): the curve, and its transpose on odd layers."""
        cfg = self.config
        with torch.no_grad():
            base = scan_order(xy, is_query, values, cfg.scan_order, cfg.curve_bits)
            if not cfg.alternate_transpose:
                return [base] * cfg.num_layers
            other = scan_order(xy, is_query, values, cfg.scan_order, cfg.curve_bits, transpose=True)
        return [base if i % 2 == 0 else other for i in range(cfg.num_layers)]

    def windows(self, orders: list[torch.Tensor], n: int, places: list[torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each query's decoder keys: the tokens within `decoder_window` places of it along each
        distinct curve, as idx (B, Q, K) into [obs; queries] and valid (B, Q, K) (False past the
        ends). The orders depend on the point set only, so the windows do too. `places`: the
        inverse of each order (argsort), when the caller already has them."""
        w = self.config.decoder_window
        offsets = torch.arange(-w, w + 1, device=orders[0].device)
        places = places or [torch.argsort(o, dim=1) for o in orders]
        curves = list({id(o): (o, p) for o, p in zip(orders[:2], places[:2])}.values())  # curve, transpose
        idx, valid = [], []
        for order, place in curves:
            length = order.shape[1]
            pos = place[:, n:]  # (B, Q) place of each query on the curve
            at = pos[..., None] + offsets  # (B, Q, 2w+1)
            inside = (at >= 0) & (at < length)
            idx.append(order.gather(1, at.clamp(0, length - 1).flatten(1)).view_as(at))
            valid.append(inside)
        return torch.cat(idx, -1), torch.cat(valid, -1)

    def knobs(self) -> dict[str, Knob]:
        """Run-time knobs (asf_core.models.knobs): none; d_state, like its sizes, is the checkpoint's."""
        return SPEC.knobs(self.config)

    def context(self, *, query_xy: torch.Tensor, obs_xy: torch.Tensor, obs_rgb: torch.Tensor) -> dict:
        """What a forward computes from positions and observations alone: the interpolation, the
        neighbour encoding, observation tokens and query Fourier features. An ODE solve changes
        only x_t and t, so it computes this once and passes it to every step as `forward(context=...)`."""
        ctx = point_context(self, query_xy, obs_xy, obs_rgb)
        ctx["obs"] = ctx["obs"] + self.type_embed[0]
        return ctx

    def forward(
        self, *, x_t: torch.Tensor, t: torch.Tensor, query_xy: torch.Tensor, obs_xy: torch.Tensor,
        obs_rgb: torch.Tensor, return_attention: bool = False, context: dict | None = None,
    ):
        """Velocity of the query values.

        Args:
            x_t: (B, Q, 3) noisy query values. t: (B,) in [0, 1].
            query_xy: (B, Q, 2) or (Q, 2) in [-1, 1]. obs_xy: (B, N, 2). obs_rgb: (B, N, 3) in [-1, 1].
            return_attention: also return {"cross_attention": (B, H, Q, N+Q) query weights over the
                tokens [obs; queries] (zero outside a query's windows), "scan_order": (B, N+Q) long, the
                first layer's order as indices into [obs; queries], "n_obs": N}.
            context: `self.context(...)` of these same positions and observations, to skip recomputing it.
        Returns:
            v (B, Q, 3), or (v, maps) when asked.
        """
        b = x_t.shape[0]
        ctx = context or self.context(query_xy=query_xy, obs_xy=obs_xy, obs_rgb=obs_rgb)
        interp, obs = ctx["interp"], ctx["obs"]
        obs_xy, obs_rgb, n = ctx["obs_xy"], ctx["obs_values"], obs.shape[1]  # tokens: observations or cells
        if query_xy.dim() == 2:
            query_xy = query_xy.expand(b, -1, -1)
        c = self.time_embed(t)  # (B, D)
        feats = [ctx["query_fourier"].expand(b, -1, -1), x_t]
        if self.config.interp_feature:  # what interpolation predicts here: the model learns the correction
            feats.append(interp)
        qry = self.query_in(torch.cat(feats, dim=-1)) + self.type_embed[1]
        if ctx["neighbor_feat"] is not None:
            qry = qry + ctx["neighbor_feat"]
        tokens = torch.cat([obs, qry], dim=1)  # (B, L, D), L = N + Q
        xy = torch.cat([obs_xy, query_xy], dim=1)  # (B, L, 2)
        is_query = torch.arange(tokens.shape[1], device=tokens.device) >= n  # (L,)
        orders = self.orders(xy, is_query, torch.cat([obs_rgb, x_t], dim=1))

        # keep the stream in the current layer's order; re-sort between layers with one gather
        # through the inverse of the previous order, and return to [obs; queries] at the end
        idx = lambda perm: perm[..., None].expand(-1, -1, tokens.shape[-1])  # noqa: E731
        x, inv, places = tokens, None, []
        for layer, perm in zip(self.layers, orders):
            step = perm if inv is None else inv.gather(1, perm)  # positions in the current order
            x = layer(x.gather(1, idx(step)), c)  # (B, L, D) in this layer's order
            inv = torch.argsort(perm, dim=1)
            places.append(inv)
        if inv is not None:
            x = x.gather(1, idx(inv))  # (B, L, D) as [obs; queries]

        windows = None
        if self.config.decoder == "window":
            with torch.no_grad():
                windows = self.windows(orders, n, places)
        out, w = self.decoder(x[:, n:], c, x, need_weights=return_attention, neighbors=windows)  # (B, Q, D)
        if return_attention and windows is not None:  # (B, H, Q, K) slots -> (B, H, Q, N+Q)
            slots = windows[0][:, None].expand_as(w)
            w = w.new_zeros(*w.shape[:3], tokens.shape[1]).scatter_add_(-1, slots, w)
        v = self.head(out, c)  # (B, Q, 3)
        if self.prior is not None:
            v = v + self.prior(x_t, t, interp).to(v.dtype)
        if return_attention:
            return v, {"cross_attention": w, "scan_order": orders[0] if orders else None, "n_obs": n,
                       "token_xy": obs_xy}
        return v


def attention(maps: dict, q: int) -> Attention:
    """Query q's cross-attention over the scanned sequence [obs; queries], and the first layer's order."""
    order = maps["scan_order"]
    return Attention(weights=maps["cross_attention"][0, :, q].mean(0).float().numpy(),
                     token_xy=token_xy(maps),
                     scan_order=None if order is None else np.asarray(order[0].numpy()))


D_STATES = (8, 16, 32)  # the released checkpoints, one per state size
SPEC = ArchSpec(
    name="mamba", label="MAMBA",
    help="MAMBA: observations and pixels as one Hilbert-curve sequence, scanned both ways by SSMs.",
    model_cls=MambaField, config_cls=MambaConfig, presets=PRESETS, attention=attention,
    attention_help="its cross-attention over the scanned sequence",
    checkpoint_key="d_state", checkpoint_values=D_STATES, checkpoint_default=16,
    checkpoint_help="SSM state size (one checkpoint each)",
    releases={f"mamba_d{d}_grid": {"d_state": d} for d in D_STATES},
)
