"""Velocities of every shipped checkpoint on one fixed batch, to show a refactor leaves them unchanged.

    python tools/velocity_reference.py            # writes tests/data/velocities.safetensors

tests/test_velocities.py recomputes them with the current code and asserts they are identical.
Symbols: B=2 images of 32x32 · N observed pixels (20%) · Q=64 queries (an 8x8 grid) · t=0.3.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file

from asf_core.checkpoint import load_model
from asf_core.fields import make_mask, observations, pixel_coords

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "pretrained"
REFERENCE = ROOT / "tests" / "data" / "velocities.safetensors"


def fixed_batch() -> dict[str, torch.Tensor]:
    """The forward's inputs, drawn from one seeded generator (same on every machine)."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    obs_xy, obs_rgb = observations(images, make_mask(2, 32, 32, 0.2, generator=g))  # (B, N, 2), (B, N, 3)
    # an 8x8 grid of pixel centres, between the 32x32 ones: the U-Net answers only on a full grid
    query_xy = pixel_coords(8, 8).expand(2, -1, -1)  # (B, Q, 2)
    x_t = torch.randn(2, 64, 3, generator=g)  # (B, Q, 3)
    return {"x_t": x_t, "t": torch.full((2,), 0.3), "query_xy": query_xy, "obs_xy": obs_xy,
            "obs_rgb": obs_rgb}


@torch.no_grad()
def velocities(pretrained: Path = PRETRAINED) -> dict[str, torch.Tensor]:
    """{release name: (B, Q, 3) velocity} for every checkpoint folder in `pretrained`."""
    batch = fixed_batch()
    out = {}
    for folder in sorted(p for p in pretrained.iterdir() if (p / "config.json").is_file()):
        out[folder.name] = load_model(folder)(**batch).float().contiguous()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REFERENCE)
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))  # as the tests run (tests/conftest.py)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(velocities(), str(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
