"""The shipped checkpoints' velocities on a fixed batch are exactly those recorded before a refactor.

The reference is tests/data/velocities.safetensors, written by tools/velocity_reference.py from the
code as it was. On one machine the CPU forward is deterministic, but another CPU may run other SIMD
kernels whose float32 sums round differently (2.4e-7 for the hybrid on one AMD EPYC), so the check is
a tolerance far below any change a refactor could make to a velocity of order 1.
"""

import torch
from safetensors.torch import load_file

from tools.velocity_reference import PRETRAINED, REFERENCE, fixed_batch, velocities

ROUNDING = 1e-5  # float32 rounding across CPUs; a changed computation moves velocities by far more


def test_every_checkpoint_has_a_reference():
    shipped = {p.name for p in PRETRAINED.iterdir() if (p / "config.json").is_file()}
    assert shipped == set(load_file(str(REFERENCE)))


def test_velocities_unchanged():
    reference = load_file(str(REFERENCE))
    for name, v in velocities().items():
        diff = (v - reference[name]).abs().max().item()
        assert diff <= ROUNDING, f"{name}: max abs difference {diff:.3g}"


# with weights asked for, attention runs as an explicit softmax instead of the fused kernel, so the
# velocity agrees to float32 rounding (1.2e-7 for Perceiver IO), not bit for bit
@torch.no_grad()
def test_attention_read_out_leaves_velocity_alone():
    from asf_core.checkpoint import load_model

    batch, reference = fixed_batch(), load_file(str(REFERENCE))
    for name in ("perceiver_io_grid", "local_implicit_grid", "mamba_d16_grid"):
        v, _ = load_model(PRETRAINED / name)(**batch, return_attention=True)
        assert (v.float() - reference[name]).abs().max().item() <= 1e-6, name
