"""Train a velocity model by conditional flow matching on sparse observations.

    python -m asf_core.train --arch perceiver_io --preset small --data-dir DIR --out RUN_DIR --max-steps N
    torchrun --nproc_per_node 2 -m asf_core.train ...      # DDP: gloo on CPU, nccl on GPU

Each step draws a batch, a random 20% observation mask per image, a random subset of query pixels
(n_queries of H·W; the loss needs no more to cut cost), a source x_0 and a time t, and regresses
the model's velocity on u = x_1 - x_0 (asf_core.flow). The run folder holds:
    state.pt        resume state (model, EMA, optimiser, scheduler, RNG states, step), read with
                    torch.load(weights_only=True)
    last/           EMA weights + config.json at the last checkpoint
    best/           EMA weights + config.json with the best validation PSNR so far
    metrics.jsonl   one line per log / validation event
Flags are generated from the `TrainConfig` fields, so each flag and its default are written once.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from asf_core.checkpoint import (
    STATE_NAME,
    CheckpointError,
    atomic_write,
    load_model,
    load_state,
    save_pretrained,
    save_state,
    weight_mismatch,
)
from asf_core.data import DataError, load_images, to_float
from asf_core.fields import check_fraction, image_to_values, make_mask, observations, pixel_coords
from asf_core.flow import SOURCES, T_SAMPLERS, flow_matching_loss, mean_loss
from asf_core.metrics import image_metrics
from asf_core.models import MODELS, build_model, make_config
from asf_core.models.encoder import GridEncoder
from asf_core.reconstruct import reconstruct

ADDABLE_MODULES = ("neighbor_enc.",)  # may be missing from --init-from weights (zero-initialised)
OBJECTIVES = ("flow", "mean")
# the grid encoder's weights, shared between checkpoints
ENCODER = "obs_encoder."


@dataclass
class TrainConfig:
    arch: str = "perceiver_io"  # one of asf_core.models.MODELS
    preset: str = "small"  # model preset: tiny, small, paper
    model_overrides: str = ""  # model config fields, e.g. "d_model=128,num_layers=2"
    dataset: str = "cifar10"  # cifar10, synthetic, or a folder of images
    data_dir: str = ""  # CIFAR-10 root (else $ASF_DATA_DIR, else a cache folder with download)
    out: str = "runs/default"  # run folder
    max_steps: int = 20_000
    batch_size: int = 32  # per process
    lr: float = 5e-4
    warmup_steps: int = 500
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    obs_fraction: float = 0.2
    n_queries: int = 256  # query pixels per image per step
    source: str = "noise"  # noise | interp (asf_core.flow)
    sigma: float = 1.0  # std of the source noise
    t_sampler: str = "uniform"  # uniform | logit_normal
    t_zero_prob: float = 0.0  # fraction of each batch trained at t = 0 (the posterior-mean point)
    flip: bool = True  # random horizontal flips
    seed: int = 0
    log_every: int = 50
    ckpt_every: int = 500
    val_every: int = 1000
    val_n: int = 256  # validation images (from the held-out slice of the training set)
    val_steps: int = 10  # Euler steps for the validation sample
    device: str = "auto"  # auto, cpu, cuda
    compile: bool = False  # torch.compile the model
    resume: bool = False
    init_from: str = ""  # start from these weights (a run or pretrained folder), e.g. to fine-tune
    # "flow": the flow-matching loss; "mean": the grid encoder's x̂ alone, regressed on the data (the
    # encoder never sees x_t or t, so it can be trained once and shared by every architecture)
    objective: str = "flow"
    encoder_from: str = ""  # start the grid encoder (obs_encoder.*) from this checkpoint's
    freeze_encoder: bool = False  # keep the grid encoder fixed: only the mixer trains


def model_overrides(cfg: TrainConfig) -> dict:
    """--model-overrides, plus the training source for a model with a prior velocity (its prior
    must describe the x_0 it is trained from)."""
    out = parse_overrides(cfg.model_overrides)
    if make_config(cfg.arch, cfg.preset, **out).prior != "none":
        out.update(prior_source=cfg.source, prior_sigma=cfg.sigma)
    return out


def parse_overrides(text: str) -> dict:
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"model override {item!r} is not key=value")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def load_encoder(model: torch.nn.Module, path: str) -> None:
    """Copy the grid encoder's weights from a checkpoint (its `obs_encoder.*`) into `model`'s."""
    if not isinstance(getattr(model, "obs_encoder", None), GridEncoder):
        raise ValueError("--encoder-from needs a model with a grid encoder (a preset with `encoder`)")
    weights = {k[len(ENCODER):]: v for k, v in load_model(path).state_dict().items() if k.startswith(ENCODER)}
    detail = weight_mismatch(model.obs_encoder.state_dict(), weights)
    if detail:
        raise CheckpointError(f"--encoder-from {path}: its encoder does not match this model's ({detail})")
    model.obs_encoder.load_state_dict(weights)


def check_config(cfg: TrainConfig) -> None:
    """Fail early, with one line, on arguments that cannot work."""
    if cfg.arch not in MODELS:
        raise ValueError(f"unknown architecture {cfg.arch!r}; choose from {', '.join(MODELS)}")
    check_fraction(cfg.obs_fraction)
    if cfg.source not in SOURCES:
        raise ValueError(f"unknown source {cfg.source!r}; choose from {', '.join(SOURCES)}")
    if cfg.t_sampler not in T_SAMPLERS:
        raise ValueError(f"unknown t sampler {cfg.t_sampler!r}; choose from {', '.join(T_SAMPLERS)}")
    if cfg.objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {cfg.objective!r}; choose from {', '.join(OBJECTIVES)}")
    if not 0.0 <= cfg.t_zero_prob < 1.0:
        raise ValueError(f"--t-zero-prob must be in [0, 1), got {cfg.t_zero_prob}")
    for name in ("max_steps", "batch_size", "n_queries", "ckpt_every", "val_every", "log_every", "val_steps",
                 "val_n"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise ValueError(f"--out {cfg.out}: is a file; a run is a folder (it holds last/, best/, state.pt)")
    # the model's own one-line errors, before any data
    make_config(cfg.arch, cfg.preset, **model_overrides(cfg))


# what a resumed run must share with the run it continues: anything else changes the model or its task
RESUME_KEYS = ("arch", "preset", "model_overrides", "objective", "source", "sigma", "dataset", "obs_fraction")


def check_resume(cfg: TrainConfig) -> dict | None:
    """The state to resume from, None to start afresh (said on stderr), or ValueError when the
    run in --out is of another architecture, preset or task."""
    path = Path(cfg.out) / STATE_NAME
    if not cfg.resume:
        return None
    if not path.is_file():
        print(f"--resume: {cfg.out} holds no {STATE_NAME}; starting from step 0", file=sys.stderr)
        return None
    state = load_state(path)
    before = state.get("config", {})
    changed = [k for k in RESUME_KEYS if k in before and before[k] != getattr(cfg, k)]
    if changed:
        was = ", ".join(f"--{k.replace('_', '-')} {before[k]!r}" for k in changed)
        now = ", ".join(f"{getattr(cfg, k)!r}" for k in changed)
        raise ValueError(f"--resume {cfg.out}: that run was trained with {was}, not {now}; "
                         f"give another --out, or the same settings")
    return state


def cut_log(log: Path, step: int) -> None:
    """Drop the log lines past `step`: a killed run logged steps its last checkpoint does not hold,
    and the resumed run logs them again."""
    if not log.is_file():
        return
    lines = log.read_text().splitlines(keepends=True)
    kept = [line for line in lines if json.loads(line).get("step", 0) <= step] if lines else []
    if len(kept) < len(lines):
        atomic_write(log, lambda p: Path(p).write_text("".join(kept)))


def ema_update(decay: float):
    """EMA with warm-up, min(decay, (1 + n) / (10 + n)) after n updates: a fixed 0.999 would keep
    60% of the untrained initial weights after 500 steps and make early validation meaningless."""

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor) -> None:
        d = min(decay, (1 + float(n)) / (10 + float(n)))
        torch._foreach_lerp_(averaged, current, 1 - d)

    return update


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10% at max_steps."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def make_batch(images: torch.Tensor, cfg: TrainConfig, gen: torch.Generator, device: torch.device) -> dict:
    """Observed points and a random query subset of a random batch (all randomness from `gen`)."""
    idx = torch.randint(len(images), (cfg.batch_size,), generator=gen)
    x = to_float(images[idx])  # (B, 3, H, W)
    if cfg.flip:
        flip = torch.rand(cfg.batch_size, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    b, _, h, w = x.shape
    mask = make_mask(b, h, w, cfg.obs_fraction, generator=gen)
    obs_xy, obs_rgb = observations(x, mask)
    q = min(cfg.n_queries, h * w)
    # sorted: a full set of queries comes in row-major order, the grid a U-Net needs
    q_idx = torch.rand(b, h * w, generator=gen).argsort(dim=1)[:, :q].sort(dim=1).values  # (B, Q)
    query_xy = pixel_coords(h, w)[q_idx]  # (B, Q, 2)
    x_1 = image_to_values(x).gather(1, q_idx[..., None].expand(-1, -1, 3))  # (B, Q, 3)
    batch = dict(x_1=x_1, query_xy=query_xy, obs_xy=obs_xy, obs_rgb=obs_rgb)
    return {k: v.to(device) for k, v in batch.items()}


def train_step(net, model, batch: dict, opt, cfg: TrainConfig, gen: torch.Generator, extra: dict,
               autocast=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step of the flow-matching loss (`net` may be model's DDP or compiled
    wrapper; gradients are clipped on `model`). Returns the loss and the gradient norm."""
    with autocast or nullcontext():
        if cfg.objective == "mean":
            loss = mean_loss(model.obs_encoder, **batch)
        else:
            loss = flow_matching_loss(net, **batch, source=cfg.source, sigma=cfg.sigma,
                                      t_sampler=cfg.t_sampler,
                                      t_zero_prob=cfg.t_zero_prob, generator=gen, **extra)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return loss, grad_norm


