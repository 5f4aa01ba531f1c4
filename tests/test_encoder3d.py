"""The 3-D grid encoder: SetConv3D (fast op against its reference, order invariance, off-grid points),
the U-Net's shapes on 16³ and 32³ grids, the continuous read-out, the training tool's data stream and
export round trip on a tiny run, and the shipped checkpoint against the nearest-neighbour baseline."""

import math

import pytest
import torch

from asf_core import volumes
from asf_core.models.encoder3d import (
    VolumeEncoder,
    load_volume_encoder,
    local_quadratic3d,
    preset,
    setconv3d,
    setconv3d_ref,
)


def observed(n=2, d=16, fraction=0.2, seed=0):
    vols = volumes.procedural_volumes(n, d, volumes.TEST_SEED)
    mask = volumes.make_mask_3d(n, d, fraction, generator=torch.Generator().manual_seed(seed))
    return vols, mask, *volumes.observations_3d(vols, mask)


# ---------------------------------------------------------------- SetConv3D


@pytest.mark.parametrize("d", [16, 32])
def test_fast_setconv_matches_reference_at_voxel_centres(d):
    _, _, xyz, rgb = observed(d=d, fraction=0.05)
    widths = torch.tensor([0.8, 2.0])
    fast, ref = setconv3d(xyz, rgb, d, widths, 4), setconv3d_ref(xyz, rgb, d, widths, 4)
    assert fast.shape == ref.shape == (2, 8, d, d, d)
    density = ref[:, ::4]
    assert torch.allclose(fast[:, ::4], density, atol=1e-4)
    covered = (density > 1e-2).repeat_interleave(3, 1)  # normalised values where the density is real
    v_fast = torch.cat([fast[:, 4 * k + 1:4 * k + 4] for k in range(2)], 1)
    v_ref = torch.cat([ref[:, 4 * k + 1:4 * k + 4] for k in range(2)], 1)
    assert torch.allclose(v_fast[covered], v_ref[covered], atol=1e-4)


@pytest.mark.parametrize("op", [setconv3d, setconv3d_ref])
def test_setconv_is_order_invariant_and_takes_any_count(op):
    _, _, xyz, rgb = observed(fraction=0.1)
    perm = torch.randperm(xyz.shape[1], generator=torch.Generator().manual_seed(1))
    widths = torch.tensor([1.0])
    a, b = op(xyz, rgb, 16, widths, 3), op(xyz[:, perm], rgb[:, perm], 16, widths, 3)
    assert torch.allclose(a, b, atol=1e-5)
    one = op(xyz[:, :1], rgb[:, :1], 16, widths, 3)  # a single observation
    assert one.shape == (2, 4, 16, 16, 16) and torch.isfinite(one).all()


def test_off_grid_observations_spread_their_mass_and_keep_their_value():
    # two points between voxel centres, far apart: each spreads its unit mass around itself, and the
    # normalised values near each equal its colour
    xyz = torch.tensor([[[-0.47, -0.41, -0.52], [0.43, 0.38, 0.51]]])
    rgb = torch.tensor([[[0.9, -0.2, 0.1], [-0.6, 0.4, 0.8]]])
    d, widths = 16, torch.tensor([0.7])
    out = setconv3d(xyz, rgb, d, widths, 3)
    t = torch.arange(-3, 4, dtype=torch.float32)
    per_point = torch.exp(-t**2 / (2 * 0.7**2)).sum() ** 3  # an interior on-grid point's total weight
    assert out[0, 0].sum() == pytest.approx(2 * float(per_point), rel=1e-4)
    for p in range(2):
        cell = ((xyz[0, p] + 1) * d / 2 - 0.5).round().long()  # nearest voxel, as (x, y, z)
        assert torch.allclose(out[0, 1:4, cell[2], cell[1], cell[0]], rgb[0, p], atol=1e-4)
    # the reference op, a pure Gaussian, puts the density peak at the same voxel
    ref = setconv3d_ref(xyz, rgb, d, widths, 3)
    assert ref[0, 0].argmax() == out[0, 0].argmax()


