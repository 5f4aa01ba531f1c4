"""What each UI event does: turn Gradio values into Reconstructor calls and results into displays.

No model code and no layout here: app.ui wires these functions to components; they call the one
`Reconstructor` (numpy in, numpy out) and app.figures. User mistakes come back as gr.Error (the
event fails with that message, the app keeps serving); recoverable oddities as gr.Warning.

Session state is one dict per browser tab (gr.State): the prepared image, its mask, the frames
of the last run and the settings it ran with, so scrubbing and locality clicks need no recompute.
"""

from __future__ import annotations

import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from app import figures
from app.images import colormap
from app.inference import ARCH_LABELS, BASELINE_LABELS, Frame, Reconstructor, Result

DISPLAY = 8  # model pixels are shown as DISPLAY×DISPLAY squares (32 → 256 px)
ORIGINAL_MIN, ORIGINAL_MAX = 192, 384  # the uploaded original is shown about this big
STREAM_EVERY = 0.08  # seconds between streamed frames (every step is still stored)
PLOT_EVERY = 0.5  # seconds between chart updates while streaming
SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
LABELS = {**ARCH_LABELS, "tps": "Thin-plate spline", "biharmonic": "Biharmonic"}
_STOP: dict[str, threading.Event] = {}  # session hash -> Stop pressed
_OUT = Path(tempfile.mkdtemp(prefix="asf_app_"))


@contextmanager
def user_errors():
    """InputError (a ValueError) and friends -> gr.Error with the message, not a stack trace."""
    try:
        yield
    except (ValueError, IndexError) as e:
        raise gr.Error(str(e), print_exception=False) from None


def samples() -> list[tuple[str, str]]:
    """(path, caption) of the bundled sample images, CIFAR-10 first."""
    files = sorted(SAMPLES_DIR.glob("*.png"), key=lambda p: (not p.name.startswith("cifar"), p.name))
    return [(str(p), p.stem.split("_", 2)[-1]) for p in files]


def method_key(name: str) -> str:
    """'Local Implicit', 'local_implicit', 'thin-plate spline', 'tps' ... -> the method key."""
    text = str(name).strip().lower().replace("-", " ").replace("_", " ")
    for key, label in {**LABELS, **BASELINE_LABELS}.items():
        if text in (key.replace("_", " "), label.lower().replace("-", " ")):
            return key
    raise gr.Error(f"unknown architecture {name!r}; choose from {', '.join(LABELS.values())}")


def up(image: np.ndarray | None) -> np.ndarray | None:
    return None if image is None else np.repeat(np.repeat(image, DISPLAY, 0), DISPLAY, 1)


def _for_display(image: np.ndarray) -> np.ndarray:
    """The original at a viewable size: small images blown up (nearest), large ones shrunk."""
    factor = ORIGINAL_MIN // max(image.shape[:2])
    if factor >= 2:
        return np.repeat(np.repeat(image, factor, 0), factor, 1)
    im = Image.fromarray(image)
    im.thumbnail((ORIGINAL_MAX, ORIGINAL_MAX))
    return np.asarray(im)


