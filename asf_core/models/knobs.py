"""Run-time knobs: forward keywords a checkpoint can be run at without retraining.

Each model lists its own through `knobs()`, from its config, so callers (evaluate, the app) check a
user's values against what the architecture says instead of knowing it by name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Knob:
    name: str  # the forward keyword
    label: str
    low: float  # the range the checkpoint was trained over
    high: float
    default: float
    help: str = ""  # one line for a user: what turning it does
    unit: str = ""  # "coords": in image coordinates, [-1, 1] across the image


def check_knobs(arch: str, knobs: dict[str, Knob], values: dict) -> dict[str, float]:
    """`values` as floats, or ValueError with one line: an unknown name or a value out of range."""
    out = {}
    for name, value in values.items():
        if name not in knobs:
            known = ", ".join(knobs) or "none"
            raise ValueError(f"{arch} has no run-time knob {name!r} (its knobs: {known})")
        knob = knobs[name]
        if isinstance(value, bool) or not isinstance(value, (int,
                                                             float)) or not knob.low <= value <= knob.high:
            raise ValueError(f"{arch} {name} must be a number in [{knob.low}, {knob.high}], got {value!r}")
        out[name] = float(value)
    return out
