"""The grid observation encoder: SetConv onto a regular grid, then a conv U-Net (ConvCNP, LIIF).

Point-set encoders learn slowly per FLOP on this task: a conv net that sees the observations on the
pixel grid beats them within minutes. So every architecture can read the observations through this
one module:

1. **SetConv in** (ConvCNP, Gordon et al. 2020): each observation is splatted onto the cells of a
   regular grid with a Gaussian kernel of learned width ℓ, giving a density channel and normalised
   value channels; the thin-plate spline at the cell centres is a third input. A sum over points, so
   it takes any number of observations, anywhere, in any order. The kernel is truncated to a window
   of ±`WINDOW` cells, so the splat costs O(N) at any grid size.
2. **A conv U-Net** over that grid (multi-scale, residual blocks with GroupNorm and SiLU; FiLM by a
   conditioning vector where one is given, for the `unet` peer).
3. **Read-out at any query coordinate**: bilinear sampling of the feature grid plus the query's
   offset from its nearest cell centre, and a regression head x̂ = spline + a learned correction,
   the encoder's own posterior-mean estimate (trained by `python -m asf_core.train --objective mean`).

The grid's side follows the observation density (`side = √(N / density)`), so a model trained on
20% of 32² sees the same geometry per cell on 20% of 64² or 128². The encoder never sees x_t or t:
an ODE solve runs it once. The splat and read-out are written for (x, y); the U-Net for 2D grids.

Symbols: B batch · N observations · C channels · G grid side · Q queries.
Coordinates (x, y) in [-1, 1]², x along columns, at pixel centres (asf_core.fields).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from asf_core.ops.interp import interpolate_obs

WINDOW = 3  # the SetConv kernel reaches ±3 cells; ℓ is capped at 1.25 cells, where that keeps > 99%


@dataclass
class GridEncoderConfig:
    widths: tuple[int, ...] = (32, 64, 128)  # U-Net channels per scale, finest first
    blocks: int = 2  # residual blocks per scale, on the way down and on the way up
    out_dim: int = 64  # feature channels of the read-out
    density: float = 0.2  # observation density the grid side is set for: side = √(N / density)
    init_width: float = 0.5  # SetConv ℓ at initialisation, in cells
    interp: str = "tps"  # the interpolant fed in beside the splat, and the base of x̂
    min_side: int = 8
    max_side: int = 256


# the encoder of every `grid` preset, so one trained encoder fits them all (2.4M parameters)
SMALL = dict(widths=(48, 96, 192), blocks=2, out_dim=48)
TINY = dict(widths=(8, 16), blocks=1, out_dim=8)  # for tests


@dataclass
class GridFeatures:
    """What the encoder computes once per solve."""

    feat: torch.Tensor  # (B, C, G, G) features
    mean: torch.Tensor  # (B, 3, G, G) x̂ at the cell centres

    def read(self, query_xy: torch.Tensor) -> torch.Tensor:
        """Bilinear features at the queries, with the offset from the nearest cell: (B, Q, C + 2)."""
        side = self.feat.shape[-1]
        offset = (query_xy + 1) * side / 2  # in cells; centres at k + 0.5
        offset = (offset - offset.floor() - 0.5).expand(self.feat.shape[0], -1, -1)
        return torch.cat([sample_grid(self.feat, query_xy), offset], -1)

    def mean_at(self, query_xy: torch.Tensor) -> torch.Tensor:
        """x̂ at the queries: (B, Q, 3); exact at the cell centres."""
        return sample_grid(self.mean, query_xy)

    def tokens(self, pool: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Features average-pooled by `pool` as tokens at their cell centres: xy (B, M, 2), (B, M, C)."""
        f = F.avg_pool2d(self.feat, pool) if pool > 1 else self.feat
        b, _, g, _ = f.shape
        xy = cell_centres(g, f.device).expand(b, -1, -1)
        return xy, f.flatten(2).transpose(1, 2)


def cell_centres(side: int, device=None) -> torch.Tensor:
    """(1, G·G, 2) cell centres, row-major, as asf_core.fields.pixel_coords."""
    c = (torch.arange(side, device=device, dtype=torch.float32) + 0.5) / side * 2 - 1
    gy, gx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([gx, gy], -1).reshape(1, side * side, 2)


def sample_grid(grid: torch.Tensor, query_xy: torch.Tensor) -> torch.Tensor:
    """Bilinear values of grid (B, C, G, G) at query_xy (B or 1, Q, 2): (B, Q, C)."""
    q = query_xy.expand(grid.shape[0], -1, -1)[:, None].to(grid.dtype)  # (B, 1, Q, 2)
    # align_corners=False puts the -1 / 1 edges at the outer cell borders: cell centres at pixel centres
    return F.grid_sample(grid, q, mode="bilinear", padding_mode="border",
                         align_corners=False)[:, :, 0].transpose(1, 2)


def grid_side(n_obs: int, cfg: GridEncoderConfig) -> int:
    """The grid side for n_obs observations, a multiple of the U-Net's total stride."""
    stride = 2 ** (len(cfg.widths) - 1)
    side = math.sqrt(n_obs / cfg.density)
    return int(min(max(round(side / stride) * stride, cfg.min_side), cfg.max_side))


