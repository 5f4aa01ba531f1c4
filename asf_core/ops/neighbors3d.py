"""Neighbour search over 3-D point sets: `radius_neighbors_3d`, the volume counterpart of `radius_neighbors`.

asf_core.ops.neighbors' brute force is dimension-free, but its uniform grid (used above
_BRUTE_MAX_KEYS keys, so for any 32³ volume at 5% or more observed) is written for (x, y): it bins
into a 2-D grid and searches a 3×3 window. This module is the same search with a 3-D grid and a
3×3×3 window, and the same contract: for each query the k nearest keys in ascending distance,
slot j valid when within the radius or j < `min_valid`, exact on every valid slot. Queries the
window cannot certify fall back to the shared brute force. `radius_mask_dense` in neighbors.py is
already dimension-free and serves as the reference.

Symbols: B batch · Q queries · S keys · K neighbour slots · C candidates per query (27 cells).
Coordinates are (x, y, z) (asf_core.volumes); distances are Euclidean in those units.
"""

from __future__ import annotations

import math

import torch

# the brute-force helpers only ever index the last axis as "coordinates", so they serve 3-D as is
from asf_core.ops.neighbors import _BRUTE_MAX_KEYS, _SEARCH_ELEMS, _brute_knn, _pad, _rows_brute_knn, _sqdist

# cell side over the expected k-th neighbour distance: a ball of 1.3× that radius holds 2.2·k keys
# on average, so fewer than k (a query the window cannot certify) is rare, while the 27-cell window
# holds about 14·k candidates (a 1.5× cell, as in 2-D, would hold 22·k)
_CELL_OVER_KTH = 1.3


