"""Space-filling orders of 2-D points, for models that read a point set as one sequence.

A sequence model sees neighbours in the sequence, not in the plane; a Hilbert curve keeps points
that are close on the curve close in the image (consecutive cells are 4-neighbours), so a causal
scan mixes local information first. Coordinates are quantised to a 2^bits × 2^bits grid over
[-1, 1]²; all keys are int64 and computed in torch on the points' device, vectorised over the batch.

Orders: hilbert · raster (row-major) · zigzag (boustrophedon rows) · random (a fixed hash of the
cell, so the order is still a function of the point set). Each has a transposed variant (x ↔ y)
that models alternate between layers, so what is far along one curve is near along the other.

Symbols: B batch · L points · K sort keys.
"""

from __future__ import annotations

import torch

ORDERS = ("hilbert", "raster", "zigzag", "random")
ZIGZAG_BAND_BITS = 5  # 32 rows per side: a CIFAR row per band, so a band is one pixel row there


def quantize(xy: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 2) coordinates in [-1, 1] -> integer cells (ix, iy), each (...) in [0, 2^bits)."""
    n = 1 << bits
    cells = ((xy + 1) * (n / 2)).floor().long().clamp_(0, n - 1)
    return cells[..., 0], cells[..., 1]


def hilbert_index(ix: torch.Tensor, iy: torch.Tensor, bits: int) -> torch.Tensor:
    """Distance along the Hilbert curve of order `bits` of integer cells (ix, iy) (the classic
    xy2d: read one bit of each coordinate per level, rotating the lower bits into the quadrant's
    frame). Consecutive indices are 4-neighbours on the grid."""
    n = 1 << bits
    x, y = ix.long().clone(), iy.long().clone()
    d = torch.zeros_like(x)
    s = n >> 1
    while s > 0:
        rx, ry = (x & s) > 0, (y & s) > 0
        d += s * s * ((3 * rx.long()) ^ ry.long())
        flip = rx & ~ry  # the lower-left/right quadrants are reflected, then all of ry=0 transposed
        x, y = torch.where(flip, n - 1 - x, x), torch.where(flip, n - 1 - y, y)
        x, y = torch.where(ry, x, y), torch.where(ry, y, x)
        s >>= 1
    return d


def _mix32(h: torch.Tensor) -> torch.Tensor:
    # murmur-style finaliser kept below 2^32 · 2^31 so int64 products never overflow
    m = 1 << 32
    h = (h ^ (h >> 16)) * 0x45D9F3B % m
    h = (h ^ (h >> 16)) * 0x45D9F3B % m
    return h ^ (h >> 16)


def curve_key(xy: torch.Tensor, order: str = "hilbert", bits: int = 10, transpose: bool = False,
              seed: int = 0) -> torch.Tensor:
    """Position of each point along the chosen order: (..., 2) in [-1, 1]² -> (...) int64.

    Points in the same cell share a key; break ties with `lexsort`.
    """
    if order not in ORDERS:
        raise ValueError(f"unknown scan order {order!r}; choose from {', '.join(ORDERS)}")
    ix, iy = quantize(xy, bits)
    if transpose:
        ix, iy = iy, ix
    if order == "hilbert":
        return hilbert_index(ix, iy, bits)
    if order == "raster":
        return (iy << bits) + ix
    if order == "zigzag":
        band = iy >> max(bits - ZIGZAG_BAND_BITS, 0)  # rows of the coarse grid
        along = torch.where(band % 2 == 0, ix, (1 << bits) - 1 - ix)  # odd bands run backwards
        return (band << (2 * bits)) + (along << bits) + iy
    cell = (iy << bits) + ix  # random: a fixed bijective-enough hash of the cell
    return _mix32((cell + 0x9E3779B9 * (2 * seed + int(transpose))) % (1 << 32))


def lexsort(keys: list[torch.Tensor]) -> torch.Tensor:
    """Indices that sort along the last dim by keys[0], ties by keys[1], and so on (each (B, L)).

    Stable sorts from the least significant key up, as numpy.lexsort but most significant first.
    """
    perm = torch.arange(keys[0].shape[-1], device=keys[0].device).expand_as(keys[0])
    for k in reversed(keys):
        perm = perm.gather(-1, torch.argsort(k.gather(-1, perm), dim=-1, stable=True))
    return perm


# ---------------------------------------------------------------- 3-D
# Volumes (asf_core.volumes) are read as sequences too. Skilling's Hilbert curve (J. Skilling,
# "Programming the Hilbert curve", AIP Conf. Proc. 707, 2004) works in any dimension with plain bit
# operations, so it vectorises over points like the 2-D xy2d above; consecutive cells are
# face-neighbours (a unit step along one axis).


def quantize_3d(xyz: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(..., 3) coordinates in [-1, 1] -> integer cells (ix, iy, iz), each (...) in [0, 2^bits)."""
    n = 1 << bits
    cells = ((xyz + 1) * (n / 2)).floor().long().clamp_(0, n - 1)
    return cells[..., 0], cells[..., 1], cells[..., 2]


