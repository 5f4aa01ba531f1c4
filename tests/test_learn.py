"""The Learn tab's 2D toy (app.learn) and its Gradio tab (app.learn_ui): CPU, a few seconds in all.

One toy per target is trained once (get_toy's in-process cache) and shared by the tests.
"""

import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from app import learn as L
from asf_core.flow import gaussian_velocity, interpolate, sample_t, target_velocity


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def toy() -> L.Toy:
    return L.get_toy("two moons", 0)


@pytest.mark.parametrize("name", list(L.TARGETS))
def test_targets_deterministic_with_right_shape_and_spread(name):
    a, b = L.target_sample(name, 5000, gen(3)), L.target_sample(name, 5000, gen(3))
    assert a.shape == (5000, 2) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, L.target_sample(name, 5000, gen(4)))
    std = a.std(0)
    assert (std > 0.5).all() and (std < 2.0).all(), std  # spread out, comparable to N(0, I)
    assert a.abs().max() < L.LIM  # every panel's box holds the whole target


def test_target_geometry():
    g8 = L.target_sample("8 gaussians", 4000, gen(0))
    assert torch.allclose(g8.norm(dim=1).mean(), torch.tensor(2.0), atol=0.05)  # modes on the radius-2 circle
    cb = L.target_sample("checkerboard", 4000, gen(0))
    # filled squares: floor(x) + floor(y) is even for every point, and all 8 squares are used
    cells = torch.floor(cb)
    assert ((cells.sum(1)) % 2 == 0).all()
    assert len(torch.unique(cells, dim=0)) == 8
    with pytest.raises(ValueError, match="unknown target"):
        L.target_sample("spiral", 10, gen(0))


def test_training_lowers_the_loss_below_the_best_gaussian_field(toy):
    """The loss has a floor above 0, so compare with two references on the same held-out batch: the
    untrained net, and the exact E[u | x_t] for a Gaussian with the target's mean and variance (the
    best field that only knows two moments). The trained net must beat both, the first by far."""
    g = gen(99)
    x_0, x_1 = torch.randn(8192, 2, generator=g), L.target_sample(toy.target, 8192, g)
    t = sample_t(8192, "uniform", g)
    with torch.no_grad():
        init = float(L.cfm_loss(L.ToyVelocity(toy.net.cfg, gen(toy.seed)), x_0, x_1, t))
        final = float(L.cfm_loss(toy.net, x_0, x_1, t))
    x_t, u = interpolate(x_0, x_1, t), target_velocity(x_0, x_1)
    big = L.target_sample(toy.target, 50_000, gen(7))
    v_gauss = gaussian_velocity(x_t, t, 0.0, 1.0, big.mean(0), big.var(0))
    gauss = float(((v_gauss - u) ** 2).mean())
    assert final < 0.75 * init, (init, final)
    assert final < gauss < init, (init, gauss, final)
    assert toy.losses[-100:].mean() < 0.8 * toy.losses[:20].mean()


def test_training_is_deterministic_and_cached(toy):
    again = L.train_toy(toy.target, toy.seed, L.ToyConfig(steps=20))
    assert np.array_equal(again.losses, L.train_toy(toy.target, toy.seed, L.ToyConfig(steps=20)).losses)
    assert L.get_toy("two moons", 0) is toy


def test_heun_5_beats_euler_1_and_errors_fall_with_steps(toy):
    s = L.solver_errors(toy, 800, gen(1))
    err = {(r["method"], r["steps"]): r["error"] for r in s["runs"]}
    nfe = {(r["method"], r["steps"]): r["nfe"] for r in s["runs"]}
    assert nfe[("euler", 1)] == 1 and nfe[("heun", 5)] == 10
    assert err[("heun", 5)] < 0.2 * err[("euler", 1)]
    assert err[("euler", 20)] < err[("euler", 1)]
    assert err[("heun", 20)] < 3 * s["floor"]  # near the noise floor of two target draws
    assert all(r["x"].shape == (800, 2) for r in s["runs"])


