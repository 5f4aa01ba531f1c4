"""The 3D tab's computations: one procedural test volume, a random mask, a 3-D baseline, the figures.

No Gradio here, so everything is testable without a server: app.volume_tab wires these functions to
components. There is no learned 3-D model yet, so the tab serves the classical baselines of
asf_core.baselines3d on the test split of asf_core.volumes (32³, TEST_SEED). Bad input raises a
one-line ValueError, which the tab turns into a gr.Error.

Arrays are indexed [z, y, x] like asf_core.volumes; colours are (D, D, D, 3) in [0, 1]; figures use
voxel indices 0..D-1 as coordinates, so a slice index in the slider is a coordinate in the 3-D plots.

Symbols: D grid side · V = D³ voxels · N observed voxels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from asf_core import baselines3d, volumes

N_VOLUMES = 20  # test volumes offered, as in docs/eval_volumes_baselines.md: generated once (~0.2 s)
FRACTION_RANGE = (0.02, 0.5)
PRESETS = {f"{f:.0%}": f for f in volumes.OBSERVED_FRACTIONS}  # {"20%": 0.2, "5%": 0.05}
SEED_MAX = 2**31 - 1
LABELS = {  # one line per baseline, in the registry's order
    "nearest": "Nearest: the colour of the closest observed voxel (instant)",
    "linear": "Linear: piecewise linear on a tetrahedralisation of the observations (~1 s at 20%)",
    "rbf": "RBF: a thin-plate spline on each voxel's 32 nearest observations (~2 s)",
}
METHODS = tuple(baselines3d.METHODS_3D)
DEFAULTS = dict(index=0, fraction=0.2, seed=0, method="linear", axis="z")
AXES = ("z", "y", "x")  # the slice axis; the other two are the image's (rows, columns)
MAX_SCATTER = 6000  # observed voxels drawn at most; more would make the 3-D scatter heavy to rotate
MISSING_RGB = (40, 40, 40)  # unobserved voxels in the "observed" slice
DEPARTURE_LEVEL = 0.15  # isosurface level of the departure from the background, on [0, 1] colours
_LAYOUT = dict(margin=dict(l=0, r=0, t=40, b=0), height=420, template="plotly_white")


@dataclass
class VolumeRun:
    """One reconstruction, kept in the session so the slice slider needs no recompute."""

    index: int
    fraction: float
    seed: int
    method: str
    original: np.ndarray  # (D, D, D, 3) [z, y, x, c] in [0, 1]
    observed: np.ndarray  # (D, D, D) bool, True where observed
    recon: np.ndarray  # (D, D, D, 3) in [0, 1]
    psnr: float  # dB on the whole volume
    psnr_missing: float  # dB on the voxels the method had to fill
    seconds: float  # the baseline's wall time


def check_number(value, name: str, lo: float, hi: float, integer: bool = False) -> float | int:
    """A user's number, or a one-line ValueError saying what is wanted (None and NaN included)."""
    kind = "a whole number" if integer else "a number"
    message = f"{name} must be {kind} between {lo:g} and {hi:g}; got {value!r}"
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if not np.isfinite(x) or not lo <= x <= hi or (integer and x != int(x)):
        raise ValueError(message)
    return int(x) if integer else x


def method_key(name: str) -> str:
    """A baseline's key from its key or its label ('linear', 'Linear: ...'); ValueError otherwise."""
    text = str(name).strip().lower()
    for key, label in LABELS.items():
        if text in (key, label.lower(), label.split(":")[0].lower()):
            return key
    raise ValueError(f"unknown 3-D baseline {name!r}; choose from {', '.join(METHODS)}")


@lru_cache(maxsize=1)
def test_split() -> torch.Tensor:
    """The N_VOLUMES test volumes: (N, 3, D, D, D) in [-1, 1], generated once per process."""
    return volumes.procedural_volumes(N_VOLUMES, volumes.VOLUME_SIZE, volumes.TEST_SEED)


