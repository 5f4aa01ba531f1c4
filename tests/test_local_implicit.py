"""Local Implicit Fields: neighbour search, local attention vs its dense reference, the model, bench."""

from __future__ import annotations

import json

import pytest
import torch

import asf_core.ops.neighbors as nb
from asf_core.models.local_implicit import PRESETS, LocalImplicit, LocalImplicitConfig
from asf_core.ops.neighbors import (
    local_attention,
    local_attention_dense_ref,
    radius_mask_dense,
    radius_neighbors,
)


def brute_valid_sets(q, keys, radius, min_valid):
    """Per (b, query): the set of keys within radius, plus the `min_valid` nearest, via cdist."""
    d = torch.cdist(q.double(), keys.double())  # (B, Q, S)
    r = torch.as_tensor(radius, dtype=torch.float64).reshape(-1, 1, 1)
    inside = d <= r
    if min_valid:
        inside.scatter_(-1, d.topk(min_valid, -1, largest=False).indices, True)
    return inside


def lists_to_mask(idx, valid, s):
    col = torch.where(valid, idx, s)
    return torch.zeros(*idx.shape[:2], s + 1, dtype=torch.bool).scatter_(-1, col, True)[..., :s]


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give the zero-initialised gates and head random values, so every path affects the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model


def inputs(b=2, q=40, n=30, seed=0, shared_queries=False):
    g = torch.Generator().manual_seed(seed)
    def unit(*shape):
        return torch.rand(*shape, generator=g) * 2 - 1

    qxy = unit(q, 2) if shared_queries else unit(b, q, 2)
    return dict(x_t=torch.randn(b, q, 3, generator=g), t=torch.rand(b, generator=g), query_xy=qxy,
                obs_xy=unit(b, n, 2), obs_rgb=unit(b, n, 3))


# --- neighbour search ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["brute", "grid"])
@pytest.mark.parametrize("min_valid", [0, 4])
def test_neighbors_match_brute_force(method, min_valid):
    g = torch.Generator().manual_seed(1)
    q, keys = torch.rand(2, 300, 2, generator=g) * 2 - 1, torch.rand(2, 2000, 2, generator=g) * 2 - 1
    radius = torch.tensor([0.05, 0.12])
    idx, valid, d2 = radius_neighbors(q, keys, k=64, radius=radius, min_valid=min_valid, method=method)
    expect = brute_valid_sets(q, keys, radius, min_valid)
    assert expect.sum(-1).max() <= 64  # k covers every neighbour, so the sets must agree exactly
    assert torch.equal(lists_to_mask(idx, valid, keys.shape[1]), expect)
    true_d2 = (keys.gather(1, idx.flatten(1)[..., None].expand(-1, -1, 2)).view(*idx.shape, 2)
               - q[:, :, None]).square().sum(-1)
    assert torch.allclose(d2[valid], true_d2[valid])
    assert (d2[..., 1:] >= d2[..., :-1]).all()  # ascending


def test_neighbors_capped_at_k_keep_the_nearest():
    g = torch.Generator().manual_seed(2)
    q, keys = torch.rand(1, 200, 2, generator=g) * 2 - 1, torch.rand(1, 3000, 2, generator=g) * 2 - 1
    for method in ("brute", "grid"):
        idx, valid, d2 = radius_neighbors(q, keys, k=8, radius=0.5, method=method)
        assert valid.all()  # 3000 points: far more than 8 in every ball of radius 0.5
        ref = torch.cdist(q, keys).topk(8, -1, largest=False).values.square()
        assert torch.allclose(d2, ref, atol=1e-6)


def test_grid_falls_back_for_queries_in_a_hole():
    """Keys only on the left half: right-half queries must still get their true nearest keys."""
    g = torch.Generator().manual_seed(3)
    keys = torch.rand(1, 4000, 2, generator=g) * torch.tensor([1.0, 2.0]) - torch.tensor([1.0, 1.0])
    q = torch.rand(1, 500, 2, generator=g) * 2 - 1
    idx, valid, d2 = radius_neighbors(q, keys, k=48, radius=0.05, min_valid=3, method="grid")
    expect = brute_valid_sets(q, keys, 0.05, 3)
    assert expect.sum(-1).max() <= 48
    assert torch.equal(lists_to_mask(idx, valid, 4000), expect)
    assert (valid.sum(-1) >= 3).all() and (q[..., 0] > 0.2).sum() > 100  # many queries in the hole


