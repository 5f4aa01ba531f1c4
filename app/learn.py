"""The Learn tab's toy: conditional flow matching in the plane, small enough to train in seconds on a CPU.

Flow matching (Lipman et al. 2023) on the straight path (Liu et al. 2023, rectified flow), in the
project's one convention and with its own functions (asf_core.flow, asf_core.sampling):
    x_t = (1 - t)·x_0 + t·x_1;   u_t = x_1 - x_0      # x_0 ~ N(0, I), x_1 ~ target; t=0 noise, t=1 data
A small MLP v(x_t, t) is fitted to u_t by least squares, so it learns E[x_1 - x_0 | x_t]; the ODE
dx/dt = v(x, t) then carries noise onto the target, and x̂1 = x_t + (1 - t)·v is E[x_1 | x_t].

    targets and model    target_sample · ToyVelocity · train_toy · get_toy (cached) · held_out_loss
    panels (numpy out)   flow_paths · velocity_field · solver_errors (mmd) · posterior_means
    figures (plotly)     paths_figure · field_figure · solvers_figure · error_figure · posterior_figure

Symbols: N points · S solver steps · G field grid points · 2 the plane.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from plotly.subplots import make_subplots
from torch import nn

from asf_core.flow import interpolate, one_step_estimate, sample_t, target_velocity
from asf_core.sampling import METHODS, sample, time_grid

LIM = 3.0  # every panel shows [-LIM, LIM]²: the targets fit inside, and ~99% of N(0, I)
SOLVER_STEPS = (1, 2, 5, 20)
POSTERIOR_TS = (0.0, 0.5, 0.9, 1.0)


# ---- targets --------------------------------------------------------------------------------------
def _two_moons(n: int, g: torch.Generator) -> torch.Tensor:
    a = torch.rand(n, generator=g) * math.pi
    upper = torch.stack([a.cos(), a.sin()], -1)
    lower = torch.stack([1 - a.cos(), 0.5 - a.sin()], -1)
    x = torch.where(torch.rand(n, 1, generator=g) < 0.5, upper, lower)
    x = x + 0.08 * torch.randn(n, 2, generator=g)
    # centred in x only: the data mean (0, 0.4) then differs from the noise mean, which panel d shows
    return (x - torch.tensor([0.5, 0.0])) * 1.6


def _eight_gaussians(n: int, g: torch.Generator) -> torch.Tensor:
    angle = torch.randint(0, 8, (n,), generator=g) * (math.pi / 4)
    return 2.0 * torch.stack([angle.cos(), angle.sin()], -1) + 0.15 * torch.randn(n, 2, generator=g)


def _checkerboard(n: int, g: torch.Generator) -> torch.Tensor:
    # FFJORD's checkerboard on [-2, 2]²: 8 unit squares, alternating
    x = torch.rand(n, generator=g) * 4 - 2
    y = torch.rand(n, generator=g) - 2 * torch.randint(0, 2, (n,), generator=g) + torch.floor(x) % 2
    return torch.stack([x, y], -1)


TARGETS = {"two moons": _two_moons, "8 gaussians": _eight_gaussians, "checkerboard": _checkerboard}


def check_target(name: str) -> str:
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; choose from {', '.join(TARGETS)}")
    return name


def target_sample(name: str, n: int, generator: torch.Generator) -> torch.Tensor:
    """n points (n, 2) from the named target, drawn from `generator` only."""
    return TARGETS[check_target(name)](int(n), generator)


# ---- model and training ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ToyConfig:
    width: int = 64
    depth: int = 3  # hidden layers
    t_freqs: int = 3  # sin/cos(π k t), k = 1..t_freqs: enough to bend the field with t
    x_octaves: int = 3  # sin/cos(2^j x), j < x_octaves: sharp edges (checkerboard) in few steps
    steps: int = 1500
    batch: int = 256
    lr: float = 1e-2


class ToyVelocity(nn.Module):
    """v(x_t, t) for points in the plane: an MLP on [x_t, sin/cos features of t]."""

    def __init__(self, cfg: ToyConfig, generator: torch.Generator):
        super().__init__()
        self.cfg = cfg
        widths = [2 + 2 * cfg.t_freqs + 4 * cfg.x_octaves, *[cfg.width] * cfg.depth, 2]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            b = fan_in**-0.5  # nn.Linear's default range, but drawn from the passed-in generator
            for shape, params in (((fan_out, fan_in), self.weights), ((fan_out,), self.biases)):
                params.append(nn.Parameter(torch.empty(shape).uniform_(-b, b, generator=generator)))
        self.register_buffer("freqs", math.pi * torch.arange(1, cfg.t_freqs + 1.0))
        self.register_buffer("octaves", 2.0 ** torch.arange(cfg.x_octaves))

    def forward(self, *, x_t: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x_t.dtype).expand(x_t.shape[0])  # the sampler passes a scalar
        ft = t[:, None] * self.freqs  # (N, F)
        fx = (x_t[:, :, None] * self.octaves).flatten(1)  # (N, 2·O)
        h = torch.cat([x_t, ft.sin(), ft.cos(), fx.sin(), fx.cos()], -1)  # (N, 2 + 2F + 4·O)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = F.linear(h, w, b)
            h = F.silu(h) if i < len(self.weights) - 1 else h
        return h  # (N, 2)


@dataclass
class Toy:
    target: str
    seed: int
    net: ToyVelocity
    losses: np.ndarray  # (steps,) the CFM loss of every training batch
    seconds: float  # training wall time

    def v_fn(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x_t=x, t=t)


def cfm_loss(net: ToyVelocity, x_0: torch.Tensor, x_1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Mean |v(x_t, t) - u_t|² per coordinate; x_0, x_1 (B, 2), t (B,)."""
    return F.mse_loss(net(x_t=interpolate(x_0, x_1, t), t=t), target_velocity(x_0, x_1))


