"""Volumes as continuous fields: procedural test volumes, voxel coordinates, masks and observations.

The 3-D counterpart of asf_core.fields. A volume is RGB in [-1, 1] on a D³ grid, stored (B, 3, D, D, D)
indexed [b, c, z, y, x], so that row-major flattening runs x fastest, like an image's columns;
coordinates are (x, y, z) in [-1, 1]³ at voxel centres. Keeping three colour channels (rather than
one density) lets the 2-D machinery (obs_rgb, PSNR on [0, 1], the 3-channel model heads) carry over.

The procedural volumes are soft coloured ellipsoids, boxes and tori, each blended over the ones before,
on a smooth background; each volume depends only on (seed, index), so the first n of a split are the
same whatever n is asked for.

Symbols: B batch · D grid side · V = D³ voxels · N observed voxels · P primitives.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asf_core.fields import check_fraction
from asf_core.metrics import psnr

VOLUME_SIZE = 32
TRAIN_SEED, VAL_SEED, TEST_SEED = 0, 1, 2  # one seed per split; volume i of a split is (seed, i)
OBSERVED_FRACTIONS = (0.2, 0.05)  # the image task's 20% and a sparser setting, where 3-D is easier
PRIMITIVES = ("ellipsoid", "box", "torus")


@dataclass(frozen=True)
class Primitive:
    """One soft solid: a shape in its own frame, placed by a rotation and a centre.

    `size` is the ellipsoid's or box's half-axes, or for a torus (major radius, minor radius, unused);
    `sharpness` is the slope of the sigmoid edge in units of the shape's scaled distance (larger is
    harder). All tensors are float32 on the CPU.
    """

    kind: str
    centre: torch.Tensor  # (3,)
    rotation: torch.Tensor  # (3, 3), columns are the shape's axes in world coordinates
    size: torch.Tensor  # (3,)
    colour: torch.Tensor  # (3,) in [-1, 1]
    sharpness: float


def voxel_coords(d: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Voxel-centre coordinates of a d³ grid, row-major (x fastest): (D³, 3) as (x, y, z) in [-1, 1]."""
    if d < 1:
        raise ValueError(f"grid size must be positive, got {d}")
    c = (torch.arange(d, device=device, dtype=torch.float32) + 0.5) / d * 2 - 1
    gz, gy, gx = torch.meshgrid(c, c, c, indexing="ij")
    return torch.stack([gx, gy, gz], dim=-1).reshape(d ** 3, 3)


def volume_to_values(volumes: torch.Tensor) -> torch.Tensor:
    """(B, 3, D, D, D) -> (B, D³, 3), row-major like `voxel_coords`."""
    return volumes.flatten(2).transpose(1, 2)


def values_to_volume(values: torch.Tensor, d: int) -> torch.Tensor:
    """(B, D³, 3) -> (B, 3, D, D, D)."""
    return values.transpose(1, 2).reshape(values.shape[0], values.shape[2], d, d, d)


def _random_rotation(g: torch.Generator) -> torch.Tensor:
    # QR of a Gaussian matrix, signs fixed so the draw is uniform over rotations and deterministic
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def random_primitive(g: torch.Generator) -> Primitive:
    """One primitive of a random kind, centre, orientation, size, colour and edge."""
    kind = PRIMITIVES[int(torch.randint(len(PRIMITIVES), (1,), generator=g))]
    centre = (torch.rand(3, generator=g) * 2 - 1) * 0.6
    if kind == "torus":
        major = 0.25 + 0.25 * torch.rand(1, generator=g)
        minor = major * (0.25 + 0.25 * torch.rand(1, generator=g))
        size = torch.cat([major, minor, torch.zeros(1)])
    else:
        size = 0.12 + 0.33 * torch.rand(3, generator=g)
    colour = torch.rand(3, generator=g) * 2 - 1
    sharpness = float(4 + 16 * torch.rand(1, generator=g))
    return Primitive(kind, centre, _random_rotation(g), size, colour, sharpness)


