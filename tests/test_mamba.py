"""The Mamba architecture: selective scan against a float64 loop, MambaBlock against mamba_ssm's
layout and initialisation, curve orders, point-set invariance, and the gradient-influence helper."""

import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from asf_core.fields import pixel_coords
from asf_core.influence import gradient_influence
from asf_core.models import MODELS, build_model
from asf_core.models.mamba import PRESETS, MambaBlock, MambaConfig, MambaField
from asf_core.ops import selective_scan as ss
from asf_core.ops.curves import ORDERS, curve_key, hilbert_index, lexsort


def scan_inputs(b=2, d=16, n=8, length=37, groups=None, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype)  # noqa: E731
    bc = (b, n, length) if groups is None else (b, groups, n, length)
    return dict(
        u=r(b, d, length), delta=0.5 * r(b, d, length),
        A=-torch.exp(r(d, n)),  # like -exp(A_log): negative, a spread of time scales
        B=r(*bc), C=r(*bc), D=r(d), z=r(b, d, length), delta_bias=r(d) - 2.0,
    )


def naive_scan64(u, delta, A, B, C, D, z, delta_bias):
    """h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t, y = C·h + D u, y·silu(z), all in float64."""
    u, delta, A, B, C, D, z, delta_bias = (x.double() for x in (u, delta, A, B, C, D, z, delta_bias))
    delta = F.softplus(delta + delta_bias[:, None])
    if B.dim() == 3:
        B, C = B[:, None], C[:, None]
    heads = u.shape[1] // B.shape[1]
    B, C = B.repeat_interleave(heads, 1), C.repeat_interleave(heads, 1)  # (b, d, n, l)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[-1]):
        h = torch.exp(delta[..., t, None] * A) * h + (delta[..., t] * u[..., t])[..., None] * B[..., t]
        ys.append((h * C[..., t]).sum(-1))
    y = torch.stack(ys, -1) + D[:, None] * u
    return y * F.silu(z), h


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


# ---------------------------------------------------------------- selective scan


@pytest.mark.parametrize("length", [37, 205, 1229])
def test_scan_ref_matches_float64_loop(length):
    x = scan_inputs(length=length)
    out, last = ss.selective_scan_ref(**x, delta_softplus=True, return_last_state=True)
    want, want_last = naive_scan64(**x)
    assert out.dtype == torch.float32 and out.shape == x["u"].shape
    assert rel_err(out, want) < 1e-5
    assert last.shape == (2, 16, 8) and rel_err(last, want_last) < 1e-5


def test_scan_grouped_B_C_and_channel_last_views():
    x = scan_inputs(d=16, groups=2, length=53)
    want, _ = naive_scan64(**x)
    assert rel_err(ss.selective_scan_ref(**x, delta_softplus=True), want) < 1e-5
    # MambaBlock passes transposed views of channel-last memory; the result must not depend on it
    cl = {k: (v.mT.contiguous().mT if v.dim() == 3 else v) for k, v in x.items()}
    assert cl["u"].stride(1) == 1
    assert rel_err(ss.selective_scan_ref(**cl, delta_softplus=True), want) < 1e-5


def test_scan_alternatives_agree():
    x = scan_inputs(length=45)
    ref = ss.selective_scan_ref(**x, delta_softplus=True)
    assert rel_err(ss.selective_scan_loop(**x, delta_softplus=True), ref) < 1e-5
    assert rel_err(ss.selective_scan_cumsum(**x, delta_softplus=True, chunk_size=8), ref) < 1e-4
    core = ss.selective_scan_chunked(x["u"], x["delta"], x["A"], x["B"], x["C"], steps=7)
    plain = ss.selective_scan_ref(x["u"], x["delta"], x["A"], x["B"], x["C"])
    assert rel_err(core, plain) < 1e-5


def test_chunk_length_follows_the_batch(monkeypatch):
    lo, hi = ss.CHUNK_RANGE
    assert ss.chunk_size(1, 128, 16) == hi  # the app: one image, few steps per Python call
    assert ss.chunk_size(32, 128, 16) == lo  # training batches: the buffers stay in cache
    assert lo <= ss.chunk_size(4, 128, 16) <= hi
    monkeypatch.setattr(ss, "CHUNK_SIZE", 5)
    assert ss.chunk_size(1, 128, 16) == 5


