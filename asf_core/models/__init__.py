"""The ASF architectures, chosen by name from one plain dict.

Every model has the same call signature, state before time:
    v = model(x_t=..., t=..., query_xy=..., obs_xy=..., obs_rgb=...)  # (B, Q, 3)
and returns (v, maps) with `return_attention=True`.
"""

from __future__ import annotations

from dataclasses import asdict, fields

from torch import nn

from asf_core.models import local_implicit, mamba, perceiver_io, unet
from asf_core.models.encoder import GridEncoderConfig
from asf_core.models.values import check_values

# name -> (model class, config class, presets)
MODELS = {
    "perceiver_io": (perceiver_io.PerceiverIO, perceiver_io.PerceiverIOConfig, perceiver_io.PRESETS),
    "local_implicit": (local_implicit.LocalImplicit, local_implicit.LocalImplicitConfig, local_implicit.PRESETS),
    "mamba": (mamba.MambaField, mamba.MambaConfig, mamba.PRESETS),
    "unet": (unet.UNetField, unet.UNetConfig, unet.PRESETS),
}


def check_arch(name: str) -> None:
    if name not in MODELS:
        raise ValueError(f"unknown architecture {name!r}; choose from {', '.join(MODELS)}")


def make_config(name: str, preset: str = "small", **overrides):
    """The config dataclass of `name`, from a named preset with field overrides."""
    check_arch(name)
    _, config_cls, presets = MODELS[name]
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r} for {name}; choose from {', '.join(presets)}")
    known = {f.name for f in fields(config_cls)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown {name} config field(s) {sorted(unknown)}; known: {sorted(known)}")
    values = {**presets[preset], **overrides}
    check_values(config_cls, values)
    return config_cls(**values)


def build_model(name: str, preset: str = "small", **overrides) -> nn.Module:
    """Build an architecture by name, e.g. `build_model("perceiver_io", "tiny", d_model=64)`."""
    return model_from_config(name, asdict(make_config(name, preset, **overrides)))


def model_from_config(name: str, config: dict) -> nn.Module:
    """Build from a stored config dict (as in config.json)."""
    check_arch(name)
    model_cls, config_cls, _ = MODELS[name]
    known = {f.name for f in fields(config_cls)}
    unknown = set(config) - known
    if unknown:
        raise ValueError(f"config has field(s) {sorted(unknown)} that {name} does not know")
    check_values(config_cls, config, "model")
    if config.get("encoder"):
        known = {f.name for f in fields(GridEncoderConfig)}
        if set(config["encoder"]) - known:
            raise ValueError(f"model.encoder has field(s) {sorted(set(config['encoder']) - known)} it does not know")
        check_values(GridEncoderConfig, config["encoder"], "model.encoder")
    return model_cls(config_cls(**config))
