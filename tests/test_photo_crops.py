"""The real-photo evaluation folder: fixed by its seed, 32×32 RGB, one file per crop."""

import numpy as np

from tools import photo_crops


def test_crops_are_fixed_by_the_seed_and_cifar_sized(tmp_path):
    photos = {"ramp": np.tile(np.arange(256, dtype=np.uint8)[:, None, None], (1, 300, 3)),
              "gray": np.random.default_rng(0).integers(0, 256, (200, 240, 3), dtype=np.uint8)}
    a, b = photo_crops.crops(photos, 3, seed=1), photo_crops.crops(photos, 3, seed=1)
    assert sorted(a) == [f"{n}_{i}" for n in ("gray", "ramp") for i in range(3)]
    assert all(v.shape == (32, 32, 3) and v.dtype == np.uint8 for v in a.values())
    assert all((a[k] == b[k]).all() for k in a)
    c = photo_crops.crops(photos, 3, seed=2)
    assert any((a[k] != c[k]).any() for k in a)
    photo_crops.main(["--out", str(tmp_path / "out"), "--per-photo", "1"])
    assert len(list((tmp_path / "out").glob("*.png"))) >= 5  # the bundled photos that need no download
