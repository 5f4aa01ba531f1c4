"""The 3-D grid observation encoder: SetConv onto a voxel grid, then a 3-D conv U-Net (ConvCNP, LIIF).

The 3-D counterpart of asf_core.models.encoder, trained to regress the posterior mean x̂ of the
missing voxels of a volume from the observed ones (MSE on the missing voxels):

1. **SetConv3D in** (ConvCNP, Gordon et al. 2020): every observation is spread onto the cells of a
   D³ grid with Gaussian kernels of learned widths ℓ_k, giving per kernel a density channel and
   normalised value channels Σ w·rgb / Σ w. A sum over points, so it takes any number of
   observations, anywhere, in any order. Two ops share one signature: `setconv3d_ref` writes the
   Gaussian splat directly (O(N·W³), for tests); `setconv3d` splats each point trilinearly onto its
   8 neighbouring cells and then blurs the grid with a separable Gaussian (three 1-D convolutions),
   O(N + V·W) — the same answer for observations at voxel centres, and for points off the grid the
   Gaussian of a trilinear tent, still a smooth positive kernel.
2. **A 3-D conv U-Net** over that grid: residual blocks with GroupNorm and SiLU, strided-conv
   downsampling, nearest upsampling with skips.
3. **x̂ = an interpolant + a learned correction**, zero at initialisation. The interpolant is either
   SetConv's normalised values (the first kernel: a Nadaraya-Watson smoother, `base="setconv"`) or a
   local quadratic fit (`base="quadratic"`, the small preset): at every voxel a Gaussian-weighted
   least-squares quadratic through the nearby observations (normalised convolution, Knutsson &
   Westin 1993; LOESS), whose width follows the observation spacing. It reproduces quadratic fields
   exactly, as the 2-D encoder's thin-plate spline does linear ones, and is computed from the same
   trilinear splat with separable blurs and one 10×10 solve per voxel. It is fed to the U-Net too.
4. **Read-out at any query coordinate** by trilinear sampling of x̂ (F.grid_sample on 5-D), so the
   output is a continuous field; at voxel centres it is exactly the grid value.

The encode / query split is explicit: `encode` runs once per volume, `VolumeField.mean_at` per query.

Symbols: B batch · N observations · Q queries · C channels · D grid side · V = D³ voxels · K kernels ·
W kernel reach in cells. Volumes are (B, C, D, D, D) indexed [b, c, z, y, x]; coordinates are
(x, y, z) in [-1, 1]³ at voxel centres (asf_core.volumes).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


@dataclass
class VolumeEncoderConfig:
    widths: tuple[int, ...] = (16, 48, 96)  # U-Net channels per scale, finest first
    blocks: tuple[int, ...] = (0, 1, 2)  # residual blocks per scale, on the way down and on the way up
    kernel_widths: tuple[float, ...] = (1.0, 0.5, 2.5)  # SetConv ℓ_k at init, in cells; the first is x̂'s base
    reach: int = 5  # kernels are truncated at ±reach cells (keeps > 98% of the widest Gaussian's mass)
    max_kernel_width: float = 3.0  # ℓ is clamped to [0.3, this] cells so the truncation stays small
    base: str = "quadratic"  # x̂'s interpolant: "quadratic" (local quadratic fit) or "setconv"
    poly_scale: float = 0.72  # the quadratic fit's Gaussian width, in observation spacings (V / N)^(1/3)
    poly_ridge: float = 0.05  # ridge on the fit's non-constant terms, relative to the local weight


PRESETS: dict[str, dict] = {
    "small": dict(widths=(16, 48, 96), blocks=(0, 1, 2)),
    "tiny": dict(widths=(4, 8), blocks=(0, 1), kernel_widths=(1.0, 2.0), reach=3, base="setconv"),  # tests
}


def preset(name: str, **overrides) -> VolumeEncoderConfig:
    """A named configuration, with fields overridden by keyword."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return VolumeEncoderConfig(**{**PRESETS[name], **overrides})


# ---------------------------------------------------------------- SetConv3D: reference and fast op


def _cell_units(obs_xyz: torch.Tensor, side: int) -> torch.Tensor:
    """(x, y, z) in [-1, 1]³ -> continuous cell index, voxel centres at integers: (B, N, 3)."""
    return (obs_xyz.float() + 1) * side / 2 - 0.5


