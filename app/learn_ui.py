"""The Learn tab: flow matching taught on a 2D toy, four panels with a few sentences each.

Layout and wiring only: app.learn trains the toy (in-process cache, so only the first call per
(target, seed) waits, 1-3 s on one core) and returns numpy and plotly figures. Call
`build_learn_tab()` inside an open `with gr.Tab("Learn"):` of a gr.Blocks; the first figures are
computed at build time.
"""

from __future__ import annotations

import gradio as gr
import torch

from app import learn as L
from app.figures import empty_figure

LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
PRIVATE = dict(api_visibility="private")
DEFAULTS = dict(target="two moons", seed=0, n=600, t=0.5)

INTRO = r"""
### Flow matching in two dimensions
The image task is hard to picture (3·1024 numbers per image), so here is the same method on points in
the plane. Noise $x_0 \sim \mathcal N(0, I)$ at $t=0$ and data $x_1$ at $t=1$ are joined by a straight line,
and a small network $v_\theta(x, t)$ learns the velocity along it:
$$x_t = (1-t)\,x_0 + t\,x_1, \qquad u_t = x_1 - x_0, \qquad
\mathcal L(\theta) = \mathbb E_{t, x_0, x_1} \lVert v_\theta(x_t, t) - u_t \rVert^2 .$$
The minimiser is $v^*(x, t) = \mathbb E[x_1 - x_0 \mid x_t = x]$; sampling integrates
$dx/dt = v_\theta(x, t)$ from noise at $t=0$ to $t=1$, and $\hat x_1 = x_t + (1-t)\,v_\theta(x_t, t)$
is the model's guess of the end point. These are the code's own functions (`asf_core.flow`,
`asf_core.sampling`), the same ones that train and sample the image models.
"""

PATHS = """
**a. Straight in training, curved in sampling.** Each training pair (x_0, x_1) is joined by a straight line
(dotted), but a point x_t lies on many such lines, so the network learns their *average* direction. The ODE
through that averaged field, started from the same x_0 (blue), bends: the field has one velocity per (x, t),
so two paths are never at one place at one time. Its end points (red) are not the paired x_1 (grey), yet they
cover the target: the flow moves the whole distribution, not the individual pairs.
"""

FIELD = """
**b. The velocity field.** Arrows show v(x, t) on a grid (one scale for all; the legend says what one grid
cell of arrow means), over samples x_t = (1-t)x_0 + t x_1 of the marginal p_t. At t = 0 every arrow points
at the data mean; near t = 1 the field pulls each point onto the nearest piece of the target.
"""

SOLVERS = """
**c. Solvers and steps.** The same x_0 pushed through Euler and Heun with 1, 2, 5 and 20 steps. One Euler step
lands every point on x̂1 at t = 0, the data mean, so the samples collapse to a blob. Heun spends two
evaluations per step and corrects the curvature. The error is the squared MMD to fresh target samples (a
kernel two-sample distance; dotted line: two target draws compared with each other, the best any sampler can
show with this many points).
"""

POSTERIOR = """
**d. x̂1 is the posterior mean.** Because the loss is a squared error, x̂1 = x_t + (1-t)·v(x_t, t) is
the average of all data points that could have produced x_t. At t = 0, x_t is pure noise and says nothing,
so every point maps to the data mean (the blurry average); as t → 1, x_t pins down its x_1 and x̂1
sharpens onto the data, and at t = 1 it is x_t itself. The Reconstruct view's x̂1 frames are the same
quantity: the posterior mean of the image given the observed pixels.
"""


def _seed(seed: float | None) -> int:
    return min(max(int(seed or 0), 0), 2**31 - 1)  # a cleared box means 0; torch seeds are non-negative


def _rng(seed: int, panel: int) -> torch.Generator:
    # one stream per panel: moving the t slider redraws panel b only, and identically for a seed
    return torch.Generator().manual_seed(seed * 16 + panel)