@pytest.mark.parametrize("groups,size,fast", [(None, (1, 2, 2, 7), False), (None, (2, 4, 3, 13), True),
                                              (2, (1, 4, 2, 9), False)])
def test_scan_gradcheck_float64(groups, size, fast, monkeypatch):
    monkeypatch.setattr(ss, "CHUNK_SIZE", 3)  # several chunks, a partial last one
    b, d, n, length = size
    x = scan_inputs(b=b, d=d, n=n, length=length, groups=groups, dtype=torch.float64, seed=1)
    leaves = [v.clone().requires_grad_(True) for v in x.values()]

    def fn(*a):
        return ss.selective_scan_ref(*a[:5], D=a[5], z=a[6], delta_bias=a[7], delta_softplus=True)

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=fast)


def test_scan_backward_matches_loop_fp32():
    x = scan_inputs(length=77, seed=2)
    a = {k: v.clone().requires_grad_(True) for k, v in x.items()}
    b = {k: v.clone().requires_grad_(True) for k, v in x.items()}
    gy = torch.randn(2, 16, 77)
    (ss.selective_scan_ref(**a, delta_softplus=True) * gy).sum().backward()
    (ss.selective_scan_loop(**b, delta_softplus=True) * gy).sum().backward()
    for k in x:
        assert rel_err(a[k].grad, b[k].grad) < 1e-4, k


def test_scan_dispatch(monkeypatch):
    x = dict(scan_inputs(length=20), delta_softplus=True)
    ref = ss.selective_scan_ref(**x)
    assert torch.equal(ss.selective_scan(**x, impl="ref"), ref)
    assert torch.equal(ss.selective_scan(**x), ref)  # CPU tensors: the reference, kernel or not
    assert not ss.fast_path_available(x["u"])
    with pytest.raises(RuntimeError, match="mamba-ssm"):
        ss.selective_scan(**x, impl="cuda")
    with pytest.raises(ValueError, match="unknown scan impl"):
        ss.selective_scan(**x, impl="triton")
    monkeypatch.setenv("ASF_FORCE_REF_SCAN", "1")
    assert ss.force_ref()


def test_scan_rejects_constant_B():
    x = scan_inputs(length=10)
    with pytest.raises(NotImplementedError):
        ss.selective_scan_ref(x["u"], x["delta"], x["A"], torch.randn(16, 8), x["C"])


# ---------------------------------------------------------------- MambaBlock


def mamba_ssm_param_shapes(d_model, d_state=16, d_conv=4, expand=2):
    """mamba_ssm.Mamba's parameters (from mamba_ssm/modules/mamba_simple.py), name -> shape."""
    e, r = expand * d_model, math.ceil(d_model / 16)
    return {
        "in_proj.weight": (2 * e, d_model), "conv1d.weight": (e, 1, d_conv), "conv1d.bias": (e,),
        "x_proj.weight": (r + 2 * d_state, e), "dt_proj.weight": (e, r), "dt_proj.bias": (e,),
        "A_log": (e, d_state), "D": (e,), "out_proj.weight": (d_model, e),
    }


@pytest.mark.parametrize("d_model,d_state", [(32, 16), (40, 8)])
def test_block_parameters_match_mamba_ssm(d_model, d_state):
    m = MambaBlock(d_model, d_state=d_state)
    got = {k: tuple(p.shape) for k, p in m.named_parameters()}
    assert got == mamba_ssm_param_shapes(d_model, d_state)
    assert set(m.state_dict()) == set(got)  # no buffers either


def test_block_initialisation():
    torch.manual_seed(0)
    m = MambaBlock(64, d_state=16, dt_min=0.001, dt_max=0.1)
    dt = F.softplus(m.dt_proj.bias)
    assert dt.min() >= 0.001 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
    assert dt.log().std() > 0.5  # log-uniform, not constant
    bound = m.dt_rank ** -0.5
    assert m.dt_proj.weight.abs().max() <= bound and m.dt_proj.weight.abs().max() > 0.5 * bound
    assert torch.allclose(m.A_log, torch.log(torch.arange(1, 17.0)).expand(128, -1))
    assert torch.equal(m.D, torch.ones(128))
    assert m.A_log._no_weight_decay and m.D._no_weight_decay and m.dt_proj.bias._no_reinit
    assert m.in_proj.bias is None and m.out_proj.bias is None and m.conv1d.bias is not None


