import pytest
import torch

from asf_core.fields import (
    MASK_KINDS,
    image_to_values,
    make_mask,
    observations,
    pixel_coords,
    values_to_image,
)


def test_pixel_coords_are_centres_in_unit_square():
    xy = pixel_coords(4, 2)
    assert xy.shape == (8, 2)
    assert torch.allclose(xy[0], torch.tensor([-0.5, -0.75]))  # (x, y) of the top-left pixel
    assert torch.allclose(xy[-1], torch.tensor([0.5, 0.75]))
    assert xy[1, 0] > xy[0, 0] and xy[2, 1] > xy[0, 1]  # row-major: x moves first


def test_values_round_trip():
    img = torch.randn(2, 3, 5, 7)
    assert torch.equal(values_to_image(image_to_values(img), 5, 7), img)


@pytest.mark.parametrize("fraction,h,w", [(0.2, 32, 32), (0.05, 7, 9), (1.0, 4, 4), (0.5, 3, 3)])
def test_random_mask_has_exact_count_and_is_seeded(fraction, h, w):
    m1 = make_mask(5, h, w, fraction, generator=torch.Generator().manual_seed(3))
    m2 = make_mask(5, h, w, fraction, generator=torch.Generator().manual_seed(3))
    m3 = make_mask(5, h, w, fraction, generator=torch.Generator().manual_seed(4))
    assert torch.equal(m1, m2)
    assert (m1.flatten(1).sum(1) == round(fraction * h * w)).all()
    if fraction < 1:
        assert not torch.equal(m1, m3)
        assert not torch.equal(m1[0], m1[1])  # each image has its own mask


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_bad_fraction_is_a_clear_error(fraction):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        make_mask(1, 8, 8, fraction)


def test_structured_masks_stay_in_their_region():
    h = w = 32
    g = torch.Generator().manual_seed(0)
    center = make_mask(2, h, w, 0.2, "center", generator=g)
    assert not center[:, 8:24, 8:24].any() and center.flatten(1).sum(1).eq(205).all()
    half = make_mask(2, h, w, 0.2, "half", generator=g)
    assert not half[:, :, 16:].any() and half.flatten(1).sum(1).eq(205).all()
    stripes = make_mask(2, h, w, 0.2, "stripes", generator=g)
    assert not stripes[:, 4:8].any() and stripes.flatten(1).sum(1).eq(205).all()
    full_half = make_mask(1, h, w, 1.0, "half")  # asks for more than the region: the region
    assert full_half.sum() == h * w // 2
    with pytest.raises(ValueError, match="unknown mask kind"):
        make_mask(1, h, w, 0.2, "spiral")
    assert set(MASK_KINDS) == {"random", "center", "stripes", "half"}


def test_observations_gather_the_right_pixels():
    img = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    mask = make_mask(2, 4, 4, 0.25, generator=torch.Generator().manual_seed(1))
    xy, rgb = observations(img, mask)
    assert xy.shape == (2, 4, 2) and rgb.shape == (2, 4, 3)
    for b in range(2):
        for (x, y), value in zip(xy[b], rgb[b]):
            j, i = int((x + 1) / 2 * 4), int((y + 1) / 2 * 4)
            assert mask[b, i, j]
            assert torch.equal(value, img[b, :, i, j])


def test_observations_reject_empty_or_ragged_masks():
    img = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="no pixel"):
        observations(img, torch.zeros(2, 4, 4, dtype=torch.bool))
    ragged = torch.zeros(2, 4, 4, dtype=torch.bool)
    ragged[0, 0, 0] = True
    with pytest.raises(ValueError, match="same number"):
        observations(img, ragged)


def test_mask_from_a_given_region():
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[:, :3] = True  # 24 allowed pixels
    m = make_mask(3, 8, 8, 0.25, region=region, generator=torch.Generator().manual_seed(0))
    assert (m.flatten(1).sum(1) == 16).all() and not m[:, :, 3:].any()
