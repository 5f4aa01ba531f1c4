"""The Gradio interface: gr.Blocks layout and event wiring only.

What each event does lives in app.handlers, which calls the one `app.inference.Reconstructor`;
nothing here imports a model. `build_ui(rec)` returns the Blocks; `LAUNCH` holds the launch
options (theme, CSS, upload limit) that app.py and the tests share.

Tabs: Reconstruct (one method, streamed), Compare (every method on the same image, mask and noise,
and PSNR against steps), Learn (a 2D toy flow), 3D (a volume filled in by a 3D baseline), API (the
public `/reconstruct` endpoint, with lazily cached examples).
The first page's thin-plate-spline result is computed while the app is built (~1 s).
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from app import figures
from app import handlers as h
from app.compare import SWEEP_SOLVERS
from app.controls import Control
from app.handlers import Handlers
from app.images import KINDS
from app.inference import MAX_STEPS, OUT_SIZES, SOLVERS, Reconstructor, arch_specs
from app.learn_ui import build_learn_tab
from app.volume_tab import build_volume_tab

ROOT = Path(__file__).resolve().parents[1]
CSS = """
.pixelated img, .pixelated canvas { image-rendering: pixelated; }
#status, #volume_status { min-height: 2.5em; }
.compare-row img { image-rendering: pixelated; }
/* the sample gallery: Gradio sizes thumbnails at 100 px, wider than the column, and hides the
   last column behind a scroll bar; share the width out instead, so all 16 show at once */
#samples .grid-container { grid-template-columns: repeat(4, minmax(0, 1fr)) !important; }
/* the API tab's 32×32 input and output: drawn at the block's size, crisp, not at 32 px */
#api_image img, #api_out img { width: 100%; height: 220px; object-fit: contain; image-rendering: pixelated; }
"""
LAUNCH = dict(theme=gr.themes.Soft(), css=CSS, max_file_size="10mb", ssr_mode=False,
              footer_links=["api", "settings"])
# 2 CPU cores: one heavy event at a time per listener; a bounded queue answers "full" at once
# rather than letting waits grow without limit (tools/loadtest.py: 16 clients wait ~20 s each)
QUEUE = dict(default_concurrency_limit=1, max_size=64)
IMG = dict(interactive=False, format="png", elem_classes="pixelated")  # lossless, crisp pixels
BASELINE_HELP = {  # one line per baseline; each architecture's comes from its spec
    "tps": "Thin-plate spline: the smoothest surface through the observed colours (no learning, instant).",
    "biharmonic": "Biharmonic inpainting (scikit-image): solves Δ²u = 0 in the holes (no learning, instant).",
    "lmmse": "Linear-MMSE: a Gaussian fitted to CIFAR-10; x̂1 is its conditional mean and its samples are "
             "exact posterior draws, so one sample sits ~3 dB below the mean by construction "
             "(no network, ~1 s).",
}


def method_help(method: str) -> str:
    """The one line shown under the architecture choice."""
    specs = arch_specs()
    return specs[method].help if method in specs else BASELINE_HELP[method]


def _header(rec: Reconstructor) -> str:
    text = ("# ASF: Alternative Sparse Fields\nReconstruct a whole image, as a continuous RGB field, from a "
            "fraction of its pixels with conditional flow matching. Pick a sample or upload an image, "
            "choose the observed pixels, pick a model and press **Run**.")
    missing = rec.missing()
    if missing:
        text += "\n\n<details><summary>Missing checkpoints (those models are hidden)</summary>\n\n" + \
                "\n".join(f"- {line}" for line in missing) + "\n</details>"
    return text


def maps_help(methods: list[str]) -> str:
    """What the locality maps show, with each served architecture's attention read-out."""
    specs = arch_specs()
    reads = "; ".join(f"{specs[m].label}: {specs[m].attention_help}" for m in methods
                      if m in specs and specs[m].attention is not None)
    return ("**Where does one pixel look?** Click a pixel of the result. *Attention*: where the model's "
            f"layers put their weights for that pixel ({reads}). *Influence: total*: how much each observed "
            "pixel moves the pixel's x̂1, |∂x̂1/∂obs|, at t = 0. Every model adds its own estimate b (the "
            "thin-plate spline, or the grid encoder's x̂) through its prior velocity, and b is shared, so the "
            "totals look alike across architectures. *Influence: the network alone*: the same for x̂1 − b, "
            "the correction the architecture itself adds: here the architectures differ. *Scan order* (a "
            "sequence model): the order its first layer reads the tokens in.")


