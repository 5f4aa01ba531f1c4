"""One suite over every entry of MODELS: the shared signature and the properties every model owes."""

import pytest
import torch

from asf_core.checkpoint import load_model, save_pretrained
from asf_core.fields import pixel_coords
from asf_core.models import MODELS, build_model, make_config

ARCHS = list(MODELS)
# every architecture with and without the grid observation encoder (the U-Net always has it)
CASES = [(a, p) for a in MODELS for p in ("tiny", "tiny_grid") if p in MODELS[a][2]]
B, N, Q = 2, 12, 64


def inputs(seed: int = 0, shared_queries: bool = False):
    g = torch.Generator().manual_seed(seed)
    # a pixel grid: the U-Net answers only there (spacing 0.25, inside the radius)
    query_xy = pixel_coords(8, 8)
    return dict(
        x_t=torch.randn(B, Q, 3, generator=g),
        t=torch.rand(B, generator=g),
        query_xy=query_xy if shared_queries else query_xy.expand(B, -1, -1).clone(),
        obs_xy=torch.rand(B, N, 2, generator=g) * 2 - 1,
        obs_rgb=torch.rand(B, N, 3, generator=g) * 2 - 1,
    )


def tiny(arch: str, preset: str = "tiny") -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(arch, preset).eval()
    # the output heads start at zero (adaLN-Zero); perturb every parameter so outputs are informative
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.mark.parametrize("arch,preset", CASES)
def test_shapes_and_shared_queries(arch, preset):
    model = tiny(arch, preset)
    v = model(**inputs())
    assert v.shape == (B, Q, 3) and torch.isfinite(v).all()
    assert torch.allclose(model(**inputs(shared_queries=True)), v, atol=1e-5)


@pytest.mark.parametrize("arch,preset", CASES)
def test_deterministic(arch, preset):
    assert torch.equal(tiny(arch, preset)(**inputs()), tiny(arch, preset)(**inputs()))


@pytest.mark.parametrize("arch,preset", CASES)
def test_depends_on_time_observations_and_state(arch, preset):
    model, base = tiny(arch, preset), inputs()
    v = model(**base)
    for key, change in [("t", lambda t: 1 - t), ("obs_rgb", lambda o: -o), ("x_t", lambda x: x + 1)]:
        other = dict(base, **{key: change(base[key])})
        assert not torch.allclose(model(**other), v, atol=1e-4), key


@pytest.mark.parametrize("arch,preset", CASES)
def test_queries_exchange_information(arch, preset):
    # a model that decodes each query alone gives per-pixel-independent, speckled samples
    model, base = tiny(arch, preset), inputs()
    v = model(**base)
    x_t = base["x_t"].clone()
    x_t[:, 0] += 3.0  # change one query's state only
    v2 = model(**dict(base, x_t=x_t))
    assert not torch.allclose(v2[:, 1:], v[:, 1:], atol=1e-5)


@pytest.mark.parametrize("arch,preset", CASES)
def test_batch_elements_are_independent(arch, preset):
    model, base = tiny(arch, preset), inputs()
    v = model(**base)
    obs = base["obs_rgb"].clone()
    obs[1] = -obs[1]
    v2 = model(**dict(base, obs_rgb=obs))
    assert torch.allclose(v2[0], v[0], atol=1e-5)


@pytest.mark.parametrize("arch,preset", CASES)
def test_attention_maps_are_returned(arch, preset):
    model = tiny(arch, preset)
    out = model(**inputs(), return_attention=True)
    assert isinstance(out, tuple) and len(out) == 2
    v, maps = out
    assert torch.allclose(v, model(**inputs()), atol=1e-5)
    assert isinstance(maps, dict)
    if arch == "unet":  # a conv net has no attention to report
        assert maps == {}
        return
    tokens = maps["token_xy"]  # the observations, or the grid encoder's cells
    assert maps["n_obs"] == tokens.shape[1] and (preset == "tiny_grid" or tokens.shape[1] == N)


@pytest.mark.parametrize("arch,preset", CASES)
def test_gradients_reach_every_parameter(arch, preset):
    model = build_model(arch, preset).train()
    with torch.no_grad():  # leave the zero-initialised heads so gradients flow everywhere
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    v = model(**inputs())
    v.square().mean().backward()
    dead = [n for n, p in model.named_parameters()
            if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert not dead, dead


@pytest.mark.parametrize("arch,preset", CASES)
def test_save_load_round_trip(arch, preset, tmp_path):
    model = tiny(arch, preset)
    save_pretrained(model, tmp_path / arch, arch=arch, train={"steps": 1})
    loaded = load_model(tmp_path / arch)
    assert loaded.arch == arch and not loaded.training
    assert torch.equal(loaded(**inputs()), model(**inputs()))


@pytest.mark.parametrize("arch", ARCHS)
def test_presets_and_overrides(arch):
    _, _, presets = MODELS[arch]
    assert {"tiny", "small", "paper"} <= set(presets)
    small = build_model(arch, "small")
    assert sum(p.numel() for p in small.parameters()) <= 5e6  # fp16 weights under 10 MB
    with pytest.raises(ValueError, match="unknown"):
        make_config(arch, "tiny", not_a_field=1)
    with pytest.raises(ValueError, match="unknown preset"):
        make_config(arch, "huge")


def test_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("transformer_xl")
