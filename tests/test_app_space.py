"""Deploying as a Hugging Face Space: the @gpu shim, checkpoints from a Hub repository ($ASF_HUB_REPO)
through the local Hub cache when offline, a clear message when neither pretrained/ nor the Hub has
one, and the app still building and running the shipped checkpoints. No network: HF_HUB_OFFLINE=1."""

from __future__ import annotations

import inspect
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from app import space
from app.inference import Reconstructor
from asf_core.checkpoint import save_pretrained
from asf_core.models import build_model

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "pretrained"


@pytest.fixture
def offline(monkeypatch):
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)  # read once at import; force it here
    return hub


def test_gpu_shim():
    def plain(x):
        return x + 1

    def stream(n):
        yield from range(n)

    if space.SPACES:  # spaces installed: off ZeroGPU hardware spaces.GPU returns the function itself
        assert space.gpu is __import__("spaces").GPU
    assert space.gpu(plain)(1) == 2 and space.gpu(duration=30)(plain)(1) == 2
    assert inspect.isgeneratorfunction(space.gpu(duration=30)(stream))
    assert list(space.gpu(stream)(3)) == [0, 1, 2]


def test_handlers_pickle_by_reference(tmp_path):
    """ZeroGPU pickles a @gpu method's arguments, self included: a Handlers travels as a reference."""
    import pickle

    from app.handlers import Handlers

    ev = Handlers(Reconstructor(tmp_path / "none"))
    assert pickle.loads(pickle.dumps(ev)) is ev


def test_hub_repo_from_env(monkeypatch):
    monkeypatch.delenv(space.HUB_ENV, raising=False)
    assert space.hub_repo() is None and Reconstructor(Path("/nonexistent")).hub_repo is None
    monkeypatch.setenv(space.HUB_ENV, " owner/asf-weights/ ")
    assert space.hub_repo() == "owner/asf-weights"
    found, errors = space.hub_checkpoints("not a repo id", ["mamba_d16_grid"])
    assert not found and "not a Hub repository id" in errors["mamba_d16_grid"]


def test_app_builds_offline_with_uncached_hub_repo(offline, monkeypatch, tmp_path):
    """(d): HF_HUB_OFFLINE=1 and ASF_HUB_REPO naming a repository that is not cached."""
    if not (SHIPPED / "perceiver_io_grid" / "config.json").is_file():
        pytest.skip("the shipped pretrained/perceiver_io_grid is absent")
    repo = f"asf-test/not-cached-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(space.HUB_ENV, repo)
    monkeypatch.setenv("GRADIO_EXAMPLES_CACHE", str(tmp_path / "examples"))
    from app.ui import build_ui

    shipped = tmp_path / "pretrained"  # the shipped checkpoints minus MAMBA, which the Hub should supply
    for name in ("perceiver_io_grid", "local_implicit_grid"):
        if (SHIPPED / name).is_dir():
            shutil.copytree(SHIPPED / name, shipped / name)
    rec = Reconstructor(shipped)
    assert rec.hub_repo == repo
    missing = [line for line in rec.missing() if line.startswith("mamba_d16_grid")]
    assert missing and repo in missing[0] and "offline" in missing[0]
    assert "python -m asf_core.train" in missing[0]  # and how to make it instead
    demo = build_ui(rec)
    header = demo.config["components"][1]["props"]["value"]
    assert "Missing checkpoints" in header and repo in header
    assert rec.checkpoints["perceiver_io_grid"]["origin"] == "local"
    image = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(
        ROOT / "app" / "samples" / "cifar_0000_cat.png").convert("RGB"))
    mask = rec.make_mask("random", 0.2, 0)
    for method in [m for m in rec.methods() if m in ("perceiver_io", "local_implicit")]:
        res = rec.reconstruct(image, mask, method, steps=1)  # the shipped models still run
        assert np.isfinite(res.metrics["psnr"]) and res.metrics["psnr"] > 12


def _fake_cache(cache: Path, repo: str, names: list[str]) -> None:
    """A Hub cache holding `repo` at one commit with tiny checkpoints in sub-folders, as
    snapshot_download leaves it (refs/main -> snapshots/<commit>/<name>/...)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    storage = cache / f"models--{repo.replace('/', '--')}"
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text(commit)
    torch.manual_seed(0)
    for name in names:
        d_state = int(name.split("_")[1][1:])  # mamba_d16_grid -> 16
        save_pretrained(build_model("mamba", "tiny", d_state=d_state), storage / "snapshots" / commit / name,
                        arch="mamba")


def test_weights_from_the_hub_cache(offline, monkeypatch, tmp_path):
    repo = "asf-test/asf-weights"
    _fake_cache(tmp_path / "hub", repo, ["mamba_d16_grid"])
    monkeypatch.setattr(offline.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    local = tmp_path / "pretrained"
    shutil.copytree(SHIPPED / "perceiver_io_grid", local / "perceiver_io_grid") \
        if (SHIPPED / "perceiver_io_grid").is_dir() else local.mkdir()
    rec = Reconstructor(local, hub_repo=repo)
    assert rec.checkpoints["mamba_d16_grid"]["origin"] == f"hub:{repo}" and "mamba" in rec.methods()
    assert rec.checkpoint_values("mamba") == [16]
    lines = "\n".join(rec.missing())
    assert "mamba_d16_grid" not in lines and f"nor from the Hub repo {repo}" in lines  # d8, d32 are not there
    grey = np.full((32, 32, 3), 90, np.uint8)
    res = rec.reconstruct(grey, rec.make_mask("random", 0.2, 0), "mamba", steps=1)
    assert res.image.shape == (32, 32, 3)
    # pretrained/ wins over the Hub: a local copy is never shadowed
    if (local / "perceiver_io_grid").is_dir():
        assert rec.checkpoints["perceiver_io_grid"]["origin"] == "local"


def test_first_page_is_ready_and_precomputed(monkeypatch, tmp_path):
    """From build to a served page within 15 s (on 2 busy cores), with a result already on it and
    the API tab's examples cached lazily (nothing run at start-up)."""
    import time
    import urllib.request

    from app.ui import build_ui
    from tests.app_fixtures import serve

    monkeypatch.setenv("GRADIO_EXAMPLES_CACHE", str(tmp_path / "examples"))
    start = time.perf_counter()
    demo = build_ui(Reconstructor(SHIPPED))
    with serve(demo) as url, urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200
        assert time.perf_counter() - start < 15
    props = {c.get("props", {}).get("elem_id"): c["props"] for c in demo.config["components"]}
    assert props["status"]["value"].startswith("Precomputed: **Thin-plate spline**")
    assert props["result"]["value"] is not None and "psnr" in props["metrics"]["value"]
    assert not (tmp_path / "examples").exists() or not any((tmp_path / "examples").rglob("*.csv"))
    assert any(c["type"] == "dataset" for c in demo.config["components"])  # the API tab's examples