def compare_intro(ev: Handlers) -> str:
    """The Compare tab's first lines, naming the knobs it takes from the Reconstruct tab."""
    parts = []
    for c in ev.controls:
        whose = "its" if parts else "the Reconstruct tab's"
        parts.append(f"{h.labels()[c.arch]} at {whose} {c.name}")
    at = ", ".join(parts)
    return ("Every available model and baseline on the image and mask of the Reconstruct tab, with its seed: "
            "every learned model starts from the same noise ε, so the differences come from the models alone"
            + (f" ({at})." if at else "."))
RESOLUTION_INFO = ("The models were trained on 32×32 images: at 64 or 128 the same field is queried "
                   "between the pixels, so it interpolates; it adds no detail the observations lack.")


def bundled_example(image: gr.Image, path: str) -> gr.Image:
    """Make `path` (a file bundled with the app, from the repository root) the image's example on
    the "Use via API" page: Gradio's default is an online image, which fails offline. Set on the
    instance: a subclass of gr.Image would make Gradio write a .pyi stub beside this file."""
    payload = {"path": path, "url": path, "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}
    image.example_payload = lambda: payload
    image.example_value = lambda: path
    return image


def _relative(path: str) -> str:
    """A bundled file's path from the repository root (where the API example is meant to run)."""
    return Path(path).resolve().relative_to(ROOT).as_posix()


def _examples(methods: list[str], first: str) -> list[list]:
    """API-tab examples: the first sample with each method (cheap settings), then two photos."""
    photos = [p for p, _ in h.samples() if "photo_" in p][:2]
    rows = [[first, h.labels()[m], 0.2, 0, 10, "euler"] for m in methods]
    return rows + [[p, h.labels()[methods[0]], 0.2, 0, 10, "heun"] for p in photos]


def _control(c: Control, visible: bool):
    """A slider for a knob, a radio for a checkpoint key (one checkpoint per value)."""
    if c.choices:
        return gr.Radio(list(c.choices), value=c.default, label=c.label, info=c.info, visible=visible)
    return gr.Slider(c.low, c.high, c.default, step=0.01, label=c.label, visible=visible, info=c.info)


def build_ui(rec: Reconstructor | None = None) -> gr.Blocks:
    rec = rec or Reconstructor()
    ev = Handlers(rec)
    methods = rec.methods()
    labels = [h.labels()[m] for m in methods]
    default = rec.default_method()
    first = h.samples()[0][0]
    state0, original0, canvas0 = ev.load(first, None)
    state0, observed0, mask_info0 = ev.make_mask(state0, "random", 20, 0, None)
    init = ev.initial(state0, "tps")  # the first page shows a result at once
    private = dict(api_visibility="private")
    heavy = dict(concurrency_id="model", concurrency_limit=1, **private)  # 2 cores: one model job at a time

    with gr.Blocks(title="ASF: Alternative Sparse Fields", delete_cache=(3600, 3600)) as demo:
        state = gr.State(init["state"])
        gr.Markdown(_header(rec))
        with gr.Tab("Reconstruct"):
            with gr.Row():
                with gr.Column(scale=3, min_width=280):
                    gr.Markdown(f"**Samples**: {len(h.samples())} images, CIFAR-10 test images first, "
                                "then photos. Click one.")
                    gallery = gr.Gallery(h.samples(), show_label=False, columns=4, height="auto",
                                         allow_preview=False, object_fit="cover", elem_id="samples",
                                         elem_classes="pixelated", buttons=[])
                    upload = gr.UploadButton("Upload an image", file_types=["image"], size="sm")
                    original = gr.Image(original0["value"], label=original0["label"], height=200, **IMG)
                    kind = gr.Radio(list(KINDS), value="random", label="Mask",
                                    info="where observations may fall; brush: paint what to hide")
                    density = gr.Slider(1, 100, 20, step=1, label="Observed pixels (%)", elem_id="density")
                    seed = gr.Number(0, precision=0, label="Seed",
                                     info="draws the mask and the noise: same seed, same image")
                    brush = gr.ImageMask(canvas0, label="Paint the pixels to hide", visible=False,
                                         type="numpy", canvas_size=(256, 256), layers=False, transforms=[],
                                         sources=[],
                                         elem_classes="pixelated", format="png")
                    observed = gr.Image(observed0, label="Observed pixels (grey: hidden)", height=256, **IMG)
                    mask_info = gr.Markdown(mask_info0)
                with gr.Column(scale=2, min_width=240):
                    method = gr.Radio(labels, value=h.labels()[default], label="Architecture",
                                      elem_id="method")
                    help_md = gr.Markdown(method_help(default))
                    controls = [_control(c, visible=c.arch == default) for c in ev.controls]
                    knobs = default in arch_specs()
                    steps = gr.Slider(1, MAX_STEPS, 20, step=1, label="Steps", visible=knobs, elem_id="steps",
                                      info="ODE steps from noise (t=0) to image (t=1)")
                    solver = gr.Dropdown(list(SOLVERS), value="euler", label="Solver", visible=knobs,
                                         info="evaluations per step: euler 1, midpoint 2, heun 2, rk4 4")
                    samples_k = gr.Slider(1, 8, 1, step=1, label="Samples (K)", visible=knobs,
                                          elem_id="samples_k",
                                          info="K > 1 adds the posterior mean, a per-pixel std map and "
                                               "how well the std predicts the error")
                    out_size = gr.Radio(list(OUT_SIZES), value=OUT_SIZES[0], label="Output resolution",
                                        info=RESOLUTION_INFO, elem_id="out_size")
                    with gr.Row():
                        run_btn = gr.Button("Run", variant="primary", elem_id="run")
                        stop_btn = gr.Button("Stop", variant="stop")
                    status = gr.Markdown(init["status"], elem_id="status")
                with gr.Column(scale=4, min_width=320):
                    with gr.Row():
                        xt_img = gr.Image(label="x_t (state)", height=256, buttons=["fullscreen"], **IMG)
                        x1_img = gr.Image(label="x̂1 (one-step estimate)", height=256, buttons=["fullscreen"],
                                          **IMG)
                    step_slider = gr.Slider(0, 1, 0, step=1, label="Scrub the stored steps", visible=False)
                    with gr.Row():
                        result_img = gr.Image(init["result"], label="Result (sample 1): click a pixel",
                                              height=256,
                                              elem_id="result", buttons=["fullscreen"], **IMG)
                        mean_img = gr.Image(label="Mean of the K samples", height=256, visible=False,
                                            elem_id="mean", buttons=["fullscreen"], **IMG)
                    std_img = gr.Plot(label="Where the K samples disagree", visible=False, elem_id="std")
                    with gr.Row():
                        metrics = gr.JSON(init["metrics"], label="Metrics", elem_id="metrics")
                        download = gr.DownloadButton("Download PNG", init["download"])
                    note = gr.Markdown(init["note"], elem_id="note")
            with gr.Row():
                progress_plot = gr.Plot(figures.progress_figure([]), label="Along the flow", scale=3)
                spectrum_plot = gr.Plot(init["spectrum"], label="Detail by scale", elem_id="spectrum",
                                        scale=2)
            gr.Markdown(maps_help(methods))
            with gr.Row():
                attn_plot = gr.Plot(figures.empty_figure("click a pixel of the result"), label="Attention",
                                    elem_id="attention")
                infl_plot = gr.Plot(figures.empty_figure(), label="Influence: total")
            with gr.Row():
                net_plot = gr.Plot(figures.empty_figure(), label="Influence: the network alone",
                                   elem_id="influence_network")
                scan_plot = gr.Plot(figures.empty_figure(), label="Scan order")
            loc_text = gr.Markdown(elem_id="locality")
        with gr.Tab("Compare"):
            gr.Markdown(compare_intro(ev))
            with gr.Row():
                cmp_steps = gr.Slider(1, MAX_STEPS, 20, step=1, label="Steps")
                cmp_solver = gr.Dropdown(list(SOLVERS), value="euler", label="Solver")
                cmp_btn = gr.Button("Compare", variant="primary", elem_id="compare")
            cmp_status = gr.Markdown(elem_id="compare_status")
            with gr.Row(elem_classes="compare-row"):
                # no buttons: their icons sat on the label ("<model> · 20.79 dB") and cut it short
                cmp_images = [gr.Image(label=h.labels()[m], height=200, buttons=[], **IMG)
                              for m in ev.compare_methods()]
            cmp_table = gr.Dataframe(h.table([]), headers=h.TABLE_HEADERS, interactive=False,
                                     label="Per model", elem_id="compare_table")
            with gr.Row():
                sweep_solvers = gr.CheckboxGroup(list(SOLVERS), value=list(SWEEP_SOLVERS), label="Solvers")
                sweep_btn = gr.Button("Sweep steps (1, 2, 5, 10, 20, 50)", elem_id="sweep")
            sweep_status = gr.Markdown(elem_id="sweep_status")
            sweep_plot = gr.Plot(figures.sweep_figure([], h.labels()), label="PSNR against steps")
        with gr.Tab("Learn") as learn_tab:
            build_learn_tab(learn_tab)
        with gr.Tab("3D") as volume_tab:
            build_volume_tab(volume_tab)
        with gr.Tab("API"):
            gr.Markdown("The same reconstruction as one call, also served as the public endpoint "
                        "`/reconstruct` (see *Use via API* at the foot of the page: its example reads a "
                        "sample bundled in `app/samples/`, so run it from a clone of the repository).")
            with gr.Row():
                api_image = bundled_example(gr.Image(first, type="filepath", image_mode=None, label="Image",
                                                     height=256, elem_id="api_image"), _relative(first))
                with gr.Column():
                    api_arch = gr.Dropdown(labels, value=h.labels()[default], label="Architecture",
                                           allow_custom_value=True)  # spec names too
                    api_density = gr.Number(0.2, label="Density (observed fraction in (0, 1])")
                    api_seed = gr.Number(0, precision=0, label="Seed")
                    api_steps = gr.Number(20, precision=0, label="Steps")
                    api_solver = gr.Dropdown(list(SOLVERS), value="euler", label="Solver",
                                             allow_custom_value=True)
                    api_btn = gr.Button("Reconstruct", variant="primary")
                api_out = gr.Image(label="Reconstruction (32×32)", height=256, elem_id="api_out", **IMG)
            api_json = gr.JSON(label="Metrics")
            # lazy: nothing runs at start-up; the first click on an example computes it and caches it
            # (in GRADIO_EXAMPLES_CACHE, default .gradio/cached_examples) for every later visitor
            gr.Examples(_examples(methods, first), [api_image, api_arch, api_density, api_seed, api_steps,
                                                    api_solver], [api_out, api_json], fn=ev.api_reconstruct,
                        cache_examples=True, cache_mode="lazy", api_visibility="private",
                        label="Examples (cached after their first use)")

        # ---- wiring -------------------------------------------------------------------------
        mask_in, mask_out = [state, kind, density, seed, brush], [state, observed, mask_info]
        results = [status, xt_img, x1_img, result_img, mean_img, std_img, metrics, download, step_slider,
                   note, spectrum_plot]

        def remask(event):  # a new mask, then nothing of the previous run stays on screen
            return event.then(ev.make_mask, mask_in, mask_out, **private) \
                .then(ev.clear_results, None, results, show_progress="hidden", **private)

        remask(gallery.select(ev.pick_sample, [state], [state, original, brush], **private))
        remask(upload.upload(ev.load, [upload, state], [state, original, brush], **private))
        remask(kind.change(lambda k: gr.update(visible=k == "brush"), kind, brush, **private))
        density.release(ev.make_mask, mask_in, mask_out, **private) \
            .then(ev.clear_results, None, results, show_progress="hidden", **private)
        seed.change(ev.make_mask, mask_in, mask_out, **private) \
            .then(ev.clear_results, None, results, show_progress="hidden", **private)
        # .input fires once per finished stroke (with the layer); .change is not sent per stroke
        brush.input(ev.make_mask, mask_in, mask_out, trigger_mode="always_last", show_progress="hidden",
                    **private).then(ev.clear_results, None, results, show_progress="hidden", **private)
        method.change(ev.knob_visibility, method, [*controls, steps, solver, samples_k], **private) \
            .then(lambda m: method_help(h.method_key(m)), method, help_md, **private)
        run_btn.click(
            ev.run, [state, method, steps, solver, seed, samples_k, out_size, *controls],
            [status, xt_img, x1_img, progress_plot, result_img, mean_img, std_img, metrics, download,
             step_slider, note, spectrum_plot, state], show_progress="hidden", **heavy)
        stop_btn.click(ev.request_stop, None, status, queue=False, **private)
        step_slider.release(ev.scrub, [state, step_slider], [status, xt_img, x1_img], show_progress="hidden",
                            **private)
        result_img.select(ev.locality, [state], [attn_plot, infl_plot, net_plot, scan_plot, loc_text],
                          show_progress="minimal", show_progress_on=[attn_plot], **heavy)
        cmp_btn.click(ev.compare, [state, seed, cmp_steps, cmp_solver, *controls],
                      [cmp_status, *cmp_images, cmp_table], show_progress="minimal",
                      show_progress_on=[cmp_status], **heavy)
        sweep_btn.click(ev.sweep, [state, seed, sweep_solvers, *controls], [sweep_status, sweep_plot],
                        show_progress="minimal", show_progress_on=[sweep_status], **heavy)
        api_in = [api_image, api_arch, api_density, api_seed, api_steps, api_solver]
        api_btn.click(ev.api_reconstruct, api_in, [api_out, api_json],
                      api_name="reconstruct", concurrency_id="model", concurrency_limit=1)
    return demo
