import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from asf_core.checkpoint import save_pretrained
from asf_core.data import synthetic_images
from asf_core.evaluate import main
from asf_core.models import build_model


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, img in enumerate(synthetic_images(4, size=48)):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    return folder


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    return save_pretrained(build_model("perceiver_io", "tiny"), tmp_path / "ckpt", arch="perceiver_io",
                           train={"source": "interp", "sigma": 0.3, "image_size": 32})


def run(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "asf_core.evaluate", *args], capture_output=True,
                          text=True, env=env, timeout=240)


def test_evaluate_on_a_folder_writes_json_and_markdown(tmp_path, image_folder, checkpoint):
    out = tmp_path / "eval.json"
    r = run("--checkpoint", str(checkpoint), "--images", str(image_folder), "--n", "4", "--steps", "2",
            "--samples", "2", "--solver", "heun", "--json", str(out), "--baselines",
            "nearest,linear,tps,biharmonic")
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert result["methods"][0]["calibration"]["ratio"] > 0  # two samples: the calibration check
    names = [m["name"] for m in result["methods"]]
    assert names[0].startswith("perceiver_io") and names[1:] == ["nearest", "linear", "tps", "biharmonic"]
    model = result["methods"][0]
    assert model["nfe"] == 4 and model["seconds_per_image"] > 0
    for est in ("sample", "mean", "onestep"):
        assert set(model[est]) == {"psnr", "ssim", "psnr_missing", "ssim_missing"}
        assert all(np.isfinite(v) for v in model[est].values())
    # an untrained model with zero output starts from the kNN source: below thin-plate spline
    tps = result["methods"][3]
    assert tps["sample"]["psnr"] > 15
    md = out.with_suffix(".md").read_text()
    assert "| tps |" in md and "x̂1" in md


def test_evaluate_cifar_baselines(cifar_root, tmp_path):
    out = tmp_path / "b.json"
    r = run("--data-dir", str(cifar_root), "--n", "20", "--baselines", "tps,nearest", "--json", str(out))
    assert r.returncode == 0, r.stderr
    psnr = {m["name"]: m["sample"]["psnr"] for m in json.loads(out.read_text())["methods"]}
    assert 21 < psnr["tps"] < 25 and psnr["nearest"] < psnr["tps"]


@pytest.mark.parametrize("argv,message", [
    (["--steps", "0"], "steps must be an integer >= 1"),
    (["--fraction", "1.2"], "observed fraction must be in (0, 1]"),
    (["--solver", "leapfrog"], "unknown solver 'leapfrog'"),
    (["--data-dir", "/no/such/dir"], "data dir /no/such/dir does not exist"),
    (["--checkpoint", "/no/such/ckpt"], "/no/such/ckpt: no such checkpoint folder"),
    (["--baselines", "kriging"], "unknown baseline 'kriging'"),
])
def test_evaluate_cli_errors_are_one_line(argv, message):
    with pytest.raises(SystemExit) as e:
        main(["--n", "2", *argv])
    assert isinstance(e.value.code, str) and e.value.code.startswith(f"error: {message}")
    assert "\n" not in e.value.code


def test_evaluate_cli_error_in_a_real_process():
    r = run("--steps", "0")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "error: steps must be an integer >= 1, got 0"
