"""What an architecture is, in one frozen record beside its model: `SPEC = ArchSpec(...)`.

The app, the Compare tab and the tools read these records (collected in asf_core.models.SPECS) and
never compare architecture names: a label, a one-line help, the run-time knobs with their ranges
from the config, the config field that picks one checkpoint among several, and the read-out of the
model's attention for one query in one common format (`Attention`).

Symbols: N leading tokens (observations, or a grid encoder's cells) · Q queries · T = N + Q tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from asf_core.models.knobs import Knob


@dataclass(frozen=True)
class Attention:
    """Where one query looks, over the tokens [leading tokens; queries].

    weights: (T,) non-negative attention weights (not yet normalised).
    token_xy: (N, 2) positions of the leading tokens in [-1, 1]² (x, y); query j is at query j.
    radius: how far a query may look, in coordinate units ([-1, 1] spans the image), if bounded.
    scan_order: (T,) token indices in the order the first layer reads them, for a sequence model.
    """

    weights: np.ndarray
    token_xy: np.ndarray
    radius: float | None = None
    scan_order: np.ndarray | None = None

    def radius_px(self, width: int) -> float | None:
        """The radius in pixels of a `width`-pixel grid (coordinates span 2 units over it)."""
        return None if self.radius is None else self.radius * width / 2


def no_knobs(config: Any) -> dict[str, Knob]:
    return {}


@dataclass(frozen=True)
class ArchSpec:
    """One architecture.

    name: the registry key, written as `arch` into config.json.
    label, help: its name for people and one line on how it mixes information.
    model_cls, config_cls, presets: the nn.Module, its config dataclass, named presets (field dicts).
    knobs: config -> {forward keyword: Knob}, the values it can be run at without retraining.
    checkpoint_key: the config field that tells its released checkpoints apart (None: one checkpoint);
        checkpoint_values its released values, checkpoint_default the one served when none is asked
        for, checkpoint_help one line on what the field is.
    attention: (maps, q) -> Attention, reading `return_attention=True`'s maps for query q of
        batch element 0; None when the model reports no attention. attention_help: a few words on
        what that read-out is.
    releases: {release folder name: model config overrides it was trained with}.
    in_app: whether the app serves it (a model that needs full pixel grids, say, is not).
    full_grid: it answers only at every pixel centre of its grid, so training and benchmarks give it
        every pixel as a query rather than a random subset.
    """

    name: str
    label: str
    help: str
    model_cls: type[torch.nn.Module]
    config_cls: type
    presets: Mapping[str, dict]
    knobs: Callable[[Any], dict[str, Knob]] = no_knobs
    checkpoint_key: str | None = None
    checkpoint_values: tuple = ()
    checkpoint_default: Any = None
    checkpoint_help: str = ""
    attention: Callable[[dict, int], Attention] | None = None
    attention_help: str = ""
    releases: Mapping[str, dict] = field(default_factory=dict)
    in_app: bool = True
    full_grid: bool = False

    def knobs_of(self, config: dict) -> dict[str, Knob]:
        """The knobs of a stored config dict (config.json's "model"), without building the model."""
        return self.knobs(self.config_cls(**config))


def token_xy(maps: dict) -> np.ndarray:
    """(N, 2) leading-token positions of batch element 0 from a model's maps (their `token_xy`)."""
    return maps["token_xy"][0].detach().float().numpy()
