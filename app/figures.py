"""Plotly figures for the app, built from plain numbers and numpy maps (no model code here).

    progress_figure(frames)         PSNR of x̂1 and mean |v| against t, one point per sampler step
    locality_figure(share, pixel)   a share map on the pixel grid, the clicked pixel, the radius circle
    scan_path_figure(path, is_obs)  a sequence model's first-layer scan order drawn as a path over the grid
    sweep_figure(points, labels)    Compare tab: PSNR against steps per model and solver, baselines flat
    spectrum_figure(curves)         radially averaged power spectra: the mean is blurrier than a sample
    std_figure(std)                 the per-pixel std of K samples, with its colour bar

Maps are drawn in image orientation (row 0 at the top), one cell per model pixel.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

# one logarithmic colour scale, 0.01% to 100%, for every model's share maps: a global model's even
# spread (~0.1% per token) and a local model's few neighbours (~10-50%) both show, and compare
SHARE_DECADES = (-4, 0)
_LAYOUT = dict(margin=dict(l=40, r=10, t=40, b=35), height=320, template="plotly_white")


def empty_figure(message: str = "") -> go.Figure:
    fig = go.Figure(layout=dict(**_LAYOUT))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    if message:
        fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return fig


def progress_figure(frames: list, title: str = "Sampling progress") -> go.Figure:
    """PSNR(x̂1) (left axis, when known) and mean |v| (right axis) against t."""
    if not frames:
        return empty_figure("run a model to see PSNR and |v| along the flow")
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    t = [f.t for f in frames]
    psnr = [f.psnr for f in frames]
    if any(p is not None for p in psnr):
        fig.add_trace(go.Scatter(x=t, y=psnr, mode="lines+markers", name="PSNR(x̂1) dB"), secondary_y=False)
    with_v = [f for f in frames if f.v_abs is not None]
    fig.add_trace(go.Scatter(x=[f.t for f in with_v], y=[f.v_abs for f in with_v], mode="lines+markers",
                             name="mean |v|", line=dict(dash="dot")), secondary_y=True)
    fig.update_layout(title=title, legend=dict(orientation="h", y=-0.25), **_LAYOUT)
    fig.update_xaxes(title_text="t (0 = source, 1 = data)", range=[-0.02, 1.02])
    fig.update_yaxes(title_text="PSNR (dB)", secondary_y=False)
    fig.update_yaxes(title_text="mean |v|", secondary_y=True, showgrid=False)
    return fig


def _grid_axes(fig: go.Figure, h: int, w: int) -> None:
    fig.update_xaxes(range=[-0.5, w - 0.5], constrain="domain", showgrid=False, title_text="column")
    fig.update_yaxes(range=[h - 0.5, -0.5], scaleanchor="x", showgrid=False, title_text="row")


def locality_figure(share: np.ndarray, pixel: tuple[int, int], title: str, radius_px: float | None = None,
                    observed: np.ndarray | None = None) -> go.Figure:
    """A (H, W) share map (log colour) with the clicked pixel (cross), the radius (circle) and,
    optionally, the observed pixels (small dots) so the reader sees which inputs the mass sits on."""
    h, w = share.shape
    lo, hi = SHARE_DECADES
    z = np.log10(np.maximum(share, 10.0 ** (lo - 1)))
    ticks = list(range(lo, hi + 1))
    fig = go.Figure(go.Heatmap(
        z=z, zmin=lo, zmax=hi, colorscale="Magma", customdata=share * 100,
        colorbar=dict(title="share", thickness=12, tickvals=ticks,
                      ticktext=[f"{10.0 ** (k + 2):g}%" for k in ticks]),
        hovertemplate="row %{y}, col %{x}: %{customdata:.3f}%<extra></extra>"))
    if observed is not None:
        rr, cc = np.nonzero(observed)
        fig.add_trace(go.Scatter(x=cc, y=rr, mode="markers", name="observed", hoverinfo="skip",
                                 marker=dict(size=3, color="rgba(120,200,255,0.7)")))
    fig.add_trace(go.Scatter(x=[pixel[1]], y=[pixel[0]], mode="markers", name="query",
                             marker=dict(symbol="x", size=11, color="cyan", line=dict(width=1))))
    if radius_px:
        r, (y, x) = radius_px, pixel
        fig.add_shape(type="circle", x0=x - r, x1=x + r, y0=y - r, y1=y + r,
                      line=dict(color="cyan", dash="dash"))
    fig.update_layout(title=title, showlegend=False, **_LAYOUT)
    _grid_axes(fig, h, w)
    return fig


def scan_path_figure(path: np.ndarray, is_obs: np.ndarray, shape: tuple[int, int],
                     pixel: tuple[int, int] | None = None, label: str = "") -> go.Figure:
    """The scan order (T, 2) of (row, col): a line through the tokens, coloured by position;
    `label` names the model in the title."""
    h, w = shape
    order = np.arange(len(path))
    fig = go.Figure(go.Scatter(x=path[:, 1], y=path[:, 0], mode="lines", hoverinfo="skip", name="path",
                               line=dict(color="rgba(90,90,90,0.5)", width=1)))
    for obs, name, size in ((False, "query tokens (pixels)", 4), (True, "observation tokens", 7)):
        sel = is_obs == obs
        fig.add_trace(go.Scatter(
            x=path[sel, 1], y=path[sel, 0], mode="markers", name=name,
            marker=dict(size=size, color=order[sel], colorscale="Viridis", cmin=0, cmax=len(path),
                        symbol="circle" if obs else "square", showscale=obs,
                        colorbar=dict(title="scan position", thickness=12) if obs else None),
            customdata=order[sel], hovertemplate="position %{customdata}: row %{y}, col %{x}<extra></extra>"))
    if pixel is not None:
        fig.add_trace(go.Scatter(x=[pixel[1]], y=[pixel[0]], mode="markers", name="clicked pixel",
                                 marker=dict(symbol="x", size=11, color="red")))
    fig.update_layout(title=f"{label} scan order (first layer)".strip(), legend=dict(orientation="h", y=-0.2),
                      **_LAYOUT)
    _grid_axes(fig, h, w)
    return fig


_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
_DASHES = {"euler": "solid", "heun": "dash", "midpoint": "dot", "rk4": "dashdot"}


def sweep_figure(points: list, labels: dict[str, str], title: str = "PSNR against steps") -> go.Figure:
    """Points (app.compare.Point) -> one line per (method, solver) over steps on a log axis, colour
    per method and dash per solver; a baseline (no steps) is a flat dotted line across the range."""
    if not points:
        return empty_figure("press Sweep to compute PSNR at 1, 2, 5, 10, 20, 50 steps")
    fig = go.Figure()
    methods = list(dict.fromkeys(p.method for p in points))
    colour = {m: _COLOURS[i % len(_COLOURS)] for i, m in enumerate(methods)}
    curves: dict[tuple, list] = {}
    for p in points:
        curves.setdefault((p.method, p.solver), []).append(p)
    steps = [p.steps for p in points if p.solver is not None] or [1, 50]
    lo, hi = min(steps), max(steps)
    for (method, solver), pts in curves.items():
        name = labels.get(method, method)
        if solver is None:
            fig.add_trace(go.Scatter(x=[lo, hi], y=[pts[0].psnr] * 2, mode="lines", name=name,
                                     line=dict(color=colour[method], dash="dot", width=1.5),
                                     hovertemplate=f"{name}: %{{y:.2f}} dB (no steps)<extra></extra>"))
            continue
        pts = sorted(pts, key=lambda p: p.steps)
        fig.add_trace(go.Scatter(
            x=[p.steps for p in pts], y=[p.psnr for p in pts], mode="lines+markers",
            name=f"{name} · {solver}", customdata=[p.nfe for p in pts],
            line=dict(color=colour[method], dash=_DASHES.get(solver, "solid")),
            hovertemplate=(f"{name} · {solver}: %{{x}} steps (NFE %{{customdata}}): "
                           "%{y:.2f} dB<extra></extra>")))
    fig.update_layout(title=title, legend=dict(orientation="h", y=-0.25), **{**_LAYOUT, "height": 380})
    fig.update_xaxes(type="log", title_text="steps (log scale)", tickvals=sorted(set(steps)))
    fig.update_yaxes(title_text="PSNR (dB)")
    return fig


def spectrum_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], detail: dict[str, float] | None = None,
                    title: str = "Why PSNR favours the mean: detail by scale") -> go.Figure:
    """Radially averaged power spectra (app.scores.radial_power), one line per image, log power.
    `detail` adds each image's fine-scale power as a share of the original's to its legend name."""
    if not curves:
        return empty_figure("run a model to compare the detail of a sample and of the mean")
    fig = go.Figure()
    for i, (name, (f, p)) in enumerate(curves.items()):
        share = (detail or {}).get(name)
        label = name if share is None else f"{name} (fine detail {share:.0%})"
        fig.add_trace(go.Scatter(x=f, y=p, mode="lines+markers", name=label,
                                 line=dict(color=_COLOURS[i % len(_COLOURS)], width=3 if i == 0 else 2),
                                 hovertemplate=f"{name}: %{{x:.3f}} cycles/px: %{{y:.2e}}<extra></extra>"))
    fig.add_vrect(x0=0.25, x1=0.5, fillcolor="grey", opacity=0.08, line_width=0)
    fig.update_layout(title=title, legend=dict(orientation="h", y=-0.3), **{**_LAYOUT, "height": 360})
    fig.update_xaxes(title_text="spatial frequency (cycles per pixel; shaded: fine detail)")
    fig.update_yaxes(title_text="power", type="log", exponentformat="power")
    return fig


def std_figure(std: np.ndarray, title: str = "Per-pixel std of the K samples") -> go.Figure:
    """An (O, O) std map in [0, 1] colour units with its colour bar (where the samples disagree)."""
    h, w = std.shape
    fig = go.Figure(go.Heatmap(z=std, zmin=0, zmax=max(float(std.max()), 1e-3), colorscale="Magma",
                               colorbar=dict(title="std", thickness=12),
                               hovertemplate="row %{y}, col %{x}: std %{z:.3f}<extra></extra>"))
    fig.update_layout(title=title, **_LAYOUT)
    _grid_axes(fig, h, w)
    return fig
