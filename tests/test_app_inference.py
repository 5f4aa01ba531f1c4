"""The app's inference object: checkpoints, image decoding, masks, every method and solver, K samples,
streaming and Stop, locality maps, and every kind of bad input. CPU, tiny checkpoints, seconds."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from app import figures
from app.images import InputError
from app.inference import BASELINE_LABELS, SOLVERS, Frame, Reconstructor, Result, arch_labels, expected
from asf_core.sampling import METHODS
from tests.app_fixtures import SAMPLE, tiny_checkpoints

ALL = [*arch_labels(), *BASELINE_LABELS]


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    return Reconstructor(tiny_checkpoints(tmp_path_factory.mktemp("pretrained")))


def test_discovery_reports_missing_and_broken(rec, tmp_path):
    assert rec.methods() == ALL
    assert rec.checkpoint_values("mamba") == [8, 16]
    missing = "\n".join(rec.missing())
    assert "mamba_d32" in missing and "python -m asf_core.train --arch mamba" in missing
    assert "d_state=32" in missing and "broken" in missing
    empty = Reconstructor(tmp_path / "nothing")  # no pretrained/: the baselines still run
    assert empty.methods() == ["tps", "biharmonic"] and len(empty.missing()) == len(expected())
    with pytest.raises(InputError, match="needs .*lmmse_cifar10"):  # its release is not there either
        empty.reconstruct(np.zeros((32, 32, 3), np.uint8), empty.make_mask("random", 0.2), "lmmse")
    with pytest.raises(InputError, match="no Perceiver IO checkpoint"):
        empty.model("perceiver_io")
    with pytest.raises(InputError, match="d_state=32"):
        rec.model("mamba", 32)
    assert rec.model("mamba", 8) is rec.model("mamba", 8)  # cached
    assert rec.model("mamba", 8).config.d_state == 8
    assert rec.model("mamba").config.d_state == 16  # the default


def test_default_method_is_the_best_validated_model(rec, tmp_path):
    import json
    import shutil

    assert rec.default_method() == "tps"  # no checkpoint records a validation score
    root = tmp_path / "pretrained"
    for name, score in (("perceiver_io_grid", 23.5), ("local_implicit_grid", 23.8)):
        shutil.copytree(rec.root / name, root / name)
        config = json.loads((root / name / "config.json").read_text())
        config["metrics"] = {"val_psnr_onestep": score}
        (root / name / "config.json").write_text(json.dumps(config))
    assert Reconstructor(root).default_method() == "local_implicit"


@pytest.mark.parametrize("make", [
    lambda: np.full((40, 60), 200, np.uint8),  # grey
    lambda: np.zeros((50, 50, 1), np.uint8),
    lambda: np.dstack([np.zeros((32, 32, 3), np.uint8), np.full((32, 32), 128, np.uint8)]),  # RGBA
    lambda: (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16),  # 16-bit grey
    lambda: np.random.default_rng(0).random((20, 30, 3)),  # float in [0, 1]
    lambda: np.ones((3, 40, 40), bool),  # channels-first
    lambda: Image.new("P", (33, 47)),  # palette
    lambda: Image.new("I;16", (70, 40)),
    lambda: Image.new("CMYK", (32, 32)),
])
def test_prepare_any_mode(rec, make):
    p = rec.prepare(make())
    assert p.image.shape == (32, 32, 3) and p.image.dtype == np.uint8
    assert p.original.ndim == 3 and p.original.shape[-1] == 3


def test_prepare_files_and_crop(rec, tmp_path):
    p = rec.prepare(SAMPLE.with_name("photo_coffee.png"))
    assert p.original.shape == (192, 288, 3) and p.image.shape == (32, 32, 3)
    frames = [Image.new("RGB", (40, 40), c) for c in ("red", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert tuple(rec.prepare(str(tmp_path / "anim.gif")).image[0, 0]) == (255, 0, 0)  # first frame
    Image.fromarray(np.full((48, 48), 65535, np.uint16)).save(tmp_path / "w16.png")
    assert rec.prepare(tmp_path / "w16.png").image.min() == 255  # 16-bit white stays white
    Image.new("RGBA", (40, 40), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert rec.prepare((tmp_path / "clear.png").read_bytes()).image.min() == 255  # transparent: white


def test_bad_images(rec, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64), "green").save(good)
    (tmp_path / "corrupt.png").write_bytes(good.read_bytes()[:60])
    Image.new("L", (8000, 8000)).save(tmp_path / "huge.png")
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    cases = {
        tmp_path / "notes.txt": "is not an image", tmp_path / "corrupt.png": "truncated or corrupt",
        tmp_path / "huge.png": "8000×8000", tmp_path / "dot.png": "1×1",
        tmp_path / "absent.png": "no such file",
    }
    for path, message in cases.items():
        with pytest.raises(InputError, match=message):
            rec.prepare(str(path))
    for bad, message in [(None, "no image"), (42, "expected an image"),
                         (np.zeros((8000, 8000), np.uint8), "8000"),
                         (np.zeros((1, 1, 3), np.uint8), "1×1"), (np.zeros((6, 6, 6)), "shape"),
                         (np.array([["a"]], dtype=object), "dtype"), (np.full((8, 8), np.nan), "NaN")]:
        with pytest.raises(InputError, match=message):
            rec.prepare(bad)


def test_masks(rec):
    for kind in ("random", "center", "stripes", "half"):
        m = rec.make_mask(kind, 0.2, seed=3)
        assert m.shape == (32, 32) and m.dtype == bool and m.sum() == 205
        assert (m == rec.make_mask(kind, 0.2, seed=3)).all()
    assert (rec.make_mask("random", 0.2, 1) != rec.make_mask("random", 0.2, 2)).any()
    hidden = np.zeros((256, 256, 4), np.uint8)
    hidden[:128, :, 3] = 255  # paint the top half (on the 8× display canvas)
    m = rec.make_mask("brush", 1.0, 0, brush={"background": None, "layers": [hidden], "composite": None})
    assert not m[:16].any() and m[16:].all()
    assert rec.make_mask("brush", 0.2, 0, brush=hidden).sum() == 205
    with pytest.raises(InputError, match="unknown mask kind"):
        rec.make_mask("spiral", 0.2, 0)
    with pytest.raises(InputError, match="density"):
        rec.make_mask("random", 0.0, 0)


def test_bad_masks(rec, image):
    full_paint = np.full((32, 32), 1, np.uint8)
    cases = [(rec.make_mask("brush", 0.5, 0, brush=full_paint), "no pixel"),
             (rec.make_mask("random", 1.0, 0), "every pixel"),
             (rec.make_mask("random", 0.0005, 0), "only 1 pixel"), (np.ones((8, 8), bool), "32×32")]
    for bad, message in cases:
        with pytest.raises(InputError, match=message):
            rec.reconstruct(image, bad, "tps")


@pytest.mark.parametrize("method", list(arch_labels()))
@pytest.mark.parametrize("solver", SOLVERS)
def test_every_model_and_solver(rec, image, mask, method, solver):
    items = list(rec.run(image, mask, method, steps=2, solver=solver, seed=0))
    frames, result = items[:-1], items[-1]
    assert all(isinstance(f, Frame) for f in frames) and isinstance(result, Result)
    assert [f.step for f in frames] == [0, 1, 2] and frames[-1].t == 1.0 and frames[-1].v_abs is None
    assert result.nfe == frames[-1].nfe == 2 * METHODS[solver]
    assert frames[0].x_t.shape == frames[0].x1_hat.shape == (32, 32, 3)
    assert result.image.shape == (32, 32, 3) and result.image.dtype == np.uint8
    assert (result.image[mask] == image[mask]).all()  # observed pixels are kept exactly
    assert (result.image[~mask] != image[~mask]).any()
    assert np.isfinite(result.metrics["psnr"]) and -1 <= result.metrics["ssim"] <= 1
    assert result.frames == frames and result.seconds > 0  # kept for scrubbing


@pytest.mark.parametrize("method", list(BASELINE_LABELS))
def test_baselines(rec, image, mask, method):
    result = rec.reconstruct(image, mask, method)
    assert result.nfe == 0 and result.metrics["psnr"] > 12 and (result.image[mask] == image[mask]).all()


def test_lmmse_draws_exact_samples_around_its_mean(rec, image, mask, tmp_path):
    r = rec.reconstruct(image, mask, "lmmse", samples=3, seed=1)
    assert r.nfe == 0 and len(r.samples) == 3 and r.mean is not None and r.std.shape == (32, 32)
    assert {"psnr_onestep", "psnr_mean"} <= set(r.metrics) and not r.frames
    assert all((x[mask] == image[mask]).all() for x in [r.onestep, *r.samples])
    assert (r.samples[0] != r.samples[1]).any() and (r.onestep != r.samples[0]).any()
    again = rec.reconstruct(image, mask, "lmmse", samples=3, seed=1)
    assert (again.image == r.image).all()  # the seed fixes the draws
    big = rec.reconstruct(image, mask, "lmmse", out_size=64)
    assert big.image.shape == (64, 64, 3) and any("upsampled" in n for n in big.notes)
    bad = tmp_path / "bad"
    (bad / "lmmse_cifar10").mkdir(parents=True)
    (bad / "lmmse_cifar10" / "stats.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(InputError, match="is not a linear-MMSE release"):
        Reconstructor(bad).reconstruct(image, mask, "lmmse")


def test_seed_reproduces_and_k_samples(rec, image, mask):
    a = rec.reconstruct(image, mask, "perceiver_io", steps=3, seed=5)
    b = rec.reconstruct(image, mask, "perceiver_io", steps=3, seed=5)
    c = rec.reconstruct(image, mask, "perceiver_io", steps=3, seed=6)
    assert (a.image == b.image).all() and (a.image != c.image).any()
    k = rec.reconstruct(image, mask, "perceiver_io", steps=3, seed=5, samples=3)
    assert len(k.samples) == 3 and k.mean.shape == (32, 32, 3) and k.std.shape == (32, 32)
    assert (k.std[mask] == 0).all() and (k.std[~mask] > 0).any()
    assert "psnr_mean" in k.metrics and "psnr_onestep" in k.metrics
    assert (k.samples[0] == a.image).all()  # sample 0 of K is the K=1 sample: same noise first


def test_radius_is_a_live_knob(rec, image, mask):
    near = rec.reconstruct(image, mask, "local_implicit", steps=2, radius=0.1)
    far = rec.reconstruct(image, mask, "local_implicit", steps=2, radius=0.5)
    assert (near.image != far.image).any()


def test_stop_between_steps(rec, image, mask):
    stream = rec.run(image, mask, "mamba", steps=50, seed=0)
    assert next(stream).step == 0 and next(stream).step == 1
    stream.close()  # what the Stop button does
    assert not any(t.name == "asf-sampler" for t in threading.enumerate())


@pytest.mark.parametrize("bad", [dict(steps=0), dict(steps=101), dict(steps=2.5), dict(solver="adams"),
                                 dict(samples=0), dict(samples=99)])
def test_bad_knobs(rec, image, mask, bad):
    with pytest.raises(InputError):
        list(rec.run(image, mask, "perceiver_io", **{"steps": 2, **bad}))


def test_unknown_method(rec, image, mask):
    with pytest.raises(InputError, match="unknown method"):
        rec.reconstruct(image, mask, "diffusion")


@pytest.mark.parametrize("method", list(arch_labels()))
def test_locality_maps(rec, image, mask, method):
    loc = rec.locality(image, mask, method, (10, 20), radius=0.3)
    for name in ("attention", "influence"):
        assert loc[name].shape == (32, 32) and loc[name].min() >= 0
        assert loc[name].sum() == pytest.approx(1.0, abs=1e-5)
        assert 0 <= loc[f"r50_{name}"] <= loc[f"r90_{name}"]
    assert loc["influence"][~mask].sum() == 0 and loc["influence_total"] > 0  # only observations move it
    fig = figures.locality_figure(loc["attention"], loc["pixel"], "t", loc.get("radius_px"), observed=mask)
    assert fig.data[0].z.shape == (32, 32)
    if method == "local_implicit":
        assert loc["radius_px"] == pytest.approx(0.3 * 16)
        assert len(fig.layout.shapes) == 1  # the radius circle
        rr, cc = np.nonzero(loc["attention"])  # attention stays inside the radius (+ min_obs nearest)
        assert np.hypot(rr - 10, cc - 20).max() <= max(loc["radius_px"], 6) + 1e-6
    if method == "mamba":
        path, is_obs = loc["scan_path"], loc["scan_is_obs"]
        assert path.shape == (mask.sum() + 1024, 2) and is_obs.sum() == mask.sum()
        assert len({tuple(p) for p in path[~is_obs]}) == 1024  # every pixel once
        assert len(figures.scan_path_figure(path, is_obs, (32, 32), (10, 20)).data) == 4


def test_locality_bad_input(rec, image, mask):
    with pytest.raises(InputError, match="learned models"):
        rec.locality(image, mask, "tps", (0, 0))
    with pytest.raises(ValueError, match="outside"):
        rec.locality(image, mask, "perceiver_io", (32, 0))


def test_progress_figure(rec, image, mask):
    frames = [f for f in rec.run(image, mask, "perceiver_io", steps=4) if isinstance(f, Frame)]
    fig = figures.progress_figure(frames)
    assert [len(tr.x) for tr in fig.data] == [5, 4]  # PSNR at every t, |v| at every step
    assert figures.progress_figure([]).layout.annotations
