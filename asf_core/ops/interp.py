"""Gaussian-weighted k-nearest interpolation of observed points, batched in torch.

Used twice: as the mean of the informed flow source (asf_core.flow, `--source interp`) and as a
query feature in every model (`interp_feature`), which tells each query what plain interpolation
predicts at its coordinate, so the network learns a correction rather than interpolation itself.

Symbols: B batch · N observed points · Q queries · k neighbours.
"""

from __future__ import annotations

import torch


def knn_interpolate(
    obs_xy: torch.Tensor, obs_rgb: torch.Tensor, query_xy: torch.Tensor, k: int = 8, chunk: int = 4096,
) -> torch.Tensor:
    """Gaussian-weighted k-nearest interpolation, batched in torch (cheap stand-in for a spline).

    The bandwidth adapts per query to the distance of its k-th neighbour, so it works at any
    density and resolution. With k=8 and h² = d_k²/6 it gets 21.9 dB on CIFAR-10 at 20% density
    (thin-plate spline: 22.9 dB), at a fraction of the cost; it smooths, so it does not pass
    exactly through the observations.

    Args:
        obs_xy (B, N, 2), obs_rgb (B, N, 3), query_xy (B, Q, 2) or (Q, 2).
    Returns:
        (B, Q, 3).
    """
    b = obs_xy.shape[0]
    if query_xy.dim() == 2:
        query_xy = query_xy.expand(b, -1, -1)
    k = min(k, obs_xy.shape[1])
    # Ties (equidistant neighbours, common on pixel grids) are broken by a tiny key of the
    # observation's own coordinates, so the chosen neighbours depend on the point set, not on the
    # order the points come in; the exact (non-matmul) distance keeps equal distances equal.
    tie = 1 + 1e-5 * ((obs_xy[..., 0] + 1) * 0.5 + (obs_xy[..., 1] + 1) * 0.25)[:, None]  # (B, 1, N)
    out = []
    for qs in query_xy.split(chunk, dim=1):  # chunks keep memory at O(chunk·N)
        d2 = torch.cdist(qs, obs_xy, compute_mode="donot_use_mm_for_euclid_dist").square()  # (B, q, N)
        idx = (d2 * tie).topk(k, dim=-1, largest=False).indices  # (B, q, k)
        d2k = d2.gather(-1, idx)
        h2 = d2k.amax(-1, keepdim=True).clamp_min(1e-6) / 6
        w = torch.softmax(-d2k / h2, dim=-1)  # (B, q, k)
        nb = obs_rgb.gather(1, idx.flatten(1)[..., None].expand(-1, -1, 3)).view(*idx.shape, 3)
        out.append((w[..., None] * nb).sum(-2))
    return torch.cat(out, dim=1)
