"""The Compare tab (app.compare, its handlers and figure): every method on one image, mask and seed,
the same noise ε for every model whatever its source, the table, and the cached PSNR-vs-steps sweep.
Tiny checkpoints with different sources (noise σ=1, interp σ=0.3, noise σ=0.5, interp σ=0.6), CPU, seconds."""

from __future__ import annotations

import importlib
import inspect

import numpy as np
import pytest
import torch

from app import figures
from app.compare import Comparer, Point, digest
from app.inference import BASELINE_LABELS, Reconstructor, arch_labels
from asf_core.checkpoint import save_pretrained
from asf_core.models import build_model

# the module, not the function of that name that asf_core re-exports over it
core = importlib.import_module("asf_core.reconstruct")
SOURCES = {"perceiver_io_grid": ("perceiver_io", {}, {"source": "interp", "sigma": 0.3}),
           "local_implicit_grid": ("local_implicit", {}, {}),  # noise, σ = 1 (the default)
           "mamba_d16_grid": ("mamba", {"d_state": 16}, {"source": "noise", "sigma": 0.5}),
           "hybrid_grid": ("hybrid", {}, {"source": "interp", "sigma": 0.6})}


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    for name, (arch, overrides, train) in SOURCES.items():
        model = build_model(arch, "tiny", **overrides)
        with torch.no_grad():  # zero-initialised heads would make v = 0 and every model alike
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        save_pretrained(model, root / name, arch=arch, train=train)
    return Reconstructor(root)


