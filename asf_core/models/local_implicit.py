"""Local Implicit Fields velocity model: every query attends only to what lies within a radius.

In the spirit of local implicit functions (LIIF, Chen et al. 2021; local attention over point sets,
Point Transformer, Zhao et al. 2021): a query's velocity depends on the observed pixels near it and
on its neighbouring noisy query tokens, so queries exchange information locally and samples come
out coherent instead of speckled. Per layer, each query attends over its K neighbour slots in the
key set [observations; queries]: the `K_obs` nearest observed pixels (the `min_obs` nearest always,
even outside the radius, so every query gets an answer) and the `K_qry` nearest queries (itself
included), each valid only within the radius. Geometry enters as a per-head additive bias on the
attention logits: one small MLP of (dx, dy)/r, |d|/r, |d| and the key type, run once per forward,
gives every layer its own heads. Time and radius condition every block through adaLN-Zero (FiLM);
the radius is a live knob: distances are normalised by it and its embedding is added to the time
embedding, so one checkpoint can be run at any radius in [radius_min, radius_max]. Radii may differ
per image ((B,) tensor): the neighbour lists do not depend on the radius, only their masks do, so
`training_kwargs` draws one radius per image.

Observation tokens are encoded once (Fourier features + RGB, a residual MLP) and are not updated by
the layers; only query tokens are. Neighbour lists come from coordinates only (no grad), computed
once per forward and shared by all layers. Cost: O((N + Q)·D² + Q·K·D) per layer, linear in points
(observations in row-major order, as asf_core.fields.observations gives them, keep the neighbour
gathers cache-friendly at large N; a random order costs ~20-40% more time at 256²).
`attention_impl="dense_ref"` runs the same model with full (Q×S) masked attention over every key
in the radius, no cap on K: quadratic, and equal to "sparse" whenever K covers the whole radius.

Symbols: B batch · N observed points · Q queries · S = N + Q keys · K neighbour slots · D width ·
H heads · Dh head width · r radius. Flow convention (asf_core.flow): x_t = (1 - t)·x_0 + t·x_1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from einops import rearrange
from torch import nn

from asf_core.models import encoder
from asf_core.models.knobs import Knob
from asf_core.models.spec import ArchSpec, Attention, token_xy
from asf_core.nn import (
    MLP,
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
from asf_core.ops.neighbors import (
    local_attention,
    masked_attention,
    radius_mask_dense,
    radius_neighbors,
)

QUERY_BLOCK = 2048  # queries per block in inference (a few MB of activations: cache-resident)
N_GEOM = 5  # geometry features per (query, key) pair: dx/r, dy/r, |d|/r, |d|, key is an observation


@dataclass
class LocalImplicitConfig:
    d_model: int = 512
    num_layers: int = 4
    num_heads: int = 8
    num_fourier_feats: int = 256
    fourier_scale: float = 3.0
    mlp_ratio: float = 2.5
    dropout: float = 0.1
    local_radius: float = 0.3  # radius used when forward gets none, in [-1, 1] coordinate units
    radius_min: float = 0.1  # training_kwargs samples radii uniformly in [radius_min, radius_max]
    radius_max: float = 0.5
    max_neighbors: int = 64  # K: neighbour slots per query, observations and queries together
    obs_neighbor_share: float = 0.5  # fraction of K that goes to observed pixels
    min_obs: int = 4  # the nearest observations that are always attended to, whatever the radius
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
    bias_hidden: int = 32  # width of the relative-position bias MLP
    attention_impl: str = "sparse"  # "sparse" (neighbour lists) | "dense_ref" (full Q×S, quadratic)


PRESETS = {
    "paper": dict(prior="gaussian"),  # 18.3M parameters
    # the grid observation encoder (asf_core.models.encoder) with a local-attention mixer
    "small": dict(prior="gaussian", encoder=encoder.SMALL, d_model=128, num_layers=3, num_heads=4,
                  num_fourier_feats=64,
                  mlp_ratio=2.0, dropout=0.0, max_neighbors=32, bias_hidden=16),
    # 2.0M with the neighbour encoder; d_model 160 rather than 192: on 2 CPU cores the step time matters most
    "small_point": dict(prior="gaussian", interp="tps", d_model=160, num_layers=4, num_heads=5,
                        num_fourier_feats=128,
                        mlp_ratio=3.0, dropout=0.0, max_neighbors=48, bias_hidden=16, neighbor_k=16),
    "tiny": dict(d_model=32, num_layers=2, num_heads=2, num_fourier_feats=16, mlp_ratio=2.0,
                 dropout=0.0, max_neighbors=16, bias_hidden=8),
    "tiny_grid": dict(encoder=encoder.TINY, prior="gaussian", d_model=32, num_layers=2, num_heads=2,
                      num_fourier_feats=16,
                      mlp_ratio=2.0, dropout=0.0, max_neighbors=16, bias_hidden=8),
}

# variants for `python -m asf_core.bench scaling`: config overrides measured side by side
BENCH_VARIANTS = {"sparse": {"attention_impl": "sparse"}, "dense_ref": {"attention_impl": "dense_ref"}}


def bench_estimate_bytes(config: LocalImplicitConfig, batch: int, n_obs: int, n_queries: int) -> int:
    """Rough peak bytes of one forward, so the bench can skip a dense run that cannot fit."""
    h, d, q, s = config.num_heads, config.d_model, n_queries, n_obs + n_queries
    tokens = 4 * batch * s * d * (4 + 2 * config.mlp_ratio)
    if config.attention_impl == "dense_ref":  # ~6 (B, H, Q, S) fp32 tensors alive in one layer
        return int(tokens + 4 * batch * q * s * (6 * h + 3))
    per_slot = config.bias_hidden + config.num_layers * h + N_GEOM + 4  # bias MLP, geometry, lists
    return int(tokens + 4 * batch * q * config.max_neighbors * per_slot)


class LocalLayer(nn.Module):
    """adaLN-Zero block: x ← x + g1·LocalAttn(FiLM(LN(x)) → [LN(obs); itself]); x ← x + g2·MLP."""

    def __init__(self, cfg: LocalImplicitConfig):
        super().__init__()
        d = cfg.d_model
        self.heads, self.dropout = cfg.num_heads, cfg.dropout
        self.norm_x = nn.LayerNorm(d, elementwise_affine=False)
        self.norm_obs = nn.LayerNorm(d)
        self.to_q = nn.Linear(d, d)
        self.to_kv = nn.Linear(d, 2 * d)
        self.to_out = nn.Linear(d, d)
        self.norm_mlp = nn.LayerNorm(d, elementwise_affine=False)
        self.mlp = MLP(d, int(d * cfg.mlp_ratio), dropout=cfg.dropout)
        self.film = FiLM(d, d, chunks=6)

    def forward(self, x: torch.Tensor, obs: torch.Tensor, c: torch.Tensor, nb: dict,
                bias: torch.Tensor, need_weights: bool = False):
        """bias: this layer's relative-position logits, (B, H, Q, K) for lists, (M, H) for pairs."""
        sh1, sc1, g1, sh2, sc2, g2 = self.film(c)
        h = modulate(self.norm_x(x), sh1, sc1)  # (B, Q, D)
        kv = rearrange(self.to_kv(torch.cat([self.norm_obs(obs), h], 1)),
                       "b s (two h d) -> two b h s d", two=2, h=self.heads).contiguous()
        # (B, S, H, Dh) views of a head-major copy made once per layer: the op gathers from that
        # layout, and finding it already contiguous it does not copy again for every query block
        k, v = (rearrange(t, "b h s d -> b s h d") for t in kv)
        p = self.dropout if self.training else 0.0
        if "idx" not in nb:  # dense reference: the bias MLP ran on in-radius pairs; scatter it
            b, nq, s = nb["mask"].shape
            dense = bias.new_zeros(b, nq, s, self.heads).index_put_(nb["pairs"], bias)
            q = rearrange(self.to_q(h), "b q (h d) -> b q h d", h=self.heads)
            out, w = masked_attention(q, k, v, nb["mask"], rearrange(dense, "b q s h -> b h q s"), p)
            return self._update(x, out, g1, sh2, sc2, g2), (w if need_weights else None)
        # without grad, everything after K/V runs over blocks of queries, so each block's working
        # set stays in cache at large Q (the time per point otherwise grows with Q); with grad, one
        # block, since slicing under autograd costs a full-size zero tensor per block in backward
        step = x.shape[1] if torch.is_grad_enabled() else QUERY_BLOCK
        xs, ws = [], []
        for sl in (slice(i, i + step) for i in range(0, x.shape[1], step)):
            q = rearrange(self.to_q(h[:, sl]), "b q (h d) -> b q h d", h=self.heads)
            out, w = local_attention(q, k, v, nb["idx"][:, sl], nb["valid"][:, sl], bias[:, :, sl],
                                     dropout_p=p)
            xs.append(self._update(x[:, sl], out, g1, sh2, sc2, g2))
            ws.append(w if need_weights else None)
        return torch.cat(xs, 1), (torch.cat(ws, 2) if need_weights else None)

    def _update(self, x, out, g1, sh2, sc2, g2):
        x = x + g1 * self.to_out(rearrange(out, "b q h d -> b q (h d)"))
        return x + g2 * self.mlp(modulate(self.norm_mlp(x), sh2, sc2))