class Handlers:
    """Every event's function, bound to one Reconstructor (methods, not functools.partial, so that
    Gradio still sees the gr.Request / gr.SelectData annotations it injects by)."""

    def __init__(self, rec: Reconstructor):
        self.rec = rec

    # ---- input ----------------------------------------------------------------------------
    def load(self, source, state: dict | None):
        """A sample path, an uploaded file path or an array -> state, original view, brush canvas."""
        with user_errors():
            prepared = self.rec.prepare(source)
        state = {"image": prepared.image, "frames": [], "run": None}
        h, w = prepared.original.shape[:2]
        s = self.rec.size
        note = f"{w}×{h} → centre-cropped, resized to {s}×{s}" if (h, w) != (s, s) else ""
        canvas = {"background": up(prepared.image), "layers": [], "composite": up(prepared.image)}
        shown = gr.update(value=_for_display(prepared.original), label=f"Original {note}".strip())
        return state, shown, canvas

    def pick_sample(self, state, evt: gr.SelectData):
        return self.load(samples()[evt.index][0], state)

    def make_mask(self, state: dict | None, kind: str, density_pct: float, seed, brush):
        """Rebuild the mask from the controls -> state, observed-pixels view, a line about the mask."""
        if not state or state.get("image") is None:
            return state, None, "Pick a sample or upload an image."
        with user_errors():
            mask = self.rec.make_mask(kind, float(density_pct) / 100, int(seed or 0),
                                      brush if kind == "brush" else None)
        state = {**state, "mask": mask}
        n = int(mask.sum())
        info = f"{n} of {mask.size} pixels observed ({n / mask.size:.0%})"
        if kind == "brush" and brush is not None:
            info += f"; {int(self.rec.brush_hidden(brush).sum())} painted over (hidden)"
        return state, up(self.rec.observed_view(state["image"], mask)), info

    def knob_visibility(self, method_label: str):
        """Show each knob only where it applies: radius, d_state, then steps/solver/samples."""
        key = method_key(method_label)
        model = key in ARCH_LABELS
        return (gr.update(visible=key == "local_implicit"), gr.update(visible=key == "mamba"),
                gr.update(visible=model), gr.update(visible=model), gr.update(visible=model))


    # ---- run ------------------------------------------------------------------------------
    @staticmethod
    def _frame_status(f: Frame, steps: int, method: str) -> str:
        psnr = "" if f.psnr is None else f" · PSNR(x̂1) {f.psnr:.2f} dB"
        return f"**{LABELS[method]}** · step {f.step}/{steps} · t = {f.t:.3f} · NFE {f.nfe}{psnr}"

    @staticmethod
    def _png(image: np.ndarray, name: str) -> str:
        path = _OUT / f"{name}_{int(time.time() * 1000)}.png"
        Image.fromarray(image).save(path)
        return str(path)

    @staticmethod
    def _summary(res: Result, method: str) -> dict:
        return {"method": method, "seconds": round(res.seconds, 3), "nfe": res.nfe, **res.metrics}

    def run(self, state: dict | None, method_label: str, steps, solver, seed, samples_k,
            radius, d_state, request: gr.Request):
        """Stream frames while sampling; outputs: status, x_t, x̂1, chart, result, mean, std, metrics,
        download, step slider, state."""
        skip = gr.skip()
        if not state or state.get("image") is None or state.get("mask") is None:
            raise gr.Error("Pick a sample or upload an image first.")
        method = method_key(method_label)
        session = getattr(request, "session_hash", None) or "default"
        stop = _STOP.setdefault(session, threading.Event())
        stop.clear()
        knobs = dict(steps=int(steps), solver=solver, seed=int(seed or 0), samples=int(samples_k),
                     radius=float(radius), d_state=int(d_state) if d_state else None)
        frames, result, last, last_plot = [], None, 0.0, 0.0
        yield (f"Running **{LABELS[method]}**…", None, None, figures.progress_figure([]), None, None, None,
               None, gr.update(value=None, visible=False), gr.update(visible=False), state)
        with user_errors():
            stream = self.rec.run(state["image"], state["mask"], method, **knobs)
            try:
                for item in stream:
                    if isinstance(item, Result):
                        result = item
                        break
                    frames.append(item)
                    if stop.is_set():
                        break
                    now = time.perf_counter()
                    if now - last >= STREAM_EVERY:
                        plot = skip
                        if now - last_plot >= PLOT_EVERY:
                            plot, last_plot = figures.progress_figure(frames), now
                        last = now
                        yield (self._frame_status(item, knobs["steps"], method), up(item.x_t),
                               up(item.x1_hat), plot, skip, skip, skip, skip, skip, skip, state)
            finally:
                stream.close()  # Stop: the sampler ends between steps
                _STOP.pop(session, None)
        state = {**state, "frames": frames, "run": {"method": method, **knobs}}
        slider = gr.update(visible=bool(frames), minimum=0, maximum=max(len(frames) - 1, 0),
                           value=max(len(frames) - 1, 0), step=1)
        chart = figures.progress_figure(frames)
        if result is None:  # stopped: show where it got to
            f = frames[-1] if frames else None
            yield (f"Stopped at step {f.step if f else 0}. Scrub the stored steps below.",
                   up(f.x_t) if f else None, up(f.x1_hat) if f else None, chart, None, None, None,
                   None, gr.update(visible=False), slider, state)
            return
        many = result.mean is not None  # K > 1: show the mean and the std map
        std = gr.update(visible=many, value=up(colormap(result.std, max(float(result.std.max()), 1e-3)))
                        if many else None)
        mean = gr.update(visible=many, value=up(result.mean))
        status = (f"Done: **{LABELS[method]}** · PSNR {result.metrics['psnr']:.2f} dB · SSIM "
                  f"{result.metrics['ssim']:.3f} · {result.seconds:.2f} s · NFE {result.nfe}. "
                  + ("Click a pixel of the result for its locality maps." if method in ARCH_LABELS else ""))
        f = frames[-1] if frames else None
        yield (status, up(f.x_t) if f else None, up(f.x1_hat) if f else None, chart, up(result.image), mean,
               std, self._summary(result, method),
               gr.update(value=self._png(result.image, method), visible=True), slider, state)

    def request_stop(self, request: gr.Request):
        _STOP.setdefault(getattr(request, "session_hash", None) or "default", threading.Event()).set()
        return "Stopping after this step…"

    def scrub(self, state: dict | None, index):
        frames = (state or {}).get("frames") or []
        if not frames:
            return gr.skip(), gr.skip(), gr.skip()
        f = frames[int(np.clip(index, 0, len(frames) - 1))]
        run_ = state["run"]
        return self._frame_status(f, run_["steps"], run_["method"]), up(f.x_t), up(f.x1_hat)


    # ---- locality -------------------------------------------------------------------------
    def locality(self, state: dict | None, evt: gr.SelectData):
        """Click on the result -> attention map, gradient-influence map, MAMBA scan path, a summary."""
        run_ = (state or {}).get("run")
        if not run_:
            raise gr.Error("Run a model first, then click a pixel of the result.")
        if run_["method"] not in ARCH_LABELS:
            raise gr.Error("Locality maps are for the learned models; the baselines have no attention.")
        x, y = evt.index[0], evt.index[1]  # pixel of the displayed (upscaled) image
        pixel = (min(int(y) // DISPLAY, self.rec.size - 1), min(int(x) // DISPLAY, self.rec.size - 1))
        with user_errors():
            loc = self.rec.locality(state["image"], state["mask"], run_["method"], pixel,
                               radius=run_["radius"], d_state=run_["d_state"])
        name = LABELS[run_["method"]]
        attn = figures.locality_figure(loc["attention"], pixel, f"{name} attention at {pixel}",
                                       loc.get("radius_px"), observed=state["mask"])
        infl = figures.locality_figure(loc["influence"], pixel, f"Gradient influence at {pixel}",
                                       loc.get("radius_px"), observed=state["mask"])
        scan = (figures.scan_path_figure(loc["scan_path"], loc["scan_is_obs"], state["mask"].shape, pixel)
                if "scan_path" in loc else figures.empty_figure("scan order: MAMBA only"))
        text = (f"Pixel {pixel}: 50% / 90% of the attention lies within {loc['r50_attention']:.1f} / "
                f"{loc['r90_attention']:.1f} px")
        if loc["influence_total"] > 0:
            text += (f", of the gradient influence within {loc['r50_influence']:.1f} / "
                     f"{loc['r90_influence']:.1f} px (total |∂x̂1/∂obs| = {loc['influence_total']:.3f}).")
        else:  # an untrained or degenerate model: nothing to normalise
            text += "; the gradient influence is zero here (the output ignores the observations)."
        if "radius_px" in loc:
            text += f" Radius: {loc['radius_px']:.1f} px (dashed circle)."
        return attn, infl, scan, text


    # ---- public API -----------------------------------------------------------------------
    def api_reconstruct(self, image, architecture: str, density: float, seed: float,
                        steps: float, solver: str):
        """The `/reconstruct` endpoint: image + settings -> (32×32 reconstruction, metrics JSON).
        `density` is the observed fraction in (0, 1] (values above 1 are read as percent)."""
        method = method_key(architecture)
        density = float(density) / 100 if float(density) > 1 else float(density)
        with user_errors():
            prepared = self.rec.prepare(image)
            mask = self.rec.make_mask("random", density, int(seed))
            res = self.rec.reconstruct(prepared.image, mask, method, steps=int(steps), solver=str(solver),
                                       seed=int(seed))
        return res.image, {**self._summary(res, method), "observed": int(mask.sum()), "size": self.rec.size}