@torch.no_grad()
def validate(model, images: torch.Tensor, cfg: TrainConfig, device: torch.device) -> dict:
    """PSNR of the one-step posterior mean and of one Euler sample, on fixed masks and noise."""
    gen = torch.Generator().manual_seed(10_000 + cfg.seed)
    x = to_float(images[: cfg.val_n])
    mask = make_mask(len(x), x.shape[2], x.shape[3], cfg.obs_fraction, generator=gen)
    scores = {"val_psnr_onestep": [], "val_psnr_sample": []}
    for xb, mb in zip(x.split(64), mask.split(64)):
        rec = reconstruct(model, xb, mb, steps=cfg.val_steps, solver="euler", generator=gen,
                          source=cfg.source, sigma=cfg.sigma)
        scores["val_psnr_onestep"].append(image_metrics(rec.onestep, xb, mb)["psnr"])
        scores["val_psnr_sample"].append(image_metrics(rec.sample, xb, mb)["psnr"])
    return {k: float(np.concatenate(v).mean()) for k, v in scores.items()}


def train(cfg: TrainConfig, stop_at: int | None = None) -> Path:
    """Run (or resume) training. `stop_at` ends the process's work after that step, as a kill would."""
    check_config(cfg)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    use_cuda = torch.cuda.is_available() if cfg.device == "auto" else cfg.device == "cuda"
    if distributed:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if use_cuda else "cpu")
    out = Path(cfg.out)
    state = check_resume(cfg)

    train_images = load_images(cfg.dataset, "train", cfg.data_dir or None)
    val_images = load_images(cfg.dataset, "val", cfg.data_dir or None, limit=cfg.val_n)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    model = build_model(cfg.arch, cfg.preset, **model_overrides(cfg)).to(device)
    ema = AveragedModel(model, multi_avg_fn=ema_update(cfg.ema_decay), use_buffers=True)
    ema.eval()  # the EMA copy is only evaluated and saved, never trained: no dropout in validation
    if cfg.objective == "mean" and not isinstance(getattr(model, "obs_encoder", None), GridEncoder):
        raise ValueError(f"--objective mean trains a grid encoder; {cfg.arch} --preset {cfg.preset} has none")
    if cfg.encoder_from:
        load_encoder(model, cfg.encoder_from)
    if cfg.freeze_encoder:
        model.obs_encoder.requires_grad_(False)
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue  # no weight decay on norms, biases, SSM A_log / D
        (no_decay if p.dim() < 2 or getattr(p, "_no_weight_decay", False) else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.99),
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)  # data, masks, queries, t, x_0
    torch.manual_seed(cfg.seed * 1000 + rank)  # dropout
    step, seen, wall, best = 0, 0, 0.0, -math.inf

    if cfg.init_from and state is None:
        # released weights are the EMA: start both the model and its average from them
        # a module the released model lacks (a neighbour encoder) may start fresh: it is
        # zero-initialised, so the model starts as the released one; anything else must match
        released = load_model(cfg.init_from).state_dict()
        detail = weight_mismatch(model.state_dict(), released, addable=ADDABLE_MODULES)
        if detail:
            raise CheckpointError(f"--init-from {cfg.init_from}: weights do not match {cfg.arch} with these "
                                  f"settings ({detail})")
        model.load_state_dict(released, strict=False)
        ema.module.load_state_dict(model.state_dict())

    if state is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["rng"]["data"][rank])
        torch.set_rng_state(state["rng"]["torch"][rank])
        if use_cuda and state["rng"].get("cuda"):
            torch.cuda.set_rng_state(state["rng"]["cuda"][rank])
        step, seen, wall, best = state["step"], state["images_seen"], state["wall_seconds"], state["best_val"]
        if rank == 0:
            print(f"resumed from {out / 'state.pt'} at step {step}", file=sys.stderr)

    net = torch.compile(model) if cfg.compile else model
    if distributed:
        net = DistributedDataParallel(net, device_ids=[device.index] if use_cuda else None)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_cuda else nullcontext()
    train_meta = {**asdict(cfg), "world_size": world, "image_size": int(train_images.shape[-1])}
    log = (out / "metrics.jsonl") if rank == 0 else None
    if log:
        cut_log(log, step)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    def gather_rng(state: torch.Tensor) -> list[torch.Tensor]:
        if not distributed:
            return [state]
        parts = [torch.empty_like(state) for _ in range(world)]
        dist.all_gather_object(parts, state)
        return parts

    def checkpoint(val: dict | None) -> None:
        nonlocal best
        rngs = {"data": gather_rng(gen.get_state()), "torch": gather_rng(torch.get_rng_state())}
        if use_cuda:
            rngs["cuda"] = gather_rng(torch.cuda.get_rng_state())
        if rank != 0:
            return
        meta = {**train_meta, "step": step, "images_seen": seen, "wall_seconds": round(wall, 1)}
        save_pretrained(ema.module, out / "last", arch=cfg.arch, train=meta, metrics=val or {})
        if val and val["val_psnr_onestep"] > best:
            best = val["val_psnr_onestep"]
            save_pretrained(ema.module, out / "best", arch=cfg.arch, train=meta, metrics=val)
        save_state(out / "state.pt", {
            "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "rng": rngs, "step": step, "images_seen": seen,
            "wall_seconds": wall, "best_val": best, "config": asdict(cfg),
        })

    pbar = tqdm(total=cfg.max_steps, initial=step, disable=rank != 0, dynamic_ncols=True, mininterval=2.0)
    extra_kwargs = getattr(model, "training_kwargs", None)
    model.train()
    t_log, n_log = time.time(), 0
    while step < cfg.max_steps:
        t0 = time.time()
        batch = make_batch(train_images, cfg, gen, device)
        extra = extra_kwargs(cfg.batch_size, gen) if extra_kwargs else {}
        loss, grad_norm = train_step(net, model, batch, opt, cfg, gen, extra, autocast)
        sched.step()
        ema.update_parameters(model)
        step += 1
        seen += cfg.batch_size * world
        wall += time.time() - t0
        n_log += cfg.batch_size * world
        pbar.update(1)
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            rate = n_log / max(time.time() - t_log, 1e-9)
            pbar.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{rate:.1f}")
            if log:
                with log.open("a") as f:
                    f.write(json.dumps({"step": step, "images_seen": seen, "loss": loss.item(),
                                        "grad_norm": float(grad_norm), "lr": sched.get_last_lr()[0],
                                        "images_per_s": rate, "wall_seconds": wall}) + "\n")
            t_log, n_log = time.time(), 0
        val = None
        if rank == 0 and (step % cfg.val_every == 0 or step == cfg.max_steps):
            val = validate(ema.module, val_images, cfg, device)
            pbar.write(f"step {step}: " + ", ".join(f"{k} {v:.2f} dB" for k, v in val.items()))
            if log:
                with log.open("a") as f:
                    f.write(json.dumps({"step": step, "images_seen": seen, "wall_seconds": wall,
                                        **val}) + "\n")
        # every validation checkpoints too, so best/ can hold the step that scored best (the
        # condition is the same on every rank: checkpoint() gathers RNG states from all of them)
        if step % cfg.ckpt_every == 0 or step % cfg.val_every == 0 or step in (cfg.max_steps, stop_at):
            checkpoint(val)
        if step == stop_at:
            break
    pbar.close()
    if distributed:
        dist.destroy_process_group()
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m asf_core.train", description=__doc__.split("\n")[0])
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default, metavar=f.name.upper())
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    cfg = TrainConfig(**vars(args))
    try:
        train(cfg)
    except (ValueError, DataError, CheckpointError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