def test_same_noise_for_every_model(rec, image, mask, monkeypatch):
    """x_0 differs per source, but ε = (x_0 - mean)/σ is the same draw for every model."""
    draws = []
    original = core.source_sample
    signature = inspect.signature(original)

    def spy(*args, **kwargs):  # records (kind, σ, x_0, ε) whatever else source_sample takes
        x_0 = original(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        kw = dict(bound.arguments)
        sigma = kw["sigma"]
        mean = original(**{**kw, "sigma": 0.0, "generator": torch.Generator()})  # the source's centre
        draws.append((kw["kind"], sigma, x_0, (x_0 - mean) / sigma))
        return x_0

    monkeypatch.setattr(core, "source_sample", spy)
    entries = list(Comparer(rec).compare(image, mask, seed=7, steps=1, solver="euler"))
    assert [e.method for e in entries] == [*arch_labels(), *rec.baselines()]
    want = [("interp", 0.3), ("noise", 1.0), ("noise", 0.5), ("interp", 0.6)]
    assert [(k, s) for k, s, _, _ in draws] == want
    eps = [d[3] for d in draws]
    for other in eps[1:]:
        torch.testing.assert_close(other, eps[0], atol=1e-5, rtol=0)
    assert not torch.allclose(draws[0][2], draws[1][2])  # the sources themselves differ
    draws.clear()
    list(Comparer(rec).compare(image, mask, seed=8, steps=1, solver="euler"))
    assert not torch.allclose(draws[0][3], eps[0])  # another seed, another ε


def test_compare_entries_and_table(rec, image, mask):
    from app.handlers import table

    entries = list(Comparer(rec).compare(image, mask, seed=0, steps=2, solver="heun"))
    for e in entries:
        assert e.image.shape == (32, 32, 3) and (e.image[mask] == image[mask]).all()
        assert np.isfinite(e.metrics["psnr"]) and e.seconds > 0
    learned = [e for e in entries if e.method in arch_labels()]
    assert all(e.nfe == 4 and e.params > 1000 and e.checkpoint for e in learned)
    assert all(e.params is None and e.nfe == 0 for e in entries if e.method in BASELINE_LABELS)
    assert learned[2].checkpoint == "mamba_d16_grid"
    df = table(entries)
    assert list(df.columns)[:2] == ["Model", "PSNR (dB)"] and len(df) == len(entries)
    assert df.iloc[-1]["Parameters"].startswith("none")


def test_sweep_is_cached_and_bounded(rec, image, mask):
    cmp = Comparer(rec, cache_size=100)
    kwargs = dict(seed=0, solvers=("euler", "heun"), steps=(1, 2), methods=["perceiver_io", "tps"])
    first = list(cmp.sweep(image, mask, **kwargs))
    assert [(p.solver, p.steps, p.nfe) for p in first] == [("euler", 1, 1), ("euler", 2, 2), ("heun", 1, 2),
                                                           ("heun", 2, 4), (None, 0, 0)]
    assert not any(p.cached for p in first) and cmp.misses == 5
    again = list(cmp.sweep(image, mask, **kwargs))
    assert all(p.cached for p in again) and cmp.hits == 5 and cmp.misses == 5
    assert [p.psnr for p in again] == [p.psnr for p in first]
    # the same point through the non-cached path gives the same number (seeded, deterministic)
    direct = rec.reconstruct(image, mask, "perceiver_io", steps=2, solver="heun")
    assert direct.metrics["psnr"] == first[3].psnr
    # another mask, seed or radius is another key
    other = rec.make_mask("random", 0.2, seed=1)
    assert not cmp.point(image, other, "perceiver_io", seed=0, solver="euler", steps=1).cached
    assert not cmp.point(image, mask, "perceiver_io", seed=1, solver="euler", steps=1).cached
    assert not cmp.point(image, mask, "local_implicit", seed=0, solver="euler", steps=1, radius=0.2).cached
    assert not cmp.point(image, mask, "local_implicit", seed=0, solver="euler", steps=1, radius=0.4).cached
    small = Comparer(rec, cache_size=2)
    list(small.sweep(image, mask, **kwargs))
    assert len(small._cache) == 2
    assert digest(mask) != digest(other) and digest(image) == digest(image.copy())


def test_sweep_bad_input(rec, image, mask):
    cmp = Comparer(rec)
    with pytest.raises(ValueError, match="solver"):
        list(cmp.sweep(image, mask, solvers=()))
    with pytest.raises(ValueError, match="adams"):
        list(cmp.sweep(image, mask, solvers=("adams",)))
    with pytest.raises(ValueError, match="unknown method"):
        list(cmp.sweep(image, mask, methods=["diffusion"]))


def test_sweep_figure():
    pts = [Point("perceiver_io", s, n, n * (1 if s == "euler" else 2), 20 + n / 10, False)
           for s in ("euler", "heun") for n in (1, 2, 5)] + [Point("tps", None, 0, 0, 22.0, False)]
    fig = figures.sweep_figure(pts, {"perceiver_io": "Perceiver IO", "tps": "TPS"})
    assert [tr.name for tr in fig.data] == ["Perceiver IO · euler", "Perceiver IO · heun", "TPS"]
    assert fig.layout.xaxis.type == "log" and list(fig.data[2].y) == [22.0, 22.0]
    assert fig.data[0].line.color == fig.data[1].line.color and fig.data[1].line.dash == "dash"
    assert figures.sweep_figure([], {}).layout.annotations


def test_compare_and_sweep_handlers(rec, monkeypatch):
    import gradio as gr

    from app import handlers
    from app.handlers import Handlers, samples

    monkeypatch.setattr(handlers, "SWEEP_STEPS", (1, 2, 5))  # the full 1 … 50 is the same loop, longer

    ev = Handlers(rec)
    state, _, _ = ev.load(samples()[0][0], None)
    state, _, _ = ev.make_mask(state, "random", 20, 0, None)
    outs = list(ev.compare(state, 0, 2, "euler", *defaults(ev)))
    n = len(rec.methods())
    assert len(outs) == n + 1 and all(len(o) == n + 2 for o in outs)
    status, *images, df = outs[-1]
    assert status.startswith("Done") and "same noise" in status and len(df) == n
    assert all(u["value"].shape == (256, 256, 3) and "dB" in u["label"] for u in images)
    final = list(ev.sweep(state, 0, ["euler"], *defaults(ev)))[-1]
    assert final[0].startswith("Done") and "(0 from the cache)" in final[0]
    assert len(final[1].data) == len(SOURCES) + 2  # every model · euler, two baselines
    final = list(ev.sweep(state, 0, ["euler"], *defaults(ev)))[-1]
    cached = len(SOURCES) * 3 + 2  # every model × 3 steps + 2 baselines, nothing recomputed
    assert f"({cached} from the cache)" in final[0]
    with pytest.raises(gr.Error, match="Pick a sample"):
        list(ev.sweep({"image": None}, 0, ["euler"], *defaults(ev)))


def defaults(ev):
    """Every knob control at its default, in the order the handlers take them."""
    return [c.default for c in ev.controls]
