"""mamba_ssm's CUDA kernels against our reference: skipped without CUDA or without mamba_ssm.

One state dict loads strictly into mamba_ssm.Mamba and our MambaBlock; outputs and gradients agree
in fp32 with TF32 off (rtol 6e-4, atol 2e-3), both with our reference scan and through the kernel.
"""

import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device", allow_module_level=True)
mamba_ssm = pytest.importorskip("mamba_ssm")
from mamba_ssm import Mamba  # noqa: E402
from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: E402

from asf_core.models.mamba import PRESETS, MambaBlock, MambaConfig, MambaField  # noqa: E402
from asf_core.ops import selective_scan as ss  # noqa: E402

RTOL, ATOL = 6e-4, 2e-3
DEV = "cuda"


@pytest.fixture(autouse=True)
def no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def close(a, b):
    return torch.allclose(a.float(), b.float(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("use_fast_path", [False, True])
def test_block_state_dict_outputs_and_gradients_match_mamba_ssm(use_fast_path):
    torch.manual_seed(0)
    theirs = Mamba(d_model=64, d_state=16, d_conv=4, expand=2).to(DEV)
    ours = MambaBlock(64, d_state=16, d_conv=4, expand=2, use_fast_path=use_fast_path).to(DEV)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(4, 333, 64, device=DEV)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y1, y2 = theirs(x1), ours(x2)
    assert close(y2, y1)
    gy = torch.randn_like(y1)
    (y1 * gy).sum().backward()
    (y2 * gy).sum().backward()
    assert close(x2.grad, x1.grad)
    p1 = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert close(p.grad, p1[name].grad), name


@pytest.mark.parametrize("length", [37, 1229])
def test_scan_ref_matches_kernel(length):
    g = torch.Generator(device=DEV).manual_seed(0)
    r = lambda *s: torch.randn(*s, device=DEV, generator=g)  # noqa: E731
    b, d, n = 2, 64, 16
    args = dict(u=r(b, d, length), delta=0.5 * r(b, d, length), A=-torch.exp(r(d, n)), B=r(b, n, length),
                C=r(b, n, length), D=r(d), z=r(b, d, length), delta_bias=r(d) - 2.0)
    a1 = {k: v.clone().requires_grad_(True) for k, v in args.items()}
    a2 = {k: v.clone().requires_grad_(True) for k, v in args.items()}
    o1, s1 = selective_scan_fn(**a1, delta_softplus=True, return_last_state=True)
    o2, s2 = ss.selective_scan_ref(**a2, delta_softplus=True, return_last_state=True)
    assert close(o2, o1) and close(s2, s1)
    gy = torch.randn_like(o1)
    (o1 * gy).sum().backward()
    (o2 * gy).sum().backward()
    for k in args:
        scale = a1[k].grad.abs().max().clamp(min=1.0)  # A and delta_bias sum over B·L terms
        assert close(a2[k].grad / scale, a1[k].grad / scale), k


def test_dispatch_uses_kernel_on_cuda_unless_forced(monkeypatch):
    u = torch.zeros(1, 2, 3, device=DEV)
    assert ss.fast_path_available(u)
    monkeypatch.setenv("ASF_FORCE_REF_SCAN", "1")
    assert not ss.fast_path_available(u)


def test_field_fast_path_matches_reference():
    torch.manual_seed(0)
    cfg = dict(PRESETS["tiny"], d_state=16)
    fast = MambaField(MambaConfig(**cfg, use_fast_path=True)).to(DEV).eval()
    ref = MambaField(MambaConfig(**cfg, use_fast_path=False)).to(DEV).eval()
    with torch.no_grad():
        for p in fast.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ref.load_state_dict(fast.state_dict(), strict=True)
    g = torch.Generator(device=DEV).manual_seed(1)
    x = dict(x_t=torch.randn(2, 64, 3, device=DEV, generator=g), t=torch.rand(2, device=DEV, generator=g),
             query_xy=torch.rand(64, 2, device=DEV, generator=g) * 2 - 1,
             obs_xy=torch.rand(2, 40, 2, device=DEV, generator=g) * 2 - 1,
             obs_rgb=torch.rand(2, 40, 3, device=DEV, generator=g) * 2 - 1)
    assert close(fast(**x), ref(**x))
