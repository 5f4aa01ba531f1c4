import json
import os
import subprocess
import sys

import pytest
import torch

from asf_core.checkpoint import load_model, load_state
from asf_core.train import TrainConfig, build_parser, main, train


def tiny_config(out, **kw) -> TrainConfig:
    base = dict(arch="perceiver_io", preset="tiny", dataset="synthetic", out=str(out), max_steps=6,
                batch_size=4, n_queries=16, warmup_steps=2, log_every=2, ckpt_every=3, val_every=3,
                val_n=8, val_steps=2, source="interp", sigma=0.3, device="cpu")
    return TrainConfig(**{**base, **kw})


def flat(state: dict) -> dict[str, torch.Tensor]:
    out = {}
    for k in ("model", "ema"):
        out.update({f"{k}.{n}": t for n, t in state[k].items()})
    for i, s in state["optimizer"]["state"].items():
        out.update({f"opt.{i}.{n}": t for n, t in s.items() if torch.is_tensor(t)})
    return out


def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path):
    train(tiny_config(tmp_path / "a"))
    train(tiny_config(tmp_path / "b"), stop_at=3)  # as if the process died after step 3's checkpoint
    assert load_state(tmp_path / "b" / "state.pt")["step"] == 3
    train(tiny_config(tmp_path / "b", resume=True))
    a, b = load_state(tmp_path / "a" / "state.pt"), load_state(tmp_path / "b" / "state.pt")
    assert a["step"] == b["step"] == 6 and a["images_seen"] == b["images_seen"] == 24
    fa, fb = flat(a), flat(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        assert torch.equal(fa[k], fb[k]), k
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"]
    # and the run folder is a loadable checkpoint with its training config
    model = load_model(tmp_path / "b")
    assert model.checkpoint_config["train"]["source"] == "interp"
    lines = [json.loads(s) for s in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_psnr_onestep" in s for s in lines) and any("loss" in s for s in lines)


def test_resume_changes_the_run_from_a_fresh_start(tmp_path):
    train(tiny_config(tmp_path / "a", max_steps=3))
    train(tiny_config(tmp_path / "b", max_steps=3, seed=1))
    a, b = load_state(tmp_path / "a" / "state.pt"), load_state(tmp_path / "b" / "state.pt")
    assert not torch.equal(a["model"]["latents"], b["model"]["latents"])


def test_flags_come_from_the_config():
    args = build_parser().parse_args(["--arch", "perceiver_io", "--max-steps", "7", "--no-flip"])
    cfg = TrainConfig(**vars(args))
    assert cfg.max_steps == 7 and cfg.flip is False and cfg.batch_size == TrainConfig.batch_size


def run_cli(*args, env=None):
    e = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=e, timeout=120)


@pytest.mark.parametrize("argv,message", [
    (["--obs-fraction", "1.5"], "observed fraction must be in (0, 1]"),
    (["--obs-fraction", "0"], "observed fraction must be in (0, 1]"),
    (["--arch", "transformer"], "unknown architecture 'transformer'"),
    (["--dataset", "cifar10", "--data-dir", "/no/such/dir"], "data dir /no/such/dir does not exist"),
    (["--max-steps", "0"], "--max-steps must be >= 1"),
    (["--source", "gan"], "unknown source 'gan'"),
])
def test_train_cli_errors_are_one_line(argv, message, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["--preset", "tiny", "--dataset", "synthetic", "--out", str(tmp_path), *argv])
    assert isinstance(e.value.code, str) and e.value.code.startswith(f"error: {message}")
    assert "\n" not in e.value.code


def test_train_cli_error_in_a_real_process(tmp_path):
    r = run_cli("asf_core.train", "--obs-fraction", "2", "--out", str(tmp_path))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "error: observed fraction must be in (0, 1], got 2.0"


def test_ddp_on_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "asf_core.train", "--preset", "tiny", "--dataset", "synthetic", "--out", str(out),
         "--max-steps", "4", "--batch-size", "4", "--n-queries", "16", "--ckpt-every", "2",
         "--val-every", "4", "--val-n", "8", "--val-steps", "2", "--device", "cpu"],
        capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    state = load_state(out / "state.pt")
    assert state["step"] == 4 and state["images_seen"] == 4 * 4 * 2  # two processes' batches
    assert len(state["rng"]["data"]) == 2  # each rank's generator is saved for resume
    config = load_model(out).checkpoint_config["train"]
    assert config["world_size"] == 2


def test_init_from_starts_at_released_weights(tmp_path):
    train(tiny_config(tmp_path / "a", max_steps=2))
    train(tiny_config(tmp_path / "b", max_steps=1, init_from=str(tmp_path / "a"), lr=1e-12, warmup_steps=1))
    a, b = load_model(tmp_path / "a"), load_state(tmp_path / "b" / "state.pt")["model"]
    for name, p in a.state_dict().items():
        assert torch.allclose(p, b[name], atol=1e-6), name


def test_best_is_saved_at_a_validation_step_between_checkpoints(tmp_path):
    # validation at step 2, checkpoints only every 10 steps, and the run is stopped at step 3
    train(tiny_config(tmp_path / "r", max_steps=10, ckpt_every=10, val_every=2), stop_at=3)
    best = json.loads((tmp_path / "r" / "best" / "config.json").read_text())
    assert best["train"]["step"] == 2 and "val_psnr_onestep" in best["metrics"]
    assert load_state(tmp_path / "r" / "state.pt")["best_val"] == best["metrics"]["val_psnr_onestep"]
