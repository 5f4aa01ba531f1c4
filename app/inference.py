"""The one inference object the UI calls: checkpoints, masks, streamed reconstructions, locality maps.

    rec = Reconstructor("pretrained")
    prepared = rec.prepare(uint8_image)                 # any size / mode -> 32×32 (original kept)
    mask = rec.make_mask("random", 0.2, seed=0)         # (32, 32) bool, True = observed
    for item in rec.run(prepared.image, mask, rec.methods()[0], steps=20, solver="euler", seed=0):
        ...                                             # Frame per step, then one Result

Numpy in, numpy out: images are uint8 (H, W, 3), masks bool (H, W). Methods are the architectures
of asf_core.models.SPECS that the app serves (`spec.in_app`), each with the checkpoints named in
`spec.releases` (several when the spec has a `checkpoint_key`), and the baselines `tps` and
`biharmonic`. Run-time knobs are keyword arguments named as in each spec (`spec.knobs`, and its
`checkpoint_key` to pick a checkpoint). Models load lazily on first use and stay cached.
Randomness comes from torch.Generator seeded by `seed`: the same seed gives the same image, and
because x_0 = [interp +] σ·ε draws ε first from a fresh generator, the same ε for every model.
`out_size` (32, 64, 128) queries the field on a finer grid from the same S×S observations; with a
`reference` (the original at that size) the metrics add psnr_original / ssim_original. Checkpoints
missing from pretrained/ are fetched from the Hub repository in $ASF_HUB_REPO (app.space).
Bad input raises `InputError` (a ValueError) with a message fit for the user.

Symbols: S model grid side (32) · O output side (S, 2S, 4S) · K samples · Q = O² queries.
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
import torch.nn.functional as F  # bicubic upsampling of the biharmonic fill

from app import images as im
from app import scores, space
from app.images import InputError, Prepared
from asf_core.checkpoint import CheckpointError, load_model, read_config
from asf_core.metrics import psnr, to_unit
from asf_core.models import SPECS, ArchSpec
from asf_core.models.knobs import Knob
from asf_core.reconstruct import Reconstruction, reconstruct
from asf_core.sampling import METHODS

ROOT = Path(__file__).resolve().parents[1]
BASELINE_LABELS = {"tps": "thin-plate spline", "biharmonic": "biharmonic", "lmmse": "linear-MMSE"}
# the baselines that need a file: served only when it is in the pretrained folder
BASELINE_RELEASES = {"lmmse": "lmmse_cifar10"}  # tools/lmmse_release.py
SOLVERS = tuple(METHODS)
MAX_STEPS, MAX_SAMPLES = 100, 16
OUT_SIZES = (32, 64, 128)  # output grids; the models were trained on 32×32
# the release recipe (docs/grid_encoder.md): the shared grid encoder, then each mixer on it, frozen
_TRAIN = ("python -m asf_core.train --arch {arch} --preset small{extra} --source interp --sigma 0.3 "
          "--encoder-from pretrained/grid_encoder_small --freeze-encoder --max-steps 300 --lr 5e-4 "
          "--warmup-steps 50 --data-dir DIR --out runs/{name} && "
          "python -m asf_core.export --run runs/{name} --out pretrained/{name}")


# read at every call, not copied at import: an architecture registered later is served too
def arch_specs() -> dict[str, ArchSpec]:
    """The architectures the app serves, in registry order."""
    return {name: spec for name, spec in SPECS.items() if spec.in_app}


def arch_labels() -> dict[str, str]:
    return {name: spec.label for name, spec in arch_specs().items()}


def expected() -> dict[str, tuple[str, str]]:
    """The released checkpoints the app looks for: {name: (arch, its training command's extra flags)}."""
    out = {}
    for spec in arch_specs().values():
        for name, overrides in spec.releases.items():
            extra = ",".join(f"{k}={v}" for k, v in overrides.items())
            out[name] = (spec.name, f" --model-overrides {extra}" if extra else "")
    return out


@dataclass
class Frame:
    step: int
    t: float
    nfe: int
    x_t: np.ndarray  # (O, O, 3) uint8, the state (first sample)
    x1_hat: np.ndarray  # (O, O, 3) uint8, x̂1 = x_t + (1 - t)·v (observed pixels pasted in when O = S)
    psnr: float | None  # of x̂1 (area-averaged to S×S) against the S×S image
    v_abs: float | None  # mean |v| (None after the last step)


@dataclass
class Result:
    image: np.ndarray  # (O, O, 3) uint8, the first sample (the fill, for baselines)
    metrics: dict  # psnr, ssim, psnr_missing, ssim_missing (+ *_mean, *_onestep, std_error_corr,
    #                psnr_original, ssim_original where they apply); on the S×S grid, see `notes`
    seconds: float
    nfe: int
    mean: np.ndarray | None = None  # (O, O, 3) uint8, mean of the K samples when K > 1
    std: np.ndarray | None = None  # (O, O) float, per-pixel std over the K samples (mean over RGB)
    samples: list = field(default_factory=list)  # K × (O, O, 3) uint8
    frames: list = field(default_factory=list)  # every Frame, for scrubbing afterwards
    size: int = 32  # O
    onestep: np.ndarray | None = None  # (O, O, 3) uint8, x̂1 at t = 0 (the model's posterior mean)
    notes: list = field(default_factory=list)  # one sentence each: how the metrics were measured


class _Stop(Exception):
    pass


class Reconstructor:
    """Finds checkpoints in `pretrained_dir` (default $ASF_PRETRAINED_DIR or ./pretrained), then
    the ones still missing in the Hub repository `hub_repo` (default $ASF_HUB_REPO, if set)."""

    def __init__(self, pretrained_dir: str | Path | None = None, device: str = "cpu", size: int = 32,
                 hub_repo: str | None = None):
        self.root = Path(pretrained_dir or os.environ.get("ASF_PRETRAINED_DIR") or ROOT / "pretrained")
        self.device, self.size = device, size
        self.hub_repo = hub_repo if hub_repo is not None else space.hub_repo()
        self._models: dict[str, torch.nn.Module] = {}
        self._lock = threading.Lock()
        self.checkpoints, self.broken = self._discover()
        self.hub_errors: dict[str, str] = {}
        if self.hub_repo:
            self._discover_hub()

    # ---- checkpoints -------------------------------------------------------------------------
    def _discover(self) -> tuple[dict[str, dict], dict[str, str]]:
        found, broken = {}, {}
        folders = sorted(p for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
        for folder in folders:
            if not (folder / "config.json").is_file():
                continue
            try:
                found[folder.name] = self._entry(folder)
            except CheckpointError as e:
                broken[folder.name] = str(e)
        return found, broken

    @staticmethod
    def _entry(folder: Path, origin: str = "local") -> dict:
        config = read_config(folder)
        spec = SPECS.get(config["arch"])
        key = spec.checkpoint_key if spec is not None else None
        try:  # the knobs' ranges are the checkpoint's own (what it was trained over)
            knobs = spec.knobs_of(config["model"]) if spec is not None else {}
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{folder}: model config does not build ({e})") from None
        return {"arch": config["arch"], "path": folder, "key": config["model"].get(key) if key else None,
                "knobs": knobs, "metrics": config.get("metrics", {}), "origin": origin}

    def _discover_hub(self) -> None:
        """Fill the released names pretrained/ lacks from the Hub (cache first when offline)."""
        wanted = [n for n in expected() if n not in self.checkpoints and n not in self.broken]
        found, self.hub_errors = space.hub_checkpoints(self.hub_repo, wanted)
        for name, folder in found.items():
            try:
                self.checkpoints[name] = self._entry(folder, origin=f"hub:{self.hub_repo}")
            except CheckpointError as e:
                self.hub_errors[name] = str(e)

    def methods(self) -> list[str]:
        """Runnable methods: architectures with a checkpoint, then the baselines."""
        archs = [a for a in arch_specs() if any(c["arch"] == a for c in self.checkpoints.values())]
        return archs + self.baselines()

    def default_method(self) -> str:
        """The page's preselected method: the served architecture whose checkpoint scored the best
        validation x̂1 (its config's metrics), or the thin-plate spline when none records one. The
        shipped ones clear the spline by 1.0-1.1 dB on 1,000 test images (docs/eval_onestep_n1000.json)."""
        scored = {}
        for arch in (m for m in self.methods() if m in arch_specs()):
            metrics = self.checkpoints[self.checkpoint_name(arch)]["metrics"]
            if "val_psnr_onestep" in metrics:
                scored[arch] = metrics["val_psnr_onestep"]
        return max(scored, key=scored.get) if scored else "tps"

    def baselines(self) -> list[str]:
        """The baselines served: all but those whose release file is not in the pretrained folder."""
        from asf_core.lmmse import RELEASE_FILE

        return [b for b in BASELINE_LABELS
                if b not in BASELINE_RELEASES or (self.root / BASELINE_RELEASES[b] / RELEASE_FILE).is_file()]

    def checkpoint_values(self, arch: str) -> list:
        """The values of `arch`'s checkpoint key among its checkpoints found (empty without a key)."""
        mine = [c["key"] for c in self.checkpoints.values() if c["arch"] == arch]
        return sorted({k for k in mine if k is not None})

    def default_checkpoint_value(self, arch: str):
        """The key value served when none is asked for: the spec's default if found, else the first."""
        values, spec = self.checkpoint_values(arch), SPECS[arch]
        return spec.checkpoint_default if spec.checkpoint_default in values else (values or [None])[0]

    def knobs(self, arch: str) -> dict[str, Knob]:
        """`arch`'s run-time knobs with the ranges of the checkpoint that serves it, from its config."""
        return self.checkpoints[self.checkpoint_name(arch)]["knobs"]

    def missing(self) -> list[str]:
        """One line per expected checkpoint that is absent or unreadable, with how to make it."""
        lines = [f"{name}: unreadable ({msg})" for name, msg in self.broken.items()]
        for name, (arch, extra) in expected().items():
            if name not in self.checkpoints and name not in self.broken:
                hub = (f", nor from the Hub repo {self.hub_repo} ({self.hub_errors[name]})"
                       if name in self.hub_errors else "")
                lines.append(f"{name}: not in {self.root}{hub}; train and export it with "
                             f"`{_TRAIN.format(arch=arch, extra=extra, name=name)}`")
        return lines

    def checkpoint_name(self, arch: str, key=None) -> str:
        """The checkpoint that serves `arch`: for a spec with a checkpoint key, the one whose config
        has `key` there (default: `default_checkpoint_value`)."""
        names = [n for n, c in self.checkpoints.items() if c["arch"] == arch]
        spec = SPECS.get(arch)
        label = spec.label if spec is not None else arch
        if spec is not None and spec.checkpoint_key:
            values = self.checkpoint_values(arch)
            cast = type(spec.checkpoint_default) if spec.checkpoint_default is not None else (lambda v: v)
            want = self.default_checkpoint_value(arch) if key in (None, "") else cast(key)
            names = [n for n in names if self.checkpoints[n]["key"] == want]
            if not names:
                raise InputError(f"no {label} checkpoint with {spec.checkpoint_key}={want} in {self.root} "
                                 f"(available: {', '.join(map(str, values)) or 'none'})")
        if not names:
            raise InputError(f"no {label} checkpoint in {self.root}; see the list of missing checkpoints")
        preferred = [n for n in names if n in expected()]
        return (preferred or names)[0]

    def split_knobs(self, arch: str, knobs: dict) -> tuple[object, dict]:
        """(checkpoint key value, forward keyword arguments) of `arch` from knobs named as in the
        specs; knobs of other architectures are left out (the Compare tab passes every one), None
        values are not set, and a name no served architecture knows is an InputError."""
        served = arch_specs()
        known = {n for c in self.checkpoints.values() if c["arch"] in served for n in c["knobs"]}
        known |= {s.checkpoint_key for s in served.values() if s.checkpoint_key}
        unknown = sorted(set(knobs) - known)
        if unknown:
            raise InputError(f"unknown knob(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        spec = SPECS[arch]
        key = knobs.get(spec.checkpoint_key) if spec.checkpoint_key else None
        mine = self.checkpoints[self.checkpoint_name(arch, key)]["knobs"]
        return key, {n: float(v) for n, v in knobs.items() if n in mine and v is not None}

    def model(self, arch: str, key=None) -> torch.nn.Module:
        name = self.checkpoint_name(arch, key)
        with self._lock:  # two sessions asking at once load it once
            if name not in self._models:
                try:
                    self._models[name] = load_model(self.checkpoints[name]["path"], self.device)
                except CheckpointError as e:
                    raise InputError(f"checkpoint {name} cannot be loaded: {e}") from None
            return self._models[name]

    def param_count(self, method: str, key=None) -> int | None:
        """Trainable parameters of the checkpoint serving `method` (None for a baseline)."""
        if method not in arch_specs():
            return None
        return sum(p.numel() for p in self.model(method, key).parameters())

    # ---- images and masks --------------------------------------------------------------------
    def prepare(self, image) -> Prepared:
        """Any image (array, PIL, path, bytes) -> original RGB + the S×S model input."""
        return im.prepare(image, self.size)

    def references(self, original: np.ndarray) -> dict[int, np.ndarray]:
        """{O: the original at O×O} for the output sizes above S that the original covers."""
        return im.references(original, OUT_SIZES, self.size)

    def make_mask(self, kind: str = "random", density: float = 0.2, seed: int = 0, brush=None) -> np.ndarray:
        return im.make_mask(kind, density, seed, self.size, brush)

    def brush_hidden(self, brush) -> np.ndarray:
        """(S, S) bool, True where the brush painted (see app.images.brush_hidden)."""
        return im.brush_hidden(brush, self.size)

    def observed_view(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return im.observed_view(image, mask)

    def _check_out(self, out_size, reference):
        out = self.size if out_size is None else out_size
        if out not in OUT_SIZES or int(out) < self.size:
            raise InputError(f"the output resolution must be one of {', '.join(map(str, OUT_SIZES))}, "
                             f"got {out_size}")
        out = int(out)
        if reference is not None:
            reference = np.asarray(reference)
            if reference.shape != (out, out, 3) or reference.dtype != np.uint8:
                raise InputError(f"the reference must be a {out}×{out} RGB uint8 image, got shape "
                                 f"{reference.shape}")
        return out, reference

    def _check(self, image, mask, method: str, steps: int, solver: str, samples: int):
        image = np.asarray(image)
        if image.shape != (self.size, self.size, 3) or image.dtype != np.uint8:
            image = self.prepare(image).image
        mask = im.check_mask(mask, self.size)
        if method in BASELINE_RELEASES and method not in self.baselines():
            release = BASELINE_RELEASES[method]
            raise InputError(f"the {BASELINE_LABELS[method]} baseline needs {self.root / release}; "
                             f"make it with `python tools/lmmse_release.py --out pretrained/{release}`")
        if method not in arch_specs() and method not in BASELINE_LABELS:
            known = ", ".join([*arch_specs(), *self.baselines()])
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
            solver: str = "euler", seed: int = 0, samples: int = 1, out_size: int | None = None,
            reference: np.ndarray | None = None, **knobs) -> Iterator[Frame | Result]:
        """Reconstruct, yielding a Frame before every step and after the last, then one Result.

        The sampler runs in a worker thread that waits for each Frame to be taken, so closing the
        generator (a Stop button) stops sampling between steps; the baselines yield only a Result.
        `out_size` O queries the field on an O×O grid; `reference` (O, O, 3) is the truth there.
        `knobs`: run-time knobs and the checkpoint key by their spec names (see `split_knobs`).
        """
        job = self._job(image, mask, method, steps, solver, seed, samples, out_size, reference, **knobs)
        if method in BASELINE_LABELS:
            yield self._baseline(job)
            return
        yield from self._stream(job)

    def reconstruct(self, image, mask, method: str, **knobs) -> Result:
        """`run` without streaming (no worker thread, no frames): the Result only."""
        job = self._job(image, mask, method, knobs.pop("steps", 20), knobs.pop("solver", "euler"),
                        knobs.pop("seed", 0), knobs.pop("samples", 1), **knobs)
        if method in BASELINE_LABELS:
            return self._baseline(job)
        return self._result(job, self._integrate(job, None), [])

    def _job(self, image, mask, method, steps, solver, seed, samples, out_size=None, reference=None,
             **knobs) -> dict:
        """Checked inputs of one reconstruction, as tensors, with its start time."""
        image, mask = self._check(image, mask, method, steps, solver, samples)
        out, reference = self._check_out(out_size, reference)
        job = dict(method=method, truth=im.to_tensor(image), mask=torch.from_numpy(mask)[None], out=out,
                   reference=reference, steps=int(steps), solver=solver, seed=int(seed),
                   samples=int(samples), kwargs={}, start=time.perf_counter())
        if method in arch_specs():
            key, job["kwargs"] = self.split_knobs(method, knobs)
            job["model"] = self.model(method, key)
        return job

    def _baseline(self, job: dict) -> Result:
        from asf_core.baselines import POINT_METHODS
        from asf_core.baselines import reconstruct as baseline_reconstruct  # scipy: ~1 s, on first use

        method, truth, mask_t, out = job["method"], job["truth"], job["mask"], job["out"]
        if method == "lmmse":
            return self._lmmse(job)
        notes = scores.notes(job["out"], self.size, job["reference"] is not None)
        if out == self.size or method in POINT_METHODS:  # an interpolant: evaluate it on the finer grid
            fill = baseline_reconstruct(method, truth, mask_t, out_hw=(out, out))
        else:  # biharmonic solves on the pixel grid only
            fill = baseline_reconstruct(method, truth, mask_t)
            fill = F.interpolate(fill, size=(out, out), mode="bicubic", align_corners=False).clamp(-1, 1)
            notes.append(f"Biharmonic inpainting solves on the {self.size}×{self.size} pixel grid; its "
                         f"fill is shown bicubically upsampled to {out}×{out}.")
        metrics = scores.grid_metrics(fill, truth, mask_t)
        if job["reference"] is not None:
            metrics.update(scores.vs_reference(fill, job["reference"]))
        image = im.to_uint8(fill[0])
        return Result(image=image, metrics=metrics, seconds=time.perf_counter() - job["start"], nfe=0,
                      samples=[image], size=out, notes=notes)

    def _lmmse(self, job: dict) -> Result:
        """The linear-MMSE baseline as a sampler: its conditional mean is x̂1 and its K samples are
        exact draws of the conditional Gaussian, so the sample-against-mean lesson holds exactly."""
        from asf_core import lmmse

        with self._lock:
            if "lmmse" not in self._models:
                try:
                    self._models["lmmse"] = lmmse.load_release(self.root / BASELINE_RELEASES["lmmse"]).stats()
                except ValueError as e:  # a truncated or foreign file: say so, keep serving the rest
                    raise InputError(str(e)) from None
        stats, out, s = self._models["lmmse"], job["out"], self.size
        g = torch.Generator().manual_seed(job["seed"])
        mean, draws = lmmse.reconstruct(job["truth"], job["mask"], stats, samples=job["samples"], generator=g)
        if out > s:  # a Gaussian over the S×S pixels: shown upsampled
            mean, draws = (F.interpolate(x.flatten(0, x.dim() - 4), size=(out, out), mode="bicubic",
                                         align_corners=False).clamp(-1, 1).view(*x.shape[:-2], out, out)
                           for x in (mean, draws))
        rec = Reconstruction(sample=draws[0], mean=draws.mean(0), onestep=mean, samples=draws, nfe=0)
        result = self._result(job, rec, [])
        if out > s:
            result.notes.append(f"The linear-MMSE Gaussian is over the {s}×{s} pixels; its mean and samples "
                                f"are shown bicubically upsampled to {out}×{out}.")
        return result

    def _integrate(self, job: dict, callback):
        g = torch.Generator().manual_seed(job["seed"])  # fresh per call: ε is the first draw
        return reconstruct(job["model"], job["truth"], job["mask"], steps=job["steps"], solver=job["solver"],
                           samples=job["samples"], out_hw=(job["out"], job["out"]), generator=g,
                           callback=callback, **job["kwargs"])

    def _stream(self, job: dict) -> Iterator[Frame | Result]:
        frames: queue.Queue = queue.Queue(maxsize=1)
        stop, done = threading.Event(), {}
        truth, out, s = job["truth"], job["out"], self.size
        seen, unit_truth = job["mask"][:, None], to_unit(truth)

        def on_step(info: dict) -> None:
            x1 = info["x1_hat"][:1].transpose(1, 2).reshape(1, 3, out, out).clamp(-1, 1)
            if out == s:  # on the input grid the observed pixels are known exactly
                x1 = torch.where(seen, truth, x1)
            xt = info["x_t"][:1].transpose(1, 2).reshape(1, 3, out, out)
            v = info["v"]
            frame = Frame(step=info["step"], t=float(info["t"]), nfe=int(info["nfe"]),
                          x_t=im.to_uint8(xt[0]), x1_hat=im.to_uint8(x1[0]),  # no SSIM per step: cheap
                          psnr=round(float(psnr(to_unit(scores.to_grid(x1, s)), unit_truth)[0]), 4),
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
                done["rec"] = self._integrate(job, on_step)
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
        yield self._result(job, done["rec"], kept)

    def _result(self, job: dict, rec, frames) -> Result:
        truth, mask_t, reference, out = job["truth"], job["mask"], job["reference"], job["out"]
        seconds = time.perf_counter() - job["start"]
        metrics = scores.grid_metrics(rec.sample, truth, mask_t)
        metrics.update(scores.grid_metrics(rec.onestep, truth, mask_t, "_onestep"))
        if reference is not None:
            metrics.update(scores.vs_reference(rec.sample, reference))
        notes = scores.notes(job["out"], self.size, job["reference"] is not None)
        # seen on the shipped checkpoints: grain at 128×128, a smooth x̂1
        if out > self.size and "model" in job:
            notes.append(f"The source noise is drawn independently at each of the {out}×{out} queries, "
                         f"a density the models never saw in training, so a sample can keep some grain; "
                         f"the one-step estimate x̂1 (psnr_onestep) and the mean of K samples are smoother.")
        k = rec.samples.shape[0]
        mean = std = None
        if k > 1:
            metrics.update(scores.grid_metrics(rec.mean, truth, mask_t, "_mean"))
            mean = im.to_uint8(rec.mean[0])
            std_t = rec.samples[:, 0].float().std(0).mean(0, keepdim=True)[None] / 2  # (1, 1, O, O), [0, 1]
            std = std_t[0, 0].numpy()
            metrics["std_error_corr"], note = scores.calibration(rec.mean, std_t, truth, mask_t, reference)
            notes.append(note)
        return Result(image=im.to_uint8(rec.sample[0]), metrics=metrics, seconds=seconds, nfe=rec.nfe,
                      mean=mean, std=std, samples=[im.to_uint8(x[0]) for x in rec.samples], frames=frames,
                      size=out, onestep=im.to_uint8(rec.onestep[0]), notes=notes)

    # ---- locality ----------------------------------------------------------------------------
    def locality(self, image: np.ndarray, mask: np.ndarray, method: str, pixel: tuple[int, int],
                 **knobs) -> dict:
        """Attention and gradient-influence maps for output pixel (row, col); see app.locality.
        `attention` is None for an architecture whose spec reports none."""
        from app.locality import locality

        if method not in arch_specs():
            raise InputError("locality maps exist for the learned models only, not for the baselines")
        image, mask = self._check(image, mask, method, 1, "euler", 1)
        key, kwargs = self.split_knobs(method, knobs)
        out = locality(self.model(method, key), SPECS[method].attention, image, mask, pixel, **kwargs)
        out["method"] = method
        return out
