"""The one inference object the UI calls: checkpoints, masks, streamed reconstructions, locality maps.

    rec = Reconstructor("pretrained")
    prepared = rec.prepare(uint8_image)                 # any size / mode -> 32×32 (original kept)
    mask = rec.make_mask("random", 0.2, seed=0)         # (32, 32) bool, True = observed
    for item in rec.run(prepared.image, mask, "local_implicit", steps=20, solver="euler", seed=0):
        ...                                             # Frame per step, then one Result

Numpy in, numpy out: images are uint8 (H, W, 3), masks bool (H, W). Methods are the architecture
names of asf_core.models.MODELS (one checkpoint each in pretrained/<name>/, MAMBA one per d_state)
and the baselines `tps` and `biharmonic`. Models load lazily on first use and stay cached.
Randomness comes from torch.Generator seeded by `seed`: the same seed gives the same image.
Bad input raises `InputError` (a ValueError) with a message fit for the user.

Symbols: S model grid side (32) · K samples · Q = S² queries.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from app import images as im
from app.images import InputError, Prepared
from asf_core.checkpoint import CheckpointError, load_model, read_config
from asf_core.metrics import image_metrics, psnr, to_unit
from asf_core.reconstruct import reconstruct
from asf_core.sampling import METHODS

ROOT = Path(__file__).resolve().parents[1]
ARCH_LABELS = {"perceiver_io": "Perceiver IO", "local_implicit": "Local Implicit", "mamba": "MAMBA"}
BASELINE_LABELS = {"tps": "thin-plate spline", "biharmonic": "biharmonic"}
SOLVERS = tuple(METHODS)
D_STATES = (8, 16, 32)
MAX_STEPS, MAX_SAMPLES = 100, 16
_TRAIN = ("python -m asf_core.train --arch {arch} --preset small{extra} --source interp --sigma 0.3 "
          "--max-steps 30000 "
          "--data-dir DIR --out runs/{name} && "
          "python -m asf_core.export --run runs/{name} --out pretrained/{name}")
EXPECTED = {  # the released checkpoints the app looks for, and how to make each one
    "perceiver_io_small": ("perceiver_io", ""), "local_implicit_small": ("local_implicit", ""),
    **{f"mamba_d{d}": ("mamba", f" --model-overrides d_state={d}") for d in D_STATES},
}


@dataclass
class Frame:
    step: int
    t: float
    nfe: int
    x_t: np.ndarray  # (S, S, 3) uint8, the state (first sample)
    x1_hat: np.ndarray  # (S, S, 3) uint8, x̂1 = x_t + (1 - t)·v with the observed pixels pasted in
    psnr: float | None  # of x̂1 against the original
    v_abs: float | None  # mean |v| (None after the last step)


@dataclass
class Result:
    image: np.ndarray  # (S, S, 3) uint8, the first sample (the fill, for baselines)
    metrics: dict  # psnr, ssim, psnr_missing, ssim_missing (+ *_mean, *_onestep for models)
    seconds: float
    nfe: int
    mean: np.ndarray | None = None  # (S, S, 3) uint8, mean of the K samples when K > 1
    std: np.ndarray | None = None  # (S, S) float, per-pixel std over the K samples (mean over RGB)
    samples: list = field(default_factory=list)  # K × (S, S, 3) uint8
    frames: list = field(default_factory=list)  # every Frame, for scrubbing afterwards


class _Stop(Exception):
    pass


def _metrics(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor, suffix: str = "") -> dict:
    return {f"{k}{suffix}": round(float(v[0]), 4) for k, v in image_metrics(pred, truth, mask).items()}


class Reconstructor:
    """Finds checkpoints in `pretrained_dir` (default $ASF_PRETRAINED_DIR or ./pretrained)."""

    def __init__(self, pretrained_dir: str | Path | None = None, device: str = "cpu", size: int = 32):
        self.root = Path(pretrained_dir or os.environ.get("ASF_PRETRAINED_DIR") or ROOT / "pretrained")
        self.device, self.size = device, size
        self._models: dict[str, torch.nn.Module] = {}
        self._lock = threading.Lock()
        self.checkpoints, self.broken = self._discover()

    # ---- checkpoints -------------------------------------------------------------------------
    def _discover(self) -> tuple[dict[str, dict], dict[str, str]]:
        found, broken = {}, {}
        folders = sorted(p for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
        for folder in folders:
            if not (folder / "config.json").is_file():
                continue
            try:
                config = read_config(folder)
            except CheckpointError as e:
                broken[folder.name] = str(e)
                continue
            model = config["model"]
            found[folder.name] = {"arch": config["arch"], "path": folder, "d_state": model.get("d_state"),
                                  "metrics": config.get("metrics", {})}
        return found, broken

    def methods(self) -> list[str]:
        """Runnable methods: architectures with a checkpoint, then the baselines."""
        archs = [a for a in ARCH_LABELS if any(c["arch"] == a for c in self.checkpoints.values())]
        return archs + list(BASELINE_LABELS)

    def d_states(self) -> list[int]:
        return sorted({c["d_state"] for c in self.checkpoints.values() if c["arch"] == "mamba"})

    def radius_range(self) -> tuple[float, float, float]:
        """(min, max, default) radius of the Local Implicit checkpoint, from its config."""
        names = [n for n, c in self.checkpoints.items() if c["arch"] == "local_implicit"]
        if not names:
            return 0.1, 0.5, 0.3
        cfg = read_config(self.checkpoints[self.checkpoint_name("local_implicit")]["path"])["model"]
        return cfg.get("radius_min", 0.1), cfg.get("radius_max", 0.5), cfg.get("local_radius", 0.3)

    def missing(self) -> list[str]:
        """One line per expected checkpoint that is absent or unreadable, with how to make it."""
        lines = [f"{name}: unreadable ({msg})" for name, msg in self.broken.items()]
        for name, (arch, extra) in EXPECTED.items():
            if name not in self.checkpoints and name not in self.broken:
                lines.append(f"{name}: not in {self.root}; train and export it with "
                             f"`{_TRAIN.format(arch=arch, extra=extra, name=name)}`")
        return lines

    def checkpoint_name(self, arch: str, d_state: int | None = None) -> str:
        """The checkpoint that serves `arch` (for MAMBA the one with `d_state`, default 16)."""
        names = [n for n, c in self.checkpoints.items() if c["arch"] == arch]
        if arch == "mamba":
            states = self.d_states()
            want = int(d_state) if d_state is not None else (16 if 16 in states else (states or [None])[0])
            names = [n for n in names if self.checkpoints[n]["d_state"] == want]
            if not names:
                raise InputError(f"no MAMBA checkpoint with d_state={want} in {self.root} "
                                 f"(available: {', '.join(map(str, states)) or 'none'})")
        if not names:
            label = ARCH_LABELS.get(arch, arch)
            raise InputError(f"no {label} checkpoint in {self.root}; see the list of missing checkpoints")
        preferred = [n for n in names if n in EXPECTED]
        return (preferred or names)[0]

    def model(self, arch: str, d_state: int | None = None) -> torch.nn.Module:
        name = self.checkpoint_name(arch, d_state)
        with self._lock:  # two sessions asking at once load it once
            if name not in self._models:
                try:
                    self._models[name] = load_model(self.checkpoints[name]["path"], self.device)
                except CheckpointError as e:
                    raise InputError(f"checkpoint {name} cannot be loaded: {e}") from None
            return self._models[name]

    # ---- images and masks --------------------------------------------------------------------
    def prepare(self, image) -> Prepared:
        """Any image (array, PIL, path, bytes) -> original RGB + the S×S model input."""
        return im.prepare(image, self.size)

    def make_mask(self, kind: str = "random", density: float = 0.2, seed: int = 0, brush=None) -> np.ndarray:
        return im.make_mask(kind, density, seed, self.size, brush)

    def brush_hidden(self, brush) -> np.ndarray:
        """(S, S) bool, True where the brush painted (see app.images.brush_hidden)."""
        return im.brush_hidden(brush, self.size)

    def observed_view(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return im.observed_view(image, mask)

    def _check(self, image, mask, method: str, steps: int, solver: str, samples: int):
        image = np.asarray(image)
        if image.shape != (self.size, self.size, 3) or image.dtype != np.uint8:
            image = self.prepare(image).image
        mask = im.check_mask(mask, self.size)
        if method not in ARCH_LABELS and method not in BASELINE_LABELS:
            known = ", ".join([*ARCH_LABELS, *BASELINE_LABELS])
            raise InputError(f"unknown method {method!r}; choose from {known}")
        if int(steps) != steps or not 1 <= steps <= MAX_STEPS:
            raise InputError(f"steps must be an integer in [1, {MAX_STEPS}], got {steps}")
        if solver not in METHODS:
            raise InputError(f"unknown solver {solver!r}; choose from {', '.join(METHODS)}")
        if int(samples) != samples or not 1 <= samples <= MAX_SAMPLES:
            raise InputError(f"samples must be an integer in [1, {MAX_SAMPLES}], got {samples}")
        return image, mask

    # ---- reconstruction ----------------------------------------------------------------------
    def run(self, image: np.ndarray, mask: np.ndarray, method: str, *, steps: int = 20,
            solver: str = "euler", seed: int = 0, samples: int = 1, radius: float | None = None,
            d_state: int | None = None) -> Iterator[Frame | Result]:
        """Reconstruct, yielding a Frame before every step and after the last, then one Result.

        The sampler runs in a worker thread that waits for each Frame to be taken, so closing the
        generator (a Stop button) stops sampling between steps; the baselines yield only a Result.
        """
        image, mask = self._check(image, mask, method, steps, solver, samples)
        truth, mask_t = im.to_tensor(image), torch.from_numpy(mask)[None]
        start = time.perf_counter()
        if method in BASELINE_LABELS:
            from asf_core.baselines import reconstruct as baseline_reconstruct  # scipy: ~1 s, on first use

            out = baseline_reconstruct(method, truth, mask_t)
            yield Result(image=im.to_uint8(out[0]), metrics=_metrics(out, truth, mask_t),
                         seconds=time.perf_counter() - start, nfe=0, samples=[im.to_uint8(out[0])])
            return
        model = self.model(method, d_state)
        kwargs = {"radius": float(radius)} if method == "local_implicit" and radius is not None else {}
        yield from self._sample(model, truth, mask_t, start, int(steps), solver, int(seed), int(samples),
                                kwargs)

    def _sample(self, model, truth, mask_t, start, steps, solver, seed, samples, kwargs):
        frames: queue.Queue = queue.Queue(maxsize=1)
        stop, done = threading.Event(), {}
        seen, s, unit_truth = mask_t[:, None], self.size, to_unit(truth)

        def on_step(info: dict) -> None:
            x1 = info["x1_hat"][:1].transpose(1, 2).reshape(1, 3, s, s).clamp(-1, 1)
            x1 = torch.where(seen, truth, x1)
            xt = info["x_t"][:1].transpose(1, 2).reshape(1, 3, s, s)
            v = info["v"]
            frame = Frame(step=info["step"], t=float(info["t"]), nfe=int(info["nfe"]),
                          x_t=im.to_uint8(xt[0]), x1_hat=im.to_uint8(x1[0]),
                          psnr=round(float(psnr(to_unit(x1), unit_truth)[0]), 4),  # no SSIM per step: cheap
                          v_abs=None if v is None else float(v[:1].abs().mean()))
            while True:  # hand the frame over, or give up if the consumer has gone
                if stop.is_set():
                    raise _Stop
                try:
                    frames.put(frame, timeout=0.05)
                    return
                except queue.Full:
                    continue

        def work() -> None:
            try:
                g = torch.Generator().manual_seed(seed)
                done["rec"] = reconstruct(model, truth, mask_t, steps=steps, solver=solver, samples=samples,
                                          generator=g, callback=on_step, **kwargs)
            except _Stop:
                pass
            except BaseException as e:  # re-raised in the consumer's thread
                done["error"] = e
            finally:
                done["finished"] = True

        worker = threading.Thread(target=work, name="asf-sampler", daemon=True)
        worker.start()
        kept = []
        try:
            while not (done.get("finished") and frames.empty()):
                try:
                    frame = frames.get(timeout=0.05)
                except queue.Empty:
                    continue
                kept.append(frame)
                yield frame
        finally:
            stop.set()  # a closed generator (Stop) ends the worker at its next step
            worker.join()
        if "error" in done:
            raise done["error"]
        yield self._result(done["rec"], truth, mask_t, start, kept)

    def _result(self, rec, truth, mask_t, start, frames) -> Result:
        seconds = time.perf_counter() - start
        metrics = _metrics(rec.sample, truth, mask_t)
        metrics.update(_metrics(rec.onestep, truth, mask_t, "_onestep"))
        k = rec.samples.shape[0]
        mean = std = None
        if k > 1:
            metrics.update(_metrics(rec.mean, truth, mask_t, "_mean"))
            mean = im.to_uint8(rec.mean[0])
            std = rec.samples[:, 0].float().std(0).mean(0).numpy() / 2  # in [0, 1] colour units
        return Result(image=im.to_uint8(rec.sample[0]), metrics=metrics, seconds=seconds, nfe=rec.nfe,
                      mean=mean, std=std, samples=[im.to_uint8(x[0]) for x in rec.samples], frames=frames)

    def reconstruct(self, image, mask, method: str, **knobs) -> Result:
        """`run` without streaming: the Result only."""
        for item in self.run(image, mask, method, **knobs):
            if isinstance(item, Result):
                return item
        raise RuntimeError("the reconstruction ended without a result")

    # ---- locality ----------------------------------------------------------------------------
    def locality(self, image: np.ndarray, mask: np.ndarray, method: str, pixel: tuple[int, int], *,
                 radius: float | None = None, d_state: int | None = None) -> dict:
        """Attention and gradient-influence maps for output pixel (row, col); see app.locality."""
        from app.locality import locality

        if method not in ARCH_LABELS:
            raise InputError("locality maps exist for the learned models only, not for the baselines")
        image, mask = self._check(image, mask, method, 1, "euler", 1)
        kwargs = {"radius": float(radius)} if method == "local_implicit" and radius is not None else {}
        out = locality(self.model(method, d_state), method, image, mask, pixel, **kwargs)
        out["method"] = method
        return out