def run(index: int, fraction: float, seed: int, method: str) -> VolumeRun:
    """Observe `fraction` of test volume `index` under mask `seed` and fill the rest with `method`.

    Args:
        index: 0..N_VOLUMES-1. fraction: in FRACTION_RANGE. seed: 0..SEED_MAX, the mask's.
        method: a key of baselines3d.METHODS_3D or its label.
    Raises:
        ValueError: one line naming the bad input.
    """
    index = check_number(index, "Volume index", 0, N_VOLUMES - 1, integer=True)
    fraction = check_number(fraction, "Observed fraction", *FRACTION_RANGE)
    seed = check_number(seed, "Mask seed", 0, SEED_MAX, integer=True)
    method = method_key(method)
    vol = test_split()[index:index + 1]  # (1, 3, D, D, D)
    d = vol.shape[-1]
    mask = volumes.make_mask_3d(1, d, fraction, generator=torch.Generator().manual_seed(seed))  # (1, D, D, D)
    t0 = time.perf_counter()
    out = baselines3d.reconstruct_volume(method, vol, mask)  # (1, 3, D, D, D)
    seconds = time.perf_counter() - t0
    return VolumeRun(index, fraction, seed, method, volumes.to_unit_3d(vol)[0], mask[0].numpy(),
                     volumes.to_unit_3d(out)[0], float(volumes.volume_psnr(out, vol)[0]),
                     float(volumes.volume_psnr(out, vol, ~mask)[0]), seconds)


def status(r: VolumeRun) -> str:
    """The one-line summary: method, volume, mask, PSNR on the volume and on the missing voxels, time."""
    n, v = int(r.observed.sum()), r.observed.size
    name = LABELS[r.method].split(":")[0]
    return (f"**{name}** on test volume {r.index}: {r.fraction:.0%} observed ({n:,} of {v:,} voxels, "
            f"mask seed {r.seed}). PSNR **{r.psnr:.2f} dB** on the volume, **{r.psnr_missing:.2f} dB** on "
            f"the {v - n:,} missing voxels; filled in {r.seconds:.2f} s.")


def departure(colours: np.ndarray, keep: float = 0.4, rounds: int = 3) -> np.ndarray:
    """How far each voxel's colour departs from the background: (D, D, D, 3) -> (D, D, D) >= 0.

    The procedural background is an affine colour ramp and the solids are blended over it, so the
    residual of a robust affine fit (refitted on the `keep` best-fitting voxels, `rounds` times) is
    ~0 on the background and large inside the solids: on the generator's own volumes it follows the
    solids' alpha with correlation ~0.9-0.97, where luminance alone misses solids as bright as the
    background. It is computed from the colours alone, so it applies to a reconstruction as is.
    """
    d = colours.shape[0]
    c = (np.arange(d) + 0.5) / d * 2 - 1
    gz, gy, gx = np.meshgrid(c, c, c, indexing="ij")
    a = np.stack([np.ones(d ** 3), gx.ravel(), gy.ravel(), gz.ravel()], 1)  # (V, 4)
    rgb = colours.reshape(-1, 3).astype(np.float64)  # (V, 3)
    fit = np.ones(len(a), dtype=bool)
    for _ in range(rounds):
        coef = np.linalg.lstsq(a[fit], rgb[fit], rcond=None)[0]  # (4, 3)
        resid = np.linalg.norm(rgb - a @ coef, axis=1)  # (V,)
        fit = resid <= np.quantile(resid, keep)
    return resid.reshape(d, d, d)