def mamba_ssm_slow_forward(m: MambaBlock, h):
    """mamba_ssm.Mamba.forward without causal_conv1d and without a cache, transcribed."""
    seqlen = h.shape[1]
    xz = rearrange(m.in_proj.weight @ rearrange(h, "b l d -> d (b l)"), "d (b l) -> b d l", l=seqlen)
    A = -torch.exp(m.A_log.float())
    x, z = xz.chunk(2, dim=1)
    x = F.silu(m.conv1d(x)[..., :seqlen])
    x_dbl = m.x_proj(rearrange(x, "b d l -> (b l) d"))
    dt, B, C = torch.split(x_dbl, [m.dt_rank, m.d_state, m.d_state], dim=-1)
    dt = rearrange(m.dt_proj.weight @ dt.t(), "d (b l) -> b d l", l=seqlen)
    B = rearrange(B, "(b l) s -> b s l", l=seqlen).contiguous()
    C = rearrange(C, "(b l) s -> b s l", l=seqlen).contiguous()
    y = ss.selective_scan_loop(x, dt, A, B, C, m.D.float(), z=z, delta_bias=m.dt_proj.bias.float(),
                               delta_softplus=True)
    return m.out_proj(rearrange(y, "b d l -> b l d"))


def test_block_forward_matches_mamba_ssm_slow_path():
    torch.manual_seed(0)
    m = MambaBlock(32, d_state=8, dt_max=0.5)
    h = torch.randn(3, 41, 32)
    out = m(h)
    assert out.shape == h.shape
    assert rel_err(out, mamba_ssm_slow_forward(m, h)) < 1e-5
    h.requires_grad_(True)
    m(h).square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_block_is_causal():
    torch.manual_seed(0)
    m = MambaBlock(16, d_state=8)
    h = torch.randn(1, 20, 16)
    h2 = h.clone()
    h2[:, 12:] += 1.0
    assert torch.allclose(m(h)[:, :12], m(h2)[:, :12], atol=1e-6)
    assert not torch.allclose(m(h)[:, 12:], m(h2)[:, 12:], atol=1e-4)


# ---------------------------------------------------------------- curves


@pytest.mark.parametrize("bits", [1, 2, 3, 5])
def test_hilbert_is_a_path_of_neighbours(bits):
    n = 1 << bits
    iy, ix = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    d = hilbert_index(ix.flatten(), iy.flatten(), bits)
    assert torch.equal(d.sort().values, torch.arange(n * n))
    order = d.argsort()
    steps = (ix.flatten()[order].diff().abs() + iy.flatten()[order].diff().abs())
    assert (steps == 1).all()


@pytest.mark.parametrize("order,transpose", [("hilbert", False), ("hilbert", True), ("zigzag", False),
                                             ("zigzag", True)])
def test_curves_on_a_pixel_grid_step_to_neighbours(order, transpose):
    xy = pixel_coords(32, 32)  # quantised to 2^10 cells: every pixel keeps its own cell
    seq = xy[curve_key(xy, order, bits=10, transpose=transpose).argsort()]
    steps = (seq.diff(dim=0).abs() * 16).round().sum(-1)  # in pixels (pitch 2/32)
    assert (steps == 1).all()


def test_raster_and_random_orders():
    xy = pixel_coords(8, 8)  # row-major
    assert torch.equal(curve_key(xy, "raster", bits=10).argsort(), torch.arange(64))
    r = curve_key(xy, "random", bits=10)
    assert torch.equal(r, curve_key(xy, "random", bits=10)) and r.unique().numel() == 64
    assert not torch.equal(r.argsort(), torch.arange(64))
    assert not torch.equal(r, curve_key(xy, "random", bits=10, transpose=True))
    with pytest.raises(ValueError, match="unknown scan order"):
        curve_key(xy, "spiral")


