"""The grid observation encoder: SetConv geometry, grid sizes, once per solve; the U-Net's query check."""

import pytest
import torch

from asf_core.fields import make_mask, observations, pixel_coords
from asf_core.models import build_model
from asf_core.models.encoder import TINY, GridEncoder, GridEncoderConfig, SetConv, grid_side
from asf_core.ops.interp import TPS_MAX_POINTS
from asf_core.reconstruct import reconstruct


def obs(size=32, fraction=0.2, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, size, size, generator=g) * 2 - 1
    return (x, *observations(x, make_mask(b, size, size, fraction, generator=g)))


def perturbed(model):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def test_setconv_on_grid_points_land_on_their_cells():
    x, xy, rgb = obs()
    grid = SetConv(init_width=0.05)(xy, rgb, 32)  # a narrow kernel: each point fills its own cell only
    mask = grid[:, 0] > 0.5
    assert mask.sum(dim=(1, 2)).tolist() == [xy.shape[1]] * 2
    assert torch.allclose(grid[:, 1:].permute(0, 2, 3, 1)[mask], x.permute(0, 2, 3, 1)[mask], atol=1e-5)


def test_setconv_takes_off_grid_points_and_any_count():
    g = torch.Generator().manual_seed(1)
    conv = SetConv(0.5)
    one = conv(torch.zeros(1, 1, 2), torch.zeros(1, 1, 3), 32)[:, 0].sum()  # one point's mass
    for n in (1, 7, 300):
        xy = torch.rand(1, n, 2, generator=g) * 1.6 - 0.8  # off the cell centres, away from the edges
        grid = conv(xy, torch.rand(1, n, 3, generator=g), 32)
        assert grid.shape == (1, 4, 32, 32) and torch.isfinite(grid).all()
        # the density counts the points (±6% with sub-cell position at ℓ = ½ cell)
        assert torch.allclose(grid[:, 0].sum(), n * one, rtol=0.1)


def test_encoder_is_invariant_to_observation_order():
    enc = perturbed(GridEncoder(GridEncoderConfig(**TINY)))
    _, xy, rgb = obs()
    perm = torch.randperm(xy.shape[1], generator=torch.Generator().manual_seed(2))
    assert torch.allclose(enc.setconv(xy, rgb, 32), enc.setconv(xy[:, perm], rgb[:, perm], 32), atol=1e-6)
    # the spline input is evaluated in float32 from a float64 solve: order changes its last digits
    a, b = enc(xy, rgb), enc(xy[:, perm], rgb[:, perm])
    assert torch.allclose(a.feat, b.feat, atol=5e-3) and torch.allclose(a.mean, b.mean, atol=5e-3)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_grid_follows_the_observation_density(size):
    _, xy, rgb = obs(size, b=1)
    assert grid_side(xy.shape[1], GridEncoderConfig(**TINY)) == size
    g = GridEncoder(GridEncoderConfig(**TINY))(xy, rgb)
    assert g.feat.shape[-1] == size
    q = pixel_coords(size, size)[None]
    assert g.read(q).shape == (1, size * size, TINY["out_dim"] + 2)
    # x̂ starts at the spline, which passes through the observations (read at the cell centres;
    # a spline through white noise, evaluated in float32, is off by a few thousandths)
    if xy.shape[1] <= TPS_MAX_POINTS:  # above it the spline falls back to kNN, which smooths
        assert torch.allclose(g.mean_at(xy), rgb, atol=1e-2)


def test_encoder_runs_once_per_ode_solve():
    model = perturbed(build_model("local_implicit", "tiny_grid"))
    calls = []
    model.obs_encoder.register_forward_hook(lambda *a: calls.append(1))
    x, _, _ = obs(16)
    mask = make_mask(2, 16, 16, 0.2, generator=torch.Generator().manual_seed(0))
    reconstruct(model, x, mask, steps=5, solver="heun", samples=2)
    assert len(calls) == 1


def test_unet_refuses_queries_off_its_grid():
    model = build_model("unet", "tiny")
    _, xy, rgb = obs(8)
    q = pixel_coords(8, 8)
    v = model(x_t=torch.zeros(2, 64, 3), t=torch.zeros(2), query_xy=q, obs_xy=xy, obs_rgb=rgb)
    assert v.shape == (2, 64, 3)
    for bad in (q[:10], q.flip(0), q + 0.01):
        with pytest.raises(ValueError, match="every pixel centre of a square grid"):
            model(x_t=torch.zeros(2, len(bad), 3), t=torch.zeros(2), query_xy=bad, obs_xy=xy, obs_rgb=rgb)