def _geometry(delta: torch.Tensor, r: torch.Tensor, is_obs: torch.Tensor) -> torch.Tensor:
    """(..., 2) key − query offsets, (...,) radius, (...,) flag -> (..., N_GEOM) bias-MLP input."""
    dist = delta.norm(dim=-1, keepdim=True)
    r = r[..., None]
    return torch.cat([delta / r, dist / r, dist, is_obs[..., None].to(delta.dtype)], -1)


class LocalImplicit(nn.Module):
    def __init__(self, config: LocalImplicitConfig):
        super().__init__()
        self.config = cfg = config
        if cfg.attention_impl not in ("sparse", "dense_ref"):
            raise ValueError(f"attention_impl must be 'sparse' or 'dense_ref', got {cfg.attention_impl!r}")
        self.k_obs = round(cfg.max_neighbors * cfg.obs_neighbor_share)
        self.k_qry = cfg.max_neighbors - self.k_obs
        if self.k_obs < max(1, cfg.min_obs) or self.k_qry < 1:
            raise ValueError(f"max_neighbors={cfg.max_neighbors} with share {cfg.obs_neighbor_share} "
                             f"leaves {self.k_obs} obs / {self.k_qry} query slots; need >= min_obs / 1")
        if not 0 < cfg.radius_min <= cfg.radius_max:
            raise ValueError(f"need 0 < radius_min <= radius_max, got {cfg.radius_min}, {cfg.radius_max}")
        d = cfg.d_model
        self.fourier = FourierFeatures(cfg.num_fourier_feats, cfg.fourier_scale)
        self.time_embed = TimeEmbedding(d)
        self.radius_embed = TimeEmbedding(d)  # the same sinusoidal map, of the radius scaled to [0, 1]
        # the grid encoder has its own
        self.obs_in = None if cfg.encoder else nn.Linear(self.fourier.out_dim + 3, d)
        self.obs_norm = nn.LayerNorm(d)
        self.obs_mlp = MLP(d, 2 * d)
        self.query_in = nn.Linear(self.fourier.out_dim + (6 if cfg.interp_feature else 3), d)
        self.prior = make_prior(cfg)
        self.neighbor_enc = make_neighbor_encoder(cfg)
        self.obs_encoder, self.grid_in, self.cell_in = make_grid_reader(cfg, self.fourier.out_dim)
        self.uses_interp = cfg.interp_feature or self.prior is not None or self.neighbor_enc is not None
        # one small MLP of the geometry gives every layer's per-head bias: run once, not per layer
        self.geom_bias = nn.Sequential(nn.Linear(N_GEOM, cfg.bias_hidden), nn.GELU(),
                                       nn.Linear(cfg.bias_hidden, cfg.num_layers * cfg.num_heads))
        self.layers = nn.ModuleList(LocalLayer(cfg) for _ in range(cfg.num_layers))
        self.head = OutputHead(d, d)

    def knobs(self) -> dict[str, Knob]:
        """The radius, over the range it was trained at (asf_core.models.knobs)."""
        return knobs(self.config)

    def training_kwargs(self, batch_size: int, generator: torch.Generator) -> dict:
        """Per-step extra forward arguments: a radius per image, uniform in [radius_min, radius_max].

        Each image gets its own radius: neighbour lists do not depend on it (only their validity
        masks do), so mixing radii in a batch costs nothing.
        """
        cfg = self.config
        u = torch.rand(batch_size, generator=generator)
        return {"radius": cfg.radius_min + (cfg.radius_max - cfg.radius_min) * u}

    def _radius(self, radius, b: int, device) -> torch.Tensor:
        r = self.config.local_radius if radius is None else radius
        r = torch.as_tensor(r, dtype=torch.float32, device=device).reshape(-1)
        if r.numel() not in (1, b):
            raise ValueError(f"radius must be a float or a ({b},) tensor, got shape {tuple(r.shape)}")
        if (r <= 0).any():
            raise ValueError("radius must be positive")
        return r.expand(b).contiguous()  # (B,)

    def neighbors(self, query_xy: torch.Tensor, obs_xy: torch.Tensor, r: torch.Tensor) -> dict:
        """Neighbour lists into [obs; queries]: idx, valid (B, Q, K) and geometry (B, Q, K, N_GEOM)."""
        n = obs_xy.shape[1]
        i_o, v_o, _ = radius_neighbors(query_xy, obs_xy, self.k_obs, r, min_valid=self.config.min_obs)
        i_q, v_q, _ = radius_neighbors(query_xy, query_xy, self.k_qry, r)
        b = r.shape[0]
        idx = torch.cat([i_o, i_q + n], -1)  # (B, Q, K)
        valid = torch.cat([v_o, v_q], -1)
        keys = torch.cat([obs_xy.expand(b, -1, -1), query_xy.expand(b, -1, -1)], 1)  # (B, S, 2)
        key_xy = keys.gather(1, idx.flatten(1)[..., None].expand(-1, -1, 2)).view(*idx.shape, 2)
        delta = key_xy - query_xy.expand(b, -1, -1)[:, :, None]  # (B, Q, K, 2)
        is_obs = idx < n
        geom = _geometry(delta, r[:, None, None].expand_as(is_obs), is_obs)
        return {"idx": idx, "valid": valid, "geom": geom}

    def dense_neighbors(self, query_xy: torch.Tensor, obs_xy: torch.Tensor, r: torch.Tensor) -> dict:
        """The same neighbourhoods with no cap on K, as a (B, Q, S) mask and its in-radius pairs."""
        b, n = r.shape[0], obs_xy.shape[1]
        mask = torch.cat([radius_mask_dense(query_xy, obs_xy, r, self.config.min_obs),
                          radius_mask_dense(query_xy, query_xy, r)], -1)  # (B, Q, S)
        pairs = mask.nonzero(as_tuple=True)  # (b, q, s) index triplets
        keys = torch.cat([obs_xy.expand(b, -1, -1), query_xy.expand(b, -1, -1)], 1)
        delta = keys[pairs[0], pairs[2]] - query_xy.expand(b, -1, -1)[pairs[0], pairs[1]]  # (M, 2)
        geom = _geometry(delta, r[pairs[0]], pairs[2] < n)
        return {"mask": mask, "pairs": pairs, "geom": geom}

    def context(self, *, query_xy: torch.Tensor, obs_xy: torch.Tensor, obs_rgb: torch.Tensor,
                radius=None) -> dict:
        """Everything a forward computes from positions, observations and radius alone: the
        interpolation, observation tokens, query Fourier features, neighbour lists and their
        position biases (~20% of a 32x32 forward). An ODE solve changes only x_t and t, so it
        computes this once and passes it to every step as `forward(context=...)`."""
        cfg = self.config
        b = obs_xy.shape[0]
        ctx = point_context(self, query_xy, obs_xy, obs_rgb)
        query_xy, obs, obs_xy = ctx["query_xy"], ctx["obs"], ctx["obs_xy"]  # tokens: observations or cells
        r = self._radius(radius, b, obs_xy.device)
        u = (r - cfg.radius_min) / ((cfg.radius_max - cfg.radius_min) or 1.0)  # the radius in [0, 1]
        obs = obs + self.obs_mlp(self.obs_norm(obs))
        dense = cfg.attention_impl == "dense_ref"
        nb = self.dense_neighbors(query_xy, obs_xy, r) if dense else self.neighbors(query_xy, obs_xy, r)
        if dense or torch.is_grad_enabled():
            bias = self.geom_bias(nb["geom"])  # (B, Q, K, L·H) or (M, L·H)
        else:
            bias = torch.cat([self.geom_bias(g) for g in nb["geom"].split(QUERY_BLOCK, 1)], 1)
        if dense:
            biases = rearrange(bias, "m (l h) -> l m h", l=cfg.num_layers).unbind(0)
        else:
            biases = rearrange(bias, "b q k (l h) -> l b h q k", l=cfg.num_layers).unbind(0)
        return {**ctx, "radius": r, "radius_embed": self.radius_embed(u), "obs": obs,
                "neighbors": nb, "biases": biases}

    def forward(
        self, *, x_t: torch.Tensor, t: torch.Tensor, query_xy: torch.Tensor, obs_xy: torch.Tensor,
        obs_rgb: torch.Tensor, return_attention: bool = False, radius=None, context: dict | None = None,
    ):
        """Velocity of the query values.

        Args:
            x_t: (B, Q, 3) noisy query values. t: (B,) in [0, 1].
            query_xy: (B, Q, 2) or (Q, 2) in [-1, 1]. obs_xy: (B, N, 2). obs_rgb: (B, N, 3) in [-1, 1].
            return_attention: also return {"neighbors": (B, Q, K) into [obs; queries],
                "valid": (B, Q, K), "weights": [(B, H, Q, K)] per layer, "radius": (B,), "n_obs": N}.
            radius: None (config.local_radius), a float, or a (B,) tensor; sensible in
                [radius_min, radius_max], the range it is trained on.
            context: `self.context(...)` of these same positions, observations and radius, to skip
                recomputing it (then `radius` is the context's).
        Returns:
            v (B, Q, 3), or (v, maps) when asked.
        """
        cfg = self.config
        b = x_t.shape[0]
        ctx = context or self.context(query_xy=query_xy, obs_xy=obs_xy, obs_rgb=obs_rgb, radius=radius)
        interp, nb = ctx["interp"], ctx["neighbors"]
        c = self.time_embed(t) + ctx["radius_embed"]  # (B, D)
        feats = [ctx["query_fourier"].expand(b, -1, -1), x_t]
        if cfg.interp_feature:  # what interpolation predicts here: the model learns the correction
            feats.append(interp)
        x = self.query_in(torch.cat(feats, -1))  # (B, Q, D)
        if ctx["neighbor_feat"] is not None:
            x = x + ctx["neighbor_feat"]
        weights = []
        for layer, layer_bias in zip(self.layers, ctx["biases"]):
            x, w = layer(x, ctx["obs"], c, nb, layer_bias, need_weights=return_attention)
            weights.append(w)
        v = self.head(x, c)  # (B, Q, 3)
        if self.prior is not None:
            v = v + self.prior(x_t, t, interp).to(v.dtype)
        if not return_attention:
            return v
        dense = cfg.attention_impl == "dense_ref"
        r, query_xy = ctx["radius"], ctx["query_xy"]
        lists = nb if not dense else self.neighbors(query_xy, ctx["obs_xy"], r)
        if dense:  # report the dense weights on the same slots as the sparse path
            gather = lists["idx"][:, None].expand(-1, cfg.num_heads, -1, -1)
            weights = [w.gather(-1, gather) * lists["valid"][:, None] for w in weights]
        return v, {"neighbors": lists["idx"], "valid": lists["valid"], "weights": weights,
                   "radius": r, "n_obs": ctx["obs_xy"].shape[1], "token_xy": ctx["obs_xy"]}