class SetConv(nn.Module):
    """Gaussian splat of points onto a G×G grid: [density, Σ w·rgb / density] per cell, (B, 4, G, G)."""

    def __init__(self, init_width: float):
        super().__init__()
        self.log_width = nn.Parameter(torch.tensor(math.log(init_width)))

    def forward(self, obs_xy: torch.Tensor, obs_rgb: torch.Tensor, side: int) -> torch.Tensor:
        b, n, _ = obs_xy.shape
        width = self.log_width.exp().clamp(0.05, 1.25)  # in cells
        pos = (obs_xy.float() + 1) * side / 2 - 0.5  # (B, N, 2) in cell index units
        base = pos.round()
        r = torch.arange(-WINDOW, WINDOW + 1, device=obs_xy.device, dtype=pos.dtype)
        off = torch.stack(torch.meshgrid(r, r, indexing="xy"), -1).reshape(-1, 2)  # (W², 2) as (dx, dy)
        cells = base[:, :, None] + off  # (B, N, W², 2)
        w = torch.exp(-((cells - pos[:, :, None]) ** 2).sum(-1) / (2 * width**2))  # (B, N, W²)
        inside = ((cells >= 0) & (cells < side)).all(-1)
        w = w * inside
        flat = (cells[..., 1].clamp(0, side - 1) * side + cells[..., 0].clamp(0, side - 1)).long().flatten(1)
        vals = torch.cat([torch.ones_like(obs_rgb[..., :1]), obs_rgb.float()], -1)  # (B, N, 4)
        contrib = w[..., None] * vals[:, :, None]  # (B, N, W², 4)
        grid = torch.zeros(b, side * side, 4, device=obs_xy.device, dtype=contrib.dtype)
        grid.scatter_add_(1, flat[..., None].expand(-1, -1, 4), contrib.flatten(1, 2))
        density = grid[..., :1]
        values = grid[..., 1:] / density.clamp_min(1e-4)
        out = torch.cat([density, values], -1)  # (B, G·G, 4)
        return out.transpose(1, 2).reshape(b, 4, side, side)


class ResBlock(nn.Module):
    """GroupNorm, SiLU, 3×3 conv, twice, with a residual; FiLM by `cond` where given (DDPM / ADM)."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int = 0):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(min(8, c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(min(8, c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.film = nn.Linear(cond_dim, 2 * c_out) if cond_dim else None
        nn.init.zeros_(self.conv2.weight)  # every block starts as the identity
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None:
            scale, shift = self.film(F.silu(cond))[:, :, None, None].chunk(2, 1)
            h = h * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class UNet(nn.Module):
    """Multi-scale conv net, (B, c_in, G, G) -> (B, c_out, G, G); G a multiple of 2^(scales-1)."""

    def __init__(self, c_in: int, c_out: int, widths: tuple[int, ...], blocks: int, cond_dim: int = 0):
        super().__init__()
        self.inp = nn.Conv2d(c_in, widths[0], 3, padding=1)
        self.down, self.pool = nn.ModuleList(), nn.ModuleList()
        self.up, self.unpool = nn.ModuleList(), nn.ModuleList()
        for i, w in enumerate(widths):
            c = widths[max(i - 1, 0)]
            self.down.append(nn.ModuleList(ResBlock(c if j == 0 else w, w, cond_dim) for j in range(blocks)))
            if i < len(widths) - 1:
                self.pool.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
        for i in reversed(range(len(widths) - 1)):
            w = widths[i]
            self.unpool.append(nn.Conv2d(widths[i + 1], w, 3, padding=1))
            self.up.append(nn.ModuleList(ResBlock(2 * w if j == 0 else w, w,
                                                  cond_dim) for j in range(blocks)))
        self.out = nn.Sequential(nn.GroupNorm(min(8, widths[0]), widths[0]), nn.SiLU(), nn.Conv2d(widths[0],
                                                                                                  c_out, 1))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h, skips = self.inp(x), []
        for i, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, cond)
            if i < len(self.pool):
                skips.append(h)
                h = self.pool[i](h)  # (B, C, G/2, G/2)
        for unpool, blocks in zip(self.unpool, self.up):
            h = unpool(F.interpolate(h, scale_factor=2.0, mode="nearest"))
            h = torch.cat([h, skips.pop()], 1)
            for block in blocks:
                h = block(h, cond)
        return self.out(h)


class GridEncoder(nn.Module):
    """Observations -> GridFeatures: SetConv + spline -> U-Net -> features and x̂ on the grid."""

    def __init__(self, cfg: GridEncoderConfig):
        super().__init__()
        self.config = cfg
        self.setconv = SetConv(cfg.init_width)
        self.unet = UNet(4 + 3, cfg.out_dim, tuple(cfg.widths), cfg.blocks)
        self.mean_head = nn.Conv2d(cfg.out_dim, 3, 1)
        nn.init.zeros_(self.mean_head.weight)  # x̂ starts at the spline
        nn.init.zeros_(self.mean_head.bias)

    def forward(self, obs_xy: torch.Tensor, obs_rgb: torch.Tensor, side: int | None = None) -> GridFeatures:
        """obs_xy (B, N, 2), obs_rgb (B, N, 3); `side` defaults to grid_side(N)."""
        b, n, _ = obs_xy.shape
        side = side or grid_side(n, self.config)
        centres = cell_centres(side, obs_xy.device)
        spline = interpolate_obs(self.config.interp, obs_xy, obs_rgb, centres[0])  # (B, G·G, 3)
        spline = spline.float().transpose(1, 2).reshape(b, 3, side, side)
        feat = self.unet(torch.cat([self.setconv(obs_xy, obs_rgb, side), spline], 1))  # (B, C, G, G)
        return GridFeatures(feat=feat, mean=spline + self.mean_head(feat))
