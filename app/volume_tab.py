"""The 3D tab: reconstruct a procedural 32³ volume from a random fraction of its voxels.

Layout and wiring only: app.volume picks the test volume, draws the mask, runs the 3-D baseline
(asf_core.baselines3d; there is no learned 3-D model yet) and builds the plotly figures. Call
`build_volume_tab(tab)` inside an open `with gr.Tab("3D") as tab:` of a gr.Blocks. Nothing is computed
at build time: the default (linear at 20%, ~1 s on one core) runs when the tab is first opened, and
the last run stays in the session so the slice slider redraws without recomputing.
"""

from __future__ import annotations

import gradio as gr

from app import volume as V
from app.figures import empty_figure
from app.handlers import user_errors

PRIVATE = dict(api_visibility="private")
D = 32  # asf_core.volumes.VOLUME_SIZE, the slider's range

INTRO = """
### Fields in three dimensions
A procedural test volume (soft coloured ellipsoids, boxes and tori over a smooth background, 32³ voxels)
is observed at a random fraction of its voxels, and a classical interpolator fills in the rest. There is no
learned 3-D model yet: these are the baselines a 3-D model would have to beat. Left: the voxels it sees.
Right: the solids in the reconstruction, drawn where its colour departs from the background ramp.
Below: one slice through the original, the observations and the reconstruction.
"""


def fill_volume(index, percent, seed, method, axis, slice_index):
    """Run -> (status, observed scatter, isosurface, slices, the run for the session)."""
    with user_errors():
        percent = V.check_number(percent, "Observed fraction (%)", 100 * V.FRACTION_RANGE[0],
                                 100 * V.FRACTION_RANGE[1])
        V.check_slice(axis, slice_index)  # before the run, so a bad slice costs no reconstruction
        r = V.run(index, percent / 100, seed, method)
        slices = V.slices_figure(r, axis, slice_index)
    return V.status(r), V.observed_figure(r), V.iso_figure(r), slices, r


def first_open(state, *inputs):
    """The tab's first opening runs the current settings once; later openings keep what is shown."""
    if state is not None:
        return tuple(gr.skip() for _ in range(5))
    return fill_volume(*inputs)


def slices(state: V.VolumeRun | None, axis, slice_index):
    """The slice slider or axis moved: redraw the slices from the session's run."""
    if state is None:
        return empty_figure("press Run to see the slices")
    with user_errors():
        return V.slices_figure(state, axis, slice_index)


def preset(label: str) -> float:
    return 100 * V.PRESETS[label]


def matching_preset(percent: float) -> str | None:
    """The preset the slider now shows, or none selected once it is moved elsewhere."""
    return next((k for k, f in V.PRESETS.items() if percent is not None and round(100 * f) == percent), None)


def build_volume_tab(tab: gr.Tab) -> None:
    """Create the 3D tab's components and events inside the caller's open `tab`."""
    waiting = "open the 3D tab or press Run"
    gr.Markdown(INTRO)
    with gr.Row():
        index = gr.Number(V.DEFAULTS["index"], precision=0, minimum=0, maximum=V.N_VOLUMES - 1,
                          label=f"Test volume (0-{V.N_VOLUMES - 1})")
        presets = gr.Radio(list(V.PRESETS), value=f"{V.DEFAULTS['fraction']:.0%}", label="Observed",
                           elem_id="volume_fraction")
        lo, hi = (100 * f for f in V.FRACTION_RANGE)
        percent = gr.Slider(lo, hi, 100 * V.DEFAULTS["fraction"], step=1, label="Observed fraction (%)")
        seed = gr.Number(V.DEFAULTS["seed"], precision=0, minimum=0, maximum=V.SEED_MAX, label="Mask seed")
    with gr.Row():
        method = gr.Radio([(V.LABELS[k].split(":")[0], k) for k in V.METHODS], value=V.DEFAULTS["method"],
                          label="Baseline", info=" · ".join(V.LABELS.values()), scale=3)
        run_btn = gr.Button("Run", variant="primary", elem_id="volume_run", scale=1)
    status = gr.Markdown(elem_id="volume_status")
    with gr.Row(equal_height=True):
        obs_plot = gr.Plot(empty_figure(waiting), label="Observed voxels", elem_id="volume_observed")
        iso_plot = gr.Plot(empty_figure(waiting), label="Reconstruction", elem_id="volume_iso")
    with gr.Row():
        axis = gr.Radio(list(V.AXES), value=V.DEFAULTS["axis"], label="Slice axis", scale=1)
        slice_index = gr.Slider(0, D - 1, D // 2, step=1, label="Slice", elem_id="volume_slice", scale=3)
    slices_plot = gr.Plot(empty_figure(waiting), label="Slices", elem_id="volume_slices")
    state = gr.State(None)

    inputs = [index, percent, seed, method, axis, slice_index]
    outputs = [status, obs_plot, iso_plot, slices_plot, state]
    # a run holds a core for up to ~2 s (RBF): one at a time, shared by the button and the first opening
    run_btn.click(fill_volume, inputs, outputs, concurrency_id="volume", concurrency_limit=1, **PRIVATE)
    tab.select(first_open, [state, *inputs], outputs, concurrency_id="volume", concurrency_limit=1, **PRIVATE)
    gr.on([axis.change, slice_index.change], slices, [state, axis, slice_index], slices_plot,
          trigger_mode="always_last", show_progress="hidden", **PRIVATE)
    presets.input(preset, presets, percent, show_progress="hidden", **PRIVATE)
    percent.input(matching_preset, percent, presets, show_progress="hidden", **PRIVATE)