def _normalise(grid: torch.Tensor) -> torch.Tensor:
    """(B, K, 4, D, D, D) of [Σ w, Σ w·rgb] -> (B, 4K, D, D, D) of [density, normalised rgb] per kernel."""
    density = grid[:, :, :1]
    values = grid[:, :, 1:] / density.clamp_min(1e-4)
    return torch.cat([density, values], 2).flatten(1, 2)


def setconv3d_ref(obs_xyz: torch.Tensor, obs_rgb: torch.Tensor, side: int, widths: torch.Tensor,
                  reach: int) -> torch.Tensor:
    """Direct Gaussian splat, the readable reference of `setconv3d` (same signature, O(N·W³) memory).

    Each point adds exp(-|cell - p|² / 2ℓ²) to the cells within ±reach of its nearest voxel centre.

    Args:
        obs_xyz (B, N, 3) in [-1, 1]³, obs_rgb (B, N, 3), widths (K,) in cells.
    Returns:
        (B, 4K, D, D, D): per kernel [density, normalised r, g, b].
    """
    b = obs_xyz.shape[0]
    pos = _cell_units(obs_xyz, side)  # (B, N, 3) as (x, y, z)
    r = torch.arange(-reach, reach + 1, device=pos.device, dtype=pos.dtype)
    off = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)  # (W³, 3)
    cells = pos.round()[:, :, None] + off  # (B, N, W³, 3)
    d2 = ((cells - pos[:, :, None]) ** 2).sum(-1)  # (B, N, W³)
    inside = ((cells >= 0) & (cells < side)).all(-1)
    flat = cells.clamp(0, side - 1).long()
    flat = ((flat[..., 2] * side + flat[..., 1]) * side + flat[..., 0]).flatten(1)  # (B, N·W³), x fastest
    vals = torch.cat([torch.ones_like(obs_rgb[..., :1]), obs_rgb.float()], -1)  # (B, N, 4)
    grids = []
    for width in widths:
        w = torch.exp(-d2 / (2 * width**2)) * inside  # (B, N, W³)
        contrib = (w[..., None] * vals[:, :, None]).flatten(1, 2)  # (B, N·W³, 4)
        g = torch.zeros(b, side**3, 4, device=pos.device, dtype=contrib.dtype)
        g.scatter_add_(1, flat[..., None].expand(-1, -1, 4), contrib)
        grids.append(g.transpose(1, 2).reshape(b, 4, side, side, side))
    return _normalise(torch.stack(grids, 1))


def trilinear_splat(obs_xyz: torch.Tensor, values: torch.Tensor, side: int) -> torch.Tensor:
    """Scatter each point's values onto its 8 neighbouring voxel centres with trilinear weights.

    Args:
        obs_xyz (B, N, 3) in [-1, 1]³, values (B, N, C).
    Returns:
        (B, C, D, D, D); a point at a voxel centre lands wholly in that voxel, and the mass of a
        point whose neighbours fall outside the grid is dropped, as the Gaussian's tail is.
    """
    b, n, c = values.shape
    pos = _cell_units(obs_xyz, side)
    base = pos.floor()
    frac = pos - base  # (B, N, 3)
    grid = torch.zeros(b, side**3, c, device=values.device, dtype=values.dtype)
    for corner in range(8):
        bits = torch.tensor([(corner >> i) & 1 for i in range(3)], device=pos.device, dtype=pos.dtype)
        cell = base + bits  # (B, N, 3)
        w = torch.where(bits.bool(), frac, 1 - frac).prod(-1)  # (B, N)
        w = w * ((cell >= 0) & (cell < side)).all(-1)
        cell = cell.clamp(0, side - 1).long()
        flat = (cell[..., 2] * side + cell[..., 1]) * side + cell[..., 0]  # (B, N)
        grid.scatter_add_(1, flat[..., None].expand(-1, -1, c), w[..., None] * values)
    return grid.transpose(1, 2).reshape(b, c, side, side, side)


def gaussian_blur3d(grid: torch.Tensor, width: torch.Tensor, reach: int) -> torch.Tensor:
    """Separable unnormalised Gaussian exp(-t²/2ℓ²), t in -reach..reach, along z, y, x: (B, C, D, D, D)."""
    c = grid.shape[1]
    t = torch.arange(-reach, reach + 1, device=grid.device, dtype=grid.dtype)
    k = torch.exp(-(t**2) / (2 * width**2))  # (2W+1,)
    for shape, pad in (((-1, 1, 1), (reach, 0, 0)), ((1, -1, 1), (0, reach, 0)), ((1, 1, -1), (0, 0, reach))):
        grid = F.conv3d(grid, k.reshape(1, 1, *shape).expand(c, 1, -1, -1, -1), padding=pad, groups=c)
    return grid


