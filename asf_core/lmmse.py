"""Gaussian linear-MMSE baseline: the conditional mean (and exact samples) of a Gaussian image model.

The training images (with horizontal flips) give a mean μ and a full covariance Σ over the D = 3·H·W
values of an image. For one image with observed values x_o, the missing values are Gaussian:
    E[x_m | x_o]   = μ_m + Σ_mo (Σ_oo + λI)⁻¹ (x_o − μ_o)
    Cov[x_m | x_o] = Σ_mm − Σ_mo (Σ_oo + λI)⁻¹ Σ_om
The mean is the best linear estimator of the missing pixels, so a learned model is worth its cost
only above it; its samples are exact posterior samples of that Gaussian, the cleanest picture of
samples against the mean there is (one sample has twice the mean's expected squared error).

The statistics are fitted once from CIFAR-10's training split and cached (`fit_stats`, `stats`).
The full covariance (3072² values) is too large to ship, so the app reads a low-rank release
(`low_rank`, `save_release`, `load_release`): the top eigenvectors of Σ in fp16 plus an isotropic
rest, Σ ≈ V diag(λ) Vᵀ + σ²I, a Gaussian of its own (probabilistic PCA), so its samples are still
exact samples of the model it is.

Symbols: B batch · D = 3·H·W values · o observed, m missing values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from asf_core.data import default_data_dir, load_cifar10, to_float

JITTER = 1e-4  # λ: observations treated as having this variance, so Σ_oo is always invertible


@dataclass
class GaussianStats:
    mean: torch.Tensor  # (D,) float64, values in [-1, 1] flattened as (3, H, W)
    cov: torch.Tensor  # (D, D) float64
    hw: tuple[int, int]


def fit_stats(images: torch.Tensor, flip: bool = True) -> GaussianStats:
    """Mean and covariance of uint8 images (N, 3, H, W), with their mirror images if `flip`."""
    x = to_float(images).double()
    if flip:
        x = torch.cat([x, x.flip(-1)])
    flat = x.flatten(1)  # (N, D)
    mean = flat.mean(0)
    centred = flat - mean
    cov = centred.T @ centred / (len(flat) - 1)
    return GaussianStats(mean, cov, tuple(images.shape[-2:]))


def cache_path(hw: tuple[int, int]) -> Path:
    root = Path(os.environ.get("ASF_CACHE_DIR", default_data_dir().parent))
    return root / f"lmmse_cifar10_{hw[0]}x{hw[1]}.pt"


def stats(hw: tuple[int, int] = (32, 32), data_dir: str | Path | None = None) -> GaussianStats:
    """CIFAR-10's statistics at 32×32: from the cache file, else fitted (~20 s) and cached."""
    if tuple(hw) != (32, 32):
        raise ValueError(f"the linear-MMSE baseline is fitted on 32×32 CIFAR-10 images; got {hw[0]}×{hw[1]}")
    path = cache_path(hw)
    if path.is_file():
        d = torch.load(path, weights_only=True)
        return GaussianStats(d["mean"], d["cov"], tuple(d["hw"]))
    s = fit_stats(load_cifar10("train", data_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"mean": s.mean, "cov": s.cov, "hw": list(s.hw)}, tmp)
    tmp.replace(path)
    return s


RELEASE_FILE = "stats.safetensors"


@dataclass
class LowRank:
    """Σ ≈ V diag(λ) Vᵀ + σ²I: what a release holds (under 10 MB at rank 1536)."""

    mean: torch.Tensor  # (D,) float32
    basis: torch.Tensor  # (D, k) float16, V: the top k eigenvectors of Σ
    values: torch.Tensor  # (k,) float32, λ: their eigenvalues
    noise: float  # σ²: the mean of the other eigenvalues
    hw: tuple[int, int]

    def stats(self) -> GaussianStats:
        b = self.basis.double()
        eye = torch.eye(len(self.mean), dtype=torch.float64)
        return GaussianStats(self.mean.double(), (b * self.values.double()) @ b.T + self.noise * eye, self.hw)


