"""Train the 3-D grid encoder (asf_core.models.encoder3d) to regress x̂, the posterior mean of the
missing voxels, from the observed ones; then export it as a release folder.

    python tools/train_volume_encoder.py train --out runs/volume_encoder_small --max-minutes 45 --resume
    python tools/train_volume_encoder.py export --out runs/volume_encoder_small \
        --to pretrained/volume_encoder_small --eval docs/eval_volumes_model.json

Training data is an endless stream of procedural volumes from asf_core.volumes' TRAIN_SEED: step s
reads volumes s·B … s·B + B - 1 of that split, so a resumed run sees the volumes it would have seen.
Each batch observes one fraction drawn uniformly from [min_fraction, max_fraction] (5% to 20%, the
two evaluated settings and everything between), with masks drawn from the step's own generator. The
loss is the MSE of x̂ on the missing voxels (the "mean" objective of the 2-D grid encoder). AdamW with
linear warm-up then cosine decay; the schedule's progress is the larger of steps done / max_steps and
wall time / max_minutes, so a time-boxed run still anneals to zero by its deadline. Validation: PSNR
of the EMA weights on the missing voxels of the first val_n VAL_SEED volumes at 20% and 5%, fixed
masks, appended to `curve.json` in the run folder; `state.pt` (weights, EMA, optimiser, counters)
is written every ckpt_minutes and at the end, and read back with --resume (torch.load weights_only).

Symbols: B batch · D grid side · V = D³ voxels.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from asf_core import volumes
from asf_core.checkpoint import atomic_write, atomic_write_folder
from asf_core.models.encoder3d import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    VolumeEncoder,
    config_from_dict,
    config_to_dict,
    fill_volumes,
    preset,
)

STATE_NAME, CURVE_NAME = "state.pt", "curve.json"
HARDWARE = "x86_64, 2 CPU cores"
BASES = {"quadratic": "a local quadratic fit to the observations (Gaussian-weighted least squares, width "
                      "0.72 observation spacings; also a U-Net input)",
         "setconv": "SetConv's normalised values"}


@dataclass
class TrainConfig:
    out: str = "runs/volume_encoder_small"  # run folder (state.pt, curve.json)
    preset: str = "small"  # asf_core.models.encoder3d.PRESETS
    size: int = volumes.VOLUME_SIZE  # grid side D of the training volumes
    batch_size: int = 4
    max_steps: int = 100_000
    max_minutes: float = 0.0  # stop after this much training wall time, summed over resumes (0: none)
    lr: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    min_fraction: float = 0.05
    max_fraction: float = 0.2
    seed: int = volumes.TRAIN_SEED  # the volume stream; masks use (seed, step) too
    val_n: int = 8
    val_every: int = 200
    ckpt_minutes: float = 3.0
    threads: int = 2
    resume: bool = False


# ---------------------------------------------------------------- data


def _state_seed(*key: int) -> int:
    # the hashing asf_core.volumes.procedural_volumes uses, so volume i here is its volume i
    return int(np.random.SeedSequence(list(key)).generate_state(1)[0])


def stream_volumes(seed: int, start: int, n: int, d: int) -> torch.Tensor:
    """Volumes start … start + n - 1 of a split: (n, 3, D, D, D), equal to procedural_volumes' slice."""
    return torch.stack([volumes.random_volume(d, torch.Generator().manual_seed(_state_seed(seed, i)))
                        for i in range(start, start + n)])


