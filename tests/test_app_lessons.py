"""What the page teaches, checked on known inputs: the detail-by-scale spectrum (a blurred image
loses fine-scale power, a noisy one gains it), the std map's colour scale, the scan legend, and the
API example that points at a bundled sample instead of an online image."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gradio")

from app import figures, scores  # noqa: E402


def _texture(side: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def test_radial_power_sums_to_the_variance_and_covers_every_ring():
    image = _texture()
    f, p = scores.radial_power(image)
    assert f[0] == pytest.approx(1 / 32) and f[-1] == pytest.approx(0.5) and len(f) == 16
    assert (p > 0).all()


def test_fine_detail_tells_blur_from_noise():
    from scipy.ndimage import uniform_filter

    image = _texture()
    blurred = uniform_filter(image.astype(float), size=(3, 3, 1)).round().astype(np.uint8)
    noisy = np.clip(image.astype(int) + np.random.default_rng(1).integers(-60, 61, image.shape), 0, 255)
    assert scores.fine_detail(image, image) == pytest.approx(1.0)
    assert scores.fine_detail(blurred, image) < 0.3
    smooth = np.repeat(np.repeat(_texture(8), 4, 0), 4, 1)  # piecewise constant: little fine power
    assert scores.fine_detail(noisy.astype(np.uint8), smooth) > 1


def test_spectrum_and_std_figures():
    image = _texture()
    fig = figures.spectrum_figure({"original": scores.radial_power(image)}, {"original": 1.0})
    assert fig.data[0].name == "original (fine detail 100%)" and fig.layout.yaxis.type == "log"
    assert figures.spectrum_figure({}).layout.annotations  # an empty page says what will appear
    std = figures.std_figure(np.linspace(0, 0.2, 1024).reshape(32, 32))
    assert std.data[0].colorbar.title.text == "std" and std.data[0].zmax == pytest.approx(0.2)


def test_scan_legend_names_each_thing_once():
    path = np.array([[0, 0], [0, 1], [1, 1], [1, 0]])
    fig = figures.scan_path_figure(path, np.array([True, False, False, False]), (2, 2), (1, 1))
    names = [t.name for t in fig.data]
    assert len(names) == len(set(names)) and "clicked pixel" in names


def test_api_example_is_a_bundled_sample():
    import gradio as gr

    from app.handlers import samples
    from app.ui import ROOT, _relative, bundled_example

    first = samples()[0][0]
    image = bundled_example(gr.Image(first, type="filepath", height=256, label="Image"), _relative(first))
    payload = image.example_payload()
    assert payload["url"] == payload["path"] == _relative(first) and (ROOT / payload["path"]).is_file()
    assert not payload["url"].startswith("http") and image.example_value() == _relative(first)
    assert image.get_config()["label"] == "Image"  # the API page names the input by its label
    assert not (ROOT / "app" / "ui.pyi").exists()  # no stub written beside the app
