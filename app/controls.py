"""The run-time controls of the served architectures, read from their specs (asf_core.models.spec).

One control per (architecture, knob) and one per architecture with a checkpoint key, in the order
of `Reconstructor.methods()`: the UI makes a slider or a radio of each, shown only while its
architecture is chosen, and the handlers get their values back in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.inference import Reconstructor, arch_specs
from asf_core.models import SPECS


@dataclass(frozen=True)
class Control:
    arch: str
    name: str  # the forward keyword, or the spec's checkpoint key
    label: str
    info: str
    default: float | int | None
    low: float | None = None  # a slider's range
    high: float | None = None
    choices: tuple = ()  # a radio's values (the checkpoint key's, one checkpoint each)


def controls(rec: Reconstructor) -> list[Control]:
    out = []
    for arch in (m for m in rec.methods() if m in arch_specs()):
        spec = SPECS[arch]
        for k in rec.knobs(arch).values():
            info = f"{spec.label}: {k.help}"
            if k.unit == "coords":  # coordinates span 2 units over the model grid's S pixels
                info += f" ([-1, 1] units; 0.1 = {rec.size * 0.05:.1f} px)"
            out.append(Control(arch, k.name, k.label, info, k.default, k.low, k.high))
        if spec.checkpoint_key:
            out.append(Control(arch, spec.checkpoint_key, spec.checkpoint_key,
                               f"{spec.label}'s {spec.checkpoint_help}", rec.default_checkpoint_value(arch),
                               choices=tuple(rec.checkpoint_values(arch))))
    return out


def knobs_by_arch(controls_: list[Control], values) -> dict[str, dict]:
    """{arch: {name: value}} from the controls' values, given in the controls' order."""
    values = list(values)
    if len(values) != len(controls_):
        raise ValueError(f"{len(controls_)} control value(s) expected, got {len(values)}")
    out: dict[str, dict] = {}
    for c, v in zip(controls_, values):
        out.setdefault(c.arch, {})[c.name] = v
    return out
