"""Checkpoints: released weights as `model.safetensors` + `config.json`, resume state as `state.pt`.

A pretrained folder holds:
    config.json         {"arch", "model" (config fields), "train", "normalization", "metrics", "git_commit"}
    model.safetensors   weights (the EMA weights for a release)
Training resume state (`state.pt`) holds tensors and plain containers only and is read with
`torch.load(weights_only=True)`: nothing is ever unpickled from a file a user hands in.
Every write goes to a temporary file in the same folder, then `os.replace`, so a killed process
never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from asf_core.models import MODELS, model_from_config

CONFIG_NAME, WEIGHTS_NAME, STATE_NAME = "config.json", "model.safetensors", "state.pt"
NORMALIZATION = {"values": "rgb in [-1, 1]", "coords": "pixel centres (x, y) in [-1, 1]^2"}


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt or does not match its config."""


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path) and move the result over `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def save_pretrained(
    model: nn.Module, folder: str | Path, *, arch: str, train: dict | None = None,
    metrics: dict | None = None, dtype: torch.dtype | None = None,
) -> Path:
    """Write config.json and model.safetensors into `folder` (weights cast to `dtype` if given)."""
    folder = Path(folder)
    tensors = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    config = {
        "arch": arch, "model": asdict(model.config), "train": train or {},
        "normalization": NORMALIZATION, "metrics": metrics or {}, "git_commit": git_commit(),
    }
    atomic_write(folder / WEIGHTS_NAME, lambda p: save_file(tensors, p, metadata={"arch": arch}))
    atomic_write(folder / CONFIG_NAME, lambda p: Path(p).write_text(json.dumps(config, indent=2) + "\n"))
    return folder


def read_config(folder: str | Path) -> dict:
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (a checkpoint folder holds {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(config, dict) or "arch" not in config or "model" not in config:
        raise CheckpointError(f"{path}: lacks the 'arch' and 'model' entries")
    if config["arch"] not in MODELS:
        raise CheckpointError(f"{path}: unknown architecture {config['arch']!r}; known: {', '.join(MODELS)}")
    return config


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: truncated or corrupt safetensors file ({e})") from None


def weight_mismatch(expected: dict, weights: dict, addable: tuple[str, ...] = ()) -> str:
    """How `weights` fail to fit a model whose state dict is `expected` ("" when they fit): missing
    keys (except those under the `addable` prefixes), unexpected keys and wrong shapes."""
    missing = sorted(k for k in set(expected) - set(weights) if not k.startswith(addable))
    extra = sorted(set(weights) - set(expected))
    shapes = [k for k in expected if k in weights and weights[k].shape != expected[k].shape]
    return "; ".join(
        f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
        for label, keys in (("missing", missing), ("unexpected", extra), ("wrong shape", shapes)) if keys
    )


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Load a model from a pretrained folder or a training run folder (its `best/` or `last/`).

    The model comes back in eval mode, in float32, with `.arch` and `.checkpoint_config` set.
    """
    folder = resolve_folder(path)
    config = read_config(folder)
    try:
        model = model_from_config(config["arch"], config["model"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{folder / CONFIG_NAME}: model config does not build ({e})") from None
    weights = {k: v.float() if v.is_floating_point() else v for k, v in load_weights(folder / WEIGHTS_NAME).items()}
    detail = weight_mismatch(model.state_dict(), weights)
    if detail:
        raise CheckpointError(f"{folder / WEIGHTS_NAME}: does not match {config['arch']} config ({detail})")
    model.load_state_dict(weights)
    model.arch, model.checkpoint_config = config["arch"], config
    return model.to(device).eval()


def resolve_folder(path: str | Path) -> Path:
    """A folder with config.json, a training run folder whose best/ (else last/) holds one, or a
    Hugging Face Hub id `owner/repo[/subfolder]` (downloaded once into the local Hub cache)."""
    path = Path(path)
    if not path.exists():
        if _looks_like_hub_id(str(path)):
            path = from_hub(str(path))
        else:
            raise CheckpointError(f"{path}: no such checkpoint folder")
    if path.is_file():
        path = path.parent
    for candidate in (path, path / "best", path / "last"):
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    raise CheckpointError(f"{path}: holds no {CONFIG_NAME} (nor best/ or last/ with one)")


def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) >= 2 and not text.startswith((".", "/", "~")) and all(parts) and "\\" not in text


def from_hub(hub_id: str) -> Path:
    """Fetch `owner/repo[/subfolder]` from the Hub (or its local cache) and return the folder."""
    parts = hub_id.split("/")
    repo, sub = "/".join(parts[:2]), "/".join(parts[2:])
    local_hint = "pass a local folder such as pretrained/<name> instead"
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(f"{hub_id}: no such folder, and huggingface_hub is not installed to fetch it "
                              f"from the Hub; {local_hint}") from None
    patterns = [f"{sub}/{name}" for name in (CONFIG_NAME, WEIGHTS_NAME, "MODEL_CARD.md")] if sub else None
    try:
        root = Path(snapshot_download(repo, allow_patterns=patterns))
    except Exception as e:  # offline mode, no network, unknown repo: all mean "not available here"
        reason = "offline (HF_HUB_OFFLINE=1) and not in the local cache" if os.environ.get(
            "HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") else type(e).__name__
        raise CheckpointError(f"{hub_id}: not a local folder and not available from the Hugging Face Hub "
                              f"({reason}); {local_hint}, or download it on a networked machine with "
                              f"`huggingface-cli download {repo}`") from None
    return root / sub if sub else root


def save_state(path: str | Path, state: dict) -> None:
    """Resume state (tensors, numbers, strings, lists, dicts), written atomically."""
    atomic_write(Path(path), lambda p: torch.save(state, p))


def load_state(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing, nothing to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated / foreign files
        raise CheckpointError(f"{path}: truncated, corrupt or not a resume state ({type(e).__name__}: {e})") from None
