import math

import pytest
import torch

from asf_core.sampling import METHODS, check_steps, sample, time_grid


@pytest.mark.parametrize("method", list(METHODS))
def test_constant_velocity_is_integrated_exactly(method):
    x0 = torch.randn(3, 5, 3, dtype=torch.float64)
    c = torch.randn(3, 5, 3, dtype=torch.float64)
    res = sample(lambda x, t: c, x0, time_grid(3), method)
    assert torch.allclose(res.x, x0 + c, atol=1e-12)
    assert res.nfe == 3 * METHODS[method]


@pytest.mark.parametrize("method", ["midpoint", "heun", "rk4"])
def test_velocity_linear_in_time_is_exact_for_second_order(method):
    # dx/dt = 2t  ->  x(1) = x(0) + 1, integrated exactly by any 2nd-order rule
    x0 = torch.zeros(1, dtype=torch.float64)
    res = sample(lambda x, t: 2 * t * torch.ones_like(x), x0, time_grid(4), method)
    assert torch.allclose(res.x, x0 + 1, atol=1e-12)


def _error(method: str, steps: int) -> float:
    # dx/dt = x·cos(t): x(1) = x(0)·exp(sin 1)
    x0 = torch.ones(1, dtype=torch.float64)
    res = sample(lambda x, t: x * torch.cos(t), x0, time_grid(steps), method)
    return abs(res.x.item() - math.exp(math.sin(1.0)))


@pytest.mark.parametrize("method,order", [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_measured_convergence_order(method, order):
    e1, e2 = _error(method, 16), _error(method, 32)
    measured = math.log2(e1 / e2)
    assert abs(measured - order) < 0.15, measured


def test_callback_sees_every_step_and_the_one_step_estimate():
    seen = []
    x0 = torch.zeros(2, 4, 3)
    v = torch.full_like(x0, 0.5)
    res = sample(lambda x, t: v, x0, time_grid(5), "heun", callback=seen.append)
    assert [s["step"] for s in seen] == [0, 1, 2, 3, 4, 5]
    assert [round(s["t"], 6) for s in seen] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    # x̂1 = x_t + (1 - t) v lands on the endpoint for a constant field
    for s in seen[:-1]:
        assert torch.allclose(s["x1_hat"], res.x)
    assert seen[-1]["v"] is None and torch.equal(seen[-1]["x_t"], res.x)
    assert seen[-1]["nfe"] == res.nfe == 10


def test_callback_can_stop_a_run():
    class Stop(Exception):
        pass

    def cb(info):
        if info["step"] == 2:
            raise Stop

    with pytest.raises(Stop):
        sample(lambda x, t: x, torch.ones(1), time_grid(10), "euler", callback=cb)


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_bad_steps(bad):
    with pytest.raises(ValueError, match="steps"):
        check_steps(bad)


def test_unknown_solver():
    with pytest.raises(ValueError, match="unknown solver"):
        sample(lambda x, t: x, torch.ones(1), time_grid(2), "leapfrog")


def test_time_grid():
    g = time_grid(4)
    assert g[0] == 0 and g[-1] == 1 and len(g) == 5 and (g.diff() > 0).all()
    q = time_grid(4, "quadratic")
    assert q[-1] == 1 and (q.diff() > 0).all() and q.diff()[-1] < q.diff()[0]