def test_shared_queries_and_padding():
    g = torch.Generator().manual_seed(4)
    q, keys = torch.rand(1, 50, 2, generator=g), torch.rand(3, 10, 2, generator=g)
    idx, valid, _ = radius_neighbors(q, keys, k=16, radius=torch.tensor([0.1, 0.3, 5.0]), min_valid=2)
    assert idx.shape == valid.shape == (3, 50, 16)
    assert not valid[..., 10:].any()  # only 10 keys exist
    assert valid[2, :, :10].all()  # radius 5 covers the unit square
    assert torch.equal(lists_to_mask(idx, valid, 10), brute_valid_sets(q.expand(3, -1, -1), keys,
                                                                       torch.tensor([0.1, 0.3, 5.0]), 2))


def test_radius_mask_dense_matches_brute():
    g = torch.Generator().manual_seed(5)
    q, keys = torch.rand(2, 60, 2, generator=g), torch.rand(2, 80, 2, generator=g)
    assert torch.equal(radius_mask_dense(q, keys, 0.1, 3), brute_valid_sets(q, keys, 0.1, 3))


# --- local attention op -------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["scores", "gather"])
def test_local_attention_matches_dense_ref(strategy, monkeypatch):
    monkeypatch.setattr(nb, "SCORES_MAX_RATIO", 10**6 if strategy == "scores" else 0)
    monkeypatch.setattr(nb, "SCORES_MAX_RATIO_GRAD", 10**6 if strategy == "scores" else 0)
    monkeypatch.setattr(nb, "CHUNK_ELEMS", 500)  # force several batch and query chunks
    g = torch.Generator().manual_seed(6)
    b, nq, s, k, h, dh = 3, 17, 29, 7, 2, 4
    q, kk, v = (torch.randn(b, n, h, dh, generator=g, requires_grad=True) for n in (nq, s, s))
    idx = torch.rand(b, nq, s, generator=g).argsort(-1)[..., :k]
    valid = torch.rand(b, nq, k, generator=g) < 0.7
    valid[0, 0] = False  # a query with no valid slot gets zeros
    idx[1, 2, 3:] = 0  # duplicate padding indices on invalid slots must not matter
    valid[1, 2, 3:] = False
    bias = torch.randn(b, h, nq, k, generator=g, requires_grad=True)
    out, w = local_attention(q, kk, v, idx, valid, bias)
    ref, w_ref = local_attention_dense_ref(q, kk, v, idx, valid, bias)
    assert out.shape == (b, nq, h, dh) and w.shape == (b, h, nq, k)
    assert torch.allclose(out, ref, atol=1e-5) and torch.allclose(w, w_ref, atol=1e-6)
    assert (out[0, 0] == 0).all() and (w[0, :, 0] == 0).all()
    sums = w.sum(-1)  # (B, H, Q): 1 where a query has a valid slot
    assert torch.allclose(sums[valid.any(-1)[:, None].expand_as(sums)], torch.ones(()), atol=1e-6)
    grads = torch.autograd.grad(out.square().sum(), (q, kk, v, bias))
    grads_ref = torch.autograd.grad(ref.square().sum(), (q, kk, v, bias))
    for a, r in zip(grads, grads_ref):
        assert torch.allclose(a, r, atol=1e-5)


# --- the model ----------------------------------------------------------------------------------

def tiny(**kw) -> LocalImplicitConfig:
    return LocalImplicitConfig(**{**PRESETS["tiny"], **kw})


@pytest.mark.parametrize("strategy", ["scores", "gather"])
def test_sparse_equals_dense_ref_when_k_covers_the_radius(strategy, monkeypatch):
    monkeypatch.setattr(nb, "SCORES_MAX_RATIO", 10**6 if strategy == "scores" else 0)
    monkeypatch.setattr(nb, "SCORES_MAX_RATIO_GRAD", 10**6 if strategy == "scores" else 0)
    x = inputs(b=2, q=40, n=30)
    sparse = randomise(LocalImplicit(tiny(max_neighbors=160))).eval()  # 80 slots each >= N, Q
    dense = LocalImplicit(tiny(max_neighbors=160, attention_impl="dense_ref")).eval()
    dense.load_state_dict(sparse.state_dict())
    radius = torch.tensor([0.3, 0.6])
    v_s, m_s = sparse(**x, radius=radius, return_attention=True)
    v_d, m_d = dense(**x, radius=radius, return_attention=True)
    assert v_s.abs().mean() > 1e-2  # the comparison is not between two zeros
    assert torch.allclose(v_s, v_d, atol=1e-5)
    for a, b in zip(m_s["weights"], m_d["weights"]):
        assert torch.allclose(a, b, atol=1e-5)
    # and the cap matters: with few slots the sparse model sees less than the full radius
    capped = LocalImplicit(tiny(max_neighbors=8)).eval()
    capped.load_state_dict(sparse.state_dict())
    assert not torch.allclose(capped(**x, radius=radius), v_d, atol=1e-3)