def train_toy(target: str, seed: int, cfg: ToyConfig = ToyConfig()) -> Toy:
    """Fit v to u_t = x_1 - x_0 at x_t for random (x_0, x_1, t), all drawn from one seeded generator."""
    start = time.perf_counter()
    g = torch.Generator().manual_seed(int(seed))
    net = ToyVelocity(cfg, g)
    # every batch drawn up front: one big draw costs far less Python than `steps` small ones
    total = cfg.steps * cfg.batch
    x_1 = target_sample(target, total, g).view(cfg.steps, cfg.batch, 2)
    x_0 = torch.randn(cfg.steps, cfg.batch, 2, generator=g)
    t = sample_t(total, "uniform", g).view(cfg.steps, cfg.batch)
    # Adam by hand: torch.optim's first step imports torch._dynamo (~5 s measured in the app), and
    # its per-step overhead doubles this tiny model's training time; the app needs neither
    params = list(net.parameters())
    m1, m2 = [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params]
    losses = torch.empty(cfg.steps)
    with torch.enable_grad():  # Gradio handlers may run under no_grad
        for step in range(cfg.steps):
            loss = cfm_loss(net, x_0[step], x_1[step], t[step])
            grads = torch.autograd.grad(loss, params)
            # cosine decay: the loss has a floor (u_t is no function of x_t); a shrinking lr averages it out
            lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
            k = step + 1
            with torch.no_grad():
                for p, g_, a, b in zip(params, grads, m1, m2):
                    a.lerp_(g_, 0.1)  # β1 = 0.9
                    b.mul_(0.999).addcmul_(g_, g_, value=0.001)  # β2 = 0.999
                    p.sub_(lr / (1 - 0.9**k) * a / ((b / (1 - 0.999**k)).sqrt() + 1e-8))
            losses[step] = loss.detach()  # no .item(): no Python float per step
    net.eval().requires_grad_(False)
    return Toy(target, int(seed), net, losses.numpy(), time.perf_counter() - start)


@torch.no_grad()
def held_out_loss(net: ToyVelocity, target: str, n: int, generator: torch.Generator) -> float:
    """The CFM loss on n fresh (x_0, x_1, t); above 0 even for the best v (u_t is no function of x_t)."""
    x_0, x_1 = torch.randn(n, 2, generator=generator), target_sample(target, n, generator)
    return float(cfm_loss(net, x_0, x_1, sample_t(n, "uniform", generator)))