def test_lexsort_breaks_ties_in_key_order():
    a = torch.tensor([[1, 0, 1, 0]])
    b = torch.tensor([[0, 5, -1, 2]])
    assert lexsort([a, b]).tolist() == [[3, 1, 2, 0]]


# ---------------------------------------------------------------- the model

B, N, Q = 2, 12, 20


def field_inputs(seed=0, n=N, q=Q):
    g = torch.Generator().manual_seed(seed)
    return dict(
        x_t=torch.randn(B, q, 3, generator=g), t=torch.rand(B, generator=g),
        query_xy=torch.rand(B, q, 2, generator=g) * 2 - 1, obs_xy=torch.rand(B, n, 2, generator=g) * 2 - 1,
        obs_rgb=torch.rand(B, n, 3, generator=g) * 2 - 1,
    )


def tiny_field(**overrides) -> MambaField:
    torch.manual_seed(0)
    model = MambaField(MambaConfig(**{**PRESETS["tiny"], **overrides})).eval()
    with torch.no_grad():  # move off the zero-initialised gates and head
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def permuted(x, po, pq):
    return dict(x_t=x["x_t"][:, pq], t=x["t"], query_xy=x["query_xy"][:, pq], obs_xy=x["obs_xy"][:, po],
                obs_rgb=x["obs_rgb"][:, po])


@pytest.mark.parametrize("decoder", ["global", "window"])
@pytest.mark.parametrize("scan_order", ORDERS)
def test_field_is_a_function_of_the_point_set(scan_order, decoder):
    model, x = tiny_field(scan_order=scan_order, decoder=decoder, decoder_window=3), field_inputs()
    v, maps = model(**x, return_attention=True)
    assert v.shape == (B, Q, 3) and torch.isfinite(v).all()
    order = maps["scan_order"]
    assert order.shape == (B, N + Q)
    assert torch.equal(order.sort(dim=1).values, torch.arange(N + Q).expand(B, -1))
    g = torch.Generator().manual_seed(1)
    po, pq = torch.randperm(N, generator=g), torch.randperm(Q, generator=g)
    assert torch.allclose(model(**permuted(x, po, pq)), v[:, pq], atol=1e-5)


@pytest.mark.parametrize("decoder", ["global", "window"])
def test_invariance_with_queries_on_observed_pixels(decoder):
    # queries at every pixel, observations on a subset: exact coordinate ties between the kinds
    model = tiny_field(decoder=decoder, decoder_window=4)
    xy = pixel_coords(6, 6)
    g = torch.Generator().manual_seed(0)
    obs_idx = torch.randperm(36, generator=g)[:9]
    x = dict(x_t=torch.randn(B, 36, 3, generator=g), t=torch.rand(B, generator=g),
             query_xy=xy.expand(B, -1, -1), obs_xy=xy[obs_idx].expand(B, -1, -1),
             obs_rgb=torch.rand(B, 9, 3, generator=g) * 2 - 1)
    v = model(**x)
    po, pq = torch.randperm(9, generator=g), torch.randperm(36, generator=g)
    assert torch.allclose(model(**permuted(x, po, pq)), v[:, pq], atol=1e-5)


def test_field_maps_and_orders():
    model, x = tiny_field(), field_inputs()
    v, maps = model(**x, return_attention=True)
    w = maps["cross_attention"]
    assert w.shape == (B, PRESETS["tiny"]["num_heads"], Q, N + Q) and maps["n_obs"] == N
    assert torch.allclose(w.sum(-1), torch.ones(B, w.shape[1], Q), atol=1e-5)
    assert torch.allclose(v, model(**x), atol=1e-6)
    xy = torch.cat([x["obs_xy"], x["query_xy"]], 1)
    orders = model.orders(xy, torch.arange(N + Q) >= N, torch.cat([x["obs_rgb"], x["x_t"]], 1))
    assert not torch.equal(orders[0], orders[1])  # the transposed curve on odd layers
    same = tiny_field(alternate_transpose=False).orders(xy, torch.arange(N + Q) >= N,
                                                        torch.cat([x["obs_rgb"], x["x_t"]], 1))
    assert torch.equal(same[0], same[1])