def test_local_quadratic_reproduces_a_quadratic_field():
    d = 16
    xyz = volumes.voxel_coords(d)  # (V, 3)
    x, y, z = xyz.unbind(-1)
    f = 0.3 + 0.2 * x - 0.1 * y + 0.3 * z + 0.2 * x * y - 0.15 * z**2 + 0.1 * y**2  # (V,)
    vol = volumes.values_to_volume(f[None, :, None].expand(1, -1, 3), d)  # (1, 3, D, D, D)
    mask = volumes.make_mask_3d(1, d, 0.2, generator=torch.Generator().manual_seed(0))
    obs_xyz, obs_rgb = volumes.observations_3d(vol, mask)
    fit = local_quadratic3d(obs_xyz, obs_rgb, d, width=1.2, reach=3, ridge=0.0)
    inner = (slice(None), slice(None), *[slice(3, -3)] * 3)  # a full window of observations around
    assert torch.allclose(fit[inner], vol[inner], atol=2e-3)  # exact but for the solve's 1e-5 jitter
    smoothed = local_quadratic3d(obs_xyz, obs_rgb, d, width=1.2, reach=3)  # the ridge: a slight bias
    assert (smoothed - vol).abs().mean() < 0.02


# ---------------------------------------------------------------- the encoder


@pytest.mark.parametrize("d", [16, 32])
def test_encoder_shapes_and_continuous_read_out(d):
    torch.manual_seed(0)
    model = VolumeEncoder(preset("tiny")).eval()
    for p in model.unet.out.parameters():  # a non-zero correction, so the read-out is not just SetConv
        torch.nn.init.normal_(p, std=0.1)
    _, _, xyz, rgb = observed(d=d)
    with torch.no_grad():
        field = model.encode(xyz, rgb, d)
        assert field.mean.shape == (2, 3, d, d, d)
        centres = volumes.voxel_coords(d)[None]  # (1, V, 3)
        at_centres = field.mean_at(centres)  # (2, V, 3)
        grid = volumes.volume_to_values(field.mean.clamp(-1, 1))
        assert torch.allclose(at_centres, grid, atol=1e-5)  # exact at the voxel centres
        q = torch.rand(2, 50, 3, generator=torch.Generator().manual_seed(2)) * 2 - 1  # anywhere
        out = model(query_xyz=q, obs_xyz=xyz, obs_rgb=rgb, side=d)
        assert out.shape == (2, 50, 3) and out.abs().max() <= 1
        # halfway between two neighbouring centres along x, the mean of the two
        i = (d // 2) * d * d + (d // 2) * d + d // 2  # voxel (x, y, z) = (d/2, d/2, d/2)
        mid = (centres[:, i] + centres[:, i + 1]) / 2
        want = (field.mean[:, :, d // 2, d // 2, d // 2] + field.mean[:, :, d // 2, d // 2, d // 2 + 1]) / 2
        assert torch.allclose(field.mean_at(mid[:, None])[:, 0], want.clamp(-1, 1), atol=1e-5)


def test_untrained_encoder_is_its_interpolant():
    _, _, xyz, rgb = observed()
    with torch.no_grad():
        field = VolumeEncoder(preset("tiny")).eval().encode(xyz, rgb, 16)
        assert torch.equal(field.mean, field.setconv[:, 1:4])  # zero-initialised correction on SetConv
        field = VolumeEncoder(preset("tiny", base="quadratic")).eval().encode(xyz, rgb, 16)
        width = 0.72 * (16**3 / xyz.shape[1]) ** (1 / 3)
        quad = local_quadratic3d(xyz, rgb, 16, width, math.ceil(2.5 * width)).clamp(-1.5, 1.5)
        assert torch.allclose(field.mean, quad)


def test_encoder_rejects_a_side_off_its_stride():
    model = VolumeEncoder(preset("small"))
    _, _, xyz, rgb = observed()
    with pytest.raises(ValueError, match="multiple of 4"):
        model.encode(xyz, rgb, 18)


# ---------------------------------------------------------------- the training tool


def test_stream_matches_the_procedural_split_and_export_round_trips(tmp_path):
    from tools import train_volume_encoder as T

    assert torch.equal(T.stream_volumes(volumes.TRAIN_SEED, 2, 2, 8),
                       volumes.procedural_volumes(4, 8, volumes.TRAIN_SEED)[2:])
    run = tmp_path / "run"
    args = ["train", "--out", str(run), "--preset", "tiny", "--size", "8", "--batch-size", "2",
            "--max-steps", "3", "--val-n", "1", "--val-every", "2", "--warmup-steps", "1", "--threads", "1"]
    T.main(args)
    T.main([("4" if a == "3" else a) for a in args] + ["--resume"])  # on to step 4
    T.main(["export", "--out", str(run), "--to", str(tmp_path / "rel")])
    model = load_volume_encoder(tmp_path / "rel")
    st = torch.load(run / T.STATE_NAME, weights_only=True)
    assert st["step"] == 4 and st["volumes_seen"] == 8 and len(st["commands"]) == 2
    for k, v in model.state_dict().items():
        assert torch.allclose(v, st["ema"][k].half().float())
    assert "4 | 8 |" in (tmp_path / "rel" / "MODEL_CARD.md").read_text()
