"""A user's mistake on the command line or in a checkpoint gives one clear line, early, and never a
traceback or a silently wrong number (evaluate, train, load_model)."""

from __future__ import annotations

import json
import struct
import zlib

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from asf_core import evaluate, train
from asf_core.checkpoint import CheckpointError, load_model, save_pretrained
from asf_core.data import synthetic_images
from asf_core.models import build_model


def error_of(main, argv: list[str]) -> str:
    """The one-line message a command exits with (it must exit, and with a message, not a traceback)."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    message = str(e.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    return save_pretrained(build_model("local_implicit", "tiny"), tmp_path / "ckpt", arch="local_implicit",
                           train={"source": "interp", "sigma": 0.3, "image_size": 32})


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, img in enumerate(synthetic_images(2, size=32)):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    return folder


def edited(checkpoint, tmp_path, edit) -> str:
    """A copy of `checkpoint` whose config.json has gone through edit(config)."""
    folder = tmp_path / "edited"
    folder.mkdir()
    config = json.loads((checkpoint / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes((checkpoint / "model.safetensors").read_bytes())
    return str(folder)


def evaluate_args(checkpoint, images, *extra) -> list[str]:
    return ["--checkpoint", str(checkpoint), "--images", str(images), "--n", "2", "--steps", "2",
            "--samples", "1", "--baselines", "none", *extra]


# ---- config.json with values of the wrong kind (item 11) -------------------------------------------
@pytest.mark.parametrize("edit, expected", [
    (lambda c: c.__setitem__("arch", ["local_implicit"]), "unknown architecture ['local_implicit']"),
    (lambda c: c["model"].__setitem__("d_model", -5), "model.d_model must be positive, got -5"),
    (lambda c: c["model"].__setitem__("num_heads", 2.5), "model.num_heads must be a whole number, got 2.5"),
    (lambda c: c["model"].__setitem__("fourier_scale", "big"), "model.fourier_scale must be a number"),
    (lambda c: c["model"].__setitem__("interp_feature", 1), "model.interp_feature must be true or false"),
])
def test_a_config_of_the_wrong_kind_is_refused_before_anything_runs(checkpoint, images, tmp_path, edit,
                                                                    expected):
    bad = edited(checkpoint, tmp_path, edit)
    with pytest.raises(CheckpointError, match="config.json"):
        load_model(bad)
    assert expected in error_of(evaluate.main, evaluate_args(bad, images))


# ---- evaluate's own arguments (item 11) -----------------------------------------------------------
def test_evaluate_refuses_an_unknown_or_out_of_range_knob(checkpoint, images):
    assert "has no run-time knob 'bogus' (its knobs: radius)" in error_of(
        evaluate.main, evaluate_args(checkpoint, images, "--model-kwargs", "bogus=1"))
    assert "radius must be a number in [0.1, 0.5], got 9" in error_of(
        evaluate.main, evaluate_args(checkpoint, images, "--model-kwargs", "radius=9"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: --device cuda is valid here")
def test_evaluate_refuses_a_device_this_machine_lacks(checkpoint, images):
    assert "no such device on this machine" in error_of(evaluate.main, evaluate_args(checkpoint, images,
                                                                                     "--device", "cuda"))


def test_evaluate_refuses_a_device_name_that_is_none(checkpoint, images):
    assert "'bogus' is not a device name" in error_of(evaluate.main, evaluate_args(checkpoint, images,
                                                                                   "--device", "bogus"))


def test_evaluate_checks_the_json_path_before_the_evaluation(checkpoint, images, tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(evaluate, "evaluate_model", lambda *a, **k: ran.append(1))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    message = error_of(evaluate.main, evaluate_args(checkpoint, images, "--json", str(blocker / "out.json")))
    assert "cannot be written" in message and not ran
    assert "is a folder" in error_of(evaluate.main, evaluate_args(checkpoint, images, "--json",
                                                                  str(tmp_path)))


def bomb_png(path) -> None:
    """A valid PNG header that claims 100000 x 100000 pixels, and no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def test_evaluate_names_a_decompression_bomb_in_the_image_folder(checkpoint, images):
    bomb_png(images / "0_bomb.png")
    assert "0_bomb.png: claims more than" in error_of(evaluate.main, evaluate_args(checkpoint, images))


# ---- weights that would give silently wrong numbers (item 12) --------------------------------------
@pytest.mark.parametrize("spoil, expected", [
    (lambda w: {k: (v * 100).to(torch.int32) for k, v in w.items()}, "integer where floats belong"),
    (lambda w: {k: v.fill_(float("nan")) if i == 0 else v for i, (k, v) in enumerate(w.items())},
     "NaN or infinite values"),
])
def test_weights_of_the_wrong_kind_are_refused(checkpoint, images, spoil, expected):
    path = checkpoint / "model.safetensors"
    save_file(spoil(load_file(path)), path)
    with pytest.raises(CheckpointError, match=expected):
        load_model(checkpoint)
    assert expected in error_of(evaluate.main, evaluate_args(checkpoint, images))


# ---- train (items 11 and 12) -----------------------------------------------------------------------
def train_args(out, *extra) -> list[str]:
    return ["--dataset", "synthetic", "--preset", "tiny", "--max-steps", "2", "--batch-size", "4",
            "--n-queries", "32", "--val-n", "4", "--val-steps", "2", "--val-every", "2", "--ckpt-every", "1",
            "--log-every", "1", "--out", str(out), *extra]


@pytest.mark.parametrize("extra, expected", [
    (["--val-n", "0"], "--val-n must be >= 1, got 0"),
    (["--model-overrides", "d_model=abc"], "d_model must be a whole number, got 'abc'"),
    (["--arch", "nope"], "unknown architecture 'nope'"),
])
def test_train_refuses_bad_arguments_before_training(tmp_path, extra, expected):
    assert expected in error_of(train.main, train_args(tmp_path / "run", *extra))
    assert not (tmp_path / "run").exists()


def test_train_refuses_an_out_that_is_a_file(tmp_path):
    (tmp_path / "run").write_text("notes")
    assert "is a file" in error_of(train.main, train_args(tmp_path / "run"))
    assert (tmp_path / "run").read_text() == "notes"


def test_resume_says_when_there_is_nothing_to_resume_and_refuses_another_run(tmp_path, capsys):
    out = tmp_path / "run"
    train.main(train_args(out, "--resume"))
    assert "holds no state.pt; starting from step 0" in capsys.readouterr().err
    before = (out / "state.pt").read_bytes()
    assert "trained with --arch 'perceiver_io', not 'mamba'" in error_of(
        train.main, train_args(out, "--resume", "--arch", "mamba"))
    assert "trained with --preset 'tiny', not 'tiny_grid'" in error_of(
        train.main, train_args(out, "--resume", "--preset", "tiny_grid"))
    assert (out / "state.pt").read_bytes() == before  # the run it refused is untouched


def test_a_resumed_run_logs_each_step_once(tmp_path):
    out = tmp_path / "run"
    cfg = train.TrainConfig(**vars(train.build_parser().parse_args(
        train_args(out, "--max-steps", "4", "--ckpt-every", "2", "--val-every", "4", "--resume"))))
    train.train(cfg, stop_at=2)
    with (out / "metrics.jsonl").open("a") as f:  # what a run killed after step 3 had logged
        f.write(json.dumps({"step": 3, "loss": 1.0}) + "\n")
    train.train(cfg)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if "loss" in line]
    assert steps == [1, 2, 3, 4]
