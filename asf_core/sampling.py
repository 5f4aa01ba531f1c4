"""ODE samplers for the flow dx/dt = v(x, t) from t=0 (source) to t=1 (data).

Samplers are plain functions with one signature and a per-step callback (as in k-diffusion); the
time grid is built apart from the step rule:

    result = sample(v_fn, x_0, time_grid(steps), method="heun", callback=cb)

`v_fn(x, t)` takes the state (B, ...) and a scalar time tensor. Function evaluations per step:
Euler 1, midpoint 2, Heun 2, RK4 4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

METHODS = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}  # name -> NFE per step

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class SampleResult:
    x: torch.Tensor  # the state at t=1
    nfe: int  # number of function evaluations used


def check_steps(steps: int) -> int:
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps}")
    return int(steps)


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown solver {method!r}; choose from {', '.join(METHODS)}")
    return method


def time_grid(steps: int, kind: str = "uniform") -> torch.Tensor:
    """steps+1 increasing times from 0 to 1. `quadratic` spends more steps near t=1."""
    steps = check_steps(steps)
    s = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    if kind == "uniform":
        return s
    if kind == "quadratic":
        return 1 - (1 - s) ** 2
    raise ValueError(f"unknown time grid {kind!r}; choose from uniform, quadratic")


def _step(v_fn: VelocityFn, x: torch.Tensor, t: float, h: float, v: torch.Tensor,
          method: str) -> torch.Tensor:
    """One step from t to t+h given v = v_fn(x, t) already evaluated."""
    ts = lambda s: torch.tensor(s, dtype=x.dtype, device=x.device)  # noqa: E731
    if method == "euler":
        return x + h * v
    if method == "midpoint":
        return x + h * v_fn(x + 0.5 * h * v, ts(t + 0.5 * h))
    if method == "heun":
        v2 = v_fn(x + h * v, ts(t + h))
        return x + 0.5 * h * (v + v2)
    # classical RK4
    k2 = v_fn(x + 0.5 * h * v, ts(t + 0.5 * h))
    k3 = v_fn(x + 0.5 * h * k2, ts(t + 0.5 * h))
    k4 = v_fn(x + h * k3, ts(t + h))
    return x + h / 6 * (v + 2 * k2 + 2 * k3 + k4)


@torch.no_grad()
def sample(
    v_fn: VelocityFn, x_0: torch.Tensor, grid: torch.Tensor, method: str = "euler",
    callback: Callable[[dict], None] | None = None,
) -> SampleResult:
    """Integrate from grid[0] to grid[-1].

    The callback receives, before each step i, a dict with `step` (i), `t` (float), `x_t`, `v`,
    `x1_hat` = x_t + (1 - t)·v (the one-step estimate of the endpoint) and `nfe` so far; after the
    last step it receives `step` = len(grid) - 1, `t` = grid[-1], `x_t` = the result and `v` = None.
    A callback may raise to stop the run between steps.
    """
    check_method(method)
    per_step = METHODS[method]
    x, nfe = x_0, 0
    times = [float(s) for s in grid]
    for i, (t, t_next) in enumerate(zip(times[:-1], times[1:])):
        v = v_fn(x, torch.tensor(t, dtype=x.dtype, device=x.device))
        if callback is not None:
            callback(dict(step=i, t=t, x_t=x, v=v, x1_hat=x + (1 - t) * v, nfe=nfe + 1))
        x = _step(v_fn, x, t, t_next - t, v, method)
        nfe += per_step
    if callback is not None:
        callback(dict(step=len(times) - 1, t=times[-1], x_t=x, v=None, x1_hat=x, nfe=nfe))
    return SampleResult(x=x, nfe=nfe)
