"""`python -m asf_core.bench compare`: measured rows, quality from the evaluation JSON, the README."""

import json
import math

import pytest
import torch

from asf_core import bench, compare
from asf_core.checkpoint import save_pretrained
from asf_core.models import build_model

TRAIN = {"source": "interp", "sigma": 0.3, "image_size": 32}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    out = []
    for arch in ("perceiver_io", "local_implicit", "mamba"):
        torch.manual_seed(0)
        out.append(str(save_pretrained(build_model(arch, "tiny"), root / f"{arch}_tiny", arch=arch,
                                       train=TRAIN)))
    return out


def fake_eval(path, checkpoints, psnr=23.0):
    est = {"psnr": psnr, "ssim": 0.8, "psnr_missing": psnr - 1, "ssim_missing": 0.79}
    methods = [{"name": c, "kind": "model", "checkpoint": c, "sample": est, "mean": est, "onestep": est}
               for c in checkpoints]
    methods.append({"name": "tps", "kind": "baseline", "sample": {**est, "psnr": 22.9},
                    "mean": est, "onestep": est})
    protocol = {"n": 4, "images": "CIFAR-10 test", "mask": "random", "fraction": 0.2, "seed": 0,
                "steps": 20, "solver": "heun", "samples": 8}
    path.write_text(json.dumps({"protocol": protocol, "methods": methods}))
    return str(path)


def test_compare_measures_every_model_and_writes_the_readme(tmp_path, checkpoints):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{compare.README_START}\nold table\n{compare.README_END}\nafter\n")
    out = tmp_path / "compare.json"
    args = bench.build_parser().parse_args([
        "compare", *[a for c in checkpoints for a in ("--checkpoint", c)],
        "--eval-json", fake_eval(tmp_path / "eval.json", checkpoints[:2]), "--train-steps", "1",
        "--latency-batches", "1,2", "--repeats", "1", "--threads", "1", "--in-process",
        "--json", str(out), "--readme", str(readme)])
    result = compare.compare(args)

    rows = result["rows"]
    assert [r["arch"] for r in rows] == ["perceiver_io", "local_implicit", "mamba"]
    for r in rows:
        assert r["params"] == sum(p.numel() for p in build_model(r["arch"], "tiny").parameters())
        assert r["train_images_per_s"] > 0 and r["epoch_minutes"] > 0
        assert r["latency_b1_s"] > 0 and r["latency_b2_s"] > 0
        assert r["train_peak_bytes"] >= 0
    assert rows[0]["quality"]["mean"]["psnr"] == 23.0 and rows[2]["quality"] is None
    assert json.loads(out.read_text())["rows"][1]["name"] == "local_implicit_tiny"

    text = readme.read_text()
    assert "old table" not in text and text.startswith("# x\n\nbefore\n") and text.endswith("after\n")
    assert "| tps (baseline) |" in text and "not evaluated" in text
    # Perceiver IO is the reference of every ratio, beside the description's claims
    assert "| perceiver_io_tiny |" in text and "| 1.00 | 1 |" in text and "20-30% faster" in text


def test_readme_without_markers_gets_a_section(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n")
    compare.update_readme(str(readme), "| table |\n")
    compare.update_readme(str(readme), "| table 2 |\n")  # the second run replaces the first
    text = readme.read_text()
    assert text.count("## Architecture comparison") == 1 and "| table 2 |" in text and "| table |" not in text


def test_eval_jsons_of_different_protocols_are_refused(tmp_path, checkpoints):
    a = fake_eval(tmp_path / "a.json", checkpoints[:1])
    b = tmp_path / "b.json"
    data = json.loads(open(a).read())
    data["protocol"]["steps"] = 1
    b.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="protocol differs"):
        compare.quality_records([a, str(b)])


def test_missing_readme_fails_before_measuring(tmp_path, checkpoints, capsys):
    with pytest.raises(SystemExit, match="no such file"):
        bench.main(["compare", "--checkpoint", checkpoints[0], "--readme", str(tmp_path / "nope.md"),
                    "--in-process"])
    assert capsys.readouterr().out == ""  # nothing was measured


def test_nfe_sweep_writes_points_resumes_and_plots(tmp_path, checkpoints):
    from PIL import Image

    from asf_core.data import synthetic_images

    folder = tmp_path / "images"
    folder.mkdir()
    for i, img in enumerate(synthetic_images(2)):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    out, png = tmp_path / "nfe.json", tmp_path / "nfe.png"
    argv = ["nfe", "--checkpoint", checkpoints[0], "--checkpoint", checkpoints[1], "--images", str(folder),
            "--n", "2", "--steps", "1,2", "--radii", "0.2,0.4", "--json", str(out), "--plot", str(png)]
    bench.main(argv)
    points = json.loads(out.read_text())["points"]
    # Perceiver IO: 2 solvers x 2 step counts; Local Implicit: the same at each of 2 radii
    assert len(points) == 4 + 8
    assert {p["nfe"] for p in points if p["solver"] == "heun"} == {2, 4}
    assert {p["radius"] for p in points if p["arch"] == "local_implicit"} == {0.2, 0.4}
    assert png.stat().st_size > 10_000
    assert all(math.isfinite(p["psnr_sample"]) and math.isfinite(p["psnr_onestep"]) for p in points)

    # resume: nothing left to measure, the points stay as they were
    bench.main(argv + ["--resume"])
    assert json.loads(out.read_text())["points"] == points


def test_compare_measures_in_a_fresh_process(tmp_path, checkpoints):
    """The default path: each checkpoint in its own process, so its peak memory is its own."""
    args = bench.build_parser().parse_args([
        "compare", "--checkpoint", checkpoints[0], "--train-steps", "1", "--latency-batches", "1",
        "--repeats", "1", "--threads", "1"])
    (row,) = compare.compare(args)["rows"]
    assert "reason" not in row, row.get("reason")
    assert row["arch"] == "perceiver_io" and row["train_peak_bytes"] > 0 and row["latency_b1_s"] > 0
