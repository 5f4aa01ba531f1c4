"""The UI's event functions (app.handlers) without a browser: sample loading, masks, the streamed
run with its final outputs, Stop, scrubbing, locality clicks and knob visibility."""

from __future__ import annotations

import numpy as np
import pytest

gr = pytest.importorskip("gradio")

from app.handlers import DISPLAY, Handlers, method_key, samples  # noqa: E402
from app.inference import Reconstructor  # noqa: E402
from tests.app_fixtures import tiny_checkpoints  # noqa: E402


@pytest.fixture(scope="module")
def ev(tmp_path_factory):
    return Handlers(Reconstructor(tiny_checkpoints(tmp_path_factory.mktemp("pretrained"))))


@pytest.fixture
def state(ev):
    state, original, canvas = ev.load(samples()[0][0], None)
    assert state["image"].shape == (32, 32, 3) and canvas["background"].shape == (256, 256, 3)
    state, observed, info = ev.make_mask(state, "random", 20, 0, None)
    assert observed.shape == (32 * DISPLAY, 32 * DISPLAY, 3) and info.startswith("205 of 1024")
    return state


def test_brush_mask(ev, state):
    paint = np.zeros((256, 256, 4), np.uint8)
    paint[:, :128, 3] = 255  # the left half of the display canvas
    brush = {"background": None, "layers": [paint], "composite": None}
    state, observed, info = ev.make_mask(state, "brush", 100, 0, brush)
    assert not state["mask"][:, :16].any() and state["mask"][:, 16:].all()
    assert "512 painted over" in info and (observed[:, :128] == 128).all()


def test_samples_bundled():
    names = [caption for _, caption in samples()]
    assert len(names) >= 16 and "cat" in names and "astronaut" in names


def test_method_names():
    assert method_key("Local Implicit") == "local_implicit" == method_key("local_implicit")
    assert method_key("Thin-plate spline") == "tps" and method_key("MAMBA") == "mamba"
    with pytest.raises(gr.Error):
        method_key("nope")


def test_knob_visibility(ev):
    radius, d_state, steps, solver, k = ev.knob_visibility("Local Implicit")
    assert radius["visible"] and not d_state["visible"] and steps["visible"]
    radius, d_state, steps, solver, k = ev.knob_visibility("Biharmonic")
    assert not any(u["visible"] for u in (radius, d_state, steps, solver, k))


def test_run_scrub_and_locality(ev, state):
    outs = list(ev.run(state, "Local Implicit", 4, "euler", 0, 2, 0.3, None, 32, None))
    status, xt, x1, chart, result, mean, std, metrics, download, slider, note, state = outs[-1]
    assert status.startswith("Done") and result.shape == (256, 256, 3)
    assert mean["visible"] and mean["value"].shape == std["value"].shape == (256, 256, 3)
    assert metrics["nfe"] == 4 and "psnr_mean" in metrics and download["visible"]
    assert "std_error_corr" in metrics and "Calibration" in note  # K = 2: std against |error|
    assert slider["maximum"] == 4 and len(state["frames"]) == 5
    status, xt, x1 = ev.scrub(state, 1)
    assert "step 1/4" in status and xt.shape == (256, 256, 3)
    click = gr.SelectData(None, {"index": [20 * DISPLAY + 3, 10 * DISPLAY + 7], "value": None})
    attn, infl, scan, text = ev.locality(state, click)
    assert "Pixel (10, 20)" in text and "Radius" in text and attn.data[0].z.shape == (32, 32)


def test_stop(ev, state):
    run = ev.run(state, "MAMBA", 60, "euler", 0, 1, 0.3, 16, 32, None)
    next(run)  # "Running…"
    next(run)  # the first frame
    ev.request_stop(None)
    final = list(run)[-1]
    assert final[0].startswith("Stopped at step") and final[4] is None and len(final[-1]["frames"]) < 60


def test_errors_become_gr_error(ev, state):
    with pytest.raises(gr.Error, match="every pixel"):
        list(ev.run({**state, "mask": np.ones((32, 32), bool)}, "Local Implicit", 2, "euler", 0, 1, 0.3,
                    None, 32, None))
    with pytest.raises(gr.Error, match="output resolution"):
        list(ev.run(state, "Local Implicit", 2, "euler", 0, 1, 0.3, None, 48, None))
    with pytest.raises(gr.Error, match="Pick a sample"):
        list(ev.compare(None, 0, 2, "euler", 0.3, None))
    with pytest.raises(gr.Error, match="solver"):
        list(ev.sweep(state, 0, [], 0.3, None))
    with pytest.raises(gr.Error, match="Run a model first"):
        ev.locality({**state, "run": None}, gr.SelectData(None, {"index": [0, 0], "value": None}))
    with pytest.raises(gr.Error, match="not a readable image"):
        ev.load(b"not an image", state)


def test_ui_builds_without_checkpoints(tmp_path):
    from app.ui import build_ui

    demo = build_ui(Reconstructor(tmp_path / "none"))  # baselines only, and a list of what is missing
    assert "Missing checkpoints" in demo.config["components"][1]["props"]["value"]


def test_api_function(ev):
    image, info = ev.api_reconstruct(np.zeros((40, 40, 3), np.uint8) + 90, "tps", 20, 1, 5, "euler")
    assert image.shape == (32, 32, 3) and info["observed"] == 205  # 20 is read as 20%
