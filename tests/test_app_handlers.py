"""The UI's event functions (app.handlers) without a browser: sample loading, masks, the streamed
run with its final outputs, Stop, scrubbing, locality clicks and knob visibility."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

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
    *knobs, steps, solver, k = ev.knob_visibility("Local Implicit")
    shown = [(c.arch, c.name) for c, u in zip(ev.controls, knobs) if u["visible"]]
    assert shown == [("local_implicit", "radius")] and steps["visible"]
    *knobs, steps, solver, k = ev.knob_visibility("MAMBA")
    assert [(c.arch, c.name) for c, u in zip(ev.controls, knobs) if u["visible"]] == [("mamba", "d_state")]
    updates = ev.knob_visibility("Biharmonic")
    assert len(updates) == len(ev.controls) + 3 and not any(u["visible"] for u in updates)


def test_run_scrub_and_locality(ev, state):
    outs = list(ev.run(state, "Local Implicit", 4, "euler", 0, 2, 32, None, *defaults(ev)))
    status, xt, x1, chart, result, mean, std, metrics, download, slider, note, spectrum, state = outs[-1]
    assert status.startswith("Done") and result.shape == (256, 256, 3)
    assert mean["visible"] and mean["value"].shape == (256, 256, 3)
    assert std["visible"] and std["value"].data[0].z.shape == (32, 32)  # a heatmap with its colour bar
    assert std["value"].data[0].colorbar.title.text == "std"
    # one sample, the mean of K and x̂1 side by side, and why the sample scores lowest
    for word, key in (("one sample", "psnr"), ("mean of 2", "psnr_mean"), ("x̂1", "psnr_onestep")):
        assert f"{word} {metrics[key]:.2f} dB" in status
    gap = metrics["psnr"] - metrics["psnr_onestep"]
    assert "twice the posterior mean" in note and f"{gap:+.2f} dB" in note
    names = [trace.name.split(" (")[0] for trace in spectrum.data]
    assert names == ["original", "Thin-plate spline", "x̂1", "mean of 2", "one sample"]
    assert all("fine detail" in trace.name for trace in spectrum.data)
    assert metrics["nfe"] == 4 and "psnr_mean" in metrics and download["visible"]
    assert "std_error_corr" in metrics and "Calibration" in note  # K = 2: std against |error|
    assert slider["maximum"] == 4 and len(state["frames"]) == 5
    status, xt, x1 = ev.scrub(state, 1)
    assert "step 1/4" in status and xt.shape == (256, 256, 3)
    click = gr.SelectData(None, {"index": [20 * DISPLAY + 3, 10 * DISPLAY + 7], "value": None})
    attn, infl, net, scan, text = ev.locality(state, click)
    assert "Pixel (10, 20)" in text and "Radius" in text and attn.data[0].z.shape == (32, 32)
    assert "network alone" in net.layout.title.text and "network's own" in text


def test_stop(ev, state):
    assert ev.request_stop(None) == gr.skip()  # nothing running: the status line is left alone
    run = ev.run(state, "MAMBA", 60, "euler", 0, 1, 32, None, *defaults(ev))
    next(run)  # "Running…"
    next(run)  # the first frame
    ev.request_stop(None)
    final = list(run)[-1]
    assert final[0].startswith("Stopped at step") and final[4] is None and len(final[-1]["frames"]) < 60


def test_errors_become_gr_error(ev, state):
    with pytest.raises(gr.Error, match="every pixel"):
        list(ev.run({**state, "mask": np.ones((32, 32), bool)}, "Local Implicit", 2, "euler", 0, 1, 32,
                    None, *defaults(ev)))
    with pytest.raises(gr.Error, match="output resolution"):
        list(ev.run(state, "Local Implicit", 2, "euler", 0, 1, 48, None, *defaults(ev)))
    with pytest.raises(gr.Error, match="Pick a sample"):
        list(ev.compare(None, 0, 2, "euler", *defaults(ev)))
    with pytest.raises(gr.Error, match="solver"):
        list(ev.sweep(state, 0, [], *defaults(ev)))
    with pytest.raises(gr.Error, match="Run a model first"):
        ev.locality({**state, "run": None}, gr.SelectData(None, {"index": [0, 0], "value": None}))
    with pytest.raises(gr.Error, match="is not an image"):
        ev.load(b"not an image", state)


def test_ui_builds_without_checkpoints(tmp_path):
    from app.ui import build_ui

    demo = build_ui(Reconstructor(tmp_path / "none"))  # baselines only, and a list of what is missing
    assert "Missing checkpoints" in demo.config["components"][1]["props"]["value"]


def test_api_function(ev):
    path, info = ev.api_reconstruct(np.zeros((40, 40, 3), np.uint8) + 90, "tps", 20, 1, 5, "euler")
    assert np.asarray(Image.open(path)).shape == (32, 32, 3) and info["observed"] == 205  # 20 is read as 20%
    again, _ = ev.api_reconstruct(np.zeros((40, 40, 3), np.uint8) + 90, "tps", 20, 1, 5, "euler")
    assert again != path  # a new file per call: identical concurrent requests never share one


@pytest.mark.parametrize("args, message", [
    ((None, 0, 5), "density must be a number"), ((0.2, None, 5), "seed must be a whole number"),
    ((0.2, 0, None), "steps must be a whole number"), ((0.2, 1e30, 5), "seed must be a whole number"),
    ((0.2, 0, 1000), "steps must be"), ((0, 0, 5), "density must be above 0"),
    ((float("nan"), 0, 5), "density"),
])
def test_api_numbers_get_a_sentence(ev, args, message):
    with pytest.raises(gr.Error, match=message):
        ev.api_reconstruct(np.zeros((40, 40, 3), np.uint8), "tps", *args, "euler")


def test_unreadable_and_bomb_images_get_a_sentence(ev, state, tmp_path):
    empty, text = tmp_path / "empty.png", tmp_path / "notes.png"
    empty.write_bytes(b"")
    text.write_text("hello")
    for path in (empty, text):
        with pytest.raises(gr.Error, match="is not an image"):
            ev.load(str(path), state)
    bomb = tmp_path / "bomb.png"  # a valid PNG header claiming 100000×100000 pixels
    import struct
    import zlib
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    with pytest.raises(gr.Error, match="downscale"):
        ev.load(str(bomb), state)


def test_baseline_run_ends_with_a_slider_gradio_accepts(ev, state):
    *_, last = ev.run(state, "Thin-plate spline", 20, "euler", 0, 1, 32, None, *defaults(ev))
    status, slider = last[0], last[9]
    assert status.startswith("Done") and slider["visible"] is False
    assert "one sample" not in status and "PSNR" in status  # a baseline has one fill, no samples
    gr.Slider(minimum=slider["minimum"], maximum=slider["maximum"], value=slider["value"])  # raised before


def test_heavy_requests_are_capped():
    from app.handlers import WORK_LIMIT, cap_work

    assert cap_work(20, "heun", 8, 64) == (20, 8, "")
    steps, k, note = cap_work(100, "rk4", 8, 128)
    assert steps * k * 4 * 128 * 128 <= WORK_LIMIT and note.startswith("**Capped**")


def test_a_new_image_clears_the_last_result(ev):
    out = ev.clear_results()
    assert out[0].startswith("New input") and out[3] is None and out[6] is None
    assert len(out[10].data) == 0  # the last run's spectrum goes too


def defaults(ev):
    """Every knob control at its default, in the order the handlers take them."""
    return [c.default for c in ev.controls]
