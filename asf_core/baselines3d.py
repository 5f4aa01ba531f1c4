"""Classical interpolation baselines for volumes, the 3-D counterpart of asf_core.baselines.

nearest: `scipy.spatial.cKDTree`; linear: `scipy.interpolate.LinearNDInterpolator` (a Delaunay
tetrahedralisation), with the nearest observation outside the convex hull; rbf: a thin-plate
spline, `scipy.interpolate.RBFInterpolator` with `neighbors=RBF_NEIGHBORS`, each query fitted on
its nearest observations only, because a global fit on 6,554 observations (20% of 32³) is a dense
6,558² solve and O(N·Q) to evaluate. Every method sees only the observed voxels.

Symbols: B batch · N observed points · Q queries · D grid side.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.interpolate import LinearNDInterpolator, RBFInterpolator
from scipy.spatial import cKDTree

from asf_core.volumes import observations_3d, values_to_volume, volume_to_values, voxel_coords

RBF_NEIGHBORS = 32  # observations per local thin-plate fit (the affine part needs 4)


def _canonical(xyz: np.ndarray, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # sort the observations by coordinates (z, then y, then x) first: on a voxel grid many queries
    # are equidistant from several observations and the tetrahedralisation is degenerate, so the
    # k-d tree's tie-breaking and qhull's insertion order would otherwise make the answer depend on
    # the order the observations came in
    order = np.lexsort((xyz[:, 0], xyz[:, 1], xyz[:, 2]))
    return xyz[order], rgb[order]


def nearest_3d(xyz: np.ndarray, rgb: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(N, 3), (N, C), (Q, 3) -> (Q, C): the value of the nearest observation."""
    xyz, rgb = _canonical(xyz, rgb)
    return rgb[cKDTree(xyz).query(q)[1]]


def linear_3d(xyz: np.ndarray, rgb: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(N, 3), (N, C), (Q, 3) -> (Q, C): piecewise-linear on tetrahedra, nearest outside the hull."""
    xyz, rgb = _canonical(xyz, rgb)
    if len(xyz) < 5:  # qhull needs 5 points in general position for a 3-D triangulation
        return nearest_3d(xyz, rgb, q)
    out = LinearNDInterpolator(xyz, rgb)(q)
    hole = np.isnan(out).any(-1)  # outside the convex hull
    if hole.any():
        out[hole] = nearest_3d(xyz, rgb, q[hole])
    return out


def rbf_3d(xyz: np.ndarray, rgb: np.ndarray, q: np.ndarray, neighbors: int = RBF_NEIGHBORS) -> np.ndarray:
    """(N, 3), (N, C), (Q, 3) -> (Q, C): a local thin-plate spline on each query's nearest observations."""
    xyz, rgb = _canonical(xyz, rgb)
    if len(xyz) < 4:  # the spline's affine part needs 4 points
        return nearest_3d(xyz, rgb, q)
    return RBFInterpolator(xyz, rgb, kernel="thin_plate_spline", neighbors=min(neighbors, len(xyz)))(q)


METHODS_3D: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "nearest": nearest_3d, "linear": linear_3d, "rbf": rbf_3d,
}


def reconstruct_points_3d(
    name: str, obs_xyz: torch.Tensor, obs_rgb: torch.Tensor, query_xyz: torch.Tensor
) -> torch.Tensor:
    """Interpolate observations at arbitrary 3-D query coordinates.

    Args:
        name: one of METHODS_3D.
        obs_xyz (B, N, 3), obs_rgb (B, N, 3), query_xyz (Q, 3) or (B, Q, 3).
    Returns:
        (B, Q, 3) float32 in [-1, 1].
    """
    if name not in METHODS_3D:
        raise ValueError(f"unknown 3-D baseline {name!r}; choose from {', '.join(METHODS_3D)}")
    fn = METHODS_3D[name]
    b = obs_xyz.shape[0]
    if query_xyz.dim() == 2:
        query_xyz = query_xyz.expand(b, -1, -1)
    out = [
        fn(obs_xyz[i].double().cpu().numpy(), obs_rgb[i].double().cpu().numpy(),
           query_xyz[i].double().cpu().numpy())
        for i in range(b)
    ]
    return torch.from_numpy(np.stack(out)).float().clamp(-1, 1)


def reconstruct_volume(name: str, volumes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fill volumes from their observed voxels.

    Only the missing voxels are queried (80-95% of the grid, but the interpolators' cost is per
    query), and the observed ones are copied through exactly.

    Args:
        name: one of METHODS_3D.
        volumes: (B, 3, D, D, D) in [-1, 1]; only voxels where mask is True are read.
        mask: (B, D, D, D) bool, True where observed, the same count in every volume.
    Returns:
        (B, 3, D, D, D) in [-1, 1].
    """
    volumes, mask = volumes.cpu(), mask.cpu()
    b, _, d = volumes.shape[:3]
    obs_xyz, obs_rgb = observations_3d(volumes, mask)
    missing = ~mask.reshape(b, -1)  # (B, V)
    idx = missing.nonzero()[:, 1].view(b, -1)  # (B, Q): equal counts, since the masks' are equal
    values = reconstruct_points_3d(name, obs_xyz, obs_rgb, voxel_coords(d)[idx])  # (B, Q, 3)
    out = volume_to_values(volumes).float().clone()  # (B, V, 3); the missing entries are overwritten
    out.scatter_(1, idx[..., None].expand(-1, -1, 3), values)
    return values_to_volume(out, d)