def test_far_queries_still_see_their_nearest_observations():
    x = inputs(b=1, q=5, n=20)
    x["obs_xy"] = torch.rand(1, 20, 2) * 0.2 - 1.0  # all observations in the bottom-left corner
    x["query_xy"] = torch.rand(1, 5, 2) * 0.2 + 0.8  # all queries in the top-right corner
    model = randomise(LocalImplicit(tiny(min_obs=3))).eval()
    v, maps = model(**x, radius=0.1, return_attention=True)
    assert torch.isfinite(v).all()
    n = maps["n_obs"]
    obs_valid = maps["valid"] & (maps["neighbors"] < n)
    assert (obs_valid.sum(-1) == 3).all()  # exactly the forced nearest, none within the radius
    nearest = torch.cdist(x["query_xy"], x["obs_xy"]).topk(3, -1, largest=False).indices
    got = maps["neighbors"].masked_fill(~obs_valid, -1).sort(-1).values[..., -3:]
    assert torch.equal(got, nearest.sort(-1).values)
    w_obs = maps["weights"][0].masked_fill(~obs_valid[:, None], 0).sum(-1)
    assert (w_obs > 0).all()  # and they are attended to


def test_attention_maps_shapes():
    cfg = tiny()
    model = LocalImplicit(cfg).eval()
    x = inputs(b=2, q=24, n=18)
    v, maps = model(**x, return_attention=True)
    k = cfg.max_neighbors
    assert v.shape == (2, 24, 3)
    assert maps["neighbors"].shape == maps["valid"].shape == (2, 24, k)
    assert maps["neighbors"].max() < 18 + 24 and maps["n_obs"] == 18
    assert len(maps["weights"]) == cfg.num_layers
    for w in maps["weights"]:
        assert w.shape == (2, cfg.num_heads, 24, k)
        assert torch.allclose(w.sum(-1), torch.ones(()), atol=1e-5)
        assert (w[~maps["valid"][:, None].expand_as(w)] == 0).all()
    assert torch.equal(maps["radius"], torch.full((2,), cfg.local_radius))
    # every query attends to itself: its own token is among its valid query slots
    self_idx = 18 + torch.arange(24)
    assert ((maps["neighbors"] == self_idx[None, :, None]) & maps["valid"]).any(-1).all()


def test_shared_query_positions_match_batched():
    model = randomise(LocalImplicit(tiny())).eval()
    x = inputs(b=3, q=20, n=15, shared_queries=True)
    v_shared = model(**x)
    v_batched = model(**{**x, "query_xy": x["query_xy"].expand(3, -1, -1)})
    assert torch.allclose(v_shared, v_batched, atol=1e-6)


@pytest.mark.parametrize("impl", ["sparse", "dense_ref"])
def test_context_computed_once_gives_the_same_velocity(impl):
    model = randomise(LocalImplicit(tiny(attention_impl=impl))).eval()
    x = inputs(b=2, q=30, n=25, shared_queries=True)
    ctx = model.context(query_xy=x["query_xy"], obs_xy=x["obs_xy"], obs_rgb=x["obs_rgb"], radius=0.2)
    for t in (0.0, 0.7):  # reused along the path: only x_t and t change
        step = {**x, "t": torch.full((2,), t), "x_t": x["x_t"] * (1 - t)}
        assert torch.equal(model(**step, radius=0.2, context=ctx), model(**step, radius=0.2))


def test_reconstruct_uses_the_context():
    from asf_core.reconstruct import reconstruct

    class Plain(torch.nn.Module):  # the same model without `context`: every step recomputes it
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **kw):
            return self.inner(**kw)

    model = randomise(LocalImplicit(tiny())).eval()
    images = torch.rand(1, 3, 8, 8) * 2 - 1
    mask = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.3
    run = lambda m: reconstruct(m, images, mask, steps=3, solver="heun", radius=0.25,  # noqa: E731
                                generator=torch.Generator().manual_seed(1)).sample
    assert torch.allclose(run(model), run(Plain(model)), atol=1e-6)


