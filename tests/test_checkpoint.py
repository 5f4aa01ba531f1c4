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

    with pytest.raises(Exception):
        save_pretrained(Broken(), folder, arch="perceiver_io")
    assert (folder / "model.safetensors").read_bytes() == before
    assert not list(folder.glob(".*tmp"))


def test_hub_id_offline_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CheckpointError, match=r"someone/asf-weights/mamba_d16: not a local folder.*offline"
                       r".*pretrained/<name>"):
        load_model("someone/asf-weights/mamba_d16")