def knobs(c: LocalImplicitConfig) -> dict[str, Knob]:
    """The radius is live: one checkpoint runs at any radius in the range it was trained over."""
    return {"radius": Knob("radius", "Radius", c.radius_min, c.radius_max, c.local_radius,
                           help="how far each pixel looks", unit="coords")}


def attention(maps: dict, q: int) -> Attention:
    """The mean over layers and heads of query q's neighbour weights (all inside the radius)."""
    idx, valid = maps["neighbors"][0, q], maps["valid"][0, q]  # (K,)
    w = torch.stack([layer[0, :, q] for layer in maps["weights"]]).mean((0, 1)) * valid  # (K,)
    n_tokens = maps["n_obs"] + maps["neighbors"].shape[1]
    weights = torch.zeros(n_tokens).index_add_(0, idx, w.float()).numpy()  # (N + Q,)
    return Attention(weights=np.asarray(weights), token_xy=token_xy(maps), radius=float(maps["radius"][0]))


SPEC = ArchSpec(
    name="local_implicit", label="Local Implicit",
    help="Local Implicit: every pixel attends to observations and pixels within the radius.",
    model_cls=LocalImplicit, config_cls=LocalImplicitConfig, presets=PRESETS, knobs=knobs,
    attention=attention, attention_help="its neighbours within the radius",
    releases={"local_implicit_grid": {}},
)