def setconv3d(obs_xyz: torch.Tensor, obs_rgb: torch.Tensor, side: int, widths: torch.Tensor,
              reach: int) -> torch.Tensor:
    """Trilinear splat + separable Gaussian blur: `setconv3d_ref`'s signature and, for observations
    at voxel centres, its answer. Returns (B, 4K, D, D, D): per kernel [density, normalised rgb]."""
    vals = torch.cat([torch.ones_like(obs_rgb[..., :1]), obs_rgb.float()], -1)  # (B, N, 4)
    splat = trilinear_splat(obs_xyz, vals, side)  # (B, 4, D, D, D)
    return _normalise(torch.stack([gaussian_blur3d(splat, w, reach) for w in widths], 1))


def local_quadratic3d(obs_xyz: torch.Tensor, obs_rgb: torch.Tensor, side: int, width: float, reach: int,
                      ridge: float = 0.05) -> torch.Tensor:
    """Gaussian-weighted least-squares quadratic fit at every voxel centre: (B, 3, D, D, D).

    At voxel c, β = argmin Σ_i w_i (v_i - φ(x_i - c)·β)² + ridge·S₀·|β_{1:}|², w_i = exp(-|x_i - c|²/2ℓ²),
    φ the 10 monomials of degree ≤ 2, and x̂(c) = β₀. The moments Σ w φ_a φ_b and Σ w φ_a v are
    separable blurs of the trilinear splat (offsets to the observations' voxels), so the cost is
    O(N + V·reach) plus a 10×10 solve per voxel. Not differentiated through.
    """
    vals = torch.cat([torch.ones_like(obs_rgb[..., :1]), obs_rgb.float()], -1)  # (B, N, 4)
    splat = trilinear_splat(obs_xyz, vals, side)  # (B, 4, D, D, D)
    t = torch.arange(-reach, reach + 1, device=splat.device, dtype=splat.dtype) / width  # in units of ℓ
    g = torch.exp(-(t**2) / 2)
    exps = sorted((e for e in itertools.product(range(3), repeat=3) if sum(e) <= 2), key=sum)  # 10 exponents
    cache: dict = {}

    def moment(e: tuple[int, int, int], ch: slice) -> torch.Tensor:  # Σ w · dx^ex dy^ey dz^ez · splat[ch]
        key = (e, ch.start)
        if key not in cache:
            grid = splat[:, ch]
            for axis, k in zip((4, 3, 2), (t ** e[0] * g, t ** e[1] * g, t ** e[2] * g)):  # x, y, z
                shape, pad = [1, 1, 1], [0, 0, 0]
                shape[axis - 2], pad[axis - 2] = -1, reach
                c = grid.shape[1]
                grid = F.conv3d(grid, k.reshape(1, 1, *shape).expand(c, 1, -1, -1, -1), padding=tuple(pad),
                                groups=c)
            cache[key] = grid
        return cache[key]

    m = len(exps)
    gram = torch.stack([torch.stack([moment(tuple(a + b for a, b in zip(ea, eb)), slice(0, 1))[:, 0]
                                     for eb in exps], -1) for ea in exps], -2)  # (B, D, D, D, m, m)
    rhs = torch.stack([moment(e, slice(1, 4)) for e in exps], -1)  # (B, 3, D, D, D, m)
    rhs = rhs.permute(0, 2, 3, 4, 5, 1)  # (B, D, D, D, m, 3)
    reg = torch.tensor([0.0] + [ridge] * (m - 1), device=gram.device, dtype=gram.dtype)
    gram = gram + torch.diag_embed(reg * gram[..., :1, :1].squeeze(-1) + 1e-5)
    beta = torch.linalg.solve(gram, rhs)  # (B, D, D, D, m, 3)
    return beta[..., 0, :].permute(0, 4, 1, 2, 3)  # the constant term: (B, 3, D, D, D)


