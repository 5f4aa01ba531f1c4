"""The Compare tab's computation: one image, one mask, one seed through every available method.

Only calls the Reconstructor and returns numpy and plain dicts. Every learned model starts from the
same ε: each call seeds a fresh torch.Generator with the seed, and asf_core.reconstruct draws
ε ~ N(0, I) of shape (K·B, Q, 3) from it before anything else, whatever the model's source
(x_0 = σ·ε for `noise`, interp + σ·ε for `interp`), so differences come from the models alone.

    cmp = Comparer(rec)
    for entry in cmp.compare(image, mask, seed=0, steps=20, solver="euler"): ...   # one per method
    for point in cmp.sweep(image, mask, seed=0): ...                              # PSNR vs steps

Knobs come per method, `knobs={arch: {knob or checkpoint key: value}}`, named as in its spec.

The sweep's PSNR values are cached per (image hash, mask hash, seed, method, solver, steps) in a
small LRU, so pressing the button again, or adding a solver, only computes what is new.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from app.images import InputError
from app.inference import BASELINE_LABELS, SOLVERS, Reconstructor, arch_specs

SWEEP_STEPS = (1, 2, 5, 10, 20, 50)
SWEEP_SOLVERS = ("euler", "heun")
CACHE_SIZE = 512  # sweep points; each is a few floats


@dataclass
class Entry:
    method: str
    image: np.ndarray  # (S, S, 3) uint8
    metrics: dict  # psnr, ssim, psnr_missing, ssim_missing (+ *_onestep for models)
    nfe: int
    seconds: float
    params: int | None  # None for the baselines
    checkpoint: str | None


@dataclass
class Point:
    method: str
    solver: str | None  # None for a baseline (no steps: one value)
    steps: int
    nfe: int
    psnr: float
    cached: bool


def digest(array: np.ndarray) -> str:
    a = np.ascontiguousarray(array)
    return hashlib.sha1(a.tobytes() + str((a.shape, a.dtype.str)).encode()).hexdigest()[:16]


class Comparer:
    def __init__(self, rec: Reconstructor, cache_size: int = CACHE_SIZE):
        self.rec, self.cache_size = rec, cache_size
        self._cache: OrderedDict[tuple, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def methods(self) -> list[str]:
        return self.rec.methods()

    def _method_id(self, method: str, knobs: dict) -> str:
        """The method as a cache key: which checkpoint, at which knob values."""
        if method not in arch_specs():
            return method
        key, kwargs = self.rec.split_knobs(method, knobs)
        name = self.rec.checkpoint_name(method, key)
        return name + "".join(f"@{k}={v:.4f}" for k, v in sorted(kwargs.items()))

    def compare(self, image: np.ndarray, mask: np.ndarray, *, seed: int = 0, steps: int = 20,
                solver: str = "euler", knobs: dict[str, dict] | None = None) -> Iterator[Entry]:
        """One Entry per method of `methods()` (learned models first), as each finishes."""
        for method in self.methods():
            mine = (knobs or {}).get(method, {})
            res = self.rec.reconstruct(image, mask, method, steps=steps, solver=solver, seed=seed, **mine)
            learned = method in arch_specs()
            key = self.rec.split_knobs(method, mine)[0] if learned else None
            yield Entry(method=method, image=res.image, metrics=res.metrics, nfe=res.nfe, seconds=res.seconds,
                        params=self.rec.param_count(method, key) if learned else None,
                        checkpoint=self.rec.checkpoint_name(method, key) if learned else None)

    def point(self, image: np.ndarray, mask: np.ndarray, method: str, *, seed: int, solver: str | None,
              steps: int, **knobs) -> Point:
        """PSNR of one (method, solver, steps) run, from the cache when it was computed before;
        `knobs` are `method`'s, by their spec names."""
        learned = method in arch_specs()
        solver, steps = (solver, int(steps)) if learned else (None, 0)
        key = (digest(image), digest(np.asarray(mask, bool)), int(seed), self._method_id(method, knobs),
               solver, steps)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                self.hits += 1
                value, nfe = self._cache[key]
                return Point(method, solver, steps, nfe, value, cached=True)
        if learned:
            res = self.rec.reconstruct(image, mask, method, steps=steps, solver=solver, seed=seed, **knobs)
        else:
            res = self.rec.reconstruct(image, mask, method)
        value = res.metrics["psnr"]
        with self._lock:
            self.misses += 1
            self._cache[key] = (value, res.nfe)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return Point(method, solver, steps, res.nfe, value, cached=False)

    def sweep(self, image: np.ndarray, mask: np.ndarray, *, seed: int = 0,
              solvers: tuple[str, ...] = SWEEP_SOLVERS, steps: tuple[int, ...] = SWEEP_STEPS,
              methods: list[str] | None = None, knobs: dict[str, dict] | None = None) -> Iterator[Point]:
        """PSNR against steps for every learned method and solver (cheapest first), then one point
        per baseline (they take no steps); each Point as soon as it is known."""
        methods = self.methods() if methods is None else methods
        unknown = [s for s in solvers if s not in SOLVERS]
        if unknown or not solvers:
            raise InputError(f"choose at least one solver from {', '.join(SOLVERS)}"
                             + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
        for method in methods:
            if method not in arch_specs() and method not in BASELINE_LABELS:
                raise InputError(f"unknown method {method!r}")
        for method in [m for m in methods if m in arch_specs()]:
            for solver in solvers:
                for n in sorted(steps):
                    yield self.point(image, mask, method, seed=seed, solver=solver, steps=n,
                                     **(knobs or {}).get(method, {}))
        for method in [m for m in methods if m in BASELINE_LABELS]:
            yield self.point(image, mask, method, seed=seed, solver=None, steps=0)
