"""Check a stored config's values against its dataclass before anything is built from them.

A config.json is user input: a list where a name belongs, a negative width or 2.5 heads must fail
with one line naming the field, not deep inside a layer constructor or, worse, in the first
forward after the data has loaded. The type of each field is read from its default value, which
every config field has.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, fields


def _default(f):
    return f.default_factory() if f.default is MISSING else f.default


def _problem(value, default) -> str | None:
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be a whole number"
        if value < 0 or (default > 0 and value == 0):
            return "must be positive" if default > 0 else "must be >= 0"
        return None
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be a number"
        return None if math.isfinite(value) else "must be finite"
    if isinstance(default, str):
        return None if isinstance(value, str) else "must be a string"
    if isinstance(default, (tuple, list)):
        if not isinstance(value, (tuple, list)):
            return "must be a list"
        if default and isinstance(default[0], int):
            bad = [v for v in value if isinstance(v, bool) or not isinstance(v, int) or v < 1]
            return "must hold positive whole numbers" if bad or not value else None
        return None
    if isinstance(default, dict):
        return None if isinstance(value, dict) else "must be a mapping"
    return None


def check_values(config_cls, values: dict, where: str = "") -> None:
    """Raise ValueError naming the first field of `values` whose type or sign cannot be right."""
    if not isinstance(values, dict):
        raise ValueError(f"{where or config_cls.__name__}: must be a mapping of field names to values")
    for f in fields(config_cls):
        if f.name in values:
            problem = _problem(values[f.name], _default(f))
            if problem:
                name = f"{where}.{f.name}" if where else f.name
                raise ValueError(f"{name} {problem}, got {values[f.name]!r}")
