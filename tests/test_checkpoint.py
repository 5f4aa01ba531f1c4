import json

import pytest
import torch

from asf_core.checkpoint import CheckpointError, load_model, load_state, save_pretrained, save_state
from asf_core.models import build_model


@pytest.fixture
def folder(tmp_path):
    model = build_model("perceiver_io", "tiny")
    return save_pretrained(model, tmp_path / "ckpt", arch="perceiver_io", train={"lr": 1e-3})


def test_config_records_what_a_user_needs(folder):
    config = json.loads((folder / "config.json").read_text())
    assert config["arch"] == "perceiver_io" and config["model"]["d_model"] == 32
    assert config["train"] == {"lr": 1e-3}
    assert "values" in config["normalization"] and "git_commit" in config


def test_run_folder_resolves_to_best_then_last(tmp_path, folder):
    run = tmp_path / "run"
    (run / "last").mkdir(parents=True)
    for f in folder.iterdir():
        (run / "last" / f.name).write_bytes(f.read_bytes())
    assert load_model(run).arch == "perceiver_io"


def test_missing_folder_and_files(tmp_path, folder):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_model(tmp_path / "nope")
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing"):
        load_model(folder)


def test_truncated_weights(folder):
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: truncated or corrupt"):
        load_model(folder)


def test_corrupt_config(folder):
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps({"arch": "resnet", "model": {}}))
    with pytest.raises(CheckpointError, match="unknown architecture 'resnet'"):
        load_model(folder)


def test_mismatched_weights(tmp_path, folder):
    other = save_pretrained(build_model("perceiver_io", "tiny", d_model=48, num_heads=2), tmp_path / "o",
                            arch="perceiver_io")
    (folder / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="does not match perceiver_io config.*wrong shape"):
        load_model(folder)


def test_config_that_does_not_build(folder):
    config = json.loads((folder / "config.json").read_text())
    config["model"]["num_heads"] = 5  # 32 is not divisible by 5
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not build"):
        load_model(folder)


def test_fp16_weights_load_as_fp32(tmp_path):
    model = build_model("perceiver_io", "tiny")
    folder = save_pretrained(model, tmp_path / "h", arch="perceiver_io", dtype=torch.float16)
    loaded = load_model(folder)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


class Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_state_is_loaded_without_unpickling(tmp_path):
    save_state(tmp_path / "state.pt", {"step": 3, "w": torch.ones(2)})
    assert load_state(tmp_path / "state.pt")["step"] == 3
    torch.save({"evil": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_state(tmp_path / "evil.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "state.pt").read_bytes()[:50])
    with pytest.raises(CheckpointError, match="truncated"):
        load_state(tmp_path / "cut.pt")


def test_failed_write_leaves_the_old_file(tmp_path, folder):
    before = (folder / "model.safetensors").read_bytes()

    class Broken(torch.nn.Module):
        config = None

    with pytest.raises(TypeError):  # asdict(None)
        save_pretrained(Broken(), folder, arch="perceiver_io")
    assert (folder / "model.safetensors").read_bytes() == before
    assert not list(folder.glob(".*tmp"))


def test_hub_id_offline_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CheckpointError, match=r"someone/asf-weights/mamba_d16: not a local folder.*offline"
                       r".*pretrained/<name>"):
        load_model("someone/asf-weights/mamba_d16")


# ---- whole-folder writes (app item 13) -------------------------------------------------------------
def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # finished and reaped: no process has this pid now (pids are not reused at once)


def test_a_write_that_fails_midway_leaves_the_old_folder_whole(folder, monkeypatch):
    import asf_core.checkpoint as ckpt

    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    real = ckpt.save_file

    def weights_then_die(*args, **kwargs):
        real(*args, **kwargs)  # the new weights are written; the config never is
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "save_file", weights_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_pretrained(build_model("perceiver_io", "tiny", d_model=48), folder, arch="perceiver_io")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []


def test_a_save_keeps_the_other_files_of_the_folder(folder):
    (folder / "MODEL_CARD.md").write_text("# card")
    save_pretrained(build_model("perceiver_io", "tiny", d_model=48), folder, arch="perceiver_io")
    assert (folder / "MODEL_CARD.md").read_text() == "# card"
    assert load_model(folder).config.d_model == 48


def test_a_kill_between_the_renames_is_repaired_on_the_next_load(folder):
    pid = _dead_pid()
    # the old folder moved aside, the new one never came
    folder.rename(folder.parent / f".{folder.name}.{pid}.old")
    (folder.parent / f".{folder.name}.{pid}.abc.tmp").mkdir()  # and its half-written new folder
    assert load_model(folder).arch == "perceiver_io"
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]


def test_orphans_of_a_dead_writer_go_and_a_live_writers_stay(folder):
    import os

    dead = folder.parent / f".{folder.name}.{_dead_pid()}.xyz.tmp"
    live = folder.parent / f".{folder.name}.{os.getppid()}.xyz.tmp"  # the test runner's parent runs
    dead.mkdir()
    live.mkdir()
    save_pretrained(build_model("perceiver_io", "tiny"), folder, arch="perceiver_io")
    assert not dead.exists() and live.exists()


def test_killed_writers_never_leave_weights_beside_another_config(tmp_path):
    """A real SIGKILL at random moments of a loop that saves two differently shaped models in turn:
    after each kill the folder loads, so its config and weights are of the same save."""
    import random
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "last"
    script = (
        "import sys, torch\n"
        "from asf_core.checkpoint import save_pretrained\n"
        "from asf_core.models import build_model\n"
        "models = [build_model('perceiver_io', 'tiny', d_model=d) for d in (16, 48)]\n"
        "print('ready', flush=True)\n"
        "i = 0\n"
        "while True:\n"
        "    save_pretrained(models[i % 2], sys.argv[1], arch='perceiver_io'); i += 1\n"
    )
    rng = random.Random(0)
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", script, str(folder)], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        model = load_model(folder)  # raises on a config / weights mismatch
        assert model.config.d_model in (16, 48)
    assert [p.name for p in tmp_path.iterdir()] == ["last"]
