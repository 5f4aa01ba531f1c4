"""What each UI event does: turn Gradio values into Reconstructor calls and results into displays.

No model code and no layout here: app.ui wires these functions to components; they call the one
`Reconstructor` (numpy in, numpy out) and app.figures. User mistakes come back as gr.Error (the
event fails with that message, the app keeps serving); recoverable oddities as gr.Warning.

Session state is one dict per browser tab (gr.State): the prepared image, its mask, the original
at the finer output sizes it covers (`refs`), the frames of the last run and the settings it ran
with, so scrubbing and locality clicks need no recompute.

The heavy events carry `@gpu` (app.space: spaces.GPU on Hugging Face Spaces, else a no-op). On
ZeroGPU their arguments are pickled into a worker process; a Handlers pickles as a reference to
the live object (`__reduce__`), which the forked worker shares, never as its models and locks.
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
import weakref
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image

from app import figures, scores
from app.compare import SWEEP_STEPS, Comparer
from app.controls import controls, knobs_by_arch
from app.inference import (
    BASELINE_LABELS,
    MAX_SAMPLES,
    MAX_STEPS,
    Frame,
    Reconstructor,
    Result,
    arch_labels,
    arch_specs,
)
from app.space import gpu
from asf_core.sampling import METHODS

DISPLAY = 8  # model pixels are shown as DISPLAY×DISPLAY squares (32 → 256 px)
DISPLAY_SIDE = 256  # every grid (32, 64, 128) is shown nearest-neighbour upscaled to this many px
ORIGINAL_MIN, ORIGINAL_MAX = 192, 384  # the uploaded original is shown about this big
STREAM_EVERY = 0.08  # seconds between streamed frames (every step is still stored)
PLOT_EVERY = 0.5  # seconds between chart updates while streaming
SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
DISPLAY_BASELINES = {"tps": "Thin-plate spline", "biharmonic": "Biharmonic", "lmmse": "Linear-MMSE"}
SAMPLING_BASELINES = ("lmmse",)  # baselines that draw K samples (no steps, no solver)
_STOP: dict[str, threading.Event] = {}  # session hash -> Stop pressed
_OUT = Path(tempfile.mkdtemp(prefix="asf_app_"))
KEEP_SECONDS = 3600  # result files are served for an hour, then removed
# id -> Handlers, for pickling by reference (ZeroGPU workers); weak, so a closed app is freed
_LIVE: weakref.WeakValueDictionary[int, Handlers] = weakref.WeakValueDictionary()
TABLE_HEADERS = ["Model", "PSNR (dB)", "SSIM", "PSNR missing (dB)", "NFE", "Latency (s)", "Parameters"]


@contextmanager
def user_errors():
    """InputError (a ValueError) and friends -> gr.Error with the message, not a stack trace."""
    try:
        yield
    except (ValueError, IndexError) as e:
        raise gr.Error(str(e), print_exception=False) from None


SEED_MAX = 2**31 - 1


def number(value, name: str, lo: float, hi: float, integer: bool = False) -> float | int:
    """A user's number, checked: a gr.Error that says what is wanted instead of a stack trace."""
    kind = "a whole number" if integer else "a number"
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be {kind} between {lo:g} and {hi:g}; got {value!r}",
                       print_exception=False) from None
    if not np.isfinite(x) or not lo <= x <= hi or (integer and x != int(x)):
        raise gr.Error(f"{name} must be {kind} between {lo:g} and {hi:g}; got {value!r}",
                       print_exception=False)
    return int(x) if integer else x


# the most work one request may ask of the single model worker: network evaluations × samples ×
# queries. 20 Heun steps (40 evaluations) × 8 samples at 64×64 fits; 100 RK4 steps × 8 samples at
# 128×128 (52M) would hold the worker for most of an hour on 2 cores
WORK_LIMIT = 40 * 8 * 64 * 64


