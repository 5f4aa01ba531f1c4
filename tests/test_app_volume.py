"""The 3D tab: the run, its figures, the slice slider and bad input, without a server (app.volume,
app.volume_tab). Nearest and linear at 5% keep every run well under a second."""

import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from app import volume as V
from asf_core import volumes


@pytest.fixture(scope="module")
def r():
    return V.run(1, 0.05, 3, "nearest")


@pytest.mark.parametrize("method", ["nearest", "linear"])
def test_run_scores_and_reproduces_observations(method):
    r = V.run(2, 0.05, 0, method)
    d = volumes.VOLUME_SIZE
    assert r.original.shape == r.recon.shape == (d, d, d, 3) and r.observed.shape == (d, d, d)
    assert r.observed.sum() == round(0.05 * d ** 3)
    assert math.isfinite(r.psnr) and math.isfinite(r.psnr_missing) and r.psnr > 20 and r.seconds >= 0
    assert r.psnr >= r.psnr_missing  # the observed voxels are exact, so the whole volume scores higher
    np.testing.assert_array_equal(r.recon[r.observed], r.original[r.observed])
    assert not np.array_equal(r.recon[~r.observed], r.original[~r.observed])
    np.testing.assert_array_equal(r.original, volumes.to_unit_3d(volumes.procedural_volumes(3)[2:3])[0])
    again = V.run(2, 0.05, 0, V.LABELS[method])  # a label picks the same method; a seed the same mask
    np.testing.assert_array_equal(again.observed, r.observed)
    np.testing.assert_array_equal(again.recon, r.recon)
    text = V.status(r)
    assert f"{r.psnr:.2f} dB" in text and f"{r.psnr_missing:.2f} dB" in text
    assert V.LABELS[method].split(":")[0] in text


def test_figures_build_with_their_trace_types(r):
    obs = V.observed_figure(r)
    assert [t.type for t in obs.data] == ["scatter3d"]
    assert len(obs.data[0].x) == r.observed.sum() <= V.MAX_SCATTER
    z, y, x = (int(obs.data[0][k][0]) for k in "zyx")  # the first point sits at an observed voxel
    assert r.observed[z, y, x]
    rgb = np.round(r.original[z, y, x] * 255).astype(int)
    assert obs.data[0].marker.color[0] == "rgb({},{},{})".format(*rgb)
    iso = V.iso_figure(r)
    assert [t.type for t in iso.data] == ["isosurface"]
    assert len(iso.data[0].value) == r.recon[..., 0].size
    sl = V.slices_figure(r, "z", 16)
    assert [t.type for t in sl.data] == ["image"] * 3
    for fig in (obs, iso, sl):
        assert len(fig.to_json()) < 400_000  # light enough for the browser


def test_many_observations_are_thinned_for_the_scatter():
    r = V.run(0, 0.3, 0, "nearest")
    fig = V.observed_figure(r)
    assert len(fig.data[0].x) == V.MAX_SCATTER < r.observed.sum()
    assert f"of {int(r.observed.sum()):,}" in fig.layout.title.text


def test_isosurface_values_follow_the_grid(r):
    d = r.recon.shape[0]
    iso = V.iso_figure(r).data[0]
    dens = V.departure(r.recon)
    i = 5 * d * d + 7 * d + 11  # x slowest, z fastest: x=5, y=7, z=11
    assert (int(iso.x[i]), int(iso.y[i]), int(iso.z[i])) == (5, 7, 11)
    assert iso.value[i] == pytest.approx(dens[11, 7, 5], rel=1e-5)


