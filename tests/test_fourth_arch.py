"""A fourth architecture defined in this file alone: registered, saved, then listed, run and drawn by
the app, with no change to app/ (every name, knob and attention read-out comes from its spec).

The toy: every query's estimate b is a softmax-weighted mean of the observed colours (weights
exp(-|q - obs|² / temperature), a run-time knob), and its velocity points from x_t to b plus one
learned scale. Symbols: B batch · N observed points · Q queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from app.handlers import Handlers, labels, method_key
from app.inference import Frame, Reconstructor, Result
from asf_core.checkpoint import load_model, save_pretrained
from asf_core.models import SPECS, build_model, register, unregister
from asf_core.models.knobs import Knob
from asf_core.models.spec import ArchSpec, Attention


@dataclass
class SoftNearestConfig:
    temperature: float = 0.05  # in squared coordinate units
    temperature_min: float = 0.01
    temperature_max: float = 0.2


class SoftNearest(nn.Module):
    def __init__(self, config: SoftNearestConfig):
        super().__init__()
        self.config = config
        self.gain = nn.Parameter(torch.ones(1))

    def context(self, *, query_xy, obs_xy, obs_rgb, temperature=None) -> dict:
        tau = self.config.temperature if temperature is None else float(temperature)
        q = query_xy.expand(obs_xy.shape[0], -1, -1) if query_xy.dim() == 2 else query_xy  # (B, Q, 2)
        w = torch.softmax(-torch.cdist(q, obs_xy) ** 2 / tau, -1)  # (B, Q, N)
        return {"interp": w @ obs_rgb, "weights": w, "token_xy": obs_xy}  # b: (B, Q, 3)

    def forward(self, *, x_t, t, query_xy, obs_xy, obs_rgb, return_attention=False, context=None,
                temperature=None):
        ctx = context or self.context(query_xy=query_xy, obs_xy=obs_xy, obs_rgb=obs_rgb,
                                      temperature=temperature)
        v = self.gain * (ctx["interp"] - x_t) / (1 - t).clamp(min=0.05)[:, None, None]  # (B, Q, 3)
        if not return_attention:
            return v
        b, q, n = ctx["weights"].shape
        tokens = torch.cat([ctx["weights"], ctx["weights"].new_zeros(b, q, q)], -1)  # over [obs; queries]
        return v, {"soft": tokens, "token_xy": ctx["token_xy"]}


def knobs(c: SoftNearestConfig) -> dict[str, Knob]:
    return {"temperature": Knob("temperature", "Temperature", c.temperature_min, c.temperature_max,
                                c.temperature,
                                help="how widely each pixel averages")}


def attention(maps: dict, q: int) -> Attention:
    return Attention(weights=maps["soft"][0, q].numpy(), token_xy=maps["token_xy"][0].numpy())


SPEC = ArchSpec(
    name="soft_nearest", label="Soft nearest",
    help="Soft nearest: a softmax-weighted mean of the observations.",
    model_cls=SoftNearest, config_cls=SoftNearestConfig, presets={"tiny": {}, "small": {}}, knobs=knobs,
    attention=attention, attention_help="its softmax weights", releases={"soft_nearest_grid": {}},
)


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    register(SPEC)
    root = tmp_path_factory.mktemp("pretrained")
    save_pretrained(build_model("soft_nearest", "tiny"), root / "soft_nearest_grid", arch="soft_nearest")
    yield Reconstructor(root)
    unregister("soft_nearest")


def test_it_loads_like_any_other(rec):
    assert isinstance(load_model(rec.checkpoints["soft_nearest_grid"]["path"]), SoftNearest)
    assert "soft_nearest" in SPECS


def test_the_app_lists_it(rec):
    assert rec.methods()[0] == "soft_nearest"
    assert labels()["soft_nearest"] == "Soft nearest" and method_key("Soft nearest") == "soft_nearest"
    assert rec.knobs("soft_nearest")["temperature"].high == 0.2
    assert not any("soft_nearest_grid" in line for line in rec.missing())
    ev = Handlers(rec)
    [control] = ev.controls
    assert (control.arch, control.name, control.low, control.high) == ("soft_nearest", "temperature", 0.01,
                                                                       0.2)
    shown, *model_knobs = ev.knob_visibility("Soft nearest")
    assert shown["visible"] and all(u["visible"] for u in model_knobs)
    assert not ev.knob_visibility("Thin-plate spline")[0]["visible"]


def test_the_app_runs_it(rec, image, mask):
    items = list(rec.run(image, mask, "soft_nearest", steps=3, seed=0, temperature=0.02))
    frames, result = items[:-1], items[-1]
    assert all(isinstance(f, Frame) for f in frames) and isinstance(result, Result)
    assert result.image.shape == (32, 32, 3) and result.metrics["psnr"] > 10


def test_the_app_draws_its_locality(rec, image, mask):
    loc = rec.locality(image, mask, "soft_nearest", (10, 20), temperature=0.01)
    assert loc["attention"].shape == (32, 32) and loc["attention"].sum() == pytest.approx(1.0, abs=1e-5)
    assert loc["attention"][~mask].sum() == 0  # its weights are over observations only
    rr, cc = np.unravel_index(loc["attention"].argmax(), mask.shape)
    assert np.hypot(rr - 10, cc - 20) <= 3  # the nearest observations weigh most
    assert "radius_px" not in loc and "scan_path" not in loc  # its read-out bounds neither
    assert loc["influence_network_total"] == pytest.approx(0.0, abs=1e-6)  # all of x̂1 is its b
