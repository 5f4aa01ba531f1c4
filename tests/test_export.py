import json

import numpy as np
import pytest
import torch
from PIL import Image

from asf_core.checkpoint import load_model
from asf_core.export import main, released_train, training_command
from asf_core.train import TrainConfig, train


def test_export_writes_a_small_release_with_a_card(tmp_path):
    run = tmp_path / "run"
    train(
        TrainConfig(
            arch="perceiver_io",
            preset="tiny",
            dataset="synthetic",
            out=str(run),
            max_steps=2,
            batch_size=2,
            n_queries=8,
            val_every=2,
            val_n=4,
            val_steps=1,
            device="cpu",
        )
    )
    (tmp_path / "eval.md").write_text("| method | PSNR |\n| --- | --- |\n| tps | 22.9 |\n")
    main(
        [
            "--run",
            str(run),
            "--out",
            str(tmp_path / "rel"),
            "--eval",
            str(tmp_path / "eval.md"),
            "--note",
            "an early checkpoint",
        ]
    )
    rel = tmp_path / "rel"
    card = (rel / "MODEL_CARD.md").read_text()
    assert "python -m asf_core.train --arch perceiver_io --preset tiny --dataset synthetic" in card
    assert "| tps | 22.9 |" in card and "| 2 | 4 |" in card and "**Status:** an early checkpoint" in card
    config = json.loads((rel / "config.json").read_text())
    assert config["train"]["step"] == 2
    assert (
        config["train"]["out"] == "runs/rel" and str(tmp_path) not in (rel / "config.json").read_text() + card
    )
    # fp16 on disk, the same model (to fp16 precision) once loaded
    a, b = load_model(run), load_model(rel)
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-3, rtol=1e-3), n


def test_training_command_lists_non_defaults():
    cmd = training_command(
        {"arch": "mamba", "preset": "small", "max_steps": 10, "source": "interp", "flip": False}
    )
    assert cmd == (
        "python -m asf_core.train --arch mamba --preset small --max-steps 10 --source interp --no-flip"
    )
    assert training_command({"world_size": 2, "arch": "perceiver_io"}).startswith(
        "torchrun --nproc_per_node 2 -m"
    )


def test_parametrisation_names_what_the_network_learns():
    from asf_core.export import parametrisation

    plain = parametrisation({"interp": "knn"})
    assert "Gaussian k-nearest" in plain and "PriorVelocity" not in plain and "window" not in plain
    full = parametrisation({"interp": "tps", "prior": "gaussian", "decoder": "window", "decoder_window": 8})
    assert "thin-plate-spline" in full and "PriorVelocity" in full and "34 slots" in full
    assert "grid observation encoder" in parametrisation({"encoder": {"widths": [8]}, "prior": "gaussian"})


def test_a_release_records_no_path_of_the_machine_or_of_a_run_folder():
    kept = released_train(
        {
            "out": "/tmp/x/runs/s7/mamba",
            "data_dir": "/home/me/data",
            "init_from": "runs/s5/pio/best",
            "encoder_from": "pretrained/grid_encoder_small",
            "lr": 1e-3,
        },
        "mamba_d8_grid",
    )
    assert kept == {
        "out": "runs/mamba_d8_grid",
        "data_dir": "",
        "init_from": "",
        "encoder_from": "pretrained/grid_encoder_small",
        "lr": 1e-3,
    }
    assert released_train({"encoder_from": "/elsewhere/encoder/best"}, "x")["encoder_from"] == ""


def test_the_card_shows_its_row_and_the_baselines_from_the_evaluation_json(tmp_path):
    from asf_core.evaluate import main as evaluate

    run, rel = tmp_path / "run", tmp_path / "tiny_release"
    train(
        TrainConfig(
            arch="perceiver_io",
            preset="tiny",
            dataset="synthetic",
            out=str(run),
            max_steps=1,
            batch_size=2,
            n_queries=8,
            val_every=1,
            val_n=2,
            val_steps=1,
            device="cpu",
        )
    )
    main(["--run", str(run), "--out", str(rel)])
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            images / f"{i}.png"
        )
    evaluate(
        [
            "--checkpoint",
            str(rel),
            "--images",
            str(images),
            "--n",
            "2",
            "--steps",
            "2",
            "--baselines",
            "tps",
            "--json",
            str(tmp_path / "eval.json"),
        ]
    )
    assert json.loads((tmp_path / "eval.json").read_text())["protocol"]["command"].startswith(
        "python -m asf_core.evaluate --checkpoint"
    )
    main(["--run", str(run), "--out", str(rel), "--eval-json", str(tmp_path / "eval.json")])
    card = (rel / "MODEL_CARD.md").read_text()
    assert (
        "| perceiver_io (tiny_release) |" in card
        and "| tps |" in card
        and "python -m asf_core.evaluate" in card
    )
    # a JSON without this release's row is refused before anything is written
    before = (rel / "model.safetensors").read_bytes()
    with pytest.raises(SystemExit, match="no record of other"):
        main(
            ["--run", str(run), "--out", str(tmp_path / "other"), "--eval-json", str(tmp_path / "eval.json")]
        )
    assert not (tmp_path / "other").exists() and (rel / "model.safetensors").read_bytes() == before
