import pytest
import torch

from asf_core.flow import (
    flow_matching_loss,
    interpolate,
    knn_interpolate,
    one_step_estimate,
    sample_t,
    source_sample,
    target_velocity,
)
from asf_core.models import build_model


def test_path_endpoints_and_velocity():
    x0, x1 = torch.randn(4, 6, 3), torch.randn(4, 6, 3)
    assert torch.equal(interpolate(x0, x1, torch.zeros(4)), x0)
    assert torch.allclose(interpolate(x0, x1, torch.ones(4)), x1)
    t = torch.rand(4)
    xt = interpolate(x0, x1, t)
    # on the straight path the exact velocity recovers the data in one step from any t
    assert torch.allclose(one_step_estimate(xt, target_velocity(x0, x1), t), x1, atol=1e-6)


@pytest.mark.parametrize("kind", ["uniform", "logit_normal"])
def test_t_samplers(kind):
    t = sample_t(10_000, kind, torch.Generator().manual_seed(0))
    assert ((t >= 0) & (t <= 1)).all() and abs(t.mean() - 0.5) < 0.02
    with pytest.raises(ValueError, match="unknown t sampler"):
        sample_t(2, "beta")


def test_knn_interpolation_is_local_and_bounded():
    g = torch.Generator().manual_seed(0)
    obs_xy, obs_rgb = torch.rand(2, 30, 2, generator=g) * 2 - 1, torch.rand(2, 30, 3, generator=g)
    const = torch.full_like(obs_rgb, 0.3)
    assert torch.allclose(knn_interpolate(obs_xy, const, obs_xy), const)  # constants are kept
    dense_xy = torch.rand(2, 400, 2, generator=g) * 2 - 1
    smooth = dense_xy[..., :1].expand(-1, -1, 3) * 0.5  # a smooth field is recovered closely
    q = torch.rand(2, 50, 2, generator=g) * 1.6 - 0.8
    assert (knn_interpolate(dense_xy, smooth, q) - q[..., :1] * 0.5).abs().max() < 0.05
    q = torch.rand(50, 2, generator=g) * 2 - 1
    out = knn_interpolate(obs_xy, obs_rgb, q, chunk=7)
    assert out.shape == (2, 50, 3) and (out >= 0).all() and (out <= 1).all()
    assert torch.allclose(out, knn_interpolate(obs_xy, obs_rgb, q))  # chunking changes nothing


def test_sources():
    g = torch.Generator().manual_seed(0)
    obs_xy, obs_rgb = torch.rand(3, 10, 2) * 2 - 1, torch.rand(3, 10, 3)
    q = torch.rand(3, 40, 2) * 2 - 1
    noise = source_sample("noise", obs_xy, obs_rgb, q, 1.0, g)
    assert noise.shape == (3, 40, 3)
    informed = source_sample("interp", obs_xy, obs_rgb, q, 0.0, g)
    assert torch.allclose(informed, knn_interpolate(obs_xy, obs_rgb, q))
    with pytest.raises(ValueError, match="unknown source"):
        source_sample("gan", obs_xy, obs_rgb, q)


@pytest.mark.parametrize("source", ["noise", "interp"])
def test_loss_trains_a_tiny_model(source):
    torch.manual_seed(0)
    model = build_model("perceiver_io", "tiny")
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    g = torch.Generator().manual_seed(0)
    obs_xy = torch.rand(8, 16, 2, generator=g) * 2 - 1
    obs_rgb = obs_xy[..., :1].expand(-1, -1, 3) * 0.5  # a simple field the model can learn
    q = torch.rand(8, 24, 2, generator=g) * 2 - 1
    x1 = q[..., :1].expand(-1, -1, 3) * 0.5
    losses = []
    for _ in range(60):
        loss = flow_matching_loss(model, x_1=x1, query_xy=q, obs_xy=obs_xy, obs_rgb=obs_rgb,
                                  source=source, sigma=0.5, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10
