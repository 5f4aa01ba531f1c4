"""Layers shared by every ASF model: Fourier features, time embedding, adaLN/FiLM, MLP, attention.

Only layers used by more than one model live here; each model file stands alone otherwise.

Symbols: B batch · L tokens · S context tokens · D width · H heads · Dh head width · C cond width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from asf_core.flow import gaussian_velocity
from asf_core.ops.interp import interpolate_obs
from asf_core.ops.neighbors import local_attention, radius_neighbors


class FourierFeatures(nn.Module):
    """Random Fourier features of coordinates (Tancik et al., 2020): [xy, sin(2π xy·W), cos(2π xy·W)].

    W ~ N(0, scale²) is fixed at construction from `seed` and stored as a buffer, so a checkpoint
    carries it. `scale` is in cycles per unit of the [-1, 1] coordinate range; a 32-pixel image has
    its Nyquist frequency at 8 cycles per unit, so scales of 2-4 cover it without aliasing off-grid.
    """

    def __init__(self, num_feats: int, scale: float = 3.0, in_dim: int = 2, seed: int = 0):
        super().__init__()
        if num_feats % 2:
            raise ValueError(f"num_feats must be even, got {num_feats}")
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", torch.randn(in_dim, num_feats // 2, generator=g) * scale)
        self.out_dim = in_dim + num_feats

    def forward(self, xy: torch.Tensor) -> torch.Tensor:
        proj = 2 * math.pi * xy @ self.freqs  # (..., F/2)
        return torch.cat([xy, proj.sin(), proj.cos()], dim=-1)  # (..., 2 + F)


class TimeEmbedding(nn.Module):
    """Sinusoidal embedding of t in [0, 1] followed by an MLP (as in DDPM / DiT)."""

    def __init__(self, dim: int, freq_dim: int = 128):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)
        args = 1000 * t.float()[:, None] * freqs[None]  # (B, F/2): t scaled so low bands still move
        return self.mlp(torch.cat([args.sin(), args.cos()], dim=-1))  # (B, D)


class FiLM(nn.Module):
    """Per-channel scale, shift and gate from a conditioning vector (adaLN-Zero, Peebles & Xie 2023).

    Zero-initialised, so every residual branch starts as the identity and training is stable.
    """

    def __init__(self, cond_dim: int, dim: int, chunks: int = 3):
        super().__init__()
        self.chunks = chunks
        self.proj = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, chunks * dim))
        nn.init.zeros_(self.proj[1].weight)
        nn.init.zeros_(self.proj[1].bias)

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.proj(c)[:, None].chunk(self.chunks, dim=-1)  # each (B, 1, D)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class MLP(nn.Sequential):
    def __init__(self, dim: int, hidden: int, out_dim: int | None = None, dropout: float = 0.0):
        super().__init__(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim or dim)
        )


class Attention(nn.Module):
    """Multi-head attention, self or cross, through `scaled_dot_product_attention`.

    With `need_weights=True` it computes softmax(QKᵀ/√Dh) explicitly so the weights can be returned
    (B, H, L, S); that path is for inspection, the default path is the fused kernel. With
    `neighbors=(idx, valid)`, each (B, L, K), every token attends only to its K listed context
    tokens (asf_core.ops.neighbors.local_attention): O(L·K) instead of O(L·S), weights (B, H, L, K).
    """

    def __init__(self, dim: int, heads: int, context_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(context_dim or dim, 2 * dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, need_weights: bool = False,
        neighbors: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        context = x if context is None else context
        p = self.dropout if self.training else 0.0
        if neighbors is not None:
            q = rearrange(self.to_q(x), "b l (h d) -> b l h d", h=self.heads)
            k, v = rearrange(self.to_kv(context), "b s (two h d) -> two b s h d", two=2, h=self.heads)
            out, weights = local_attention(q, k, v, *neighbors, dropout_p=p)  # (B, L, H, Dh)
            return self.to_out(rearrange(out, "b l h d -> b l (h d)")), (weights if need_weights else None)
        q = rearrange(self.to_q(x), "b l (h d) -> b h l d", h=self.heads)
        k, v = rearrange(self.to_kv(context), "b s (two h d) -> two b h s d", two=2, h=self.heads)
        weights = None
        if need_weights:
            weights = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(dim=-1)  # (B, H, L, S)
            out = weights @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, H, L, Dh)
        return self.to_out(rearrange(out, "b h l d -> b l (h d)")), weights


class Block(nn.Module):
    """Transformer block with adaLN-Zero time conditioning (DiT), self- or cross-attention.

    x ← x + g1·Attn(FiLM(LN(x)), LN(context) or itself); x ← x + g2·MLP(FiLM(LN(x))).
    """

    def __init__(
        self, dim: int, heads: int, cond_dim: int, cross: bool = False, mlp_ratio: float = 4.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.norm_x = nn.LayerNorm(dim, elementwise_affine=False)
        self.norm_ctx = nn.LayerNorm(dim) if cross else None
        self.attn = Attention(dim, heads, dropout=dropout)
        self.norm_mlp = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout=dropout)
        self.film = FiLM(cond_dim, dim, chunks=6)

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, context: torch.Tensor | None = None,
        need_weights: bool = False, neighbors: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        sh1, sc1, g1, sh2, sc2, g2 = self.film(c)
        h = modulate(self.norm_x(x), sh1, sc1)
        ctx = h if self.norm_ctx is None else self.norm_ctx(context)
        h, w = self.attn(h, ctx, need_weights, neighbors)
        x = x + g1 * h
        x = x + g2 * self.mlp(modulate(self.norm_mlp(x), sh2, sc2))
        return x, w


class OutputHead(nn.Module):
    """Final adaLN + linear projection to RGB velocity, zero-initialised so v starts at 0."""

    def __init__(self, dim: int, cond_dim: int, out_dim: int = 3):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.film = FiLM(cond_dim, dim, chunks=2)
        self.proj = nn.Linear(dim, out_dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.film(c)
        return self.proj(modulate(self.norm(x), shift, scale))


class NeighborEncoder(nn.Module):
    """What a query's k nearest observations say about it, beyond the interpolation there.

    A PointNet (Qi et al., 2017) over each query's neighbours, as in LIIF's local ensemble (Chen et
    al., 2021): one MLP of every (offset, RGB, RGB − interpolation at the query) pair, mean- and
    max-pooled, then a zero-initialised projection to the model width, added to the query token.
    Attention cannot do this on its own: its geometry enters the logits only, so the values it
    averages carry no relative position, and a weighted mean of neighbours is a kernel smoother,
    which thin-plate spline already beats. A pair MLP can respond to where each value lies (edges,
    gradients across the query). Offsets are in units of the mean observation spacing √(4/N) of
    the [-1, 1]² square, so one model reads the same geometry at every resolution and density.
    It depends on positions and observations only, never on x_t or t: an ODE solve needs it once.
    """

    BLOCK = 32_768  # (image, query, neighbour) pairs per block without grad: ~16 MB per pair tensor

    def __init__(self, k: int, dim: int, hidden: int = 128):
        super().__init__()
        self.k = k
        self.pair = nn.Sequential(nn.Linear(9, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                  nn.Linear(hidden, hidden))
        self.proj = nn.Linear(2 * hidden, dim)
        nn.init.zeros_(self.proj.weight)  # zero: a model gaining the encoder starts as it was
        nn.init.zeros_(self.proj.bias)

    def forward(self, query_xy: torch.Tensor, obs_xy: torch.Tensor, obs_rgb: torch.Tensor,
                interp: torch.Tensor) -> torch.Tensor:
        """query_xy (B, Q, 2) or (1, Q, 2), obs_xy (B, N, 2), obs_rgb (B, N, 3), interp (B, Q, 3)
        -> (B, Q, D).

        Costs about as much as the rest of a Perceiver IO step: models compute it in their
        `context()`, once per ODE solve. Without grad it runs in blocks of `BLOCK` pairs.
        """
        b, n = obs_xy.shape[:2]
        query_xy = query_xy.expand(b, -1, -1)
        step = query_xy.shape[1] if torch.is_grad_enabled() else max(1, self.BLOCK // (b * self.k))
        spacing, k = (4.0 / n) ** 0.5, min(self.k, n)
        out = []
        for sl in (slice(i, i + step) for i in range(0, query_xy.shape[1], step)):
            q = query_xy[:, sl]
            idx, _, _ = radius_neighbors(q, obs_xy, k, 0.0, min_valid=k)  # (B, q, k), the k nearest
            flat = idx.flatten(1)[..., None]
            nb_xy = obs_xy.gather(1, flat.expand(-1, -1, 2)).view(*idx.shape, 2)
            nb_rgb = obs_rgb.gather(1, flat.expand(-1, -1, 3)).view(*idx.shape, 3)
            delta = (nb_xy - q[:, :, None]) / spacing
            pair = self.pair(torch.cat([delta, delta.norm(dim=-1, keepdim=True), nb_rgb,
                                        nb_rgb - interp[:, sl, None]], -1))  # (B, q, k, hidden)
            out.append(self.proj(torch.cat([pair.mean(2), pair.amax(2)], -1)))
        return torch.cat(out, 1)


def make_neighbor_encoder(cfg) -> NeighborEncoder | None:
    """The config's neighbour encoder (`neighbor_k` > 0), or None."""
    return NeighborEncoder(cfg.neighbor_k, cfg.d_model, cfg.neighbor_hidden) if cfg.neighbor_k > 0 else None