_CACHE: OrderedDict[tuple[str, int], Toy] = OrderedDict()
_LOCK = threading.Lock()
_CACHE_SIZE = 12  # toys are ~10k parameters; a few seeds per target stay instant


def get_toy(target: str, seed: int) -> Toy:
    """The trained toy for (target, seed), trained on first use and kept in-process."""
    key = (check_target(target), int(seed))
    with _LOCK:  # one training at a time: two sessions asking for the same toy train it once
        if key not in _CACHE:
            _CACHE[key] = train_toy(*key)
        _CACHE.move_to_end(key)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return _CACHE[key]


# ---- what the panels show (numpy out) ---------------------------------------------------------------
@torch.no_grad()
def flow_paths(toy: Toy, n: int, generator: torch.Generator, steps: int = 24, method: str = "heun") -> dict:
    """Straight conditional paths x_0 -> x_1 and the learned ODE's paths from the same x_0.

    Returns t (S+1,), straight and ode (S+1, N, 2): the ODE state recorded at every step by the callback.
    """
    x_0 = torch.randn(n, 2, generator=generator)
    x_1 = target_sample(toy.target, n, generator)  # independent coupling, as in training
    grid = time_grid(steps)
    frames: list[torch.Tensor] = []
    sample(toy.v_fn, x_0, grid, method, callback=lambda d: frames.append(d["x_t"]))
    t = grid.float()
    straight = interpolate(x_0.expand(len(t), n, 2), x_1.expand(len(t), n, 2), t)  # (S+1, N, 2)
    return dict(t=t.numpy(), straight=straight.numpy(), ode=torch.stack(frames).numpy())


@torch.no_grad()
def velocity_field(toy: Toy, t: float, n: int, generator: torch.Generator, grid: int = 15) -> dict:
    """v(·, t) on a grid×grid lattice (xy, v: (G, 2)) and samples x_t (N, 2) of the path's marginal p_t."""
    ax = torch.linspace(-LIM, LIM, grid)
    xy = torch.cartesian_prod(ax, ax)  # (G, 2)
    v = toy.v_fn(xy, torch.tensor(float(t)))
    x_0 = torch.randn(n, 2, generator=generator)
    x_t = interpolate(x_0, target_sample(toy.target, n, generator), torch.full((n,), float(t)))
    return dict(t=float(t), xy=xy.numpy(), v=v.numpy(), x_t=x_t.numpy())


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidth: float = 0.2) -> float:
    """Squared MMD between the point sets (N, 2), (M, 2) with a Gaussian kernel, >= 0 (V-statistic).

    The width 0.2 is the scale of the targets' detail (moon thickness, mode spread): the energy distance,
    which weighs every scale, ranks a blurred checkerboard level with a sharp one; this does not.
    """
    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # mean kernel value over all pairs
        return torch.exp(-torch.cdist(a, b).square() / (2 * bandwidth**2)).mean()

    return float(k(x, x) + k(y, y) - 2 * k(x, y))


@torch.no_grad()
def solver_errors(toy: Toy, n: int, generator: torch.Generator, methods: tuple[str, ...] = ("euler", "heun"),
                  steps: tuple[int, ...] = SOLVER_STEPS) -> dict:
    """Sample with each (solver, steps) from the same x_0 and score against fresh target samples.

    Returns target (N, 2); floor, the MMD between two fresh target sets (sampling noise);
    runs, a list of dicts with method, steps, nfe, error (MMD to the target) and x (N, 2).
    """
    x_0 = torch.randn(n, 2, generator=generator)  # shared: the solvers differ, not their noise
    ref, ref2 = target_sample(toy.target, n, generator), target_sample(toy.target, n, generator)
    runs = []
    for method in methods:
        for s in steps:
            out = sample(toy.v_fn, x_0, time_grid(s), method)
            runs.append(dict(method=method, steps=s, nfe=out.nfe, error=mmd(out.x, ref), x=out.x.numpy()))
    return dict(target=ref.numpy(), floor=mmd(ref2, ref), runs=runs)


