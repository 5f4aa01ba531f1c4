"""Hugging Face Spaces support: the ZeroGPU decorator and checkpoints from a Hub repository.

`gpu` is `spaces.GPU` when the `spaces` package imports and a no-op decorator otherwise, so the
heavy handlers carry `@gpu(duration=...)` everywhere. Off ZeroGPU hardware (CPU basic, a laptop)
`spaces.GPU` itself returns the function unchanged, so the decorator never costs anything here.

Weights come from pretrained/ first; a checkpoint missing there is looked up in the Hub repository
named by $ASF_HUB_REPO ("owner/asf-weights", one sub-folder per release name, those
of each spec's `releases`) through asf_core.checkpoint.from_hub. huggingface_hub's
snapshot_download answers from its local cache when HF_HUB_OFFLINE=1 or when the Hub cannot be
reached, so a Space that downloaded once keeps working offline; what neither place has is reported
with the reason, never raised.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

HUB_ENV = "ASF_HUB_REPO"

try:  # the package only exists on Spaces (or where someone installed it)
    import spaces

    gpu = spaces.GPU
    SPACES = True
except Exception:  # noqa: BLE001  ImportError, or spaces refusing to start outside its own environment
    SPACES = False

    def gpu(task: Callable | None = None, *, duration=None, size=None, **_) -> Callable:
        """No-op stand-in for spaces.GPU: `@gpu`, `@gpu(duration=60)` both return the function."""
        if callable(task):
            return task
        return lambda fn: fn


def hub_repo() -> str | None:
    """The Hub repository id from $ASF_HUB_REPO ("owner/name"), or None when unset."""
    repo = os.environ.get(HUB_ENV, "").strip().strip("/")
    return repo or None


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in ("1", "true", "yes", "on")


def hub_checkpoints(repo: str, names: Iterable[str]) -> tuple[dict[str, Path], dict[str, str]]:
    """Fetch each checkpoint `repo/<name>` -> ({name: local folder}, {name: why it is unavailable}).

    A malformed repo id fails every name with one message rather than raising.
    """
    from asf_core.checkpoint import CheckpointError, from_hub, read_config

    found, errors = {}, {}
    names = list(names)
    if len(repo.split("/")) != 2 or not all(repo.split("/")):
        return {}, {n: f"{HUB_ENV}={repo!r} is not a Hub repository id like owner/name" for n in names}
    for name in names:
        try:
            folder = from_hub(f"{repo}/{name}")
            read_config(folder)  # a cached snapshot without this sub-folder fails here
            found[name] = folder
        except CheckpointError as e:
            errors[name] = str(e)
    return found, errors