def test_window_decoder_attends_along_both_curves():
    model, x = tiny_field(decoder="window", decoder_window=2), field_inputs()
    v, maps = model(**x, return_attention=True)
    w = maps["cross_attention"]  # scattered back to (B, H, Q, N + Q)
    assert w.shape == (B, PRESETS["tiny"]["num_heads"], Q, N + Q)
    assert torch.allclose(w.sum(-1), torch.ones(B, w.shape[1], Q), atol=1e-5)
    xy = torch.cat([x["obs_xy"], x["query_xy"]], 1)
    orders = model.orders(xy, torch.arange(N + Q) >= N, torch.cat([x["obs_rgb"], x["x_t"]], 1))
    idx, valid = model.windows(orders, N)
    assert idx.shape == valid.shape == (B, Q, 2 * 5)
    reach = torch.zeros(B, Q, N + Q, dtype=torch.bool).scatter_(-1, torch.where(valid, idx, 0), valid)
    assert (w[:, 0][~reach] == 0).all() and reach.sum(-1).max() < N + Q  # local: not every token
    # each query sits in its own windows, at the centre of each curve's
    assert (idx[..., 2] == torch.arange(N, N + Q)).all() and (idx[..., 7] == torch.arange(N, N + Q)).all()


def test_window_decoder_spanning_the_sequence_is_global_attention():
    # two windows over all L tokens list each one twice: the softmax is the same as over all once
    global_, x = tiny_field(), field_inputs()
    window = tiny_field(decoder="window", decoder_window=N + Q)
    assert torch.allclose(window(**x), global_(**x), atol=1e-5)


def test_field_shared_directions_and_fast_path_flag():
    shared = tiny_field(share_directions=True)
    separate = tiny_field()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(shared) < count(separate)
    assert all(layer.bwd is None for layer in shared.layers)
    assert torch.isfinite(shared(**field_inputs())).all()
    ref_only = tiny_field(use_fast_path=False)
    assert torch.equal(ref_only(**field_inputs()), separate(**field_inputs()))


@pytest.mark.parametrize("d_state", [4, 7, 33, 64])
def test_d_state_is_validated(d_state):
    with pytest.raises(ValueError, match="d_state"):
        MambaConfig(d_state=d_state)
    with pytest.raises(ValueError, match="d_state"):
        build_model("mamba", "tiny", d_state=d_state)


def test_unknown_scan_order_is_rejected():
    with pytest.raises(ValueError, match="scan_order"):
        MambaConfig(scan_order="spiral")
    with pytest.raises(ValueError, match="decoder"):
        MambaConfig(decoder="knn")
    with pytest.raises(ValueError, match="decoder_window"):
        MambaConfig(decoder="window", decoder_window=0)


def test_presets_parameter_counts():
    count = lambda p: sum(x.numel() for x in MambaField(MambaConfig(**p)).parameters())  # noqa: E731
    assert count(PRESETS["tiny"]) < 2e5
    assert count(PRESETS["small"]) <= 5e6  # with the grid encoder; fp16 under 10 MB
    assert count(PRESETS["small_point"]) <= 3e6
    assert 12e6 < count(PRESETS["paper"]) < 24e6


# ---------------------------------------------------------------- gradient influence


@pytest.mark.parametrize("arch", list(MODELS))
def test_gradient_influence_every_model(arch):
    torch.manual_seed(0)
    model = build_model(arch, "tiny").train()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x = field_inputs()
    x["query_xy"] = pixel_coords(4, 4).expand(B, -1, -1)  # a pixel grid: the U-Net answers only there
    x["x_t"] = x["x_t"][:, :16]
    inf = gradient_influence(model, 3, query_xy=x["query_xy"], obs_xy=x["obs_xy"], obs_rgb=x["obs_rgb"])
    assert inf.shape == (B, N) and torch.isfinite(inf).all() and (inf >= 0).all()
    assert inf.sum() > 0
    assert model.training  # mode restored
    at_t = gradient_influence(model, 0, query_xy=x["query_xy"][0], obs_xy=x["obs_xy"], obs_rgb=x["obs_rgb"],
                              x_t=x["x_t"], t=x["t"])
    assert at_t.shape == (B, N) and torch.isfinite(at_t).all()
    with pytest.raises(IndexError):
        gradient_influence(model, Q, query_xy=x["query_xy"], obs_xy=x["obs_xy"], obs_rgb=x["obs_rgb"])