@torch.no_grad()
def posterior_means(toy: Toy, n: int, generator: torch.Generator,
                    ts: tuple[float, ...] = POSTERIOR_TS) -> dict:
    """x̂1 = x_t + (1 - t)·v(x_t, t) for the same pairs (x_0, x_1) at each t.

    Returns data_mean (2,) from a large target draw, target (N, 2), frames: dicts of t, x_t, x1_hat (N, 2).
    """
    x_0 = torch.randn(n, 2, generator=generator)
    x_1 = target_sample(toy.target, n, generator)
    data_mean = target_sample(toy.target, 20_000, generator).mean(0)
    frames = []
    for t in ts:
        x_t = interpolate(x_0, x_1, torch.full((n,), float(t)))
        x1_hat = one_step_estimate(x_t, toy.v_fn(x_t, torch.tensor(float(t))), float(t))
        frames.append(dict(t=float(t), x_t=x_t.numpy(), x1_hat=x1_hat.numpy()))
    return dict(data_mean=data_mean.numpy(), target=x_1.numpy(), frames=frames)


# ---- figures ---------------------------------------------------------------------------------------
_LAYOUT = dict(template="plotly_white", margin=dict(l=30, r=10, t=50, b=30),
               legend=dict(orientation="h", y=-0.08))
GREY, BLUE, RED = "rgba(120,120,120,0.25)", "#1f77b4", "#d62728"
SOLVER_COLOURS = {"euler": "#ff7f0e", "heun": "#2ca02c", "midpoint": "#9467bd", "rk4": "#8c564b"}


def _points(xy: np.ndarray, name: str, colour: str, size: float = 3, show: bool = True) -> go.Scatter:
    return go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", name=name, showlegend=show,
                      marker=dict(size=size, color=colour))


def _lines(xy: np.ndarray, name: str, **line) -> go.Scatter:
    """(K, L, 2) polylines as one trace, split by NaN rows (plotly's gaps): one trace, not K."""
    xy = np.concatenate([xy, np.full((len(xy), 1, 2), np.nan)], 1).reshape(-1, 2)
    return go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="lines", name=name, line=line)


def _square(fig: go.Figure, panels: int, title: str, height: int) -> go.Figure:
    """Same [-LIM, LIM] box and equal aspect in every panel, so shapes compare across panels."""
    for k in range(1, panels + 1):
        sfx = "" if k == 1 else str(k)
        # constrain: a wide panel shrinks to a square instead of widening its x range
        fig.layout[f"xaxis{sfx}"].update(range=[-LIM, LIM], zeroline=False, constrain="domain")
        fig.layout[f"yaxis{sfx}"].update(range=[-LIM, LIM], zeroline=False, scaleanchor=f"x{sfx}")
    return fig.update_layout(title=title, height=height, **_LAYOUT)


def paths_figure(p: dict, show: int = 60) -> go.Figure:
    """The first `show` straight and ODE paths, with all start and end points."""
    straight, ode = p["straight"][:, :show].swapaxes(0, 1), p["ode"][:, :show].swapaxes(0, 1)  # (K, S+1, 2)
    fig = go.Figure([
        _lines(straight, "x_t = (1-t)x_0 + t x_1 (training pairs)", color="rgba(120,120,120,0.5)", width=1,
               dash="dot"),
        _lines(ode, "ODE dx/dt = v(x, t)", color=BLUE, width=1.5),
        _points(p["ode"][-1], "ODE samples (all)", "rgba(214,39,40,0.2)", 3),
        _points(p["ode"][0, :show], "x_0 (noise, t=0)", "black", 5),
        _points(p["straight"][-1, :show], "x_1 paired in training", "grey", 5),
        _points(p["ode"][-1, :show], "ODE end (t=1)", RED, 5)])
    return _square(fig, 1, "Straight conditional paths vs the learned ODE's paths", 480)


