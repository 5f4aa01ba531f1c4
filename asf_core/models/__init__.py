"""The ASF architectures, chosen by name from one plain dict of specs (asf_core.models.spec).

Every model has the same call signature, state before time:
    v = model(x_t=..., t=..., query_xy=..., obs_xy=..., obs_rgb=...)  # (B, Q, 3)
and returns (v, maps) with `return_attention=True`. What each architecture is (label, help, knobs,
checkpoint key, attention read-out) lives in its `SPEC`, beside its model; callers read SPECS.
"""

from __future__ import annotations

from dataclasses import asdict, fields

from torch import nn

from asf_core.models import hybrid, local_implicit, mamba, perceiver_io, unet
from asf_core.models.encoder import GridEncoderConfig
from asf_core.models.spec import ArchSpec
from asf_core.models.values import check_values

SPECS: dict[str, ArchSpec] = {}
# name -> (model class, config class, presets), kept in step with SPECS by register()
MODELS: dict[str, tuple] = {}


def register(spec: ArchSpec) -> ArchSpec:
    """Add an architecture (or replace one of that name); it is then buildable and loadable."""
    SPECS[spec.name] = spec
    MODELS[spec.name] = (spec.model_cls, spec.config_cls, spec.presets)
    return spec


def unregister(name: str) -> None:
    """Remove an architecture added by register() (a test's own, once it is done)."""
    SPECS.pop(name, None)
    MODELS.pop(name, None)


for _module in (perceiver_io, local_implicit, mamba, hybrid, unet):
    register(_module.SPEC)


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
            extra = sorted(set(config["encoder"]) - known)
            raise ValueError(f"model.encoder has field(s) {extra} it does not know")
        check_values(GridEncoderConfig, config["encoder"], "model.encoder")
    return model_cls(config_cls(**config))