def make_grid_reader(cfg, fourier_dim: int) -> tuple[nn.Module | None, nn.Module | None, nn.Module | None]:
    """The config's grid observation encoder (`encoder` fields, empty: none) and the two maps from
    its features into the model width: the read-out at a query (features + cell offset) and the
    feature tokens at cell centres (Fourier features + features)."""
    if not cfg.encoder:
        return None, None, None
    from asf_core.models.encoder import GridEncoder, GridEncoderConfig  # models import nn: no cycle at load

    enc = GridEncoder(GridEncoderConfig(**cfg.encoder))
    c = enc.config.out_dim
    return enc, nn.Linear(c + 2, cfg.d_model), nn.Linear(fourier_dim + c, cfg.d_model)


def point_context(model: nn.Module, query_xy: torch.Tensor, obs_xy: torch.Tensor,
                  obs_rgb: torch.Tensor) -> dict:
    """The part of every model's `context()` that depends on positions and observations alone:
    the interpolation, the neighbour encoding, observation tokens and query Fourier features.
    `model` has `config.interp`, `uses_interp`, `neighbor_enc`, `obs_in` and `fourier`; each model
    adds its own terms (type embeddings, neighbour lists) to the result.

    With a grid encoder (`model.obs_encoder`) the tokens the mixer reads are the encoder's feature
    cells (average-pooled by `config.token_pool`) at their centres, `interp` is the encoder's x̂ and
    the query's own feature is the encoder's read-out there. `obs_xy` / `obs_values` in the result
    are the tokens' positions and values (the observations, or the cells and x̂ there)."""
    if model.obs_encoder is not None:
        return grid_context(model, query_xy, obs_xy, obs_rgb)
    # before the reshape below: the memo in interpolate_obs matches the caller's tensor
    interp = interpolate_obs(model.config.interp, obs_xy, obs_rgb, query_xy) if model.uses_interp else None
    if query_xy.dim() == 2:
        query_xy = query_xy[None]  # (1, Q, 2): shared positions are searched once
    nb_feat = None if model.neighbor_enc is None else model.neighbor_enc(query_xy, obs_xy, obs_rgb, interp)
    obs = model.obs_in(torch.cat([model.fourier(obs_xy), obs_rgb], -1))  # (B, N, D)
    return {"interp": interp, "neighbor_feat": nb_feat, "obs": obs, "query_xy": query_xy,
            "query_fourier": model.fourier(query_xy), "obs_xy": obs_xy, "obs_values": obs_rgb}