def _summary(toy: L.Toy) -> str:
    init = L.held_out_loss(L.ToyVelocity(toy.net.cfg, torch.Generator().manual_seed(toy.seed)), toy.target,
                           4096, _rng(toy.seed, 0))
    final = L.held_out_loss(toy.net, toy.target, 4096, _rng(toy.seed, 0))
    return (f"Trained `{toy.target}` (seed {toy.seed}) in {toy.seconds:.1f} s: {len(toy.losses)} Adam steps, "
            f"CFM loss {init:.2f} → {final:.2f} on held-out pairs. It cannot reach 0: u_t is not a "
            f"function of x_t, and what remains is the spread of x_1 - x_0 among the pairs through each x_t.")


def field(target: str, seed: float | None, n: int, t: float):
    seed = _seed(seed)
    return L.field_figure(L.velocity_field(L.get_toy(target, seed), t, int(n), _rng(seed, 2)))


def everything(target: str, seed: float | None, n: int, t: float):
    """(summary, paths, field, solver samples, error vs NFE, posterior) for one toy."""
    seed, n = _seed(seed), int(n)
    toy = L.get_toy(target, seed)
    solvers = L.solver_errors(toy, n, _rng(seed, 3))
    return (_summary(toy), L.paths_figure(L.flow_paths(toy, n, _rng(seed, 1))), field(target, seed, n, t),
            L.solvers_figure(solvers), L.error_figure(solvers),
            L.posterior_figure(L.posterior_means(toy, n, _rng(seed, 4))))


def build_learn_tab(tab: gr.Tab) -> None:
    """Create the Learn tab's components and events inside the caller's open `tab`.

    Nothing is trained at build time: the toy trains (a few seconds, then cached) when the tab is
    first opened, so the app's first page does not wait for it on a busy 2-core Space.
    """
    wait = "open the Learn tab to train the toy (a few seconds)"
    first = ("", *(empty_figure(wait) for _ in range(5)))
    gr.Markdown(INTRO, latex_delimiters=LATEX)
    with gr.Row():
        target = gr.Dropdown(list(L.TARGETS), value=DEFAULTS["target"], label="Target distribution")
        seed = gr.Number(DEFAULTS["seed"], precision=0, minimum=0, label="Seed",
                         info="initialises and trains the toy (a second or two, then cached)")
        n = gr.Slider(100, 2000, DEFAULTS["n"], step=100, label="Points per panel")
    summary = gr.Markdown(first[0], elem_id="learn_summary")
    with gr.Row(equal_height=False):
        with gr.Column():
            gr.Markdown(PATHS)
            paths_plot = gr.Plot(first[1], label="Paths")
        with gr.Column():
            gr.Markdown(FIELD)
            t = gr.Slider(0, 1, DEFAULTS["t"], step=0.05, label="t for the velocity field")
            field_plot = gr.Plot(first[2], label="Velocity field")
    gr.Markdown(SOLVERS)
    solver_plot = gr.Plot(first[3], label="Euler vs Heun")
    error_plot = gr.Plot(first[4], label="Error vs NFE")
    gr.Markdown(POSTERIOR)
    posterior_plot = gr.Plot(first[5], label="x̂1 along t")

    inputs = [target, seed, n, t]
    # training holds a core for 1-3 s: one Learn job at a time, newest settings win
    gr.on([target.change, seed.change, n.release], everything, inputs,
          [summary, paths_plot, field_plot, solver_plot, error_plot, posterior_plot],
          trigger_mode="always_last", concurrency_id="learn", concurrency_limit=1, **PRIVATE)
    tab.select(everything, inputs, [summary, paths_plot, field_plot, solver_plot, error_plot, posterior_plot],
               concurrency_id="learn", concurrency_limit=1, **PRIVATE)
    t.release(field, inputs, field_plot, trigger_mode="always_last", show_progress="minimal",
              concurrency_id="learn", concurrency_limit=1, **PRIVATE)
