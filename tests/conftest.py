"""Shared test set-up: CPU only, no network, small thread counts, and the optional CIFAR-10 folder."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))
ROOT = Path(__file__).resolve().parents[1]


def cifar_dir() -> Path | None:
    """CIFAR-10 root from $ASF_DATA_DIR, or None when the data is absent."""
    root = os.environ.get("ASF_DATA_DIR")
    if root and (Path(root) / "cifar-10-batches-py").is_dir():
        return Path(root)
    return None


@pytest.fixture
def cifar_root() -> Path:
    root = cifar_dir()
    if root is None:
        pytest.skip("CIFAR-10 not found: set ASF_DATA_DIR to a folder holding cifar-10-batches-py")
    return root


# the app tests' shared inputs; each of those modules defines its own `rec` (a Reconstructor)
@pytest.fixture(scope="module")
def image():
    """The first bundled CIFAR-10 sample, (32, 32, 3) uint8."""
    import numpy as np
    from PIL import Image

    from tests.app_fixtures import SAMPLE

    return np.asarray(Image.open(SAMPLE).convert("RGB"))


@pytest.fixture(scope="module")
def mask(rec):
    return rec.make_mask("random", 0.2, seed=0)