def cap_work(steps: int, solver: str, samples: int, out: int) -> tuple[int, int, str]:
    """(steps, samples) within WORK_LIMIT, fewer samples first, and a note when they were cut."""
    per = METHODS[solver] * out * out
    asked = steps * samples * per
    if asked <= WORK_LIMIT:
        return steps, samples, ""
    k = max(1, min(samples, WORK_LIMIT // (steps * per)))
    n = max(1, min(steps, WORK_LIMIT // (k * per)))
    return n, k, (f"**Capped** so that the queue keeps moving for everyone: {steps} {solver} steps × "
                  f"{samples} sample(s) at {out}×{out} is {asked:,} query evaluations, over the "
                  f"{WORK_LIMIT:,} one request may use here; this run used {n} steps × {k} sample(s).")


def samples() -> list[tuple[str, str]]:
    """(path, caption) of the bundled sample images, CIFAR-10 first."""
    files = sorted(SAMPLES_DIR.glob("*.png"), key=lambda p: (not p.name.startswith("cifar"), p.name))
    return [(str(p), p.stem.split("_", 2)[-1]) for p in files]


def labels() -> dict[str, str]:
    """{method: its display name}: the served architectures (from their specs), then the baselines."""
    return {**arch_labels(), **DISPLAY_BASELINES}


def method_key(name: str) -> str:
    """A label or a key, any case, '-', '_' and ' ' alike ('Thin-plate spline', 'tps' ...) -> its key."""
    text = str(name).strip().lower().replace("-", " ").replace("_", " ")
    for key, label in {**labels(), **BASELINE_LABELS}.items():
        if text in (key.replace("_", " "), label.lower().replace("-", " ")):
            return key
    raise gr.Error(f"unknown architecture {name!r}; choose from {', '.join(labels().values())}")


def up(image: np.ndarray | None) -> np.ndarray | None:
    """Nearest-neighbour upscaling to DISPLAY_SIDE px, so every grid pixel stays a crisp square."""
    if image is None:
        return None
    factor = max(1, DISPLAY_SIDE // image.shape[0])
    return np.repeat(np.repeat(image, factor, 0), factor, 1)


def _handlers(key: int) -> Handlers:
    return _LIVE[key]


def table(entries: list) -> pd.DataFrame:
    """Compare entries (app.compare.Entry) -> one row per model."""
    rows = [[labels()[e.method], e.metrics["psnr"], e.metrics["ssim"], e.metrics["psnr_missing"], e.nfe,
             round(e.seconds, 3), f"{e.params:,}" if e.params is not None else "none (no learning)"]
            for e in entries]
    return pd.DataFrame(rows, columns=TABLE_HEADERS)


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
        self.rec, self.comparer = rec, Comparer(rec)
        self.controls = controls(rec)  # the knob controls' order: their values come in this order
        _LIVE[id(self)] = self

    def __reduce__(self):  # ZeroGPU pickles the arguments of @gpu functions, self included
        return _handlers, (id(self),)

    @staticmethod
    def _image_and_mask(state: dict | None):
        if not state or state.get("image") is None or state.get("mask") is None:
            raise gr.Error("Pick a sample or upload an image first.")
        return state["image"], state["mask"]

    # ---- input ----------------------------------------------------------------------------
    def load(self, source, state: dict | None):
        """A sample path, an uploaded file path or an array -> state, original view, brush canvas."""
        with user_errors():
            prepared = self.rec.prepare(source)
        state = {"image": prepared.image, "refs": self.rec.references(prepared.original), "frames": [],
                 "run": None}
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
            mask = self.rec.make_mask(kind, number(density_pct, "observed pixels (%)", 0, 100) / 100,
                                      number(seed, "seed", 0, SEED_MAX, integer=True),
                                      brush if kind == "brush" else None)
        state = {**state, "mask": mask}
        n = int(mask.sum())
        info = f"{n} of {mask.size} pixels observed ({n / mask.size:.0%})"
        if kind == "brush" and brush is not None:
            info += f"; {int(self.rec.brush_hidden(brush).sum())} painted over (hidden)"
        return state, up(self.rec.observed_view(state["image"], mask)), info

    @staticmethod
    def clear_results():
        """A new image or mask: nothing of the last run stays on screen to be read as this one's.
        Outputs: status, x_t, x̂1, result, mean, std, metrics, download, step slider, note, spectrum."""
        hidden = gr.update(value=None, visible=False)
        return ("New input: press **Run**.", None, None, None, hidden, hidden, None, hidden,
                gr.update(visible=False), "", figures.spectrum_figure({}))

    def knob_visibility(self, method_label: str):
        """Show each knob only where it applies: every control of `self.controls` (its
        architecture's only), then steps/solver/samples (every learned model's)."""
        key = method_key(method_label)
        model = key in arch_specs()
        return (*(gr.update(visible=c.arch == key) for c in self.controls),
                gr.update(visible=model), gr.update(visible=model),
                gr.update(visible=model or key in SAMPLING_BASELINES))


    # ---- run ------------------------------------------------------------------------------
    @staticmethod
    def _frame_status(f: Frame, steps: int, method: str) -> str:
        psnr = "" if f.psnr is None else f" · PSNR(x̂1) {f.psnr:.2f} dB"
        return f"**{labels()[method]}** · step {f.step}/{steps} · t = {f.t:.3f} · NFE {f.nfe}{psnr}"

    @staticmethod
    def _png(image: np.ndarray, name: str) -> str:
        """A new file per result: Gradio rewrites its cached copy of identical numpy outputs in
        place, so concurrent identical requests could read a half-written file. Files older than
        KEEP_SECONDS are removed on the way."""
        now = time.time()
        for old in _OUT.glob("*.png"):
            try:
                if now - old.stat().st_mtime > KEEP_SECONDS:
                    old.unlink()
            except OSError:  # removed by a concurrent call
                pass
        path = _OUT / f"asf_{name}_{uuid.uuid4().hex[:12]}.png"
        tmp = path.with_suffix(".tmp")
        Image.fromarray(image).save(tmp, format="png")
        tmp.replace(path)  # whole or not at all
        return str(path)

    @staticmethod
    def _summary(res: Result, method: str) -> dict:
        return {"method": method, "size": res.size, "seconds": round(res.seconds, 3), "nfe": res.nfe,
                **res.metrics}

    def _note(self, res: Result | None, out: int, capped: str = "") -> str:
        lines = ([capped] if capped else []) + (list(res.notes) if res is not None else [])
        s = self.rec.size
        if res is None and out > s:  # said while it runs: the wait grows with the number of queries
            lines.append(f"Sampling the field on a {out}×{out} grid from the same {s}×{s} observations: "
                         f"{(out // s) ** 2}× the queries of a {s}×{s} run, so each step takes longer.")
        return "\n\n".join(lines)

    def _status(self, result: Result, method: str, word: str = "Done") -> str:
        """One line: for a learned model one sample, the mean of K (K > 1) and x̂1 side by side."""
        m = result.metrics
        side = f" · {result.size}×{result.size}" if result.size != self.rec.size else ""
        if "psnr_onestep" in m:
            parts = [f"one sample {m['psnr']:.2f} dB"]
            if "psnr_mean" in m:
                parts.append(f"mean of {len(result.samples)} {m['psnr_mean']:.2f} dB")
            parts.append(f"x̂1 {m['psnr_onestep']:.2f} dB")
            quality = "PSNR: " + " · ".join(parts)
        else:
            quality = f"PSNR {m['psnr']:.2f} dB"
        return (f"{word}: **{labels()[method]}**{side} · {quality} · SSIM {m['ssim']:.3f} · "
                f"{result.seconds:.2f} s · NFE {result.nfe}. "
                + ("Click a pixel of the result for its locality maps." if method in arch_specs() else ""))

    @staticmethod
    def _lesson(result: Result) -> str:
        """Why one sample scores below x̂1, with this run's numbers (learned models only)."""
        m = result.metrics
        if "psnr_onestep" not in m:
            return ""
        gap = m["psnr"] - m["psnr_onestep"]
        return ("**One sample or the mean?** A sample is one plausible image: its squared error is about "
                "twice the posterior mean's, so its PSNR sits about 3 dB lower, yet it keeps the fine detail "
                "that x̂1 and the mean of K average away (see *detail by scale* below: the mean's power "
                f"falls under the original's at fine scales, a sample's does not). Here one sample is "
                f"{gap:+.2f} dB from x̂1. PSNR rewards the blur; pick the sample to see a plausible image "
                "and the mean to minimise the error.")

    def _spectrum(self, state: dict, result: Result, method: str):
        """Detail by scale of the original, the spline, and the result (x̂1, mean of K, one sample)."""
        out = result.size
        original = state["image"] if out == self.rec.size else (state.get("refs") or {}).get(out)
        images = {} if original is None else {"original": original}
        if method != "tps":
            with user_errors():
                spline = self.rec.reconstruct(state["image"], state["mask"], "tps", out_size=out)
            images[labels()["tps"]] = spline.image
        if result.onestep is not None:
            images["x̂1 (posterior mean)"] = result.onestep
        if result.mean is not None:
            images[f"mean of {len(result.samples)}"] = result.mean
        images["one sample" if result.onestep is not None else labels()[method]] = result.image
        detail = None if original is None else {k: scores.fine_detail(v, original) for k, v in images.items()}
        return figures.spectrum_figure({k: scores.radial_power(v) for k, v in images.items()}, detail)

    def _final(self, result: Result, method: str, frames: list, chart, slider, state, capped: str = ""):
        """The outputs of a finished run."""
        many = result.mean is not None  # K > 1: show the mean and the std map
        std = gr.update(visible=many, value=figures.std_figure(result.std) if many else None)
        mean = gr.update(visible=many, value=up(result.mean))
        f = frames[-1] if frames else None
        note = "\n\n".join(x for x in (self._lesson(result), self._note(result, result.size, capped)) if x)
        return (self._status(result, method), up(f.x_t) if f else None, up(f.x1_hat) if f else None, chart,
                up(result.image), mean, std, self._summary(result, method),
                gr.update(value=self._png(result.image, method), visible=True), slider,
                note, self._spectrum(state, result, method), state)

    def initial(self, state: dict, method: str = "tps") -> dict:
        """The first page's result, computed at start-up so a visitor sees one at once (a baseline:
        ~1 s for scipy's import, then milliseconds): state, status, result, metrics, download, note."""
        with user_errors():
            result = self.rec.reconstruct(state["image"], state["mask"], method)
        run_ = {"method": method, "out_size": result.size, "steps": 0, "solver": "euler", "seed": 0,
                "samples": 1, "knobs": {}}
        return dict(state={**state, "frames": [], "run": run_},
                    status=self._status(result, method, "Precomputed"), result=up(result.image),
                    metrics=self._summary(result, method),
                    download=self._png(result.image, method), note=self._note(result, result.size),
                    spectrum=self._spectrum(state, result, method))

    @gpu(duration=120)
    def run(self, state: dict | None, method_label: str, steps, solver, seed, samples_k, out_size=None,
            request: gr.Request = None, *control_values):
        """Stream frames while sampling; outputs: status, x_t, x̂1, chart, result, mean, std, metrics,
        download, step slider, note, spectrum, state. `control_values`: one per `self.controls`
        (after the request, where Gradio puts it: it inserts the request at its parameter's place)."""
        skip = gr.skip()
        self._image_and_mask(state)
        method = method_key(method_label)
        session = getattr(request, "session_hash", None) or "default"
        stop = _STOP.setdefault(session, threading.Event())
        stop.clear()
        out = int(out_size or self.rec.size)
        if solver not in METHODS:
            raise gr.Error(f"unknown solver {solver!r}; choose from {', '.join(METHODS)}",
                           print_exception=False)
        steps, samples_k, capped = cap_work(number(steps, "steps", 1, MAX_STEPS, integer=True), solver,
                                            number(samples_k, "samples", 1, MAX_SAMPLES, integer=True), out)
        knobs = dict(steps=steps, solver=solver, seed=number(seed, "seed", 0, SEED_MAX, integer=True),
                     samples=samples_k, knobs=self._knobs(control_values).get(method, {}))
        frames, result, last, last_plot = [], None, 0.0, 0.0
        yield (f"Running **{labels()[method]}**…", None, None, figures.progress_figure([]), None, None, None,
               None, gr.update(value=None, visible=False), gr.update(visible=False),
               self._note(None, out, capped), figures.spectrum_figure({}), state)
        with user_errors():
            stream = self.rec.run(state["image"], state["mask"], method, out_size=out,
                                  reference=(state.get("refs") or {}).get(out), steps=knobs["steps"],
                                  solver=solver, seed=knobs["seed"], samples=samples_k, **knobs["knobs"])
            try:
                for item in stream:
                    if isinstance(item, Result):
                        result = item
                        break
                    frames.append(item)
                    if stop.is_set():
                        break
                    now = time.perf_counter()
                    if now - last >= STREAM_EVERY:  # bounded: at most ~12 frames a second, any grid
                        plot = skip
                        if now - last_plot >= PLOT_EVERY:
                            plot, last_plot = figures.progress_figure(frames), now
                        last = now
                        yield (self._frame_status(item, knobs["steps"], method), up(item.x_t),
                               up(item.x1_hat), plot, skip, skip, skip, skip, skip, skip, skip, skip, state)
            finally:
                stream.close()  # Stop: the sampler ends between steps
                _STOP.pop(session, None)
        state = {**state, "frames": frames, "run": {"method": method, "out_size": out, **knobs}}
        # Gradio refuses a slider whose minimum is not below its maximum: a baseline (no frames) or
        # a one-frame run hides it, with a range it accepts
        slider = gr.update(visible=len(frames) > 1, minimum=0, maximum=max(len(frames) - 1, 1),
                           value=max(len(frames) - 1, 0), step=1)
        chart = figures.progress_figure(frames)
        if result is None:  # stopped: show where it got to
            f = frames[-1] if frames else None
            yield (f"Stopped at step {f.step if f else 0}. Scrub the stored steps below.",
                   up(f.x_t) if f else None, up(f.x1_hat) if f else None, chart, None, None, None,
                   None, gr.update(visible=False), slider, "", skip, state)
            return
        yield self._final(result, method, frames, chart, slider, state, capped)

    def request_stop(self, request: gr.Request):
        """Stop this tab's run after its current step; with no run in flight, change nothing (a
        "Stopping…" line left behind a finished run would never be replaced)."""
        event = _STOP.get(getattr(request, "session_hash", None) or "default")
        if event is None:
            return gr.skip()
        event.set()
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
        """Click on the result -> attention, total influence, the network's own influence, the scan
        path (of a sequence model), a summary."""
        run_ = (state or {}).get("run")
        if not run_:
            raise gr.Error("Run a model first, then click a pixel of the result.")
        if run_["method"] not in arch_specs():
            raise gr.Error("Locality maps are for the learned models; the baselines have no attention.")
        x, y = evt.index[0], evt.index[1]  # pixel of the displayed image: DISPLAY_SIDE px whatever the grid
        s = self.rec.size
        pixel = (min(int(y) * s // DISPLAY_SIDE, s - 1), min(int(x) * s // DISPLAY_SIDE, s - 1))
        with user_errors():
            loc = self.rec.locality(state["image"], state["mask"], run_["method"], pixel, **run_["knobs"])
        name = labels()[run_["method"]]
        attn = (figures.locality_figure(loc["attention"], pixel, f"{name} attention at {pixel}",
                                        loc.get("radius_px"), observed=state["mask"])
                if loc["attention"] is not None else figures.empty_figure(f"attention: {name} reports none"))
        infl = figures.locality_figure(loc["influence"], pixel, f"Influence on x̂1 at {pixel}: total",
                                       loc.get("radius_px"), observed=state["mask"])
        net = figures.locality_figure(loc["influence_network"], pixel,
                                      f"Influence at {pixel}: network alone (x̂1 − b)", loc.get("radius_px"),
                                      observed=state["mask"])
        scan = (figures.scan_path_figure(loc["scan_path"], loc["scan_is_obs"], state["mask"].shape, pixel,
                                         label=name)
                if "scan_path" in loc else figures.empty_figure(f"scan order: {name} reads no sequence"))
        text = (f"Pixel {pixel}: 50% / 90% of the attention lies within {loc['r50_attention']:.1f} / "
                f"{loc['r90_attention']:.1f} px" if loc["attention"] is not None
                else f"Pixel {pixel}: {name} reports no attention")
        if loc["influence_total"] > 0:
            text += (f"; of the total influence within {loc['r50_influence']:.1f} / "
                     f"{loc['r90_influence']:.1f} px (Σ|∂x̂1/∂obs| = {loc['influence_total']:.3f})")
        else:  # an untrained or degenerate model: nothing to normalise
            text += "; the influence is zero here (the output ignores the observations)"
        if loc["influence_network_total"] > 0:
            text += (f"; of the network's own within {loc['r50_influence_network']:.1f} / "
                     f"{loc['r90_influence_network']:.1f} px (Σ = {loc['influence_network_total']:.3f}).")
        else:
            text += "; the network adds nothing to b here."
        if "radius_px" in loc:
            text += f" Radius: {loc['radius_px']:.1f} px (dashed circle)."
        return attn, infl, net, scan, text


    # ---- compare --------------------------------------------------------------------------
    def compare_methods(self) -> list[str]:
        """The methods the Compare tab shows, in its order (one image each)."""
        return self.comparer.methods()

    @gpu(duration=120)
    def _knobs(self, control_values) -> dict[str, dict]:
        with user_errors():
            return knobs_by_arch(self.controls, control_values)

    def compare(self, state: dict | None, seed, steps, solver, *control_values):
        """Every method on the Reconstruct tab's image and mask with one seed -> status, one image
        per method (as each finishes), the table. `control_values`: one per `self.controls`."""
        image, mask = self._image_and_mask(state)
        methods, entries = self.compare_methods(), []
        shown = [gr.update(value=None, label=labels()[m]) for m in methods]
        yield (f"Comparing {len(methods)} methods…", *shown, table(entries))
        with user_errors():
            seed = number(seed, "seed", 0, SEED_MAX, integer=True)
            entries_ = self.comparer.compare(image, mask, seed=seed, steps=int(steps), solver=str(solver),
                                             knobs=self._knobs(control_values))
            for i, e in enumerate(entries_):
                entries.append(e)
                shown[i] = gr.update(value=up(e.image),
                                     label=f"{labels()[e.method]} · {e.metrics['psnr']:.2f} dB")
                more = i + 1 < len(methods)
                status = (f"{labels()[e.method]} finished ({i + 1} of {len(methods)})…" if more
                          else f"Done: seed {int(seed or 0)}, {int(steps)} {solver} steps; every model "
                               f"started from the same noise ε.")
                yield (status, *shown, table(entries))

    @gpu(duration=300)
    def sweep(self, state: dict | None, seed, solvers, *control_values):
        """PSNR against steps (1 … 50) per model and solver -> status, figure; cached per input."""
        image, mask = self._image_and_mask(state)
        solvers = tuple(solvers or ())
        points, last = [], 0.0
        learned = [m for m in self.compare_methods() if m in arch_specs()]
        total = len(learned) * len(solvers) * len(SWEEP_STEPS) + len(self.compare_methods()) - len(learned)
        yield "Sweeping…", figures.sweep_figure([], labels())
        with user_errors():
            seed = number(seed, "seed", 0, SEED_MAX, integer=True)
            for p in self.comparer.sweep(image, mask, seed=seed, solvers=solvers, steps=SWEEP_STEPS,
                                         knobs=self._knobs(control_values)):
                points.append(p)
                now = time.perf_counter()
                if now - last >= PLOT_EVERY and len(points) < total:
                    last = now
                    where = labels()[p.method] + (f" · {p.solver} · {p.steps} steps" if p.solver else "")
                    yield (f"{len(points)} of {total}: {where}: {p.psnr:.2f} dB",
                           figures.sweep_figure(points, labels()))
        cached = sum(p.cached for p in points)
        yield (f"Done: {len(points)} points ({cached} from the cache), seed {int(seed or 0)}.",
               figures.sweep_figure(points, labels()))

    # ---- public API -----------------------------------------------------------------------
    @gpu(duration=60)
    def api_reconstruct(self, image, architecture: str, density: float, seed: float,
                        steps: float, solver: str):
        """The `/reconstruct` endpoint: image + settings -> (32×32 reconstruction, metrics JSON).
        `density` is the observed fraction in (0, 1] (values above 1 are read as percent)."""
        method = method_key(architecture)
        density = number(density, "density", 0, 100)
        density = density / 100 if density > 1 else density
        if density <= 0:
            raise gr.Error("density must be above 0: the observed fraction in (0, 1]", print_exception=False)
        seed = number(seed, "seed", 0, SEED_MAX, integer=True)
        steps = number(steps, "steps", 1, MAX_STEPS, integer=True)
        if image is None:
            raise gr.Error("no image was given", print_exception=False)
        with user_errors():
            prepared = self.rec.prepare(image)
            mask = self.rec.make_mask("random", density, seed)
            res = self.rec.reconstruct(prepared.image, mask, method, steps=steps, solver=str(solver),
                                       seed=seed)
        return (self._png(res.image, method),
                {**self._summary(res, method), "observed": int(mask.sum()), "size": self.rec.size})
