"""The linear-MMSE baseline against the Gaussian it assumes: exact conditional mean, calibrated samples."""

import torch

from asf_core import lmmse
from asf_core.evaluate import calibration
from asf_core.fields import make_mask


def gaussian_images(n, size=4, seed=0):
    """uint8-free float images drawn from a known correlated Gaussian, and its statistics."""
    g = torch.Generator().manual_seed(seed)
    d = 3 * size * size
    a = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    cov = 0.02 * (a @ a.T) + 0.01 * torch.eye(d, dtype=torch.float64)
    mean = torch.zeros(d, dtype=torch.float64)
    x = torch.distributions.MultivariateNormal(mean, cov).sample((n,)).float().view(n, 3, size, size)
    return x, lmmse.GaussianStats(mean, cov, (size, size))


def test_conditional_mean_is_the_gaussian_one():
    x, s = gaussian_images(3)
    mask = make_mask(3, 4, 4, 0.5, generator=torch.Generator().manual_seed(1))
    mean, _ = lmmse.reconstruct(x, mask, s)
    for i in range(3):
        seen = mask[i].flatten().repeat(3)
        o, m = seen.nonzero()[:, 0], (~seen).nonzero()[:, 0]
        s_oo = s.cov[o][:, o] + lmmse.JITTER * torch.eye(len(o), dtype=torch.float64)
        ref = s.cov[m][:, o] @ torch.linalg.solve(s_oo, x[i].flatten()[o].double())
        assert torch.allclose(mean[i].flatten()[m].double(), ref.clamp(-1, 1), atol=1e-5)
        assert torch.equal(mean[i].flatten()[o], x[i].flatten()[o].clamp(-1, 1))


def test_samples_are_calibrated():
    x, s = gaussian_images(400, seed=2)
    mask = make_mask(400, 4, 4, 0.25, generator=torch.Generator().manual_seed(3))
    _, draws = lmmse.reconstruct(x, mask, s, samples=2, generator=torch.Generator().manual_seed(4))
    pair, err = calibration(draws, x.clamp(-1, 1), mask)
    assert 0.85 < pair / err < 1.15


def test_fit_stats_of_flipped_images():
    images = torch.randint(0, 256, (50, 3, 4, 4), dtype=torch.uint8)
    s = lmmse.fit_stats(images)
    assert s.mean.shape == (48,) and s.cov.shape == (48, 48)
    assert torch.allclose(s.cov, s.cov.T)


def test_low_rank_release_round_trip_and_bad_files(tmp_path):
    import pytest

    _, s = gaussian_images(1)
    model = lmmse.low_rank(s, 40)
    values = torch.linalg.eigvalsh(s.cov).flip(0)
    assert torch.allclose(model.values.double(), values[:40], rtol=1e-5)
    assert abs(model.noise - float(values[40:].mean())) < 1e-9
    # along a kept eigenvector the model's variance is λ + σ², along the others σ² (probabilistic PCA)
    vecs = torch.linalg.eigh(s.cov).eigenvectors.flip(1)
    var = torch.einsum("di,de,ei->i", vecs, model.stats().cov, vecs)
    assert torch.allclose(var[:40], values[:40] + model.noise, rtol=2e-3)
    assert torch.allclose(var[40:], torch.full((8,), model.noise, dtype=torch.float64), rtol=2e-2)
    path = lmmse.save_release(model, tmp_path / "release")
    back = lmmse.load_release(tmp_path / "release")
    assert back.hw == (4, 4) and back.noise == pytest.approx(model.noise)
    assert torch.equal(back.basis, model.basis) and torch.equal(back.mean, model.mean)
    assert not list((tmp_path / "release").glob("*.tmp"))  # written whole, then swapped in
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(ValueError, match="is not a linear-MMSE release"):
        lmmse.load_release(tmp_path / "release")
    with pytest.raises(ValueError, match="is not a linear-MMSE release"):
        lmmse.load_release(tmp_path / "absent")
    with pytest.raises(ValueError, match="rank must be"):
        lmmse.low_rank(s, 48)
