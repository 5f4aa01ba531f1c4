"""The hybrid: what it takes from each parent (a live radius, a scan that reaches past it) and its limits."""

import pytest
import torch

from asf_core.fields import pixel_coords
from asf_core.models.hybrid import PRESETS, Hybrid, HybridConfig
from asf_core.models.local_implicit import PRESETS as LOCAL_PRESETS
from asf_core.models.local_implicit import LocalImplicit, LocalImplicitConfig


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():  # adaLN-Zero starts every block at the identity: make the outputs informative
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        x_t=torch.randn(1, 64, 3, generator=g),
        t=torch.full((1,), 0.5),
        query_xy=pixel_coords(8, 8),
        obs_xy=torch.rand(1, 12, 2, generator=g) * 2 - 1,
        obs_rgb=torch.rand(1, 12, 3, generator=g) * 2 - 1,
    )


@torch.no_grad()
def far_effect(model: torch.nn.Module, radius: float) -> float:
    """How much the velocity of the first query (a corner pixel) moves when the state of the opposite
    corner changes: nothing for a model that only looks within the radius."""
    base = inputs()
    x = base["x_t"].clone()
    x[0, -1] += 1.0
    a = model(**base, radius=radius)
    b = model(**dict(base, x_t=x), radius=radius)
    return float((a - b)[0, 0].abs().max())


def test_the_scan_carries_information_past_the_radius_where_local_attention_alone_does_not():
    hybrid = perturbed(Hybrid(HybridConfig(**PRESETS["tiny"])))
    local = perturbed(LocalImplicit(LocalImplicitConfig(**LOCAL_PRESETS["tiny"])))
    assert far_effect(local, 0.2) == 0.0  # the corners are 2.4 apart, far outside r = 0.2
    assert far_effect(hybrid, 0.2) > 1e-6  # small at init (the scan decays over 76 tokens) but real


def test_the_radius_is_a_live_knob_and_bounds_the_attention():
    model = perturbed(Hybrid(HybridConfig(**PRESETS["tiny"])))
    assert set(model.knobs()) == {"radius"}
    v1, maps = model(**inputs(), radius=0.15, return_attention=True)
    v2 = model(**inputs(), radius=0.45)
    assert not torch.allclose(v1, v2, atol=1e-5)
    w = maps["weights"][0]  # (B, H, Q, K) over each query's neighbour slots
    assert torch.allclose(w.sum(-1), torch.ones_like(w.sum(-1)), atol=1e-5)
    assert (w * ~maps["valid"][:, None]).abs().max() == 0  # nothing outside a query's valid neighbours
    assert maps["scan_order"].shape == (1, 12 + 64)


def test_config_limits():
    with pytest.raises(ValueError, match="d_state must be in"):
        HybridConfig(d_state=64)
    with pytest.raises(ValueError, match="no dense reference"):
        HybridConfig(attention_impl="dense_ref")
