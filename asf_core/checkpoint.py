"""Checkpoints: released weights as `model.safetensors` + `config.json`, resume state as `state.pt`.

A pretrained folder holds:
    config.json         {"arch", "model" (config fields), "train", "normalization", "metrics", "git_commit"}
    model.safetensors   weights (the EMA weights for a release)
Training resume state (`state.pt`) holds tensors and plain containers only and is read with
`torch.load(weights_only=True)`: nothing is ever unpickled from a file a user hands in.
A file (`state.pt`) is written to a temporary file beside it, fsynced, then moved over the old one
with `os.replace`. A checkpoint folder is written as a whole: into a temporary sibling
`.NAME.PID.XXXX.tmp`, fsynced, then swapped in by two renames (old -> `.NAME.PID.old`, new -> NAME),
so a killed process leaves either the complete old folder or the complete new one. The next save or
load of NAME removes what a dead writer left behind and, if only the old folder survived, restores it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
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


def _fsync(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)  # a folder too: its entries are what a rename changes
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _usual_mode(path: str | Path, mode: int) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)  # mkstemp / mkdtemp make 0600 / 0700 entries


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), fsync it and move the result over `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        _usual_mode(tmp, 0o666)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync(path.parent)


def atomic_write_folder(folder: Path, write, keep: tuple[str, ...] = ()) -> None:
    """Call write(tmp_folder) and swap the result in for `folder` as a whole.

    Files of the old folder that write() does not make (a MODEL_CARD.md) are carried over, so
    nothing is lost; the names in `keep` are the ones write() makes. A kill at any point leaves
    the complete old or the complete new folder at `folder`, or, between the two renames, the
    old one beside it, which remove_orphans() puts back.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder}: is a file, not a checkpoint folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(folder)
    carried = [p for p in folder.iterdir() if p.name not in keep and not _is_temporary(p.name)] \
        if folder.is_dir() else []
    nested = [p.name for p in carried if p.is_dir()]
    if nested:  # a run folder or a project root given by mistake: never move those
        raise CheckpointError(f"{folder}: holds folder(s) {', '.join(sorted(nested))}; a checkpoint folder "
                              f"holds files only, so it will not be replaced")
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.{os.getpid()}.", suffix=".tmp"))
    old = folder.parent / f".{folder.name}.{os.getpid()}.old"
    try:
        write(tmp)
        for p in carried:
            try:
                os.link(p, tmp / p.name)  # the old folder is removed next: a link is a copy
            except OSError:
                shutil.copy2(p, tmp / p.name)
        for p in tmp.iterdir():
            _usual_mode(p, 0o666)
            _fsync(p)
        _usual_mode(tmp, 0o777)
        _fsync(tmp)
        if folder.is_dir():
            os.rename(folder, old)
            os.rename(tmp, folder)
        else:
            os.rename(tmp, folder)
        _fsync(folder.parent)
    except BaseException:
        if old.is_dir() and not folder.exists():
            os.rename(old, folder)  # the second rename failed: put the old folder back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


# what atomic_write / atomic_write_folder leave beside `name` while they run: the temporary file
# or folder, and the old folder between the swap's two renames; the number is the writer's pid
def _is_temporary(name: str) -> bool:
    return name.startswith(".") and (name.endswith(".tmp") or name.endswith(".old"))


def _writer_alive(pid: int) -> bool:
    """Whether process `pid` runs (this one included: its own writes are never orphans)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process, or a number we cannot judge: leave its files alone
    return True


def remove_orphans(path: str | Path) -> None:
    """Remove the temporary files and folders a killed writer of `path` left beside it, and put
    its old folder back when the swap died between its two renames. A live writer's files are
    kept (a reader may load a run's last/ while training writes it). Failures are ignored:
    cleaning up is a courtesy, and a read-only checkpoint must still load."""
    path = Path(path)
    named = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.(?:.+\.tmp|old)")
    try:
        entries = [p for p in path.parent.iterdir()
                   if p.name.startswith(f".{path.name}.") and _is_temporary(p.name)]
    except OSError:
        return
    for p in sorted(entries, key=lambda p: not p.name.endswith(".old")):  # an old folder may be the only copy
        m = named.fullmatch(p.name)
        if m and _writer_alive(int(m.group(1))):
            continue
        try:
            if p.name.endswith(".old") and not path.exists():
                os.rename(p, path)
            elif p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        except OSError:
            pass


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
    """Write config.json and model.safetensors into `folder` as one swap (weights cast to `dtype` if
    given); other files already in `folder` are kept."""
    folder = Path(folder)
    tensors = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    config = {
        "arch": arch, "model": asdict(model.config), "train": train or {},
        "normalization": NORMALIZATION, "metrics": metrics or {}, "git_commit": git_commit(),
    }

    def write(tmp: Path) -> None:
        save_file(tensors, tmp / WEIGHTS_NAME, metadata={"arch": arch})
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")

    atomic_write_folder(folder, write, keep=(WEIGHTS_NAME, CONFIG_NAME))
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
    if not isinstance(config["arch"], str) or config["arch"] not in MODELS:
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


def bad_values(expected: dict, weights: dict) -> str:
    """Weights that would load and silently give wrong numbers ("" when none): integer tensors where
    the model holds floats (a cast truncates them), and NaN or infinite values."""
    ints = [k for k, v in expected.items() if k in weights and v.is_floating_point()
            and not weights[k].is_floating_point()]
    nonfinite = [k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    return "; ".join(
        f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
        for label, keys in (("integer where floats belong", ints),
                            ("NaN or infinite values", nonfinite)) if keys
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
    stored = load_weights(folder / WEIGHTS_NAME)
    detail = weight_mismatch(model.state_dict(), stored) or bad_values(model.state_dict(), stored)
    if detail:
        raise CheckpointError(f"{folder / WEIGHTS_NAME}: does not match {config['arch']} config ({detail})")
    weights = {k: v.float() if v.is_floating_point() else v for k, v in stored.items()}
    model.load_state_dict(weights)
    model.arch, model.checkpoint_config = config["arch"], config
    return model.to(device).eval()


def resolve_folder(path: str | Path) -> Path:
    """A folder with config.json, a training run folder whose best/ (else last/) holds one, or a
    Hugging Face Hub id `owner/repo[/subfolder]` (downloaded once into the local Hub cache)."""
    path = Path(path)
    for candidate in (path, path / "best", path / "last"):
        remove_orphans(candidate)  # a save killed between its two renames left only the old folder
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
        raise CheckpointError(f"{path}: truncated, corrupt or not a resume state "
                              f"({type(e).__name__}: {e})") from None