def low_rank(s: GaussianStats, rank: int) -> LowRank:
    """The probabilistic-PCA approximation of `s`: its top `rank` eigenvectors, rounded to fp16 as
    shipped, and the mean of the other eigenvalues as an isotropic rest."""
    if not 1 <= rank < len(s.mean):
        raise ValueError(f"rank must be in [1, {len(s.mean) - 1}], got {rank}")
    values, vectors = torch.linalg.eigh(s.cov)  # ascending
    values, vectors = values.flip(0), vectors.flip(1)
    return LowRank(s.mean.float(), vectors[:, :rank].half(), values[:rank].float(),
                   float(values[rank:].mean()), tuple(s.hw))


def save_release(model: LowRank, folder: str | Path) -> Path:
    """Write `model` to `folder`/stats.safetensors (whole or not at all)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (RELEASE_FILE + ".tmp")
    tensors = {"mean": model.mean, "basis": model.basis, "values": model.values,
               "noise": torch.tensor([model.noise]), "hw": torch.tensor(list(model.hw))}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))  # safetensors stores packed tensors
    tmp.replace(folder / RELEASE_FILE)
    return folder / RELEASE_FILE


def load_release(folder: str | Path) -> LowRank:
    """The model a `save_release` folder holds (a ValueError naming the file if it is not one)."""
    path = Path(folder) / RELEASE_FILE
    try:
        d = load_file(str(path))
        model = LowRank(d["mean"], d["basis"], d["values"], float(d["noise"][0]),
                        tuple(int(v) for v in d["hw"]))
    except (OSError, KeyError, RuntimeError, ValueError, SafetensorError) as e:  # absent, truncated, foreign
        raise ValueError(f"{path} is not a linear-MMSE release ({type(e).__name__}: {e})") from None
    d_, k = len(model.mean), len(model.values)
    if model.basis.shape != (d_, k) or d_ != 3 * model.hw[0] * model.hw[1]:
        raise ValueError(f"{path}: basis {tuple(model.basis.shape)} does not match mean {d_} and values {k}")
    return model


def _split(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Observed and missing value indices of one (H, W) mask, over the flattened (3, H, W)."""
    hw = mask.numel()
    seen = mask.flatten().repeat(3)  # (D,): a pixel's three channels together
    idx = torch.arange(3 * hw)
    return idx[seen], idx[~seen]


def reconstruct(images: torch.Tensor, mask: torch.Tensor, s: GaussianStats, samples: int = 0,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The conditional mean of each image (B, 3, H, W), and `samples` exact posterior samples of
    it (K, B, 3, H, W) (None for 0). Observed pixels are kept."""
    b, c, h, w = images.shape
    if (h, w) != tuple(s.hw):
        raise ValueError(f"the statistics are for {s.hw[0]}×{s.hw[1]} images, not {h}×{w}")
    flat = images.double().flatten(1)
    means, draws = [], []
    for i in range(b):
        o, m = _split(mask[i].cpu())
        s_oo = s.cov[o][:, o] + JITTER * torch.eye(len(o), dtype=torch.float64)
        s_mo = s.cov[m][:, o]
        gain = torch.linalg.solve(s_oo, s_mo.T).T  # (m, o) = Σ_mo Σ_oo⁻¹
        x = flat[i].clone()
        x[m] = s.mean[m] + gain @ (flat[i, o] - s.mean[o])
        means.append(x)
        if samples:
            post = s.cov[m][:, m] - gain @ s_mo.T
            chol = torch.linalg.cholesky(post + 1e-8 * torch.eye(len(m), dtype=torch.float64))
            eps = torch.randn(samples, len(m), generator=generator, dtype=torch.float64)
            k = x.expand(samples, -1).clone()
            k[:, m] = x[m] + eps @ chol.T
            draws.append(k)
    mean = torch.stack(means).view(b, c, h, w).float().clamp(-1, 1)
    if not samples:
        return mean, None
    return mean, torch.stack(draws, 1).view(samples, b, c, h, w).float().clamp(-1, 1)
