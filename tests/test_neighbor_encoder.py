"""nn.NeighborEncoder, the query feature of each query's k nearest observations, in every model."""

from dataclasses import fields

import pytest
import torch

from asf_core.checkpoint import CheckpointError, load_model
from asf_core.models import MODELS, build_model
from asf_core.nn import NeighborEncoder
from asf_core.train import train
from tests.test_models import inputs, tiny
from tests.test_train import tiny_config

# the architectures with the point encoder's fields
POINT_ARCHS = [a for a in MODELS if "neighbor_k" in {f.name for f in fields(MODELS[a][1])}]


def encoder_inputs(b=2, n=30, q=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs_xy, obs_rgb = torch.rand(b, n, 2, generator=g) * 2 - 1, torch.rand(b, n, 3, generator=g) * 2 - 1
    query_xy = torch.rand(1, q, 2, generator=g) * 2 - 1
    return query_xy, obs_xy, obs_rgb, torch.rand(b, q, 3, generator=g) * 2 - 1


def perturbed(enc: NeighborEncoder) -> NeighborEncoder:
    torch.manual_seed(1)
    with torch.no_grad():
        enc.proj.weight.normal_(0, 0.1)  # zero-initialised; give it an output to test
    return enc


def test_starts_at_zero_and_depends_on_the_nearest_observations_only():
    query_xy, obs_xy, obs_rgb, interp = encoder_inputs()
    enc = NeighborEncoder(k=4, dim=8, hidden=16)
    assert not enc(query_xy, obs_xy, obs_rgb, interp).any()
    enc = perturbed(enc)
    out = enc(query_xy, obs_xy, obs_rgb, interp)
    assert out.shape == (2, 50, 8)
    d2 = (query_xy[0, 0] - obs_xy[0]).square().sum(-1)
    near, far = d2.argsort()[0], d2.argsort()[-1]
    for j, changes in ((near, True), (far, False)):
        rgb = obs_rgb.clone()
        rgb[0, j] += 0.5
        moved = enc(query_xy, obs_xy, rgb, interp)
        assert (moved[0, 0] != out[0, 0]).any() == changes
        assert torch.equal(moved[1], out[1])  # images are independent


def test_blocks_without_grad_equal_one_pass_with_grad_and_order_does_not_matter():
    query_xy, obs_xy, obs_rgb, interp = encoder_inputs(q=70)
    enc = perturbed(NeighborEncoder(k=5, dim=8, hidden=16))
    enc.BLOCK = 160  # 16 queries of 2 images × 5 neighbours per block: several blocks
    with torch.no_grad():
        blocked = enc(query_xy, obs_xy, obs_rgb, interp)
    whole = enc(query_xy, obs_xy, obs_rgb, interp)
    torch.testing.assert_close(blocked, whole.detach())
    perm = torch.randperm(obs_xy.shape[1])
    with torch.no_grad():
        torch.testing.assert_close(enc(query_xy, obs_xy[:, perm], obs_rgb[:, perm], interp), blocked)


def test_offsets_are_in_units_of_the_observation_spacing():
    # the same configuration at twice the density and half the scale reads the same
    query_xy, obs_xy, obs_rgb, interp = encoder_inputs(b=1, n=25, q=10)
    enc = perturbed(NeighborEncoder(k=4, dim=8, hidden=16))
    far = obs_xy + 10  # extra observations far away quadruple N without changing the k nearest
    dense_xy = torch.cat([obs_xy / 2, far.repeat(1, 3, 1)], 1)
    dense_rgb = obs_rgb.repeat(1, 4, 1)
    with torch.no_grad():
        torch.testing.assert_close(enc(query_xy / 2, dense_xy, dense_rgb, interp), enc(query_xy, obs_xy,
                                                                                       obs_rgb, interp))


@pytest.mark.parametrize("arch", POINT_ARCHS)
def test_every_model_reads_the_encoder_and_starts_as_without_it(arch):
    plain = tiny(arch)  # every parameter perturbed, so outputs are informative
    model = build_model(arch, "tiny", neighbor_k=4, neighbor_hidden=16).eval()
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert missing and all(k.startswith("neighbor_enc.") for k in missing) and not unexpected
    x = inputs()
    with torch.no_grad():
        torch.testing.assert_close(model(**x), plain(**x))
        perturbed(model.neighbor_enc)
        assert not torch.allclose(model(**x), plain(**x))


def test_init_from_adds_the_encoder_and_refuses_other_mismatches(tmp_path):
    train(tiny_config(tmp_path / "a", max_steps=2))
    train(tiny_config(tmp_path / "b", max_steps=1, init_from=str(tmp_path / "a"), lr=1e-12, warmup_steps=1,
                      model_overrides="neighbor_k=4,neighbor_hidden=16"))
    a, b = load_model(tmp_path / "a"), load_model(tmp_path / "b")
    assert b.neighbor_enc is not None
    for name, p in a.state_dict().items():
        torch.testing.assert_close(p, b.state_dict()[name], atol=1e-6, rtol=0)
    with pytest.raises(CheckpointError, match="do not match"):
        train(tiny_config(tmp_path / "c", max_steps=1, init_from=str(tmp_path / "a"),
                          model_overrides="d_model=48"))


@pytest.mark.parametrize("arch", POINT_ARCHS)
def test_a_context_computed_once_gives_every_step_the_same_velocity(arch):
    model = build_model(arch, "tiny", neighbor_k=4, neighbor_hidden=16).eval()
    perturbed(model.neighbor_enc)
    x = inputs(shared_queries=True)
    with torch.no_grad():
        ctx = model.context(query_xy=x["query_xy"], obs_xy=x["obs_xy"], obs_rgb=x["obs_rgb"])
        for t in (0.0, 0.5):
            step = dict(x, t=torch.full_like(x["t"], t))
            torch.testing.assert_close(model(**step, context=ctx), model(**step))


@pytest.mark.parametrize("arch", POINT_ARCHS)
def test_an_ode_solve_encodes_the_neighbours_once(arch, monkeypatch):
    from asf_core.fields import make_mask
    from asf_core.reconstruct import reconstruct

    model = build_model(arch, "tiny", neighbor_k=4, neighbor_hidden=16).eval()
    calls = []
    encode = NeighborEncoder.forward
    monkeypatch.setattr(NeighborEncoder, "forward", lambda self, *a: calls.append(1) or encode(self, *a))
    images = torch.rand(2, 3, 8, 8) * 2 - 1
    mask = make_mask(2, 8, 8, 0.3, generator=torch.Generator().manual_seed(0))
    reconstruct(model, images, mask, steps=5, solver="heun", generator=torch.Generator().manual_seed(0))
    assert len(calls) == 1
