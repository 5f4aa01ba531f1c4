"""The public `/reconstruct` endpoint, called with gradio_client against a real server on 127.0.0.1
(a free port, tiny checkpoints), including bad input that must fail cleanly and leave it serving."""

from __future__ import annotations

import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from app.inference import Reconstructor  # noqa: E402
from app.ui import build_ui  # noqa: E402
from tests.app_fixtures import SAMPLE, serve, tiny_checkpoints  # noqa: E402


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with serve(build_ui(Reconstructor(tiny_checkpoints(tmp_path_factory.mktemp("pretrained"))))) as url:
        yield url


@pytest.fixture(scope="module")
def client(url):
    return gradio_client.Client(url, verbose=False, download_files=True)


def _call(client, image, arch="Local Implicit", density=0.2, seed=0, steps=5, solver="euler"):
    return client.predict(gradio_client.handle_file(str(image)), arch, density, seed, steps, solver,
                          api_name="/reconstruct")


def test_page_serves(url):
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200 and b"ASF" in r.read()
    assert time.perf_counter() - start < 15


def test_only_reconstruct_is_public(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert list(api["named_endpoints"]) == ["/reconstruct"]


def test_reconstruct(client):
    path, info = _call(client, SAMPLE)
    out = np.asarray(Image.open(path).convert("RGB"))
    truth = np.asarray(Image.open(SAMPLE).convert("RGB"))
    assert out.shape == (32, 32, 3) and (out != truth).any()
    assert isinstance(info["psnr"], float) and np.isfinite(info["psnr"])
    assert info["nfe"] == 5 and info["observed"] == 205 and info["method"] == "local_implicit"


@pytest.mark.parametrize("arch", ["perceiver_io", "MAMBA", "thin-plate spline", "biharmonic"])
def test_every_architecture_name(client, tmp_path, arch):
    grey16 = tmp_path / "grey16.png"  # a 16-bit greyscale upload too
    Image.fromarray(np.arange(48 * 48, dtype=np.uint16).reshape(48, 48) * 28).save(grey16)
    _, info = _call(client, grey16, arch=arch, steps=2, solver="heun")
    assert np.isfinite(info["psnr"])


def test_bad_input_fails_cleanly_and_keeps_serving(client, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(SAMPLE.read_bytes()[:50])
    with pytest.raises(gradio_client.exceptions.AppError):
        _call(client, corrupt)
    for kwargs, message in [(dict(density=0.0005), "only 1 pixel"), (dict(density=1.0), "every pixel"),
                            (dict(arch="diffusion"), "unknown architecture"), (dict(steps=0), "steps")]:
        with pytest.raises(gradio_client.exceptions.AppError, match=message):
            _call(client, SAMPLE, **kwargs)
    _, info = _call(client, SAMPLE, arch="tps")  # still serving
    assert info["psnr"] > 10