@pytest.mark.parametrize("arch", ["perceiver_io", "local_implicit", "mamba"])
@pytest.mark.parametrize("preset", ["tiny", "tiny_grid"])
def test_network_influence_is_the_correction_beyond_the_shared_estimate(arch, preset):
    """part="network" is the gradient of x̂1 - b: zero while the learned head is zero (a fresh
    model's x̂1 is b itself: the spline, or the grid encoder's x̂), while the total is b's influence."""
    torch.manual_seed(0)
    extra = dict(prior="gaussian", interp="tps") if preset == "tiny" else {}
    model = build_model(arch, preset, **extra).eval()
    if preset == "tiny_grid":  # the encoder's read-out starts at zero too: give b something to say
        with torch.no_grad():
            for p in model.obs_encoder.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    x = field_inputs()
    kw = dict(query_xy=x["query_xy"], obs_xy=x["obs_xy"], obs_rgb=x["obs_rgb"])
    ctx = model.context(**kw)
    x_t = ctx["interp"].detach()  # the informed source's mean, held fixed as in the app's maps
    total = gradient_influence(model, 3, x_t=x_t, part="total", **kw)
    network = gradient_influence(model, 3, x_t=x_t, part="network", **kw)
    assert total.sum() > 0 and network.abs().max() < 1e-6 * total.max()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    assert gradient_influence(model, 3, x_t=x_t, part="network", **kw).sum() > 0
    with pytest.raises(ValueError, match="unknown part"):
        gradient_influence(model, 3, x_t=x_t, part="mixer", **kw)


def test_gradient_influence_matches_autograd_jacobian():
    model, x = tiny_field(), field_inputs()
    t = torch.full((B,), 0.3)

    def x1(obs_rgb):
        v = model(x_t=x["x_t"], t=t, query_xy=x["query_xy"], obs_xy=x["obs_xy"], obs_rgb=obs_rgb)
        return x["x_t"][:, 5] + 0.7 * v[:, 5]  # (B, 3)

    jac = torch.autograd.functional.jacobian(x1, x["obs_rgb"])  # (B, 3, B, N, 3)
    want = torch.stack([jac[i, :, i].abs().sum((0, 2)) for i in range(B)])  # (B, N)
    got = gradient_influence(model, 5, query_xy=x["query_xy"], obs_xy=x["obs_xy"], obs_rgb=x["obs_rgb"],
                             x_t=x["x_t"], t=0.3)
    assert torch.allclose(got, want, atol=1e-6)


def test_scan_bench_prints_growth_against_the_target(capsys):
    from asf_core.ops import scan_bench

    rows = scan_bench.main(["--lengths", "16", "64", "--batch", "1", "--d-inner", "4", "--d-state", "2",
                            "--impls", "ref", "loop", "--no-backward", "--repeats", "1"])
    assert {r["impl"] for r in rows} == {"ref", "loop"} and all(r["fwd_ms"] > 0 for r in rows)
    printed = capsys.readouterr().out
    assert "ref: forward L 16 -> 64" in printed and "of linear" in printed
    fake = [dict(impl="ref", L=100, fwd_ms=1.0, finite=True), dict(impl="ref", L=1600, fwd_ms=16.0,
                                                                   finite=True),
            dict(impl="slow", L=100, fwd_ms=1.0, finite=True), dict(impl="slow", L=1600, fwd_ms=32.0,
                                                                    finite=True),
            dict(impl="cumsum", L=100, fwd_ms=1.0, finite=True), dict(impl="cumsum", L=1600, fwd_ms=9.0,
                                                                      finite=False)]
    lines = scan_bench.growth_lines(fake)
    assert len(lines) == 2  # an implementation with one finite length has no growth
    assert "1.00 of linear (meets" in lines[0] and "2.00 of linear (misses" in lines[1]
