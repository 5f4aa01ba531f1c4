"""Neighbour search and local attention over point sets: a neighbour-list op and its dense reference.

Search: for each query, the k nearest keys in ascending distance; slot j is *valid* when the key
lies within the query's radius or j < `min_valid` (the nearest keys always count, so a query far
from every key still gets an answer). Only valid slots are guaranteed exact; invalid ones may hold
any key. Small sets use a chunked brute force (O(Q·S) time, O(chunk·S) memory); large ones a
uniform grid with cells sized to the key density, so time and memory are O(Q·k) for spread-out
points, and only queries whose valid slots the 3×3-cell window cannot certify fall back to brute
force (e.g. queries in a large hole of a structured mask: O(Q_far·S) for those).

Attention: `local_attention` attends from each query over its k listed keys only. For large key
sets it gathers those keys (O(Q·k·D) time); for small ones (S <= SCORES_MAX_RATIO·k, e.g. training
crops of a few hundred points) it scores all S keys with one matmul and keeps the k listed, which is
exact too and faster on CPU. Both run in chunks of images and queries so that intermediates stay
small. `local_attention_dense_ref` takes the same arguments, scatters them into a full (Q×S) mask
and bias and runs plain masked softmax attention (quadratic, for tests and benchmarks);
`radius_mask_dense` builds the neighbourhoods from scratch with no cap on k, for references that
must not trust the search.

Symbols: B batch · Q queries · S keys · K neighbour slots · H heads · Dh head width.
Coordinates are (x, y) (asf_core.fields); distances are Euclidean in those units.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange, repeat

_BRUTE_MAX_KEYS = 1024  # below this many keys a brute force beats building a grid
_SEARCH_ELEMS = 1 << 22  # candidate distances per search chunk (×2 floats of offsets in flight)
CHUNK_ELEMS = 1 << 20  # largest attention intermediate per chunk (4 MiB fp32: cache- and allocator-friendly)
SCORES_MAX_RATIO = 20  # measured CPU break-even of dense scoring vs gathering, in S / K
# with autograd the break-even moves: the gather's backward (index_add into every key) costs more
# than the dense path's matmul backward (a 32² gradient-influence map: 0.50 s dense vs 0.55-0.80 s
# gathering, S/K = 26), so up to this ratio, and while the saved scores stay small, score densely
SCORES_MAX_RATIO_GRAD = 64
SCORES_MAX_ELEMS_GRAD = 1 << 25  # B·H·Q·S scores kept for backward (128 MiB fp32)


def _sqdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # explicit differences, not cdist's matmul expansion, so every path computes bit-equal distances
    return (a - b).square().sum(-1)


def _pad(idx: torch.Tensor, d2: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    if idx.shape[-1] == k:
        return idx, d2
    n = k - idx.shape[-1]
    return (torch.cat([idx, idx.new_zeros(*idx.shape[:-1], n)], -1),
            torch.cat([d2, d2.new_full((*d2.shape[:-1], n), math.inf)], -1))


def _brute_knn(q: torch.Tensor, keys: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, Q, 2), (B, S, 2) -> idx, d2 (B, Q, k) ascending; chunked over Q, O(Q·S) time."""
    b, nq, _ = q.shape
    kk = min(k, keys.shape[1])
    step = max(1, _SEARCH_ELEMS // max(1, b * keys.shape[1]))
    out_i, out_d = [], []
    for s in range(0, nq, step):
        d2 = _sqdist(q[:, s:s + step, None], keys[:, None])  # (B, c, S)
        d, i = d2.topk(kk, dim=-1, largest=False)
        out_i.append(i)
        out_d.append(d)
    return _pad(torch.cat(out_i, 1), torch.cat(out_d, 1), k)


def _rows_brute_knn(q: torch.Tensor, keys: torch.Tensor, rows: torch.Tensor, k: int):
    """Brute force for selected (batch, query) rows: q (M, 2), rows (M,) batch index -> (M, k)."""
    kk, s_keys = min(k, keys.shape[1]), keys.shape[1]
    step = max(1, _SEARCH_ELEMS // s_keys)
    out_i, out_d = [], []
    for s in range(0, len(q), step):
        d2 = _sqdist(q[s:s + step, None], keys[rows[s:s + step]])  # (m, S)
        d, i = d2.topk(kk, dim=-1, largest=False)
        out_i.append(i)
        out_d.append(d)
    return _pad(torch.cat(out_i), torch.cat(out_d), k)


def _grid_knn(q, keys, k, r2_need, min_valid):
    """Uniform-grid k-NN, exact on the slots `radius_neighbors` will mark valid.

    q (B, Q, 2), keys (B, S, 2), r2_need (B, Q) squared radius each query's valid slots must be
    exact within. Returns idx, d2 (B, Q, k), or None when the grid would not beat brute force.
    """
    b, nq, _ = q.shape
    s_keys = keys.shape[1]
    lo = torch.minimum(q.amin((0, 1)), keys.amin((0, 1)))
    hi = torch.maximum(q.amax((0, 1)), keys.amax((0, 1)))
    area = float((hi - lo).clamp(min=1e-6).prod())
    # cell side: 1.5× the expected k-th neighbour distance (the window then holds ~2k keys, and
    # Poisson fluctuations almost never leave fewer than k), but no larger than the radius needs,
    # and large enough that the `min_valid` nearest are certified too
    def expected_dist(n):
        return 1.5 * math.sqrt(n * area / (math.pi * s_keys))

    r_need = math.sqrt(r2_need.max().item()) * 1.0001 if r2_need.numel() else math.inf
    cell = max(min(expected_dist(k), max(r_need, expected_dist(max(min_valid, 1)))), 1e-6)
    gx, gy = [max(1, int(math.ceil(float(e) / cell))) for e in (hi - lo)]
    if gx * gy > 4 * s_keys + 64:  # radius tiny relative to spacing: cells would be mostly empty
        cell = math.sqrt(area / s_keys)
        gx, gy = [max(1, int(math.ceil(float(e) / cell))) for e in (hi - lo)]

    def cell_of(p):  # (..., 2) -> (...,) flat cell index within one batch element
        c = ((p - lo) / cell).floor().long()
        return c[..., 0].clamp(0, gx - 1), c[..., 1].clamp(0, gy - 1)

    kx, ky = cell_of(keys)
    batch_off = torch.arange(b, device=q.device)[:, None] * (gx * gy)
    key_cell = (batch_off + ky * gx + kx).flatten()  # (B·S,)
    order = key_cell.argsort()
    counts = torch.bincount(key_cell, minlength=b * gx * gy)
    starts = counts.cumsum(0) - counts
    maxc = int(counts.max())
    if 9 * maxc * 2 > s_keys:  # clustered keys: the window would hold most of them anyway
        return None

    offs = torch.tensor([-1, 0, 1], device=q.device)
    dy, dx = torch.meshgrid(offs, offs, indexing="ij")
    dx, dy = dx.flatten(), dy.flatten()  # (9,)
    slot = torch.arange(maxc, device=q.device)
    flat_keys = keys.reshape(-1, 2)
    step = max(1, _SEARCH_ELEMS // max(1, b * 9 * maxc))
    out_i, out_d = [], []
    for s in range(0, nq, step):
        qc = q[:, s:s + step]  # (B, c, 2)
        cx, cy = cell_of(qc)
        nx, ny = cx[..., None] + dx, cy[..., None] + dy  # (B, c, 9)
        inside = (nx >= 0) & (nx < gx) & (ny >= 0) & (ny < gy)
        cid = batch_off[..., None] + ny.clamp(0, gy - 1) * gx + nx.clamp(0, gx - 1)
        cnt = torch.where(inside, counts[cid], 0)
        pos = starts[cid][..., None] + slot  # (B, c, 9, maxc)
        ok = slot < cnt[..., None]
        gidx = order[pos.clamp(max=len(order) - 1)]  # global key index in B·S
        d2 = _sqdist(flat_keys[gidx], qc[:, :, None, None]).masked_fill(~ok, math.inf)
        d2, gidx = d2.flatten(2), gidx.flatten(2)  # (B, c, 9·maxc)
        kk = min(k, d2.shape[-1])
        d, j = d2.topk(kk, dim=-1, largest=False)
        local = gidx.gather(-1, j) - torch.arange(b, device=q.device)[:, None, None] * s_keys
        out_i.append(torch.where(torch.isfinite(d), local, 0))  # empty candidates: any in-range index
        out_d.append(d)
    idx, d2 = _pad(torch.cat(out_i, 1), torch.cat(out_d, 1), k)

    # certify: keys nearer than `cell` are all inside the 3×3 window, so a valid slot is exact when
    # its distance is below cell; the rest are recomputed by brute force
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
def radius_neighbors(
    query_xy: torch.Tensor, key_xy: torch.Tensor, k: int, radius: float | torch.Tensor,
    min_valid: int = 0, method: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k nearest keys of every query, valid within the radius or among the `min_valid` nearest.

    Args:
        query_xy: (B, Q, 2) or (1, Q, 2). key_xy: (B, S, 2) or (1, S, 2).
        k: neighbour slots per query; slots past S are padded (index 0, invalid).
        radius: float or (B,) tensor; a key at distance d is valid when d <= radius.
        min_valid: the first `min_valid` slots are valid whatever their distance.
        method: "auto" (brute force for small key sets, grid otherwise), "brute" or "grid".
    Returns:
        idx (B, Q, k) long into the key axis, ascending distance; valid (B, Q, k) bool;
        d2 (B, Q, k) squared distances (inf on padding). Exact on every valid slot.
    """
    r = torch.as_tensor(radius, dtype=query_xy.dtype, device=query_xy.device).reshape(-1)
    bs = max(query_xy.shape[0], key_xy.shape[0])  # the search runs once for shared coordinates
    b = max(bs, r.numel())  # and its lists are shared by every radius
    q, keys = query_xy.expand(bs, -1, -1), key_xy.expand(bs, -1, -1)
    r2 = r.square().expand(b)[:, None, None]  # (B, 1, 1)
    r2_need = r2.amax(0)[..., 0].expand(bs, q.shape[1]) if bs < b else r2[..., 0].expand(bs, q.shape[1])
    out = None
    if method == "grid" or (method == "auto" and keys.shape[1] > _BRUTE_MAX_KEYS):
        out = _grid_knn(q, keys, k, r2_need, min_valid)
    if out is None:
        out = _brute_knn(q, keys, k)
    idx, d2 = (x.expand(b, -1, -1) for x in out)
    rank = torch.arange(k, device=q.device)
    valid = ((d2 <= r2) | (rank < min_valid)) & (rank < keys.shape[1])
    return idx, valid, d2


@torch.no_grad()
def radius_mask_dense(
    query_xy: torch.Tensor, key_xy: torch.Tensor, radius: float | torch.Tensor, min_valid: int = 0,
) -> torch.Tensor:
    """Full (B, Q, S) neighbourhood mask with no cap on k: within radius or among the `min_valid` nearest."""
    r = torch.as_tensor(radius, dtype=query_xy.dtype, device=query_xy.device).reshape(-1)
    b = max(query_xy.shape[0], key_xy.shape[0], r.numel())
    r = r.expand(b)
    d2 = _sqdist(query_xy[:, :, None], key_xy[:, None]).expand(b, -1, -1)  # (B, Q, S)
    mask = d2 <= r.square()[:, None, None]
    if min_valid > 0:
        near = d2.topk(min(min_valid, d2.shape[-1]), dim=-1, largest=False).indices
        mask = mask.scatter(-1, near, True)
    return mask


def masked_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
    bias: torch.Tensor | None = None, dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain softmax attention over all S keys under a (B, Q, S) mask: the quadratic reference core.

    q (B, Q, H, Dh), k/v (B, S, H, Dh), bias (B, H, Q, S) -> out (B, Q, H, Dh), weights (B, H, Q, S).
    """
    scores = torch.einsum("bqhd,bshd->bhqs", q, k) / math.sqrt(q.shape[-1])  # (B, H, Q, S)
    if bias is not None:
        scores = scores + bias
    m = mask[:, None]
    # a finite fill, then zeroing, so a row with no valid key gives zeros rather than NaN
    w = scores.masked_fill(~m, torch.finfo(scores.dtype).min).softmax(-1) * m
    w = _dropout(w, dropout_p)
    return torch.einsum("bhqs,bshd->bqhd", w, v), w


def local_attention_dense_ref(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, idx: torch.Tensor, valid: torch.Tensor,
    bias: torch.Tensor | None = None, dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`local_attention` written as full masked attention: scatter the lists into (Q×S), attend.

    Same arguments and results as `local_attention`; O(Q·S) time and memory.
    """
    b, nq, nk = idx.shape
    s = k.shape[1]
    # invalid slots scatter into a dummy column S, so they can never overwrite a valid one
    col = torch.where(valid, idx, s)
    mask = torch.zeros(b, nq, s + 1, dtype=torch.bool, device=q.device).scatter_(-1, col, True)[..., :s]
    dense_bias = None
    if bias is not None:
        h = bias.shape[1]
        dense_bias = bias.new_zeros(b, h, nq, s + 1).scatter(-1, col[:, None].expand(-1, h, -1, -1), bias)
        dense_bias = dense_bias[..., :s]
    out, w = masked_attention(q, k, v, mask, dense_bias, dropout_p)
    w = w.gather(-1, idx[:, None].expand(-1, w.shape[1], -1, -1)) * valid[:, None]  # (B, H, Q, K)
    return out, w


def _dropout(w: torch.Tensor, p: float) -> torch.Tensor:
    return torch.nn.functional.dropout(w, p) if p > 0 else w


def _attend_scores(q, kh, vh, idx, valid, bias, dropout_p):
    """All Q×S scores by one matmul, keep the K listed: fastest when S is a small multiple of K."""
    ih = repeat(idx, "b q k -> b h q k", h=kh.shape[1])
    qh = rearrange(q, "b q h d -> b h q d")
    scores = (qh @ kh.transpose(-1, -2)).gather(-1, ih)  # (B, H, Q, S) -> (B, H, Q, K)
    if bias is not None:
        scores = scores + bias
    m = valid[:, None]
    w = _dropout(scores.masked_fill(~m, torch.finfo(scores.dtype).min).softmax(-1) * m, dropout_p)
    dense = w.new_zeros(*w.shape[:3], kh.shape[2]).scatter_add_(-1, ih, w)  # (B, H, Q, S), in place: no clone
    return rearrange(dense @ vh, "b h q d -> b q h d"), w


def _attend_gather(q, kh, vh, idx, valid, bias, dropout_p):
    """Gather each query's K keys per head, then attend: O(Q·K·D), for large key sets."""
    b, nq, nk = idx.shape
    h, s, dh = kh.shape[1:]
    base = (torch.arange(b * h, device=q.device) * s).view(b, 1, h, 1)
    flat = (idx[:, :, None] + base).reshape(-1)  # (B·Q·H·K,) rows of the (b h s) layout
    kg = kh.reshape(-1, dh).index_select(0, flat).view(b, nq, h, nk, dh)
    vg = vh.reshape(-1, dh).index_select(0, flat).view(b, nq, h, nk, dh)
    scores = (q[..., None, :] @ kg.transpose(-1, -2)).squeeze(-2)  # (B, Q, H, K)
    if bias is not None:
        scores = scores + rearrange(bias, "b h q k -> b q h k")
    m = valid[:, :, None]
    w = _dropout(scores.masked_fill(~m, torch.finfo(scores.dtype).min).softmax(-1) * m, dropout_p)
    return (w[..., None, :] @ vg).squeeze(-2), rearrange(w, "b q h k -> b h q k")


def local_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, idx: torch.Tensor, valid: torch.Tensor,
    bias: torch.Tensor | None = None, dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of every query over its K listed keys only.

    Args:
        q: (B, Q, H, Dh). k, v: (B, S, H, Dh).
        idx: (B, Q, K) long into S. valid: (B, Q, K) bool; invalid slots get zero weight.
        bias: (B, H, Q, K) additive logits (e.g. a relative-position bias), or None.
        dropout_p: dropout on the attention weights (pass 0 in eval).
    Returns:
        out (B, Q, H, Dh) and weights (B, H, Q, K), zeros on invalid slots; a query with no valid
        slot gets zeros.

    Two exact strategies: when S <= SCORES_MAX_RATIO·K (training crops: 205 obs + 256 queries
    against 48 slots; with autograd, up to SCORES_MAX_RATIO_GRAD·K) it computes all Q×S scores
    with one matmul and keeps the K listed, because on CPU a dense matmul beats gathering K·D-wide
    rows; otherwise it gathers the K keys per query,
    O(Q·K·D). Memory beyond the inputs: O(CHUNK_ELEMS) without grad, O(B·Q·K·D) with it.
    """
    b, nq, nk = idx.shape
    s, h, dh = k.shape[1:]
    grad = torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v))
    dense = s <= SCORES_MAX_RATIO * nk or (
        grad and s <= SCORES_MAX_RATIO_GRAD * nk and b * h * nq * s <= SCORES_MAX_ELEMS_GRAD)
    attend = _attend_scores if dense else _attend_gather
    q = q * dh ** -0.5  # scale the small tensor, not the scores
    k, v = (rearrange(x, "b s h d -> b h s d").contiguous() for x in (k, v))  # once, not per chunk
    if bias is None:
        bias = q.new_zeros(b, h, nq, nk)
    # chunk over images, then queries, so each large intermediate stays under CHUNK_ELEMS: blocks
    # that small are recycled by the allocator instead of page-faulted in fresh on every call,
    # which on CPU costs more than the arithmetic. `split` (not slicing) keeps backward one concat.
    per_query = h * (s if attend is _attend_scores else nk * dh)
    bstep = max(1, min(b, CHUNK_ELEMS // max(1, per_query * nq)))
    qstep = max(1, min(nq, CHUNK_ELEMS // max(1, per_query * bstep)))
    outs, ws = [], []
    for qb, kb, vb, ib, mb, zb in zip(*(x.split(bstep) for x in (q, k, v, idx, valid, bias))):
        parts = [attend(qc, kb, vb, ic, mc, zc, dropout_p) for qc, ic, mc, zc in
                 zip(qb.split(qstep, 1), ib.split(qstep, 1), mb.split(qstep, 1), zb.split(qstep, 2))]
        outs.append(torch.cat([o for o, _ in parts], 1))
        ws.append(torch.cat([w for _, w in parts], 2))
    return torch.cat(outs), torch.cat(ws)