def hilbert_index_3d(ix: torch.Tensor, iy: torch.Tensor, iz: torch.Tensor, bits: int) -> torch.Tensor:
    """Distance along the 3-D Hilbert curve of order `bits` of integer cells, each (...) in [0, 2^bits).

    Skilling's AxesToTranspose (undo the excess work of the Gray code level by level, Gray-encode),
    then the transposed bits are interleaved, most significant level first, x before y before z.
    Returns (...) int64 in [0, 8^bits); needs bits <= 21 so the index fits in int64.
    """
    if not 1 <= bits <= 21:
        raise ValueError(f"3-D Hilbert index needs 1 <= bits <= 21, got {bits}")
    x = [ix.long().clone(), iy.long().clone(), iz.long().clone()]
    q = 1 << (bits - 1)
    while q > 1:
        p = q - 1
        for i in range(3):
            hit = (x[i] & q) > 0
            t = (x[0] ^ x[i]) & p  # where bit q is clear: swap the low bits of x[0] and x[i]
            x0 = torch.where(hit, x[0] ^ p, x[0] ^ t)  # where it is set: invert x[0]'s low bits
            if i > 0:
                x[i] = torch.where(hit, x[i], x[i] ^ t)
            x[0] = x0
        q >>= 1
    x[1] ^= x[0]
    x[2] ^= x[1]
    t = torch.zeros_like(x[0])
    q = 1 << (bits - 1)
    while q > 1:
        t = torch.where((x[2] & q) > 0, t ^ (q - 1), t)
        q >>= 1
    x = [xi ^ t for xi in x]
    d = torch.zeros_like(x[0])
    for level in range(bits - 1, -1, -1):
        for i in range(3):
            d = (d << 1) | ((x[i] >> level) & 1)
    return d


def curve_key_3d(xyz: torch.Tensor, order: str = "hilbert", bits: int = 10, roll: int = 0) -> torch.Tensor:
    """Position of each point along a 3-D order: (..., 3) in [-1, 1]³ -> (...) int64.

    Orders: hilbert or raster (x fastest, then y, then z, like `asf_core.volumes.voxel_coords`).
    `roll` cycles the axes (1: y, z, x), the 3-D counterpart of `curve_key`'s transpose, so layers
    can alternate between curves whose far-apart stretches differ. Points in one cell share a key.
    """
    if order not in ("hilbert", "raster"):
        raise ValueError(f"unknown 3-D scan order {order!r}; choose from hilbert, raster")
    cells = quantize_3d(xyz, bits)
    r = roll % 3
    ix, iy, iz = cells[r:] + cells[:r]
    if order == "hilbert":
        return hilbert_index_3d(ix, iy, iz, bits)
    return (iz << (2 * bits)) + (iy << bits) + ix