def scaled_distance(p: Primitive, xyz: torch.Tensor) -> torch.Tensor:
    """A signed distance-like field of the primitive at (V, 3) points: < 0 inside, 0 on the surface.

    Divided by the shape's size, so one `sharpness` gives big and small shapes the same relative edge.
    """
    local = (xyz - p.centre) @ p.rotation  # (V, 3) in the shape's frame
    if p.kind == "ellipsoid":
        return (local / p.size).norm(dim=-1) - 1
    if p.kind == "box":  # Chebyshev norm of the scaled point: a box with flat faces
        return (local / p.size).abs().amax(-1) - 1
    major, minor = p.size[0], p.size[1]
    ring = torch.stack([local[:, :2].norm(dim=-1) - major, local[:, 2]], -1)  # (V, 2)
    return ring.norm(dim=-1) / minor - 1


def render(primitives: list[Primitive], background: torch.Tensor, d: int) -> torch.Tensor:
    """Composite primitives over a background, in list order: (3, D, D, D) in [-1, 1].

    `background` is (4, 3): a colour and its gradient along x, y, z. Each primitive blends in with
    alpha = sigmoid(-sharpness · distance), so the result is a convex mix of colours in [-1, 1].
    """
    xyz = voxel_coords(d)  # (V, 3)
    out = (background[0] + 0.5 * xyz @ background[1:]).clamp(-1, 1)  # (V, 3)
    for p in primitives:
        alpha = torch.sigmoid(-p.sharpness * scaled_distance(p, xyz))[:, None]  # (V, 1)
        out = out * (1 - alpha) + p.colour * alpha
    return values_to_volume(out[None], d)[0]


def random_volume(d: int, generator: torch.Generator, max_primitives: int = 8) -> torch.Tensor:
    """One random composition of 3 to max_primitives soft solids: (3, D, D, D) float32 in [-1, 1]."""
    n = int(torch.randint(3, max_primitives + 1, (1,), generator=generator))
    background = torch.cat([torch.rand(1, 3, generator=generator) * 1.6 - 0.8,
                            (torch.rand(3, 3, generator=generator) * 2 - 1) * 0.4])  # (4, 3)
    return render([random_primitive(generator) for _ in range(n)], background, d)


def procedural_volumes(n: int, d: int = VOLUME_SIZE, seed: int = TEST_SEED) -> torch.Tensor:
    """n procedural volumes of a split: (N, 3, D, D, D) float32 in [-1, 1].

    Volume i is drawn from its own generator seeded by (seed, i), so it does not depend on n.
    """
    if n < 0 or seed < 0:
        raise ValueError(f"n and seed must be non-negative, got n={n}, seed={seed}")
    # torch's CPU generator keeps only 32 bits of its seed, so (seed, i) is hashed into 32 bits
    # (numpy's SeedSequence) rather than packed as seed·2^32 + i, which would give every split one stream
    states = [int(np.random.SeedSequence([seed, i]).generate_state(1)[0]) for i in range(n)]
    out = [random_volume(d, torch.Generator().manual_seed(s)) for s in states]
    return torch.stack(out) if out else torch.zeros(0, 3, d, d, d)


def _check_npy(path: Path) -> np.ndarray:
    """One .npy file as float32 (3, D, D, D) in [-1, 1]; a bad file raises a one-line ValueError."""
    try:
        a = np.load(path, allow_pickle=False)  # never unpickle a file a user hands in
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"{path.name}: not a readable .npy array ({str(e).splitlines()[0]})") from None
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4 or not (a.shape[0] == a.shape[1] == a.shape[2]) or a.shape[3] not in (1, 3):
        raise ValueError(f"{path.name}: expected a (D, D, D) or (D, D, D, C) array with C = 1 or 3, "
                         f"got shape {tuple(a.shape)}")
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 127.5 - 1
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
        if not np.isfinite(a).all() or a.min() < -1 or a.max() > 1:
            raise ValueError(f"{path.name}: float values must be finite and in [-1, 1], got "
                             f"[{np.nanmin(a):.3g}, {np.nanmax(a):.3g}]")
    else:
        raise ValueError(f"{path.name}: dtype must be uint8 (0..255) or float (-1..1), got {a.dtype}")
    a = np.repeat(a, 3, axis=3) if a.shape[3] == 1 else a  # grey -> RGB
    return np.ascontiguousarray(a.transpose(3, 0, 1, 2))  # (D, D, D, 3) [z, y, x, c] -> (3, D, D, D)


