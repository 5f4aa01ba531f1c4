import json

import torch

from asf_core.checkpoint import load_model
from asf_core.export import main, released_train, training_command
from asf_core.train import TrainConfig, train


def test_export_writes_a_small_release_with_a_card(tmp_path):
    run = tmp_path / "run"
    train(TrainConfig(arch="perceiver_io", preset="tiny", dataset="synthetic", out=str(run), max_steps=2,
                      batch_size=2, n_queries=8, val_every=2, val_n=4, val_steps=1, device="cpu"))
    (tmp_path / "eval.md").write_text("| method | PSNR |\n| --- | --- |\n| tps | 22.9 |\n")
    main(["--run", str(run), "--out", str(tmp_path / "rel"), "--eval", str(tmp_path / "eval.md"),
          "--note", "an early checkpoint"])
    rel = tmp_path / "rel"
    card = (rel / "MODEL_CARD.md").read_text()
    assert "python -m asf_core.train --arch perceiver_io --preset tiny --dataset synthetic" in card
    assert "| tps | 22.9 |" in card and "| 2 | 4 |" in card and "**Status:** an early checkpoint" in card
    config = json.loads((rel / "config.json").read_text())
    assert config["train"]["step"] == 2
    assert config["train"]["out"] == "runs/rel" and str(tmp_path) not in (rel / "config.json").read_text() + card
    # fp16 on disk, the same model (to fp16 precision) once loaded
    a, b = load_model(run), load_model(rel)
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-3, rtol=1e-3), n


def test_training_command_lists_non_defaults():
    cmd = training_command({"arch": "mamba", "preset": "small", "max_steps": 10, "source": "interp", "flip": False})
    assert cmd == ("python -m asf_core.train --arch mamba --preset small --max-steps 10 --source interp --no-flip")
    assert training_command({"world_size": 2, "arch": "perceiver_io"}).startswith("torchrun --nproc_per_node 2 -m")


def test_parametrisation_names_what_the_network_learns():
    from asf_core.export import parametrisation

    plain = parametrisation({"interp": "knn"})
    assert "Gaussian k-nearest" in plain and "PriorVelocity" not in plain and "window" not in plain
    full = parametrisation({"interp": "tps", "prior": "gaussian", "decoder": "window", "decoder_window": 8})
    assert "thin-plate-spline" in full and "PriorVelocity" in full and "34 slots" in full


def test_a_release_records_no_path_of_the_machine_or_of_a_run_folder():
    kept = released_train({"out": "/tmp/x/runs/s7/mamba", "data_dir": "/home/me/data", "init_from": "runs/s5/pio/best",
                           "encoder_from": "pretrained/grid_encoder_small", "lr": 1e-3}, "mamba_d8_grid")
    assert kept == {"out": "runs/mamba_d8_grid", "data_dir": "", "init_from": "",
                    "encoder_from": "pretrained/grid_encoder_small", "lr": 1e-3}
    assert released_train({"encoder_from": "/elsewhere/encoder/best"}, "x")["encoder_from"] == ""