def _grid(d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # voxel indices as uint8 (a quarter of float32's bytes in the JSON), x slowest and z fastest like
    # np.mgrid's, the order plotly's isosurface examples use: values go with `.transpose(2, 1, 0)`
    gx, gy, gz = np.meshgrid(*(np.arange(d, dtype=np.uint8),) * 3, indexing="ij")
    return gx.ravel(), gy.ravel(), gz.ravel()


def _scene(d: int) -> dict:
    axis = dict(range=[-0.5, d - 0.5], showbackground=False)
    return dict(xaxis=dict(title="x", **axis), yaxis=dict(title="y", **axis), zaxis=dict(title="z", **axis),
                aspectmode="cube")


def _rgb_strings(colours: np.ndarray) -> list[str]:
    u8 = np.round(colours * 255).astype(np.uint8)
    return [f"rgb({r},{g},{b})" for r, g, b in u8]


def observed_figure(r: VolumeRun) -> go.Figure:
    """The observed voxels as a 3-D scatter in their own colours (at most MAX_SCATTER, evenly thinned)."""
    z, y, x = np.nonzero(r.observed)  # row-major order, so a fixed stride thins evenly
    n = len(z)
    keep = np.linspace(0, n - 1, min(n, MAX_SCATTER)).round().astype(int)
    z, y, x = z[keep], y[keep], x[keep]
    fig = go.Figure(go.Scatter3d(
        x=x.astype(np.uint8), y=y.astype(np.uint8), z=z.astype(np.uint8), mode="markers",
        marker=dict(size=2.5, color=_rgb_strings(r.original[z, y, x]), line=dict(width=0)),
        hoverinfo="skip"))
    shown = f"{n:,}" if len(keep) == n else f"{len(keep):,} of {n:,}"
    fig.update_layout(title=f"Observed voxels ({shown})", scene=_scene(r.observed.shape[0]), **_LAYOUT)
    return fig


def iso_figure(r: VolumeRun) -> go.Figure:
    """The reconstruction's solids: isosurfaces of its departure from the background (see `departure`),
    at DEPARTURE_LEVEL (a soft edge, translucent) and twice that (the solids' cores)."""
    dens = departure(r.recon).astype(np.float32)  # (D, D, D)
    top = float(dens.max())
    level = min(DEPARTURE_LEVEL, 0.5 * top)  # a volume whose solids all match the background still shows
    x, y, z = _grid(dens.shape[0])
    fig = go.Figure(go.Isosurface(
        x=x, y=y, z=z, value=dens.transpose(2, 1, 0).ravel(),  # [z, y, x] -> [x, y, z]
        isomin=level, isomax=max(level, min(top, 2 * level)), surface_count=2,  # a shell and a core
        opacity=0.55, colorscale="Viridis", caps=dict(x_show=False, y_show=False, z_show=False),
        colorbar=dict(title="departure", thickness=12), hoverinfo="skip"))
    fig.update_layout(title=f"Reconstruction: solids (departure ≥ {level:.2f})", scene=_scene(dens.shape[0]),
                      **_LAYOUT)
    return fig


def check_slice(axis: str, index: int, d: int = volumes.VOLUME_SIZE) -> int:
    """The slice index as an int, or a one-line ValueError for a bad axis or an index outside 0..d-1."""
    if axis not in AXES:
        raise ValueError(f"Slice axis must be one of {', '.join(AXES)}; got {axis!r}")
    return check_number(index, "Slice", 0, d - 1, integer=True)


def slice_of(a: np.ndarray, axis: str, index: int) -> np.ndarray:
    """One axis-aligned slice of a [z, y, x, ...] array: z -> [y, x], y -> [z, x], x -> [z, y]."""
    k = AXES.index(axis) if axis in AXES else 0
    return np.take(a, check_slice(axis, index, a.shape[k]), axis=k)


def slice_images(r: VolumeRun, axis: str, index: int) -> dict[str, np.ndarray]:
    """{original, observed, reconstruction}: (rows, cols, 3) uint8 slices, missing voxels grey."""
    orig = slice_of(r.original, axis, index)
    seen = slice_of(r.observed, axis, index)
    obs = np.where(seen[..., None], orig, np.array(MISSING_RGB) / 255)
    rec = slice_of(r.recon, axis, index)
    return {k: np.round(v * 255).astype(np.uint8) for k, v in
            (("original", orig), ("observed", obs), ("reconstruction", rec))}


def slices_figure(r: VolumeRun, axis: str, index: int) -> go.Figure:
    """Original / observed / reconstruction at one slice, drawn with the larger coordinate upwards."""
    ims = slice_images(r, axis, index)
    rows, cols = [a for a in ("z", "y", "x") if a != axis]
    missing = ~slice_of(r.observed, axis, index)
    err = np.abs(ims["reconstruction"].astype(float) - ims["original"]) / 255
    mse = float((err[missing] ** 2).mean()) if missing.any() else 0.0
    score = f" ({10 * np.log10(1 / mse):.1f} dB on the missing)" if mse > 0 else ""
    titles = ["Original", f"Observed ({int((~missing).sum())} voxels)", f"Reconstruction{score}"]
    fig = make_subplots(1, 3, subplot_titles=titles, horizontal_spacing=0.04)
    for i, im in enumerate(ims.values(), start=1):
        fig.add_trace(go.Image(z=im, hovertemplate=f"{cols}=%{{x}} {rows}=%{{y}}<extra></extra>"), 1, i)
    h, w = missing.shape
    fig.update_xaxes(range=[-0.5, w - 0.5], title_text=cols, showgrid=False)
    # ascending range: row 0 at the bottom, so "up" is +y or +z as in the 3-D plots
    fig.update_yaxes(range=[-0.5, h - 0.5], title_text=rows, showgrid=False, scaleanchor="x")
    for i in (2, 3):
        fig.update_yaxes(scaleanchor=f"x{i}", title_text="", row=1, col=i)
    fig.update_layout(title=f"Slice {axis} = {int(index)}", margin=dict(l=40, r=10, t=60, b=35), height=320,
                      template="plotly_white")
    return fig
