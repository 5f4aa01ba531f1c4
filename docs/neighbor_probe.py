"""Diagnostic (session 5, not part of the package): can a per-query PointNet over the k nearest
observations regress the pixel values better than thin-plate spline, and how fast?

    python docs/neighbor_probe.py K STEPS DATA_DIR      # measured: 16 300 ../shared/data

It trains a 167k-parameter model (pair MLP of offset, RGB and RGB minus the spline at the query;
mean- and max-pooled; an MLP to a residual on the spline) by plain MSE on 256 random query pixels of
32 images per step, and prints validation PSNR (the same 256 held-out training images and masks as
asf_core.train's validation) against the spline's. On one core beside another job:
step 100 (3,200 images) 22.85 dB, 200: 23.00, 300 (9,600 images): 23.04, against 22.77 for the spline.
The flow-matching models without such a feature stay at the spline's 22.77 after 48,000 images.
"""
import sys, time, torch
from torch import nn
from asf_core.train import TrainConfig, make_batch
from asf_core.data import load_images, to_float
from asf_core.fields import make_mask, observations, pixel_coords, image_to_values
from asf_core.ops.interp import tps_interpolate
from asf_core.ops.neighbors import radius_neighbors

K = int(sys.argv[1]) if len(sys.argv) > 1 else 16
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 400
torch.manual_seed(0)

class NB(nn.Module):
    def __init__(s, k=16, h=128):
        super().__init__()
        s.k = k
        s.pair = nn.Sequential(nn.Linear(2 + 3 + 3 + 1, h), nn.GELU(), nn.Linear(h, h), nn.GELU(), nn.Linear(h, h))
        s.out = nn.Sequential(nn.Linear(2 * h + 3, 2 * h), nn.GELU(), nn.Linear(2 * h, 2 * h), nn.GELU(), nn.Linear(2 * h, 3))
        nn.init.zeros_(s.out[-1].weight); nn.init.zeros_(s.out[-1].bias)
    def forward(s, qxy, oxy, orgb, tps):
        idx, valid, d2 = radius_neighbors(qxy, oxy, s.k, 10.0)
        g = lambda t: t.gather(1, idx.flatten(1)[..., None].expand(-1, -1, t.shape[-1])).view(*idx.shape, t.shape[-1])
        delta = (g(oxy) - qxy[:, :, None]) * 15.5
        rgb = g(orgb)
        f = torch.cat([delta, rgb, rgb - tps[:, :, None], delta.norm(dim=-1, keepdim=True)], -1)
        e = s.pair(f)
        pooled = torch.cat([e.mean(2), e.amax(2), tps], -1)
        return tps + s.out(pooled)

cfg = TrainConfig(batch_size=32, n_queries=256)
DATA = sys.argv[3] if len(sys.argv) > 3 else None
tr = load_images("cifar10", "train", DATA)
val = load_images("cifar10", "val", DATA, limit=256)
net = NB(K)
opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01)
gen = torch.Generator().manual_seed(0)

@torch.no_grad()
def evaluate():
    g = torch.Generator().manual_seed(10_000)
    x = to_float(val)
    m = make_mask(len(x), 32, 32, 0.2, generator=g)
    ps, pt = [], []
    for xb, mb in zip(x.split(64), m.split(64)):
        oxy, orgb = observations(xb, mb)
        q = pixel_coords(32, 32)[None].expand(len(xb), -1, -1).contiguous()
        tps = tps_interpolate(oxy, orgb, q)
        pred = net(q, oxy, orgb, tps)
        truth = image_to_values(xb)
        keep = mb.flatten(1)[..., None]
        for p_, out in ((pred, ps), (tps, pt)):
            p_ = torch.where(keep, truth, p_.clamp(-1, 1))
            mse = ((p_ - truth) / 2).square().mean((1, 2))
            out.append(10 * torch.log10(1 / mse))
    return torch.cat(ps).mean().item(), torch.cat(pt).mean().item()

t0 = time.time()
print("params", sum(p.numel() for p in net.parameters()), "init", evaluate(), flush=True)
for step in range(1, STEPS + 1):
    bt = make_batch(tr, cfg, gen, torch.device("cpu"))
    tps = tps_interpolate(bt["obs_xy"], bt["obs_rgb"], bt["query_xy"])
    pred = net(bt["query_xy"], bt["obs_xy"], bt["obs_rgb"], tps)
    loss = (pred - bt["x_1"]).square().mean()
    opt.zero_grad(); loss.backward(); opt.step()
    if step % 100 == 0:
        print(step, step * 32, round(loss.item(), 5), evaluate(), round(time.time() - t0), flush=True)