class SetConv3D(nn.Module):
    """Observations -> (B, 4K, D, D, D) on a D³ grid, with K learned kernel widths (in cells)."""

    def __init__(self, init_widths: tuple[float, ...], reach: int, max_width: float):
        super().__init__()
        self.log_widths = nn.Parameter(torch.tensor([math.log(w) for w in init_widths]))
        self.reach, self.max_width = reach, max_width

    @property
    def widths(self) -> torch.Tensor:
        return self.log_widths.exp().clamp(0.3, self.max_width)  # (K,) in cells

    def forward(self, obs_xyz: torch.Tensor, obs_rgb: torch.Tensor, side: int) -> torch.Tensor:
        return setconv3d(obs_xyz, obs_rgb, side, self.widths, self.reach)


# ---------------------------------------------------------------- 3-D U-Net


class ResBlock3D(nn.Module):
    """GroupNorm, SiLU, 3×3×3 conv, twice, with a residual; the second conv starts at zero."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(min(8, c_in), c_in), nn.Conv3d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(min(8, c_out), c_out), nn.Conv3d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # every block starts as the identity
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class UNet3D(nn.Module):
    """(B, c_in, D, D, D) -> (B, c_out, D, D, D); D a multiple of 2^(scales-1).

    Down and up by 2×2×2 convolutions of stride 2 (space-to-depth and back, learned), because on a
    CPU a 3×3×3 convolution with few channels at 32³ costs more than one with many channels at 16³:
    `blocks[i]` residual blocks run at scale i on the way down and on the way up, and a scale with
    none (the finest, in the small preset) merges its skip with a per-voxel MLP instead.
    """

    def __init__(self, c_in: int, c_out: int, widths: tuple[int, ...], blocks: tuple[int, ...]):
        super().__init__()
        self.inp = nn.Conv3d(c_in, widths[0], 3, padding=1)
        self.down, self.pool = nn.ModuleList(), nn.ModuleList()
        self.up, self.unpool = nn.ModuleList(), nn.ModuleList()
        for i, (w, n) in enumerate(zip(widths, blocks)):
            c = widths[max(i - 1, 0)]
            if i > 0:
                self.pool.append(nn.Conv3d(c, w, 2, stride=2))  # (B, w, D/2, D/2, D/2)
            self.down.append(nn.Sequential(*(ResBlock3D(w, w) for _ in range(n))))
        for i in reversed(range(len(widths) - 1)):
            w, n = widths[i], blocks[i]
            self.unpool.append(nn.ConvTranspose3d(widths[i + 1], w, 2, stride=2))  # (B, w, 2D, 2D, 2D)
            merge = [ResBlock3D(2 * w if j == 0 else w, w) for j in range(n)] or \
                [nn.Conv3d(2 * w, 2 * w, 1), nn.SiLU(), nn.Conv3d(2 * w, w, 1)]
            self.up.append(nn.Sequential(*merge))
        self.out = nn.Sequential(nn.GroupNorm(min(8, widths[0]), widths[0]), nn.SiLU(),
                                 nn.Conv3d(widths[0], c_out, 1))
        nn.init.zeros_(self.out[-1].weight)  # the correction starts at zero
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, skips = self.down[0](self.inp(x)), []
        for pool, blocks in zip(self.pool, self.down[1:]):
            skips.append(h)
            h = blocks(pool(h))  # (B, C', D/2, D/2, D/2)
        for unpool, merge in zip(self.unpool, self.up):
            h = merge(torch.cat([unpool(h), skips.pop()], 1))  # (B, C, 2D, 2D, 2D)
        return self.out(h)


# ---------------------------------------------------------------- the encoder and its field


def sample_volume(grid: torch.Tensor, query_xyz: torch.Tensor) -> torch.Tensor:
    """Trilinear values of grid (B, C, D, D, D) at query_xyz (B or 1, Q, 3) as (x, y, z): (B, Q, C)."""
    q = query_xyz.expand(grid.shape[0], -1, -1)[:, None, None].to(grid.dtype)  # (B, 1, 1, Q, 3)
    # grid_sample reads the last axis as (x, y, z) against [.., z, y, x]; align_corners=False puts
    # the -1 / 1 edges at the outer voxel borders, so voxel centres fall on asf_core.volumes' coords
    out = F.grid_sample(grid, q, mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, :, 0, 0].transpose(1, 2)  # (B, Q, C)


@dataclass
class VolumeField:
    """What the encoder computes once per volume."""

    mean: torch.Tensor  # (B, 3, D, D, D) x̂ at the voxel centres, unclamped (the loss needs its gradient)
    setconv: torch.Tensor  # (B, 4K, D, D, D) the SetConv channels, for inspection

    def mean_at(self, query_xyz: torch.Tensor) -> torch.Tensor:
        """x̂ at arbitrary queries (B or 1, Q, 3): (B, Q, 3) in [-1, 1]; exact at the voxel centres."""
        return sample_volume(self.mean, query_xyz).clamp(-1, 1)


class VolumeEncoder(nn.Module):
    """Observations -> VolumeField: SetConv3D -> 3-D U-Net -> x̂ = normalised values + correction."""

    def __init__(self, cfg: VolumeEncoderConfig):
        super().__init__()
        self.config = cfg
        self.setconv = SetConv3D(tuple(cfg.kernel_widths), cfg.reach, cfg.max_kernel_width)
        if cfg.base not in ("quadratic", "setconv"):
            raise ValueError(f"base must be 'quadratic' or 'setconv', got {cfg.base!r}")
        extra = 3 if cfg.base == "quadratic" else 0
        self.unet = UNet3D(4 * len(cfg.kernel_widths) + extra, 3, tuple(cfg.widths), tuple(cfg.blocks))

    @property
    def stride(self) -> int:
        return 2 ** (len(self.config.widths) - 1)

    def encode(self, obs_xyz: torch.Tensor, obs_rgb: torch.Tensor, side: int) -> VolumeField:
        """obs_xyz (B, N, 3) in [-1, 1]³, obs_rgb (B, N, 3) in [-1, 1]; side D a multiple of `stride`."""
        if side % self.stride:
            raise ValueError(f"grid side {side} must be a multiple of {self.stride}")
        sc = self.setconv(obs_xyz, obs_rgb, side)  # (B, 4K, D, D, D)
        k = len(self.config.kernel_widths)
        x = sc.unflatten(1, (k, 4))  # (B, K, 4, D, D, D): log1p evens out the densities of wide and narrow ℓ
        x = torch.cat([x[:, :, :1].log1p(), x[:, :, 1:]], 2).flatten(1, 2)
        if self.config.base == "quadratic":
            cfg = self.config
            spacing = (side**3 / obs_xyz.shape[1]) ** (1 / 3)  # mean distance between observations, cells
            width = cfg.poly_scale * spacing
            with torch.no_grad():
                base = local_quadratic3d(obs_xyz, obs_rgb, side, width, math.ceil(2.5 * width),
                                         cfg.poly_ridge).clamp(-1.5, 1.5)
            x = torch.cat([x, base], 1)
        else:
            base = sc[:, 1:4]  # the first kernel's normalised values
        mean = base + self.unet(x)  # (B, 3, D, D, D): interpolant + correction
        return VolumeField(mean=mean, setconv=sc)

    def forward(self, *, query_xyz: torch.Tensor, obs_xyz: torch.Tensor, obs_rgb: torch.Tensor,
                side: int) -> torch.Tensor:
        """x̂ at the queries: (B, Q, 3)."""
        return self.encode(obs_xyz, obs_rgb, side).mean_at(query_xyz)


def fill_volumes(model: VolumeEncoder, volumes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Reconstruct volumes (B, 3, D, D, D) from the voxels where mask (B, D, D, D) is True, copying
    the observed voxels through, as asf_core.baselines3d.reconstruct_volume does."""
    from asf_core.volumes import observations_3d  # here, so the model file imports no data code

    obs_xyz, obs_rgb = observations_3d(volumes, mask)
    mean = model.encode(obs_xyz, obs_rgb, volumes.shape[-1]).mean.clamp(-1, 1)
    return torch.where(mask[:, None], volumes, mean)


def config_to_dict(cfg: VolumeEncoderConfig) -> dict:
    return asdict(cfg)


def config_from_dict(d: dict) -> VolumeEncoderConfig:
    return VolumeEncoderConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def load_volume_encoder(folder: str | Path, device: str | torch.device = "cpu") -> VolumeEncoder:
    """A released encoder from `config.json` ({"model": config fields, ...}) and `model.safetensors`
    (stored in fp16, loaded as float32); never unpickles anything."""
    folder = Path(folder)
    meta = json.loads((folder / CONFIG_NAME).read_text())
    model = VolumeEncoder(config_from_dict(meta["model"]))
    state = {k: v.float() for k, v in load_file(folder / WEIGHTS_NAME).items()}
    model.load_state_dict(state)
    return model.to(device).eval()


__all__ = ["VolumeEncoderConfig", "VolumeEncoder", "VolumeField", "SetConv3D", "setconv3d",
           "setconv3d_ref", "preset", "load_volume_encoder", "fill_volumes"]