def grid_context(model: nn.Module, query_xy: torch.Tensor, obs_xy: torch.Tensor,
                 obs_rgb: torch.Tensor) -> dict:
    """point_context for a model with a grid encoder."""
    if query_xy.dim() == 2:
        query_xy = query_xy[None]
    grid = model.obs_encoder(obs_xy, obs_rgb)
    cell_xy, cell_feat = grid.tokens(model.config.token_pool)  # (B, M, 2), (B, M, C)
    pool = model.config.token_pool
    cell_mean = F.avg_pool2d(grid.mean, pool) if pool > 1 else grid.mean
    tokens = model.cell_in(torch.cat([model.fourier(cell_xy), cell_feat], -1))  # (B, M, D)
    return {"interp": grid.mean_at(query_xy), "neighbor_feat": model.grid_in(grid.read(query_xy)),
            "obs": tokens,
            "query_xy": query_xy, "query_fourier": model.fourier(query_xy), "obs_xy": cell_xy,
            "obs_values": cell_mean.flatten(2).transpose(1, 2), "grid": grid}


class PriorVelocity(nn.Module):
    """The velocity of an independent-Gaussian model of each query around the interpolation b:
    x_1 ~ N(b, s²) with s² learned per channel, and the training source (noise: x_0 ~ N(0, σ²);
    interp: x_0 ~ N(b, σ²)). Models add it to their output, so the network learns only what the
    other pixels tell beyond interpolation (see asf_core.flow.gaussian_velocity)."""

    def __init__(self, source: str, sigma: float, init_var: float = 0.03):
        super().__init__()
        if source not in ("noise", "interp"):
            raise ValueError(f"unknown prior source {source!r}; choose from noise, interp")
        self.source, self.sigma = source, float(sigma)
        self.log_var = nn.Parameter(torch.full((3,), math.log(init_var)))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, interp: torch.Tensor) -> torch.Tensor:
        mean_0 = interp if self.source == "interp" else 0.0
        return gaussian_velocity(x_t.float(), t.float(), mean_0, self.sigma**2, interp.float(),
                                 self.log_var.exp())


def make_prior(cfg) -> PriorVelocity | None:
    """The config's prior velocity (`prior="gaussian"`), or None (`prior="none"`)."""
    if cfg.prior == "none":
        return None
    if cfg.prior != "gaussian":
        raise ValueError(f"unknown prior {cfg.prior!r}; choose from none, gaussian")
    return PriorVelocity(cfg.prior_source, cfg.prior_sigma)