def batch_at(cfg: TrainConfig, step: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The step's volumes (B, 3, D, D, D), masks (B, D, D, D) and observed fraction."""
    g = torch.Generator().manual_seed(_state_seed(cfg.seed, 1 << 30, step))  # apart from the volumes'
    fraction = cfg.min_fraction + (cfg.max_fraction - cfg.min_fraction) * float(torch.rand(1, generator=g))
    vols = stream_volumes(cfg.seed, step * cfg.batch_size, cfg.batch_size, cfg.size)
    return vols, volumes.make_mask_3d(cfg.batch_size, cfg.size, fraction, g), fraction


def val_set(cfg: TrainConfig) -> dict[float, tuple[torch.Tensor, torch.Tensor]]:
    vols = volumes.procedural_volumes(cfg.val_n, cfg.size, volumes.VAL_SEED)
    return {f: (vols, volumes.make_mask_3d(cfg.val_n, cfg.size, f, torch.Generator().manual_seed(0)))
            for f in volumes.OBSERVED_FRACTIONS}


@torch.no_grad()
def validate(model: VolumeEncoder, val: dict) -> dict[str, float]:
    model.eval()
    out = {}
    for f, (vols, mask) in val.items():
        pred = torch.cat([fill_volumes(model, vols[i:i + 1], mask[i:i + 1]) for i in range(len(vols))])
        out[f"val_psnr_missing_{round(f * 100)}"] = float(volumes.volume_psnr(pred, vols, ~mask).mean())
    model.train()
    return out


# ---------------------------------------------------------------- training


def lr_factor(cfg: TrainConfig, step: int, wall: float) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = step / cfg.max_steps
    if cfg.max_minutes > 0:
        progress = max(progress, wall / (60 * cfg.max_minutes))
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def save_state(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def train(cfg: TrainConfig, command: str) -> None:
    torch.set_num_threads(cfg.threads)
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    model = VolumeEncoder(preset(cfg.preset))
    ema = VolumeEncoder(model.config)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.dim() > 1 else no_decay).append(p)  # no weight decay on biases, norms, ℓ
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    step, wall, seen, commands, curve = 0, 0.0, 0, [], []
    state_path = run / STATE_NAME
    if cfg.resume and state_path.exists():
        st = torch.load(state_path, weights_only=True)
        model.load_state_dict(st["model"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        step, wall, seen, commands = st["step"], st["wall_seconds"], st["volumes_seen"], st["commands"]
        print(f"resumed {run} at step {step} ({seen} volumes, {wall / 60:.1f} min)", flush=True)
    elif cfg.resume:
        print(f"--resume: {run} holds no {STATE_NAME}; starting from step 0", flush=True)
    if (run / CURVE_NAME).exists() and step > 0:
        curve = [c for c in json.loads((run / CURVE_NAME).read_text()) if c["step"] <= step]
    commands = [*commands, command]
    val = val_set(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{cfg.preset}: {n_params / 1e6:.2f}M parameters, batch {cfg.batch_size}, D={cfg.size}", flush=True)

    def checkpoint() -> None:
        save_state(state_path, {"model": model.state_dict(), "ema": ema.state_dict(),
                                "opt": opt.state_dict(), "step": step, "wall_seconds": wall,
                                "volumes_seen": seen, "commands": commands, "train": json.dumps(asdict(cfg)),
                                "model_config": json.dumps(config_to_dict(model.config))})

    def log_val() -> None:
        m = validate(ema, val)
        curve.append({"step": step, "volumes_seen": seen, "wall_seconds": round(wall, 1), **m})
        atomic_write(run / CURVE_NAME, lambda tmp: Path(tmp).write_text(json.dumps(curve, indent=1) + "\n"))
        print(f"step {step}: " + ", ".join(f"{k} {v:.2f}" for k, v in m.items()), flush=True)

    if step == 0:
        log_val()
    last_ckpt, losses = time.monotonic(), []
    while step < cfg.max_steps and not (cfg.max_minutes > 0 and wall >= 60 * cfg.max_minutes):
        t0 = time.perf_counter()
        torch.set_num_threads(1)  # tiny ops: two threads only fight over them on a shared CPU
        vols, mask, _ = batch_at(cfg, step)
        obs_xyz, obs_rgb = volumes.observations_3d(vols, mask)
        torch.set_num_threads(cfg.threads)
        for group in opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(cfg, step, wall)
        mean = model.encode(obs_xyz, obs_rgb, cfg.size).mean  # (B, 3, D, D, D), unclamped
        missing = ~mask[:, None]  # (B, 1, D, D, D)
        loss = ((mean - vols) ** 2 * missing).sum() / (3 * missing.sum())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        with torch.no_grad():  # EMA, its decay warmed up so the early average is not the initialisation
            d = min(cfg.ema_decay, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - d)
        step, seen = step + 1, seen + cfg.batch_size
        wall += time.perf_counter() - t0
        losses.append(float(loss.detach()))
        if step % 25 == 0:
            widths = [round(float(w), 2) for w in model.setconv.widths.detach()]
            print(f"step {step} loss {np.mean(losses):.5f} lr {opt.param_groups[0]['lr']:.2e} "
                  f"{wall / 60:.1f} min ℓ={widths}", flush=True)
            losses = []
        if step % cfg.val_every == 0:
            log_val()
        if time.monotonic() - last_ckpt > 60 * cfg.ckpt_minutes:
            checkpoint()
            last_ckpt = time.monotonic()
    if not curve or curve[-1]["step"] != step:
        log_val()
    checkpoint()
    print(f"done: step {step}, {seen} volumes, {wall / 60:.1f} min of training", flush=True)


# ---------------------------------------------------------------- export


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def model_card(name: str, meta: dict, eval_json: dict | None) -> str:
    t = meta["train"]
    cmds = "\n".join(t["commands"])
    curve = meta["curve"]
    lines = [
        f"# {name}",
        "",
        f"The 3-D grid observation encoder (`asf_core/models/encoder3d.py`, preset `{t['preset']}`, "
        f"{meta['parameters'] / 1e6:.2f}M parameters, EMA weights stored in fp16): observed voxels "
        "are splatted onto the voxel grid by SetConv3D (learned Gaussian widths; density and normalised "
        f"values), a 3-D conv U-Net adds a correction to {BASES[meta['model']['base']]}, and x̂ is "
        "read out trilinearly at any (x, y, z). Trained to regress the posterior mean of the missing voxels "
        "(MSE on the missing voxels; not a sampler) of procedural 32³ RGB volumes (`asf_core.volumes`, "
        "training seed) with 5-20% of the voxels observed.",
        "",
        "Load with `asf_core.models.encoder3d.load_volume_encoder(\"pretrained/" + name + "\")`.",
        "",
        "## Training",
        "",
        "```bash",
        cmds,
        "```",
        "",
        "| steps | volumes seen | wall time | hardware |",
        "| --- | --- | --- | --- |",
        f"| {t['step']} | {t['volumes_seen']:,} | {t['wall_seconds'] / 3600:.2f} h | {HARDWARE} |",
        "",
        f"Validation ({t['val_n']} validation-seed volumes, fixed masks, EMA weights), PSNR on the missing "
        "voxels in dB:",
        "",
        "| step | volumes seen | 20% observed | 5% observed |",
        "| --: | --: | --: | --: |",
    ]
    for i in sorted(set(np.linspace(0, len(curve) - 1, min(len(curve), 8)).round().astype(int))):
        c = curve[i]
        lines.append(f"| {c['step']} | {c['volumes_seen']:,} | {c['val_psnr_missing_20']:.2f} | "
                     f"{c['val_psnr_missing_5']:.2f} |")
    lines += ["", "## Evaluation", ""]
    if eval_json is None:
        lines.append("Not evaluated yet.")
    else:
        lines += [eval_table(eval_json), "", f"Made by `{eval_json['command']}`; the baselines' rows come "
                  f"from `{eval_json['baselines_command']}` on the same volumes and masks."]
    return "\n".join(lines) + "\n"


def eval_table(ev: dict) -> str:
    """The PSNR table of docs/eval_volumes_model.json, model and baselines per fraction."""
    lines = ["| method | observed | PSNR volume | PSNR missing | s/volume |",
             "| --- | --: | --: | --: | --: |"]
    rows = ev["rows"] + ev["baseline_rows"]
    for f in ev["protocol"]["fractions"]:
        for r in sorted((r for r in rows if r["fraction"] == f), key=lambda r: -r["psnr"]):
            lines.append(f"| {r['method']} | {f:.0%} ({r['observed_voxels']}) "
                         f"| {r['psnr']:.2f} ± {r['psnr_std']:.2f} "
                         f"| {r['psnr_missing']:.2f} ± {r['psnr_missing_std']:.2f} "
                         f"| {r['seconds_per_volume']:.3f} |")
    return "\n".join(lines)


def export(run: Path, to: Path, eval_path: Path | None) -> None:
    st = torch.load(run / STATE_NAME, weights_only=True)
    cfg = config_from_dict(json.loads(st["model_config"]))
    model = VolumeEncoder(cfg)
    model.load_state_dict(st["ema"])
    tensors = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    curve = json.loads((run / CURVE_NAME).read_text())
    train_cfg = json.loads(st["train"])
    meta = {
        "arch": "volume_encoder",
        "model": config_to_dict(cfg),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train": {**train_cfg, "step": st["step"], "volumes_seen": st["volumes_seen"],
                  "wall_seconds": round(st["wall_seconds"], 1), "hardware": HARDWARE,
                  "commands": st["commands"]},
        "normalization": {"values": "rgb in [-1, 1]", "coords": "voxel centres (x, y, z) in [-1, 1]^3",
                          "layout": "(B, 3, D, D, D) indexed [b, c, z, y, x]"},
        "metrics": {k: v for k, v in curve[-1].items() if k.startswith("val_")},
        "curve": curve,
        "git_commit": _git_commit(),
    }
    ev = json.loads(eval_path.read_text()) if eval_path and eval_path.exists() else None

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp / WEIGHTS_NAME))
        (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / "MODEL_CARD.md").write_text(model_card(to.name, meta, ev))

    atomic_write_folder(to, write, keep=(WEIGHTS_NAME, CONFIG_NAME, "MODEL_CARD.md"))
    size = (to / WEIGHTS_NAME).stat().st_size
    print(f"wrote {to}: {size / 1e6:.2f} MB weights, step {st['step']}, {st['volumes_seen']} volumes",
          flush=True)


# ---------------------------------------------------------------- command line


def add_config_flags(ap: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, its default written once, in the dataclass."""
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            ap.add_argument(flag, type=type(f.default), default=f.default)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    add_config_flags(sub.add_parser("train", help="train (or resume) a run"))
    ex = sub.add_parser("export", help="write a run's EMA weights as a release folder")
    ex.add_argument("--out", default=TrainConfig.out, help="the run folder")
    ex.add_argument("--to", required=True, help="release folder, e.g. pretrained/volume_encoder_small")
    ex.add_argument("--eval", default="", help="evaluation JSON whose table goes into the model card")
    args = ap.parse_args(argv)
    if args.cmd == "train":
        cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
        train(cfg, shlex.join(["python", "tools/train_volume_encoder.py", *argv]))
    else:
        export(Path(args.out), Path(args.to), Path(args.eval) if args.eval else None)


if __name__ == "__main__":
    main()
