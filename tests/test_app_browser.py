"""The app in a real browser (Playwright + Chromium): pick a sample, 20% observed, Local Implicit for
10 steps, wait for the result and its PSNR, click a pixel, see its locality map, then run the Compare
tab over every method; screenshots go to
test-artifacts/, and to docs/app_screenshot.png (when missing, or with ASF_UPDATE_SCREENSHOT=1) if the
run used trained checkpoints.

Skips, saying why, without Playwright or a Chromium (CHROMIUM, else /usr/bin/chromium; Debian:
`apt-get install chromium`, since `playwright install` needs a download). Runs on the tiny test
checkpoints unless ASF_PRETRAINED_DIR names a folder with local_implicit_grid:
    ASF_PRETRAINED_DIR=pretrained ASF_UPDATE_SCREENSHOT=1 pytest tests/test_app_browser.py
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.app_fixtures import serve, tiny_checkpoints

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                                     "(pip install -r requirements-dev.txt)")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    from app.inference import Reconstructor
    from app.ui import build_ui

    chosen = os.environ.get("ASF_PRETRAINED_DIR")
    real = bool(chosen and (Path(chosen) / "local_implicit_grid" / "config.json").is_file())
    folder = chosen if real else tiny_checkpoints(tmp_path_factory.mktemp("pretrained"))
    with serve(build_ui(Reconstructor(folder))) as url:
        yield url, real


def _set_number(page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    box.blur()


def test_reconstruct_in_browser(url):
    url, real = url
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1500})
            page.goto(url, timeout=60_000)
            page.locator("#samples img").nth(6).click()  # a CIFAR-10 test image
            page.wait_for_timeout(500)
            _set_number(page, "density", 20)
            page.locator("#method").get_by_text("Local Implicit", exact=True).click()
            _set_number(page, "steps", 10)
            page.wait_for_timeout(500)
            page.locator("#run").click()
            status = page.locator("#status")
            status.get_by_text("Done").wait_for(timeout=120_000)
            assert "NFE 10" in status.inner_text()
            assert "psnr" in page.locator("#metrics").inner_text()
            result = page.locator("#result img")
            box = result.bounding_box()
            result.click(position={"x": box["width"] * 0.4, "y": box["height"] * 0.6})
            page.locator("#locality").get_by_text("Pixel (").wait_for(timeout=60_000)
            page.locator("#attention .js-plotly-plot").wait_for(timeout=30_000)
            page.screenshot(path=str(artifacts / "app_browser.png"), full_page=True)
            docs = ROOT / "docs" / "app_screenshot.png"  # only from trained weights, never the tiny ones
            if real and (not docs.exists() or os.environ.get("ASF_UPDATE_SCREENSHOT") == "1"):
                page.screenshot(path=str(docs), full_page=True)
            page.locator("#out_size").get_by_text("64", exact=True).click()  # the field on a finer grid
            page.locator("#run").click()
            status.get_by_text("64×64").wait_for(timeout=180_000)
            page.get_by_role("tab", name="Compare").click()  # every method on the same image and noise
            page.locator("#compare").click()
            page.locator("#compare_status").get_by_text(re.compile("^Done")).wait_for(timeout=180_000)
            table = page.locator("#compare_table").inner_text()
            clipped = page.evaluate("""() => [...document.querySelectorAll('.compare-row label')]
                .filter(l => l.scrollWidth > l.clientWidth + 1).map(l => l.innerText)""")
            assert not clipped, f"Compare labels cut short: {clipped}"
            # all three + a baseline
            for label in ("Perceiver IO", "Local Implicit", "MAMBA", "Thin-plate spline"):
                assert label in table, label
            page.screenshot(path=str(artifacts / "app_compare.png"), full_page=True)
            page.get_by_role("tab", name="Learn").click()  # the toy trains when the tab first opens
            page.locator("#learn_summary").get_by_text("CFM loss").wait_for(timeout=120_000)
            page.screenshot(path=str(artifacts / "app_learn.png"), full_page=True)
        finally:
            browser.close()


def test_first_visit_every_method_stop_and_new_sample(url):
    """What a first-time visitor does: Run each method at the page's default settings (baselines
    included), Stop before the first frame, then pick another sample: nothing old stays on screen."""
    url, _ = url
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1500})
            page.goto(url, timeout=60_000)
            status, metrics = page.locator("#status"), page.locator("#metrics")
            page.locator("#method").get_by_text("Thin-plate spline", exact=True).wait_for(timeout=30_000)
            labels = [t.strip() for t in page.locator("#method label").all_inner_texts() if t.strip()]
            if not labels:  # Gradio 6 renders a Radio's choices as inputs with their label text beside
                lines = page.locator("#method").inner_text().split("\n")[1:]
                labels = [t.strip() for t in lines if t.strip()]
            assert "Thin-plate spline" in labels and len(labels) >= 4
            for label in labels:
                page.locator("#method").get_by_text(label, exact=True).click()
                page.wait_for_timeout(300)
                page.locator("#run").click()
                status.get_by_text(re.compile(r"^Done: " + re.escape(label))).wait_for(timeout=120_000)
                assert "psnr" in metrics.inner_text(), label
            page.locator("#method").get_by_text("Thin-plate spline", exact=True).click()
            page.locator("#run").click()
            page.get_by_role("button", name="Stop").click()  # before (or with) its only result
            status.get_by_text(re.compile("^(Done|Stopped)")).wait_for(timeout=60_000)
            page.locator("#samples img").nth(3).click()  # another image: the last result goes
            status.get_by_text("New input").wait_for(timeout=30_000)
            assert "psnr" not in metrics.inner_text()
            assert page.locator("#result img").count() == 0
        finally:
            browser.close()


def test_the_page_shows_what_it_teaches(url):
    """Every sample in view; one sample, the mean of K and x̂1 side by side with why they differ
    (the note and the detail-by-scale spectrum); the std map with its colour bar; the network's own
    influence beside the total; the API tab's images at a readable size, and its "Use via API"
    example on a bundled sample rather than an online image."""
    url, _ = url
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1200})
            page.goto(url, timeout=60_000)
            gallery = page.locator("#samples")
            gallery.locator("img").first.wait_for(timeout=30_000)
            frame = gallery.bounding_box()
            thumbs = [b for b in (t.bounding_box() for t in gallery.locator("button").all()) if b]
            assert len(thumbs) >= 16
            cut_off = [b for b in thumbs if b["x"] + b["width"] > frame["x"] + frame["width"] + 1]
            assert not cut_off, "a sample is cut off"
            page.locator("#method").get_by_text("Perceiver IO", exact=True).click()
            _set_number(page, "steps", 5)
            _set_number(page, "samples_k", 2)
            page.wait_for_timeout(500)
            page.locator("#run").click()
            status = page.locator("#status")
            status.get_by_text("Done").wait_for(timeout=120_000)
            text = status.inner_text()
            assert "one sample" in text and "mean of 2" in text and "x̂1" in text, text
            assert "twice the posterior mean" in page.locator("#note").inner_text()
            page.locator("#spectrum").get_by_text("fine detail").first.wait_for(timeout=30_000)
            page.locator("#std .colorbar").first.wait_for(timeout=30_000)
            result = page.locator("#result img")
            box = result.bounding_box()
            result.click(position={"x": box["width"] * 0.5, "y": box["height"] * 0.5})
            page.locator("#locality").get_by_text("network's own").wait_for(timeout=60_000)
            page.locator("#influence_network .js-plotly-plot").wait_for(timeout=30_000)
            page.get_by_role("tab", name="API").click()
            image = page.locator("#api_image img")
            image.wait_for(timeout=30_000)
            assert image.bounding_box()["height"] > 150, image.bounding_box()
            page.get_by_role("button", name=re.compile("Use via API")).first.click()
            page.get_by_text("app/samples/").first.wait_for(timeout=30_000)
        finally:
            browser.close()


def test_3d_tab_renders_a_volume(url):
    """The 3D tab: its defaults run on first opening, a baseline re-runs on a sparser mask, and the
    observed voxels, the isosurface and the slices render (plotly) with the PSNR in the status."""
    url, _ = url
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1300})
            page.goto(url, timeout=60_000)
            page.get_by_role("tab", name="3D").click()
            status = page.locator("#volume_status")
            status.get_by_text("PSNR").wait_for(timeout=120_000)
            page.locator("#volume_fraction").get_by_text("5%", exact=True).click()
            page.locator("#volume_run").click()
            status.get_by_text("5% observed").wait_for(timeout=120_000)
            for elem in ("volume_observed", "volume_iso", "volume_slices"):
                page.locator(f"#{elem} .js-plotly-plot").wait_for(timeout=60_000)
            page.wait_for_timeout(1500)  # WebGL draws the 3D scenes after the plot element appears
            page.screenshot(path=str(ROOT / "test-artifacts" / "app_3d.png"), full_page=True)
            docs = ROOT / "docs" / "app_3d.png"
            if not docs.exists() or os.environ.get("ASF_UPDATE_SCREENSHOT") == "1":
                page.screenshot(path=str(docs), full_page=True)
        finally:
            browser.close()