def test_radius_float_and_tensor():
    model = randomise(LocalImplicit(tiny())).eval()
    x = inputs(b=2, q=30, n=25)
    v_float = model(**x, radius=0.2)
    assert torch.allclose(v_float, model(**x, radius=torch.tensor([0.2, 0.2])), atol=1e-6)
    assert torch.allclose(model(**x), model(**x, radius=model.config.local_radius))
    assert not torch.allclose(v_float, model(**x, radius=0.45), atol=1e-3)
    # a per-image radius acts on each image alone
    v_mixed = model(**x, radius=torch.tensor([0.2, 0.45]))
    assert torch.allclose(v_mixed[0], v_float[0], atol=1e-6)
    assert torch.allclose(v_mixed[1], model(**x, radius=0.45)[1], atol=1e-6)
    with pytest.raises(ValueError):
        model(**x, radius=torch.tensor([0.1, 0.2, 0.3]))


def test_training_kwargs_range_and_reproducibility():
    model = LocalImplicit(tiny())
    cfg = model.config
    r = model.training_kwargs(512, torch.Generator().manual_seed(0))["radius"]
    assert r.shape == (512,)
    assert (r >= cfg.radius_min).all() and (r <= cfg.radius_max).all()
    assert r.min() < cfg.radius_min + 0.05 and r.max() > cfg.radius_max - 0.05  # spans the range
    again = model.training_kwargs(512, torch.Generator().manual_seed(0))["radius"]
    assert torch.equal(r, again)
    x = inputs(b=4, q=16, n=12)
    assert model(**x, **model.training_kwargs(4, torch.Generator().manual_seed(1))).shape == (4, 16, 3)


@pytest.mark.parametrize("impl", ["sparse", "dense_ref"])
def test_gradients_reach_every_parameter(impl):
    model = randomise(LocalImplicit(tiny(attention_impl=impl, dropout=0.1))).train()
    x = inputs(b=2, q=20, n=16)
    model(**x, radius=torch.tensor([0.2, 0.4])).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_default_init_outputs_zero_and_head_learns():
    model = LocalImplicit(tiny())
    v = model(**inputs())
    assert torch.equal(v, torch.zeros_like(v))  # zero-initialised head
    v.sum().backward()
    assert model.head.proj.weight.grad.abs().sum() > 0


def test_preset_sizes():
    count = lambda cfg: sum(p.numel() for p in LocalImplicit(cfg).parameters())  # noqa: E731
    assert 17e6 < count(LocalImplicitConfig(**PRESETS["paper"])) < 19.5e6
    assert count(LocalImplicitConfig(**PRESETS["small"])) <= 5e6  # with the grid encoder; fp16 under 10 MB
    assert count(LocalImplicitConfig(**PRESETS["small_point"])) <= 3e6
    assert count(tiny()) < 100e3


def test_rejects_bad_config():
    with pytest.raises(ValueError):
        LocalImplicit(tiny(attention_impl="flash"))
    with pytest.raises(ValueError):
        LocalImplicit(tiny(max_neighbors=4, min_obs=4))  # 2 obs slots cannot hold 4 forced ones


# --- registry and bench -------------------------------------------------------------------------

def test_registered():
    from asf_core.models import build_model

    model = build_model("local_implicit", "tiny", max_neighbors=12)
    assert isinstance(model, LocalImplicit) and model.config.max_neighbors == 12


def test_bench_scaling_tiny(tmp_path):
    from asf_core.bench import build_parser, scaling, table

    out = tmp_path / "s.json"
    args = build_parser().parse_args(["scaling", "--arch", "local_implicit", "--preset", "tiny",
                                      "--sizes", "8,16", "--repeats", "1", "--in-process",
                                      "--json", str(out), "--plot", str(tmp_path / "s.png")])
    records = scaling(args)
    assert [(r["variant"], r["resolution"]) for r in records] == [
        ("sparse", 8), ("dense_ref", 8), ("sparse", 16), ("dense_ref", 16)]
    for r in records:
        assert r["seconds"] > 0 and r["peak_bytes"] is not None
        assert r["n_queries"] == r["resolution"] ** 2 and r["n_obs"] == round(0.2 * r["n_queries"])
    assert json.loads(out.read_text()) == records
    assert (tmp_path / "s.png").stat().st_size > 0
    assert "dense_ref" in table(records)


def test_bench_skips_dense_over_budget():
    from asf_core.bench import build_parser, scaling

    args = build_parser().parse_args(["scaling", "--arch", "local_implicit", "--preset", "tiny",
                                      "--sizes", "64", "--variants", "dense_ref", "--in-process",
                                      "--budget-gb", "0.01"])
    (rec,) = scaling(args)
    assert rec["seconds"] is None and "skipped" in rec["reason"]
