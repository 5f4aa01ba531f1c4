import numpy as np
import pytest
import torch

from asf_core import baselines
from asf_core.fields import make_mask, pixel_coords, values_to_image
from asf_core.metrics import image_metrics, psnr


def affine_image(h=16, w=16):
    xy = pixel_coords(h, w)
    vals = torch.stack([0.3 * xy[:, 0], -0.2 * xy[:, 1], 0.1 * xy[:, 0] + 0.2 * xy[:, 1]], -1)
    return values_to_image(vals[None], h, w)


@pytest.mark.parametrize("name", ["linear", "tps", "biharmonic"])
def test_smooth_methods_recover_an_affine_field(name):
    img = affine_image()
    mask = make_mask(1, 16, 16, 0.3, generator=torch.Generator().manual_seed(0))
    out = baselines.reconstruct(name, img, mask)
    assert out.shape == img.shape
    err = (out - img).abs()
    if name == "tps":
        assert err.max() < 1e-4  # thin-plate splines reproduce affine functions exactly
    else:  # linear falls back to nearest outside the hull; biharmonic's boundary is approximate
        assert err[..., 3:-3, 3:-3].max() < (1e-4 if name == "linear" else 0.03)


# lmmse: 32×32, tests/test_lmmse.py
@pytest.mark.parametrize("name", [b for b in baselines.BASELINES if b != "lmmse"])
def test_observed_pixels_are_kept(name):
    img = torch.rand(2, 3, 12, 12) * 2 - 1
    mask = make_mask(2, 12, 12, 0.2, generator=torch.Generator().manual_seed(1))
    out = baselines.reconstruct(name, img, mask)
    assert torch.allclose(out[mask[:, None].expand_as(out)], img[mask[:, None].expand_as(img)], atol=1e-5)


def test_point_methods_at_a_higher_resolution():
    img = affine_image(8, 8)
    mask = make_mask(1, 8, 8, 0.5, generator=torch.Generator().manual_seed(2))
    out = baselines.reconstruct("tps", img, mask, out_hw=(16, 16))
    assert out.shape == (1, 3, 16, 16)
    assert (out - affine_image(16, 16)).abs().max() < 1e-4
    with pytest.raises(ValueError, match="input grid"):
        baselines.reconstruct("biharmonic", img, mask, out_hw=(16, 16))
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.reconstruct("kriging", img, mask)


def test_psnr_and_ssim_values():
    a = np.zeros((1, 4, 4, 3))
    b = np.full((1, 4, 4, 3), 0.1)
    assert np.allclose(psnr(b, a), 20.0)  # mse 0.01 on [0, 1]
    where = np.zeros((1, 4, 4), dtype=bool)
    where[0, 0, 0] = True
    c = a.copy()
    c[0, 0, 0] = 0.1
    assert np.allclose(psnr(c, a, where), 20.0)  # only the selected pixel counts
    img = torch.rand(2, 3, 16, 16) * 2 - 1
    mask = torch.zeros(2, 16, 16, dtype=torch.bool)
    m = image_metrics(img, img, mask)
    assert np.allclose(m["ssim"], 1.0) and (m["psnr"] > 100).all()