def test_departure_finds_a_solid_on_a_ramp():
    d = 16
    background = torch.tensor([[0.1, -0.2, 0.3], [0.3, 0, 0], [0, 0.2, 0], [0, 0, -0.3]])
    ball = volumes.Primitive("ellipsoid", torch.zeros(3), torch.eye(3), torch.full((3,), 0.4),
                             torch.tensor([0.9, 0.9, -0.9]), 20.0)
    ramp = volumes.to_unit_3d(volumes.render([], background, d)[None])[0]
    solid = volumes.to_unit_3d(volumes.render([ball], background, d)[None])[0]
    assert V.departure(ramp).max() < 1e-6
    dens = V.departure(solid)
    assert dens[d // 2, d // 2, d // 2] > 3 * V.DEPARTURE_LEVEL and dens[0, 0, 0] < 0.1 * V.DEPARTURE_LEVEL


def test_slice_function_returns_the_right_slice(r):
    a = np.arange(4 * 5 * 6).reshape(4, 5, 6)  # [z, y, x]
    np.testing.assert_array_equal(V.slice_of(a, "z", 2), a[2])
    np.testing.assert_array_equal(V.slice_of(a, "y", 3), a[:, 3])
    np.testing.assert_array_equal(V.slice_of(a, "x", 5.0), a[:, :, 5])  # a slider's float
    ims = V.slice_images(r, "y", 9)
    np.testing.assert_array_equal(ims["original"], np.round(r.original[:, 9] * 255).astype(np.uint8))
    np.testing.assert_array_equal(ims["reconstruction"], np.round(r.recon[:, 9] * 255).astype(np.uint8))
    seen = r.observed[:, 9]
    np.testing.assert_array_equal(ims["observed"][seen], ims["original"][seen])
    assert (ims["observed"][~seen] == V.MISSING_RGB).all()
    fig = V.slices_figure(r, "x", 20)
    want = np.round(r.recon[:, :, 20] * 255).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(fig.data[2].z), want)
    assert fig.layout.title.text == "Slice x = 20"


@pytest.mark.parametrize("args, match", [
    ((V.N_VOLUMES, 0.2, 0, "nearest"), "Volume index"),
    ((None, 0.2, 0, "nearest"), "Volume index"),
    ((1.5, 0.2, 0, "nearest"), "Volume index"),
    ((0, 0.9, 0, "nearest"), "Observed fraction"),
    ((0, float("nan"), 0, "nearest"), "Observed fraction"),
    ((0, 0.2, -1, "nearest"), "Mask seed"),
    ((0, 0.2, None, "nearest"), "Mask seed"),
    ((0, 0.2, 0, "kriging"), "unknown 3-D baseline"),
    ((0, 0.2, 0, None), "unknown 3-D baseline"),
])
def test_bad_input_is_one_line(args, match):
    with pytest.raises(ValueError, match=match) as e:
        V.run(*args)
    assert "\n" not in str(e.value)


def test_tab_events_turn_bad_input_into_gr_error(r):
    gr = pytest.importorskip("gradio")
    from app.volume_tab import fill_volume, slices

    for bad in [(0, 60, 0, "nearest", "z", 16), (0, None, 0, "nearest", "z", 16),
                (0, 5, 0, "nearest", "w", 16), (0, 5, 0, "nearest", "z", 32), (-1, 5, 0, "nearest", "z", 16)]:
        with pytest.raises(gr.Error) as e:
            fill_volume(*bad)
        assert "\n" not in str(e.value)
    with pytest.raises(gr.Error, match="Slice"):
        slices(r, "z", None)
    assert isinstance(slices(None, "z", 3), go.Figure)  # before any run: an empty figure, no error


def test_tab_builds_and_runs_its_defaults():
    gr = pytest.importorskip("gradio")
    from app.volume_tab import build_volume_tab, fill_volume, first_open, matching_preset, preset

    with gr.Blocks() as demo, gr.Tab("3D") as tab:
        build_volume_tab(tab)
    ids = {b.elem_id for b in demo.blocks.values()}
    assert {"volume_run", "volume_status", "volume_iso", "volume_slices", "volume_slice"} <= ids
    fns = list(demo.fns.values())
    assert fns and all(fn.api_visibility == "private" for fn in fns)
    out = fill_volume(0, 5, 0, "nearest", "z", 16)
    assert len(out) == 5 and "PSNR" in out[0] and isinstance(out[4], V.VolumeRun)
    assert [t.type for t in out[2].data] == ["isosurface"]
    assert all(isinstance(x, type(gr.skip())) for x in first_open(out[4], 0, 5, 0, "nearest", "z", 16))
    assert [preset(k) for k in V.PRESETS] == [20, 5] and matching_preset(5.0) == "5%"
    assert matching_preset(13) is None