def _grid_knn_3d(q, keys, k, r2_need, min_valid):
    """Uniform-grid k-NN in 3-D, exact on the slots `radius_neighbors_3d` will mark valid.

    q (B, Q, 3), keys (B, S, 3), r2_need (B, Q) squared radius each query's valid slots must be
    exact within. Returns idx, d2 (B, Q, k), or None when the grid would not beat brute force.
    """
    b, nq, _ = q.shape
    s_keys = keys.shape[1]
    lo = torch.minimum(q.amin((0, 1)), keys.amin((0, 1)))
    hi = torch.maximum(q.amax((0, 1)), keys.amax((0, 1)))
    vol = float((hi - lo).clamp(min=1e-6).prod())

    def expected_dist(n):  # radius of the ball expected to hold n keys
        return _CELL_OVER_KTH * (3 * n * vol / (4 * math.pi * s_keys)) ** (1 / 3)

    r_need = math.sqrt(r2_need.max().item()) * 1.0001 if r2_need.numel() else math.inf
    cell = max(min(expected_dist(k), max(r_need, expected_dist(max(min_valid, 1)))), 1e-6)
    dims = [max(1, int(math.ceil(float(e) / cell))) for e in (hi - lo)]
    if dims[0] * dims[1] * dims[2] > 4 * s_keys + 64:  # radius tiny against the spacing: empty cells
        cell = (vol / s_keys) ** (1 / 3)
        dims = [max(1, int(math.ceil(float(e) / cell))) for e in (hi - lo)]
    gx, gy, gz = dims
    n_cells = gx * gy * gz
    size = torch.tensor(dims, device=q.device)

    def cell_of(p):  # (..., 3) -> (..., 3) integer cell, clamped into the grid
        return torch.minimum(((p - lo) / cell).floor().long().clamp(min=0), size - 1)

    def flat(c):  # (..., 3) -> (...) cell index within one batch element, x fastest
        return (c[..., 2] * gy + c[..., 1]) * gx + c[..., 0]

    batch_off = torch.arange(b, device=q.device)[:, None] * n_cells
    key_cell = (batch_off + flat(cell_of(keys))).flatten()  # (B·S,)
    order = key_cell.argsort()
    counts = torch.bincount(key_cell, minlength=b * n_cells)
    starts = counts.cumsum(0) - counts
    maxc = int(counts.max())
    if 27 * maxc * 2 > s_keys:  # clustered keys: the window would hold most of them anyway
        return None

    r = torch.arange(-1, 2, device=q.device)
    offs = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(27, 3)  # (27, 3): every offset
    slot = torch.arange(maxc, device=q.device)
    flat_keys = keys.reshape(-1, 3)
    step = max(1, _SEARCH_ELEMS // max(1, b * 27 * maxc))
    out_i, out_d = [], []
    for s in range(0, nq, step):
        qc = q[:, s:s + step]  # (B, c, 3)
        nb = cell_of(qc)[:, :, None] + offs  # (B, c, 27, 3)
        inside = ((nb >= 0) & (nb < size)).all(-1)
        cid = batch_off[..., None] + flat(torch.minimum(nb.clamp(min=0), size - 1))  # (B, c, 27)
        cnt = torch.where(inside, counts[cid], 0)
        pos = starts[cid][..., None] + slot  # (B, c, 27, maxc)
        ok = slot < cnt[..., None]
        gidx = order[pos.clamp(max=len(order) - 1)]  # global key index in B·S
        d2 = _sqdist(flat_keys[gidx], qc[:, :, None, None]).masked_fill(~ok, math.inf)
        d2, gidx = d2.flatten(2), gidx.flatten(2)  # (B, c, C)
        d, j = d2.topk(min(k, d2.shape[-1]), dim=-1, largest=False)
        local = gidx.gather(-1, j) - torch.arange(b, device=q.device)[:, None, None] * s_keys
        out_i.append(torch.where(torch.isfinite(d), local, 0))  # empty candidates: any in-range index
        out_d.append(d)
    idx, d2 = _pad(torch.cat(out_i, 1), torch.cat(out_d, 1), k)

    # certify: every key nearer than `cell` lies in the 27-cell window, so a valid slot is exact when
    # its distance is below cell; the other rows are recomputed by brute force
    g2 = (cell * (1 - 1e-5)) ** 2
    exact = d2[..., k - 1] < g2
    if min_valid > 0:
        exact |= (r2_need < g2) & (d2[..., min(min_valid, k) - 1] < g2)
    else:
        exact |= r2_need < g2
    bad = (~exact).nonzero(as_tuple=True)
    if len(bad[0]):
        bi, di = _rows_brute_knn(q[bad], keys, bad[0], k)
        idx[bad], d2[bad] = bi, di
    return idx, d2


@torch.no_grad()
def radius_neighbors_3d(
    query_xyz: torch.Tensor, key_xyz: torch.Tensor, k: int, radius: float | torch.Tensor,
    min_valid: int = 0, method: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k nearest keys of every query in 3-D, valid within the radius or among the `min_valid` nearest.

    Args:
        query_xyz: (B, Q, 3) or (1, Q, 3). key_xyz: (B, S, 3) or (1, S, 3).
        k: neighbour slots per query; slots past S are padded (index 0, invalid).
        radius: float or (B,) tensor; a key at distance d is valid when d <= radius.
        min_valid: the first `min_valid` slots are valid whatever their distance.
        method: "auto" (brute force for small key sets, grid otherwise), "brute" or "grid".
    Returns:
        idx (B, Q, k) long into the key axis, ascending distance; valid (B, Q, k) bool;
        d2 (B, Q, k) squared distances (inf on padding). Exact on every valid slot.
    """
    if query_xyz.shape[-1] != 3 or key_xyz.shape[-1] != 3:
        raise ValueError(f"expected (B, ·, 3) coordinates, got {tuple(query_xyz.shape)} and "
                         f"{tuple(key_xyz.shape)}")
    if method not in ("auto", "brute", "grid"):
        raise ValueError(f"unknown search method {method!r}; choose from auto, brute, grid")
    r = torch.as_tensor(radius, dtype=query_xyz.dtype, device=query_xyz.device).reshape(-1)
    bs = max(query_xyz.shape[0], key_xyz.shape[0])  # the search runs once for shared coordinates
    b = max(bs, r.numel())  # and its lists are shared by every radius
    q, keys = query_xyz.expand(bs, -1, -1), key_xyz.expand(bs, -1, -1)
    r2 = r.square().expand(b)[:, None, None]  # (B, 1, 1)
    r2_need = r2.amax(0)[..., 0].expand(bs, q.shape[1]) if bs < b else r2[..., 0].expand(bs, q.shape[1])
    out = None
    if method == "grid" or (method == "auto" and keys.shape[1] > _BRUTE_MAX_KEYS):
        out = _grid_knn_3d(q, keys, k, r2_need, min_valid)
    if out is None:
        out = _brute_knn(q, keys, k)
    idx, d2 = (x.expand(b, -1, -1) for x in out)
    rank = torch.arange(k, device=q.device)
    valid = ((d2 <= r2) | (rank < min_valid)) & (rank < keys.shape[1])
    return idx, valid, d2
