"""The architecture specs (asf_core.models.spec): what every spec owes, its attention read-out on a
tiny model, and that the app names no architecture itself (it reads the specs)."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from asf_core.models import MODELS, SPECS, build_model, make_config
from asf_core.models.spec import Attention

APP = Path(__file__).resolve().parents[1] / "app"
N, S = 12, 8  # observations, query grid side


def test_models_follow_the_specs():
    assert list(MODELS) == list(SPECS)
    for name, spec in SPECS.items():
        assert spec.name == name and spec.label and spec.help
        assert MODELS[name] == (spec.model_cls, spec.config_cls, spec.presets)
        if spec.checkpoint_key:
            assert spec.checkpoint_default in spec.checkpoint_values
            for overrides in spec.releases.values():
                assert overrides[spec.checkpoint_key] in spec.checkpoint_values
        if spec.in_app:
            assert spec.releases and (spec.attention is None or spec.attention_help)


@pytest.mark.parametrize("name", list(SPECS))
def test_knobs_come_from_the_config(name):
    spec = SPECS[name]
    model = build_model(name, "tiny")
    assert model.knobs() == spec.knobs(model.config) == spec.knobs_of(vars(make_config(name, "tiny")))
    for knob in model.knobs().values():
        assert knob.low <= knob.default <= knob.high


@pytest.mark.parametrize("name", [n for n, s in SPECS.items() if s.attention is not None])
def test_attention_read_out(name):
    """(maps, q) -> weights over [leading tokens; queries], finite and non-negative, on every query."""
    torch.manual_seed(0)
    model = build_model(name, "tiny").eval()
    g = torch.Generator().manual_seed(0)
    from asf_core.fields import pixel_coords

    query_xy = pixel_coords(S, S)
    obs_xy, obs_rgb = torch.rand(1, N, 2, generator=g) * 2 - 1, torch.rand(1, N, 3, generator=g) * 2 - 1
    with torch.no_grad():
        _, maps = model(x_t=torch.zeros(1, S * S, 3), t=torch.zeros(1), query_xy=query_xy, obs_xy=obs_xy,
                        obs_rgb=obs_rgb, return_attention=True)
    for q in (0, S * S - 1):
        att = SPECS[name].attention(maps, q)
        assert isinstance(att, Attention)
        n_lead = att.token_xy.shape[0]
        assert att.token_xy.shape == (n_lead, 2) and att.weights.shape == (n_lead + S * S,)
        assert np.isfinite(att.weights).all() and (att.weights >= -1e-7).all() and att.weights.sum() > 0
        if att.scan_order is not None:
            assert sorted(att.scan_order.tolist()) == list(range(n_lead + S * S))


def test_no_architecture_name_in_the_app():
    """The app reads names, labels, knobs and read-outs from SPECS; it spells none of them itself."""
    words = set()
    for spec in SPECS.values():
        words |= {spec.name, spec.label, *spec.releases}
    pattern = re.compile("|".join(rf"\b{re.escape(w)}\b" for w in sorted(words)), re.IGNORECASE)
    found = [f"{p.name}:{i}: {line.strip()}" for p in sorted(APP.glob("*.py"))
             for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, "\n".join(found)
