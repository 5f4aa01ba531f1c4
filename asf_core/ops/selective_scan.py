"""Selective scan (the S6 recurrence of Mamba, Gu & Dao 2023) in pure PyTorch, beside the CUDA kernel.

    Δ = softplus(δ + δ_bias)                      (when asked)
    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t      per channel d, state n
    y_t = ⟨h_t, C_t⟩ + D u_t;   y_t ← y_t · silu(z_t)

Signatures and layouts are those of `mamba_ssm.ops.selective_scan_interface`, so either can stand in
for the other. `selective_scan_ref` is the default on every device: a chunked scan that carries the
state between chunks of `chunk_size(...)` steps and never holds (B, D, L, N) for the whole sequence, with
a hand-written backward that recomputes each chunk from its saved start state (as the CUDA kernel
does), so training memory is O(B·D·L + B·D·N·L/T). `selective_scan_loop` (one step at a time
through autograd) and `selective_scan_cumsum` (log-space prefix sums, fast but it overflows once
-ΣΔA in a chunk passes ~88) stay for tests and `asf_core.ops.scan_bench`.

Symbols: B batch · D channels (d_inner) · L length · N state size · G groups of B/C · T chunk length.
Only real A and input-dependent B, C ((B, N, L) or (B, G, N, L)) are supported; mamba_ssm's complex
A and constant (D, N) B/C are not used by Mamba-1 and raise.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from einops import rearrange

try:  # the fused CUDA kernel, only where mamba-ssm is installed (requirements-gpu.txt)
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
except ImportError:
    selective_scan_fn = None

CHUNK_SIZE = None  # steps per chunk; None: chosen per call by `chunk_size` (tests set a number)
CHUNK_ELEMS = 1 << 18  # floats in one chunk buffer, B·T·N·D (1 MiB: stays in cache)
CHUNK_RANGE = (16, 64)
IMPLS = ("auto", "ref", "cuda")
_LOG2E = 1.0 / math.log(2.0)  # exp(x) = exp2(x·log2 e); exp2 is ~1.7x cheaper than exp on CPU


def force_ref() -> bool:
    """True when ASF_FORCE_REF_SCAN=1 asks for the reference scan even where the kernel exists."""
    return os.environ.get("ASF_FORCE_REF_SCAN", "0") not in ("", "0", "false", "False")


def fast_path_available(x: torch.Tensor) -> bool:
    """Whether `selective_scan(impl="auto")` would call the CUDA kernel for tensors like `x`."""
    return selective_scan_fn is not None and x.is_cuda and not force_ref()


# ---------------------------------------------------------------------------------------------
# shared prologue / epilogue


def _compute_dtype(u: torch.Tensor) -> torch.dtype:
    # fp32 state as in mamba_ssm, but float64 stays float64 so gradcheck can run on the reference
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _prologue(u, delta, A, B, C, delta_bias, delta_softplus):
    """Cast to the state dtype, apply bias/softplus to Δ, bring B and C to (B, G, N, L)."""
    if A.is_complex():
        raise NotImplementedError("complex A is not supported by the reference scan")
    if B.dim() < 3 or C.dim() < 3:
        raise NotImplementedError("only input-dependent B, C of shape (B, N, L) or (B, G, N, L)")
    dt = _compute_dtype(u)
    u, delta, A = u.to(dt), delta.to(dt), A.to(dt)
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].to(dt)
    if delta_softplus:
        delta = F.softplus(delta)
    B = (B[:, None] if B.dim() == 3 else B).to(dt)  # (B, G, N, L)
    C = (C[:, None] if C.dim() == 3 else C).to(dt)
    g = max(B.shape[1], C.shape[1])
    if u.shape[1] % g:
        raise ValueError(f"channels D={u.shape[1]} are not divisible by the {g} groups of B/C")
    B, C = B.expand(-1, g, -1, -1), C.expand(-1, g, -1, -1)
    return u, delta, A, B, C


def _epilogue(y, u, D, z, dtype_in):
    out = y if D is None else y + u * rearrange(D.to(y.dtype), "d -> d 1")
    if z is not None:
        out = out * F.silu(z.to(y.dtype))
    return out.to(dtype_in)


# ---------------------------------------------------------------------------------------------
# the reference: chunked scan with a recomputing backward


def _steps(x: torch.Tensor, s: int, e: int, g: int) -> torch.Tensor:
    """Steps s:e of a (B, D, L) tensor as a (B, T, G, D/G) view, for reading (`.contiguous()`) or
    writing (`.copy_`) one chunk. Channel-last memory ((B, L, D) seen through a transpose, as
    MambaBlock passes it) makes these plain row copies; mamba_ssm's (B, D, L)-contiguous layout
    makes them chunk-sized transposes, still far cheaper than transposing the whole tensor."""
    return rearrange(x[..., s:e], "b (g d) t -> b t g d", g=g)


def _bsteps(x: torch.Tensor, s: int, e: int) -> torch.Tensor:
    """Steps s:e of a (B, G, N, L) tensor as a (B, T, G, N) view."""
    return rearrange(x[..., s:e], "b g n t -> b t g n")


class _ChunkedScan(torch.autograd.Function):
    """y_t = ⟨h_t, C_t⟩ for h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t, in chunks of T steps.

    Inside a chunk, exp(ΔA) and ΔBu are formed for all T steps at once (large vectorised ops), then
    the recurrence runs as T in-place multiply-adds over a (B, G, N, D/G) slab: the sequential form
    needs no exp of a positive number, so it is stable for any Δ ≥ 0 and A ≤ 0. The state is held
    as (N, D) with channels innermost, so every broadcast runs along a long contiguous axis (with
    N = 8 innermost, the same ops were 5-8x slower). Only the state at each chunk start is saved;
    backward reruns the chunk from it and scans the adjoint in reverse:
        ĝ_t = C_t gy_t + exp(Δ_{t+1} A) ĝ_{t+1},   q_t = ĝ_t ⊙ exp(Δ_t A) ⊙ h_{t-1}
        ∂Δ_t = Σ_n q_t A + Σ_n ĝ_t B_t u_t,  ∂A = Σ_{b,t} q_t Δ_t,  ∂u_t = Σ_n ĝ_t B_t Δ_t,
        ∂B_t = Σ_d ĝ_t Δ_t u_t,  ∂C_t = Σ_d h_t gy_t.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, chunk_size: int):
        bsz, d, seqlen = u.shape
        g, n = B.shape[1], A.shape[1]
        T = max(1, min(chunk_size, seqlen))
        A2 = rearrange(A * _LOG2E, "(g d) n -> g n d", g=g)  # (G, N, D/G)
        starts = range(0, seqlen, T)
        states = u.new_zeros(len(starts) + 1, bsz, g, n, d // g)  # state before each chunk, and last
        bufs = [u.new_empty(bsz, T, g, n, d // g) for _ in range(2)]  # reused by every chunk
        y = torch.empty_like(u)  # keeps u's memory layout (channel-last from MambaBlock)
        for k, s in enumerate(starts):
            e = min(s + T, seqlen)
            d_c, u_c = _steps(delta, s, e, g).contiguous(), _steps(u, s, e, g).contiguous()  # (B, T, G, D/G)
            dA, hs = _chunk_states(*bufs, d_c, u_c, A2, _bsteps(B, s, e).contiguous(), states[k])
            states[k + 1].copy_(hs[:, -1])
            C_c = _bsteps(C, s, e).contiguous()  # (B, T, G, N)
            _steps(y, s, e, g).copy_(torch.matmul(C_c[..., None, :], hs).squeeze(-2))  # Σ_n C h
        ctx.save_for_backward(u, delta, A, B, C, states)
        ctx.chunk = T
        last = rearrange(states[-1], "b g n d -> b (g d) n")
        ctx.mark_non_differentiable(last)
        return y, last

    @staticmethod
    def backward(ctx, gy, _glast):  # like mamba_ssm, the last state carries no gradient
        u, delta, A, B, C, states = ctx.saved_tensors
        T, (bsz, d, seqlen), g = ctx.chunk, u.shape, B.shape[1]
        Ag = rearrange(A, "(g d) n -> g n d", g=g)  # (G, N, D/G)
        A2 = Ag * _LOG2E
        bufs = [u.new_empty(bsz, T, g, A.shape[1], d // g) for _ in range(3)]
        g_u, g_delta, g_B, g_C = (torch.empty_like(x) for x in (u, delta, B, C))
        g_A = torch.zeros_like(Ag)
        carry = torch.zeros_like(states[0])  # exp(ΔA) ĝ at the first step of the chunk after this one
        starts = list(range(0, seqlen, T))
        for k in reversed(range(len(starts))):
            s = starts[k]
            e = min(s + T, seqlen)
            d_c, u_c, gy_c = (_steps(x, s, e, g).contiguous() for x in (delta, u, gy))  # (B, T, G, D/G)
            B_c, C_c = _bsteps(B, s, e).contiguous(), _bsteps(C, s, e).contiguous()  # (B, T, G, N)
            du = d_c * u_c
            dA, hs = _chunk_states(bufs[0], bufs[1], d_c, u_c, A2, B_c, states[k])
            gh = torch.mul(gy_c[..., None, :], C_c[..., None], out=bufs[2][:, : e - s])  # C_t gy_t
            gh[:, -1].add_(carry)
            g_t, dA_t = gh.unbind(1), dA.unbind(1)
            for t in range(e - s - 2, -1, -1):
                g_t[t].addcmul_(dA_t[t + 1], g_t[t + 1])
            torch.mul(dA[:, 0], gh[:, 0], out=carry)
            _bsteps(g_C, s, e).copy_(torch.einsum("btgnd,btgd->btgn", hs, gy_c))
            _bsteps(g_B, s, e).copy_(torch.einsum("btgnd,btgd->btgn", gh, du))
            ghB = torch.matmul(B_c[..., None, :], gh).squeeze(-2)  # (B, T, G, D/G)
            _steps(g_u, s, e, g).copy_(ghB * d_c)
            # q = ĝ ⊙ exp(ΔA) ⊙ h_{t-1}, written over the exp(ΔA) buffer (no longer needed)
            q = dA.mul_(gh)
            q[:, 1:].mul_(hs[:, :-1])
            q[:, 0].mul_(states[k])
            _steps(g_delta, s, e, g).copy_(torch.mul(q, Ag, out=gh).sum(-2) + ghB * u_c)
            g_A += torch.mul(q, d_c[..., None, :], out=gh).sum((0, 1))
        return g_u, g_delta, rearrange(g_A, "g n d -> (g d) n"), g_B, g_C, None


def _chunk_states(dA_buf, h_buf, d_c, u_c, A2, B_c, h0):
    """Fill dA = exp(Δ A) and hs = h_t for one chunk from its start state h0 (in place, no autograd).

    d_c, u_c: (B, T, G, D/G); A2 = A·log2 e: (G, N, D/G); B_c: (B, T, G, N); h0: (B, G, N, D/G).
    Returns views of the buffers: dA, hs (B, T, G, N, D/G).
    """
    steps = d_c.shape[1]
    dA = torch.mul(d_c[..., None, :], A2, out=dA_buf[:, :steps]).exp2_()  # ΔA ≤ 0: no overflow
    hs = torch.mul((d_c * u_c)[..., None, :], B_c[..., None], out=h_buf[:, :steps])  # Δ B u
    # views of every step made in one call: indexing inside the loop cost more than the maths at
    # the app's sizes (3 selects per step, ~60% of a 32x32 forward's scan time)
    h_t, dA_t = hs.unbind(1), dA.unbind(1)
    h_t[0].addcmul_(dA_t[0], h0)
    for t in range(1, steps):
        h_t[t].addcmul_(dA_t[t], h_t[t - 1])  # h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t
    return dA, hs


def chunk_size(bsz: int, d: int, n: int) -> int:
    """Steps per chunk: as many as keep a chunk buffer within CHUNK_ELEMS, in CHUNK_RANGE.

    Measured on 2 CPU cores (D=128, N=16): at batch 1 the Python work per chunk dominates, and 64
    steps run 1.6x faster than 16 (26 -> 16 ms at L=1229, 593 -> 396 ms at L=19,661); at batch 32
    16-64 are within 5%, and longer chunks spill the cache.
    """
    if CHUNK_SIZE is not None:
        return CHUNK_SIZE
    lo, hi = CHUNK_RANGE
    return min(max(CHUNK_ELEMS // max(1, bsz * d * n), lo), hi)


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    """Selective scan, same signature and semantics as mamba_ssm's `selective_scan_ref`.

    Args:
        u: (B, D, L) input. delta: (B, D, L) step size before bias/softplus.
        A: (D, N), real (≤ 0 in Mamba). B, C: (B, N, L) or (B, G, N, L) with D divisible by G.
        D: (D,) skip. z: (B, D, L) gate, out ← out·silu(z). delta_bias: (D,).
        delta_softplus: Δ ← softplus(δ + δ_bias). return_last_state: also return h_L.
    Returns:
        out (B, D, L) in u's dtype, and (B, D, N) last state in the state dtype when asked. The state
        is fp32 (fp64 for fp64 inputs); as in mamba_ssm the last state carries no gradient.
    """
    dtype_in = u.dtype
    u, delta, A, B, C = _prologue(u, delta, A, B, C, delta_bias, delta_softplus)
    y, last = _ChunkedScan.apply(u, delta, A, B, C, chunk_size(u.shape[0], u.shape[1], A.shape[1]))
    out = _epilogue(y, u, D, z, dtype_in)
    return (out, last) if return_last_state else out


def selective_scan_chunked(u, delta, A, B, C, steps: int | None = None):
    """The reference core with an explicit chunk length, for benchmarks: y (B, D, L), no D/z/bias."""
    u, delta, A, B, C = _prologue(u, delta, A, B, C, None, False)
    steps = steps or chunk_size(u.shape[0], u.shape[1], A.shape[1])
    return _ChunkedScan.apply(u, delta, A, B, C, steps)[0]


# ---------------------------------------------------------------------------------------------
# alternatives kept for tests and benchmarks


def selective_scan_loop(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                        return_last_state=False):
    """The plain form: one step at a time over L through autograd (stores every h_t for backward)."""
    dtype_in = u.dtype
    u, delta, A, B, C = _prologue(u, delta, A, B, C, delta_bias, delta_softplus)
    g = B.shape[1]
    Ag = rearrange(A, "(g d) n -> g d n", g=g)
    ul, dl = rearrange(u, "b (g d) l -> l b g d", g=g), rearrange(delta, "b (g d) l -> l b g d", g=g)
    Bl, Cl = rearrange(B, "b g n l -> l b g 1 n"), rearrange(C, "b g n l -> l b g 1 n")
    h = u.new_zeros(u.shape[0], g, u.shape[1] // g, A.shape[1])  # (B, G, D/G, N)
    ys = []
    for t in range(u.shape[-1]):
        h = torch.exp(dl[t, ..., None] * Ag) * h + (dl[t] * ul[t])[..., None] * Bl[t]
        ys.append((h * Cl[t]).sum(-1))  # (B, G, D/G)
    y = rearrange(torch.stack(ys), "l b g d -> b (g d) l")
    out = _epilogue(y, u, D, z, dtype_in)
    return (out, rearrange(h, "b g d n -> b (g d) n")) if return_last_state else out


def selective_scan_cumsum(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          return_last_state=False, chunk_size: int | None = None):
    """The log-space parallel form: h_t = e^{S_t} (h_0 + Σ_{s≤t} e^{-S_s} Δ_s B_s u_s), S = cumsum ΔA.

    All steps of a chunk (the whole sequence when chunk_size is None) come from two cumulative sums,
    so it is one pass of large ops; but e^{-S_s} overflows once -S within a chunk exceeds ~88 (fp32),
    giving inf/nan. Kept to show why the reference scans sequentially inside its chunks.
    """
    dtype_in = u.dtype
    u, delta, A, B, C = _prologue(u, delta, A, B, C, delta_bias, delta_softplus)
    g, seqlen = B.shape[1], u.shape[-1]
    T = seqlen if chunk_size is None else chunk_size
    Ag = rearrange(A, "(g d) n -> g d n", g=g)
    h = u.new_zeros(u.shape[0], g, u.shape[1] // g, A.shape[1])  # (B, G, D/G, N)
    ys = []
    for s in range(0, seqlen, T):
        e = min(s + T, seqlen)
        d_c, u_c = _steps(delta, s, e, g), _steps(u, s, e, g)  # (B, T, G, D/G)
        S = torch.cumsum(d_c[..., None] * Ag, dim=1)  # (B, T, G, D/G, N), ≤ 0 and decreasing
        acc = torch.cumsum(torch.exp(-S) * (d_c * u_c)[..., None] * _bsteps(B, s, e)[..., None, :], dim=1)
        hs = torch.exp(S) * (h[:, None] + acc)
        h = hs[:, -1]
        ys.append(torch.einsum("btgdn,btgn->btgd", hs, _bsteps(C, s, e)))
    y = rearrange(torch.cat(ys, dim=1), "b l g d -> b (g d) l")
    out = _epilogue(y, u, D, z, dtype_in)
    return (out, rearrange(h, "b g d n -> b (g d) n")) if return_last_state else out


# ---------------------------------------------------------------------------------------------
# dispatcher


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, *, impl: str = "auto"):
    """Selective scan through the CUDA kernel where it can run, else the reference.

    impl: "auto" uses mamba_ssm's `selective_scan_fn` when it imported, the tensors are on CUDA and
    ASF_FORCE_REF_SCAN is not set; "ref" always uses `selective_scan_ref`; "cuda" requires the kernel.
    Arguments and returns as in `selective_scan_ref`.
    """
    if impl not in IMPLS:
        raise ValueError(f"unknown scan impl {impl!r}; choose from {', '.join(IMPLS)}")
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if impl == "cuda":
        if selective_scan_fn is None or not u.is_cuda:
            raise RuntimeError("impl='cuda' needs mamba-ssm installed and CUDA tensors "
                               "(see requirements-gpu.txt)")
        return selective_scan_fn(*args)
    if impl == "auto" and fast_path_available(u):
        return selective_scan_fn(*args)
    return selective_scan_ref(*args)
