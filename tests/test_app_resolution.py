"""Output resolution (the field queried at 64×64 / 128×128 from 32×32 observations), metrics against
a finer original, the std/error calibration of K samples, and the precomputed first page.
Tiny checkpoints, CPU, seconds."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app import scores
from app.images import InputError
from app.inference import OUT_SIZES, Frame, Reconstructor, Result, arch_labels
from tests.app_fixtures import SAMPLE, tiny_checkpoints

PHOTO = SAMPLE.with_name("photo_coffee.png")  # 288×192: covers 64 and 128


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    return Reconstructor(tiny_checkpoints(tmp_path_factory.mktemp("pretrained")))


@pytest.fixture(scope="module")
def photo(rec):
    return rec.prepare(PHOTO)


def test_references(rec, photo):
    refs = rec.references(photo.original)
    assert sorted(refs) == [64, 128] and refs[128].shape == (128, 128, 3) and refs[128].dtype == np.uint8
    # the same crop as the 32×32 input: area-averaging the 128 reference lands close to it
    small = np.asarray(Image.fromarray(refs[128]).resize((32, 32), Image.Resampling.BOX), np.float64)
    assert np.abs(small - photo.image).mean() < 4
    cifar = rec.prepare(SAMPLE)
    assert rec.references(cifar.original) == {}  # nothing finer than 32×32 is known
    assert sorted(rec.references(np.zeros((100, 80, 3), np.uint8))) == [64]


# MAMBA's reference scan is sequential in the 16k-token length at 128×128 (~4 s a step even tiny)
@pytest.mark.parametrize("method,out", [(m, o) for m in arch_labels() for o in (64, 128)
                                        if (m, o) != ("mamba", 128)])
def test_models_at_finer_grids(rec, photo, mask, method, out):
    ref = rec.references(photo.original)[out]
    items = list(rec.run(photo.image, mask, method, steps=2, out_size=out, reference=ref))
    frames, result = items[:-1], items[-1]
    assert all(isinstance(f, Frame) for f in frames) and isinstance(result, Result) and len(frames) == 3
    assert frames[0].x_t.shape == frames[-1].x1_hat.shape == (out, out, 3)
    assert all(np.isfinite(f.psnr) for f in frames)
    assert result.image.shape == (out, out, 3) and result.size == out
    m = result.metrics
    assert np.isfinite(m["psnr"]) and np.isfinite(m["psnr_original"]) and -1 <= m["ssim_original"] <= 1
    assert "resized (antialiased)" in result.notes[0]


def test_same_noise_draw_shared_across_grids(rec, photo, mask):
    """The 32×32 run and a finer one are different draws (Q differs); each is reproducible."""
    a = rec.reconstruct(photo.image, mask, "perceiver_io", steps=2, out_size=64, seed=3)
    b = rec.reconstruct(photo.image, mask, "perceiver_io", steps=2, out_size=64, seed=3)
    assert (a.image == b.image).all() and a.notes and "area-averaged" in a.notes[0]


def test_baselines_at_finer_grids(rec, photo, mask):
    tps = rec.reconstruct(photo.image, mask, "tps", out_size=128)
    assert tps.image.shape == (128, 128, 3) and not any("bicubic" in n for n in tps.notes)
    # evaluated on the finer grid, not upsampled: not constant over 4×4 blocks
    assert (tps.image[0::4, 0::4] != tps.image[1::4, 1::4]).any()
    bih = rec.reconstruct(photo.image, mask, "biharmonic", out_size=64,
                          reference=rec.references(photo.original)[64])
    assert bih.image.shape == (64, 64, 3) and any("bicubic" in n for n in bih.notes)
    assert "psnr_original" in bih.metrics
    at32 = rec.reconstruct(photo.image, mask, "tps", out_size=32)
    assert at32.notes == [] and (at32.image[mask] == photo.image[mask]).all()


def test_bad_resolution(rec, photo, mask):
    for bad in (48, 256, "big"):
        with pytest.raises(InputError, match="output resolution"):
            rec.reconstruct(photo.image, mask, "tps", out_size=bad)
    with pytest.raises(InputError, match="64×64"):
        rec.reconstruct(photo.image, mask, "tps", out_size=64, reference=np.zeros((32, 32, 3), np.uint8))
    assert OUT_SIZES == (32, 64, 128)


def test_std_error_corr():
    rng = np.random.default_rng(0)
    std = rng.random((8, 8))
    where = np.ones((8, 8), bool)
    assert scores.std_error_corr(std, 3 * std + 1, where) == pytest.approx(1.0)
    assert scores.std_error_corr(std, -std, where) == pytest.approx(-1.0)
    assert scores.std_error_corr(np.zeros((8, 8)), std, where) is None  # samples that all agree
    where[:] = False
    assert scores.std_error_corr(std, std, where) is None


@pytest.mark.parametrize("out", [32, 128])
def test_calibration_readout(rec, photo, mask, out):
    ref = rec.references(photo.original).get(out) if out > 32 else None
    res = rec.reconstruct(photo.image, mask, "perceiver_io", steps=2, samples=3, out_size=out, reference=ref)
    r = res.metrics["std_error_corr"]
    assert r is not None and -1 <= r <= 1 and res.std.shape == (out, out)
    unobserved = int((~mask).sum()) if out == 32 else out * out
    assert f"over the {unobserved} unobserved pixels" in res.notes[-1] and f"r = {r:.2f}" in res.notes[-1]
    single = rec.reconstruct(photo.image, mask, "perceiver_io", steps=2)
    assert "std_error_corr" not in single.metrics  # K = 1: no spread to compare


def test_handlers_resolution_and_first_page(rec):
    from app.handlers import DISPLAY_SIDE, Handlers

    ev = Handlers(rec)
    state, _, _ = ev.load(str(PHOTO), None)
    assert sorted(state["refs"]) == [64, 128]
    state, _, _ = ev.make_mask(state, "random", 20, 0, None)
    first = ev.initial(state)
    assert first["status"].startswith("Precomputed")
    assert first["result"].shape == (DISPLAY_SIDE, DISPLAY_SIDE, 3)
    assert first["metrics"]["method"] == "tps" and first["state"]["run"]["method"] == "tps"
    outs = list(ev.run(state, "Perceiver IO", 3, "euler", 0, 2, 128, None, *defaults(ev)))
    status, xt, x1, chart, result, mean, std, metrics, download, slider, note, spectrum, state = outs[-1]
    assert "128×128" in status and result.shape == xt.shape == (DISPLAY_SIDE, DISPLAY_SIDE, 3)
    assert (result[0::2, 0::2] == result[1::2, 1::2]).all()  # nearest ×2: crisp squares of 2 px
    assert metrics["size"] == 128 and "psnr_original" in metrics and "std_error_corr" in metrics
    assert "antialiased" in note and "Calibration" in note
    assert len(outs) <= 2 + len(state["frames"])  # one streamed update per frame at most
    assert state["run"]["out_size"] == 128
    status, xt, _ = ev.scrub(state, 1)
    assert "step 1/3" in status and xt.shape == (DISPLAY_SIDE, DISPLAY_SIDE, 3)


def defaults(ev):
    """Every knob control at its default, in the order the handlers take them."""
    return [c.default for c in ev.controls]
