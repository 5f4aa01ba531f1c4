"""Shared by the app tests: a folder of tiny, randomly perturbed checkpoints (every architecture,
MAMBA at two d_state values, one broken folder) and a rank-16 linear-MMSE release, so no test
depends on what pretrained/ holds."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from asf_core import lmmse
from asf_core.checkpoint import save_pretrained
from asf_core.models import build_model

TINY = {"perceiver_io_grid": ("perceiver_io", {}), "local_implicit_grid": ("local_implicit", {}),
        "mamba_d8_grid": ("mamba", {"d_state": 8}), "mamba_d16_grid": ("mamba", {"d_state": 16}),
        "hybrid_grid": ("hybrid", {})}
SAMPLE = Path(__file__).resolve().parents[1] / "app" / "samples" / "cifar_0000_cat.png"


def tiny_checkpoints(root: Path) -> Path:
    torch.manual_seed(0)
    for name, (arch, overrides) in TINY.items():
        model = build_model(arch, "tiny", **overrides)
        with torch.no_grad():  # the zero-initialised heads would make every output v = 0
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        save_pretrained(model, root / name, arch=arch)
    basis = torch.linalg.qr(torch.randn(3 * 32 * 32, 16)).Q  # any orthonormal basis: a valid Gaussian
    lmmse.save_release(lmmse.LowRank(torch.zeros(3 * 32 * 32), basis.half(), torch.linspace(20, 1, 16), 0.05,
                                     (32, 32)), root / "lmmse_cifar10")
    (root / "broken").mkdir(exist_ok=True)
    (root / "broken" / "config.json").write_text("{not json")
    return root


@contextmanager
def serve(demo) -> Iterator[str]:
    """Launch a built app on a free port of 127.0.0.1 with app.py's queue and launch settings."""
    from app.ui import LAUNCH, QUEUE

    demo.queue(**QUEUE)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **LAUNCH)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