def test_mmd():
    x = L.target_sample("8 gaussians", 500, gen(0))
    assert L.mmd(x, x) == pytest.approx(0.0, abs=1e-6)
    assert L.mmd(x, x + 1.0) > 0.1
    assert L.mmd(x, L.target_sample("8 gaussians", 500, gen(1))) < 0.02  # same law: only sampling noise


def test_x1_hat_is_the_mean_at_t0_and_x_t_at_t1(toy):
    pm = L.posterior_means(toy, 1000, gen(2))
    ts = [f["t"] for f in pm["frames"]]
    assert ts == list(L.POSTERIOR_TS)
    data_std = pm["target"].std(0)
    f0, f1 = pm["frames"][0], pm["frames"][-1]
    assert np.abs(f0["x1_hat"].mean(0) - pm["data_mean"]).max() < 0.15
    assert (f0["x1_hat"].std(0) < 0.2 * data_std).all()  # the blurry average: nearly one point
    np.testing.assert_array_equal(f1["x1_hat"], f1["x_t"])  # 1 - t = 0
    s0, s5, s9, s1 = [f["x1_hat"].std(0).mean() for f in pm["frames"]]
    assert s0 < s5 < s9 and abs(s9 - s1) < 0.2 * s1  # sharpens as t -> 1, onto the data's own spread


def test_paths_start_together_and_straight_paths_are_straight(toy):
    p = L.flow_paths(toy, 50, gen(5), steps=10)
    assert p["t"].shape == (11,) and p["straight"].shape == p["ode"].shape == (11, 50, 2)
    np.testing.assert_allclose(p["straight"][0], p["ode"][0])
    mid = 0.5 * (p["straight"][0] + p["straight"][-1])
    np.testing.assert_allclose(p["straight"][5], mid, atol=1e-5)
    f = L.velocity_field(toy, 0.3, 40, gen(6), grid=7)
    assert f["xy"].shape == f["v"].shape == (49, 2) and f["x_t"].shape == (40, 2)


def test_field_at_t0_points_at_the_data_mean(toy):
    """v*(x, 0) = E[x_1] - x: at t=0 the best guess ignores x beyond subtracting it."""
    f = L.velocity_field(toy, 0.0, 10, gen(0), grid=9)
    inside = np.linalg.norm(f["xy"], axis=1) < 2.0  # where x_0 ~ N(0, I) trained it; not the far corners
    mean = L.target_sample(toy.target, 50_000, gen(8)).mean(0).numpy()
    miss = np.linalg.norm(f["xy"] + f["v"] - mean, axis=1)[inside]  # how far x + v lands from the mean
    dist = np.linalg.norm(f["xy"] - mean, axis=1)[inside]
    assert dist.mean() > 1.0, dist.mean()  # the test means something: points start ~1.3 from the mean
    assert miss.mean() < 0.2 and miss.max() < 0.5, (miss.mean(), miss.max())


def test_figures_have_traces(toy):
    s = L.solver_errors(toy, 200, gen(1))
    figs = [L.paths_figure(L.flow_paths(toy, 80, gen(1))),
            L.field_figure(L.velocity_field(toy, 0.5, 80, gen(2))),
            L.solvers_figure(s), L.error_figure(s),
            L.posterior_figure(L.posterior_means(toy, 80, gen(4)))]
    for fig in figs:
        assert isinstance(fig, go.Figure) and len(fig.data) > 0
        fig.to_json()  # serialisable, NaN gaps included
    assert len(figs[2].data) == 2 * len(s["runs"])


def test_learn_tab_builds():
    gr = pytest.importorskip("gradio")
    from app.learn_ui import DEFAULTS, build_learn_tab, everything

    with gr.Blocks() as demo, gr.Tab("Learn") as tab:
        build_learn_tab(tab)
    plots = [b for b in demo.blocks.values() if isinstance(b, gr.Plot)]
    assert len(plots) == 5
    fns = list(demo.fns.values())
    assert fns and all(fn.api_visibility == "private" for fn in fns)
    out = everything(**{**DEFAULTS, "n": 200, "seed": None})  # a cleared seed box means seed 0
    assert len(out) == 6 and "CFM loss" in out[0] and math.isfinite(len(out[1].data))