def load_npy_folder(path: str | Path, limit: int | None = None) -> torch.Tensor:
    """Every `.npy` volume in a folder, in name order: float32 (N, 3, D, D, D) in [-1, 1].

    Each file holds a cube indexed [z, y, x] or [z, y, x, c] with 1 (grey) or 3 (RGB) channels,
    uint8 in 0..255 or float in [-1, 1]; all must share D. Raises ValueError naming the bad file.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder")
    files = sorted(folder.glob("*.npy"))[:limit]
    if not files:
        raise ValueError(f"{folder}: no .npy files")
    vols = [_check_npy(f) for f in files]
    sides = {v.shape[1] for v in vols}
    if len(sides) > 1:
        raise ValueError(f"{folder}: volumes must share one size, got sides {sorted(sides)}")
    return torch.from_numpy(np.stack(vols))


def make_mask_3d(
    batch: int, d: int, fraction: float = 0.2, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random observation masks with exactly round(fraction·D³) observed voxels (at least 1) per volume.

    Returns:
        (B, D, D, D) bool, True where observed; equal counts so observations stack into (B, N, ·).
    """
    fraction = check_fraction(fraction)
    v = d ** 3
    n = max(1, int(round(fraction * v)))
    picked = torch.rand(batch, v, generator=generator).argsort(dim=1)[:, :n]  # (B, N)
    mask = torch.zeros(batch, v, dtype=torch.bool)
    mask.scatter_(1, picked, True)
    return mask.view(batch, d, d, d)


def observations_3d(volumes: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Observed coordinates and values of volumes under a mask with equal counts per volume.

    Args:
        volumes: (B, 3, D, D, D) in [-1, 1].
        mask: (B, D, D, D) bool.
    Returns:
        obs_xyz (B, N, 3) and obs_rgb (B, N, 3), in row-major voxel order.
    """
    b, _, d = volumes.shape[:3]
    flat = mask.reshape(b, d ** 3)
    counts = flat.sum(1)
    if (counts != counts[0]).any():
        raise ValueError("every mask in a batch must observe the same number of voxels")
    if counts[0] == 0:
        raise ValueError("the mask observes no voxel: at least one is needed")
    idx = flat.nonzero()[:, 1].view(b, -1).to(volumes.device)  # (B, N)
    xyz = voxel_coords(d, volumes.device)[idx]  # (B, N, 3)
    rgb = volume_to_values(volumes).gather(1, idx[..., None].expand(-1, -1, 3))  # (B, N, 3)
    return xyz, rgb


def to_unit_3d(volumes: torch.Tensor) -> np.ndarray:
    """(B, 3, D, D, D) in [-1, 1] -> (B, D, D, D, 3) float64 in [0, 1], clipped: the layout of
    `asf_core.metrics.psnr`, whose per-item mean works for any number of spatial axes."""
    return ((volumes.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 4, 1).double().numpy()


def volume_psnr(pred: torch.Tensor, target: torch.Tensor, where: torch.Tensor | None = None) -> np.ndarray:
    """Per-volume PSNR in dB on [0, 1] of (B, 3, D, D, D) in [-1, 1]; `where` (B, D, D, D) selects voxels."""
    return psnr(to_unit_3d(pred), to_unit_3d(target), None if where is None else where.cpu().numpy())
