import pytest
import torch

from asf_core.flow import (
    flow_matching_loss,
    gaussian_velocity,
    interpolate,
    interpolate_obs,
    knn_interpolate,
    one_step_estimate,
    sample_t,
    source_sample,
    target_velocity,
    tps_interpolate,
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


def test_t_zero_prob_puts_that_share_at_zero():
    t = sample_t(20_000, "uniform", torch.Generator().manual_seed(0), zero_prob=0.3)
    assert abs((t == 0).float().mean() - 0.3) < 0.02
    rest = t[t > 0]
    assert abs(rest.mean() - 0.5) < 0.02  # the others stay uniform
    # zero_prob 0 draws nothing extra: the same times as before the option existed
    assert torch.equal(sample_t(64, "uniform", torch.Generator().manual_seed(1), zero_prob=0.0),
                       sample_t(64, "uniform", torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="zero_prob"):
        sample_t(2, zero_prob=1.0)


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


@pytest.mark.parametrize("t", [0.0, 0.3, 0.8, 1.0])
@pytest.mark.parametrize("mean_0,var_0", [(0.0, 1.0), (0.5, 0.09)])
def test_gaussian_velocity_is_the_regression_of_the_target_on_x_t(t, mean_0, var_0):
    """For independent Gaussians E[x_1 - x_0 | x_t] is linear in x_t: the least-squares line of
    Monte-Carlo targets on x_t must match the closed form."""
    g = torch.Generator().manual_seed(0)
    n, mean_1, var_1 = 400_000, 0.5, 0.04
    x_0 = mean_0 + var_0**0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    x_1 = mean_1 + var_1**0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    x_t = (1 - t) * x_0 + t * x_1
    design = torch.stack([torch.ones_like(x_t), x_t], 1)
    coef = torch.linalg.lstsq(design, (x_1 - x_0)[:, None]).solution[:, 0]
    probe = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    want = coef[0] + coef[1] * probe
    got = gaussian_velocity(probe, torch.tensor(t, dtype=torch.float64), mean_0, var_0,
                            torch.tensor(mean_1, dtype=torch.float64), torch.tensor(var_1,
                                                                                    dtype=torch.float64))
    assert torch.allclose(got, want, atol=0.02), (got, want)


@pytest.mark.parametrize("arch", ["perceiver_io", "local_implicit", "mamba"])
def test_prior_model_starts_at_interpolation(arch):
    """With the Gaussian prior and a zero-initialised head, x̂1 at t=0 from the interp source is the
    interpolation itself, whatever the noise: training starts at interpolation quality."""
    torch.manual_seed(0)
    model = build_model(arch, "tiny", prior="gaussian", prior_source="interp", prior_sigma=0.3).eval()
    g = torch.Generator().manual_seed(1)
    obs_xy, obs_rgb = torch.rand(2, 12, 2, generator=g) * 2 - 1, torch.rand(2, 12, 3, generator=g) * 2 - 1
    query_xy = torch.rand(2, 20, 2, generator=g) * 2 - 1
    x_0 = source_sample("interp", obs_xy, obs_rgb, query_xy, 0.3, g)
    with torch.no_grad():
        v = model(x_t=x_0, t=torch.zeros(2), query_xy=query_xy, obs_xy=obs_xy, obs_rgb=obs_rgb)
    assert torch.allclose(one_step_estimate(x_0, v, torch.zeros(2)), knn_interpolate(obs_xy, obs_rgb,
                                                                                     query_xy), atol=1e-5)


def test_tps_matches_the_scipy_baseline_on_a_pixel_mask():
    from scipy.interpolate import RBFInterpolator

    from asf_core.fields import make_mask, observations, pixel_coords

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 16, 16, generator=g)
    obs_xy, obs_rgb = observations(x, make_mask(2, 16, 16, 0.2, generator=g))
    q = pixel_coords(16, 16)
    out = tps_interpolate(obs_xy, obs_rgb, q)
    for i in range(2):
        ref = RBFInterpolator(obs_xy[i].double().numpy(), obs_rgb[i].double().numpy(),
                              kernel="thin_plate_spline", smoothing=1e-6)(q.double().numpy())
        assert abs(out[i].numpy() - ref).max() < 1e-3
    assert torch.allclose(tps_interpolate(obs_xy, obs_rgb, obs_xy), obs_rgb, atol=1e-3)  # it interpolates


def test_tps_batch_on_two_threads():
    """The app samples K images at once on 2 threads: torch's batched float64 solve failed there."""
    from asf_core.fields import make_mask, observations, pixel_coords

    g = torch.Generator().manual_seed(0)
    obs_xy, obs_rgb = observations(torch.rand(3, 3, 32, 32, generator=g), make_mask(3, 32, 32, 0.2,
                                                                                    generator=g))
    q = pixel_coords(32, 32)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = tps_interpolate(obs_xy, obs_rgb, q)
    finally:
        torch.set_num_threads(threads)
    for i in range(3):
        assert torch.allclose(out[i], tps_interpolate(obs_xy[i:i + 1], obs_rgb[i:i + 1], q)[0], atol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_tps_handles_degenerate_observations(n):
    """One or two points, or points on one line (a one-row mask), still give finite values."""
    line = torch.stack([torch.linspace(-1, 1, n), torch.zeros(n)], -1)[None]
    out = tps_interpolate(line, torch.rand(1, n, 3), torch.rand(1, 7, 2) * 2 - 1)
    assert out.shape == (1, 7, 3) and out.isfinite().all()


def test_interpolation_memo_is_exact():
    """The memo returns the last result only for the same tensors, unchanged, without gradients."""
    g = torch.Generator().manual_seed(0)
    obs_xy, obs_rgb, q = torch.rand(1, 9, 2, generator=g), torch.rand(1, 9, 3, generator=g), torch.rand(4, 2,
                                                                                                        generator=g)
    first = interpolate_obs("knn", obs_xy, obs_rgb, q)
    assert interpolate_obs("knn", obs_xy, obs_rgb, q) is first
    assert interpolate_obs("tps", obs_xy, obs_rgb, q) is not first  # another interpolant
    assert interpolate_obs("knn", obs_xy, obs_rgb.clone(), q) is not first  # another tensor
    obs_rgb.mul_(0.5)  # changed in place: recomputed
    assert torch.allclose(interpolate_obs("knn", obs_xy, obs_rgb, q), first * 0.5)
    obs_rgb.requires_grad_(True)
    out = interpolate_obs("knn", obs_xy, obs_rgb, q)
    out.sum().backward()
    assert obs_rgb.grad is not None and obs_rgb.grad.abs().sum() > 0


def test_tps_falls_back_to_knn_beyond_its_size_limit(monkeypatch):
    import asf_core.ops.interp as interp

    g = torch.Generator().manual_seed(0)
    obs_xy, obs_rgb = torch.rand(1, 40, 2, generator=g), torch.rand(1, 40, 3, generator=g)
    q = torch.rand(1, 5, 2, generator=g)
    monkeypatch.setattr(interp, "TPS_MAX_POINTS", 30)
    assert torch.equal(tps_interpolate(obs_xy, obs_rgb, q), knn_interpolate(obs_xy, obs_rgb, q))


def test_a_model_built_in_code_is_sampled_from_the_source_its_prior_describes():
    from asf_core.models import build_model
    from asf_core.reconstruct import source_settings

    model = build_model("perceiver_io", "small", prior_source="interp", prior_sigma=0.3)
    assert source_settings(model) == ("interp", 0.3)  # no checkpoint, no training record: its own prior
    assert source_settings(build_model("perceiver_io", "tiny")) == ("noise", 1.0)  # no prior: the default