def field_figure(f: dict) -> go.Figure:
    """Arrows along v(x, t) from each lattice point over samples x_t; one scale, so lengths compare."""
    xy, v = f["xy"], f["v"]
    speed = np.linalg.norm(v, axis=1)
    spacing = 2 * LIM / (math.isqrt(len(xy)) - 1)
    # the 80th-percentile arrow spans one cell; the few far faster ones (corners, no data) are clipped
    scale = spacing / max(float(np.quantile(speed, 0.8)), 1e-8)
    d = v * np.minimum(scale, 1.5 * spacing / np.maximum(speed, 1e-8))[:, None]
    tip = xy + d
    c, sn = math.cos(math.radians(150)), math.sin(math.radians(150))
    # the arrowhead's two strokes: the shaft turned by ±150°, 0.3 as long
    barbs = [tip + 0.3 * np.stack([d[:, 0] * c - d[:, 1] * z, d[:, 0] * z + d[:, 1] * c], 1)
             for z in (sn, -sn)]
    arrows = np.stack([xy, tip, barbs[0], tip, barbs[1]], 1)  # (G, 5, 2): shaft, then each barb from the tip
    fig = go.Figure([_points(f["x_t"], "x_t ~ p_t", "rgba(31,119,180,0.35)", 4),
                     _lines(arrows, f"v (an arrow one cell long: |v| = {spacing / scale:.2f})",
                            color="black", width=1.2)])
    return _square(fig, 1, f"Learned velocity v(x, t) at t = {f['t']:.2f}", 480)


def solvers_figure(s: dict) -> go.Figure:
    """One panel per (solver, steps): its samples over the target, its MMD in the title."""
    methods = list(dict.fromkeys(r["method"] for r in s["runs"]))
    cols = len(s["runs"]) // len(methods)
    titles = [f"{r['method']} · {r['steps']} step{'s' * (r['steps'] > 1)} · MMD {r['error']:.4f}"
              for r in s["runs"]]
    fig = make_subplots(len(methods), cols, subplot_titles=titles, horizontal_spacing=0.03,
                        vertical_spacing=0.08)
    for i, r in enumerate(s["runs"]):
        row, col = i // cols + 1, i % cols + 1
        fig.add_trace(_points(s["target"], "target", GREY, show=i == 0), row, col)
        colour = SOLVER_COLOURS.get(r["method"], BLUE)
        fig.add_trace(_points(r["x"], r["method"], colour, show=col == 1), row, col)
    fig.update_annotations(font_size=11)
    title = "Samples (colour) over the target (grey); MMD to fresh target samples"
    return _square(fig, len(s["runs"]), title, 300 * len(methods) + 60)


def error_figure(s: dict) -> go.Figure:
    methods = list(dict.fromkeys(r["method"] for r in s["runs"]))
    fig = go.Figure(layout=dict(title="Error vs function evaluations", height=320, **_LAYOUT))
    for m in methods:
        rs = [r for r in s["runs"] if r["method"] == m]
        fig.add_scatter(x=[r["nfe"] for r in rs], y=[r["error"] for r in rs], mode="lines+markers", name=m,
                        line=dict(color=SOLVER_COLOURS.get(m, BLUE)))
    nfes = sorted({r["nfe"] for r in s["runs"]})
    # a trace, not add_hline: hline annotations land in the wrong place on a log axis
    fig.add_scatter(x=[nfes[0], nfes[-1]], y=[s["floor"]] * 2, mode="lines", name="two target draws (floor)",
                    line=dict(color="grey", dash="dot"))
    per_step = ", ".join(f"{m} {METHODS[m]}" for m in methods)
    fig.update_xaxes(type="log", tickvals=nfes, title_text=f"function evaluations (per step: {per_step})")
    return fig.update_yaxes(type="log", title_text="MMD² (Gaussian kernel, width 0.2)")


def posterior_figure(pm: dict) -> go.Figure:
    frames, m = pm["frames"], pm["data_mean"]
    fig = make_subplots(1, len(frames), subplot_titles=[f"t = {f['t']:g}" for f in frames],
                        horizontal_spacing=0.03)
    for i, f in enumerate(frames):
        for trace in (_points(pm["target"], "data x_1", GREY, show=i == 0),
                      _points(f["x_t"], "x_t", "rgba(31,119,180,0.45)", show=i == 0),
                      _points(f["x1_hat"], "x̂1 = x_t + (1-t)·v", RED, show=i == 0),
                      go.Scatter(x=[m[0]], y=[m[1]], mode="markers", name="data mean", showlegend=i == 0,
                                 marker=dict(symbol="x", size=12, color="black"))):
            fig.add_trace(trace, 1, i + 1)
    return _square(fig, len(frames), "x̂1 = E[x_1 | x_t]: the average at t=0, sharp as t → 1", 380)
