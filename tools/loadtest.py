"""Load test of the app's public `/reconstruct` endpoint: many gradio_client clients against one server.

    python -m tools.loadtest                                  # 16 clients x 5 requests, first learned model
    python -m tools.loadtest --clients 4 --requests 2 --arch tps
    python -m tools.loadtest --json docs/loadtest.json --markdown docs/loadtest.md
    python -m tools.loadtest --mix 8+8 --requests 2 --arch tps        # identical + different at once
    python -m tools.loadtest --mix 8+8 --requests 2 --arch NAME --steps 10   # a learned model (its spec name)

It starts the real `app.py` (same Blocks, same queue settings) in a subprocess on 127.0.0.1 at a free
port, offline, and waits until it answers. One warm-up request loads the model (reported apart, as
the cold start); then C client threads, each with its own `gradio_client.Client`, send R requests
each (a bundled sample, density 0.2, a distinct seed per request) and wait for every result.

What it checks and measures:
- every result: an S×S RGB PNG (S = the app's grid, 32) that differs from the masked
  input, the same number of observed pixels as the seed's mask, a finite numeric PSNR;
- the queue limit (one model run at a time): the server process records the start and end of every
  `/reconstruct` call (time.time(), the same clock the clients read) and the report counts overlapping
  executions; the clients poll `Job.status()` and record the queue rank they see (0-based: rank r
  has r requests ahead of it, not counting the one running);
- client-side latency (submit -> result, upload and download included) p50/p95, throughput, the
  server's time per request, and the wait in the queue;
- the server's resident memory (VmRSS from /proc/<pid>/status every 0.2 s, and the kernel's
  high-water mark VmHWM). Memory "grows" when RSS at the end exceeds RSS after the first C timed
  requests by more than max(5 %, 32 MiB); the least-squares slope over the same span is reported too.

The exit status is 1 when any request failed or two executions overlapped, 0 otherwise.

`--mix I+D` checks that concurrent answers are whole and right rather than timing them. A single
client first sends every distinct request once, one after another (the first is the cold start),
and keeps each result as the reference. Then I + D clients start at once, each sending R requests:
the I "identical" clients all send the same request (same image, architecture, density, seed 0,
steps, solver), the D "different" clients send the seeds 1..D·R (one request each). Every answer
must be a file that exists, is not empty, decodes as an S×S RGB PNG (and passes the checks above),
and has the same pixels as the single-client result of its request: a *failure* when it is not a
whole image, a *mismatch* when it is one but differs from the reference by more than `--tolerance`
uint8 levels (default 0: pixel-identical; with the seed fixed, x_0 is drawn from a fresh generator,
so the learned models are deterministic on one machine too). It guards against identical outputs
sharing one file that a concurrent call rewrites; the report counts the distinct files the
identical clients were given. `--clients` is unused with `--mix`. The exit status is 1 on any
failure, mismatch or overlapping execution. The thin-plate spline (`--arch tps`) runs in
milliseconds; `--arch NAME --steps 10` with a learned architecture's name (any with a checkpoint) runs
the same check through a model, ~0.1-1 s per request on CPU.
Symbols: C clients · R requests per client · S model grid side · I identical clients · D different.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import inspect
import itertools
import json
import os
import platform
import runpy
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "app" / "samples" / "cifar_0000_cat.png"
LOG_ENV = "ASF_LOADTEST_LOG"  # where the server process appends its JSON lines
POLL_S = 0.02  # Job.status() polling; the queue re-broadcasts ranks as it moves, a few per second
RSS_EVERY_S = 0.2
GROWTH_FRACTION, GROWTH_MIB = 0.05, 32.0


# ---- server side (runs in the subprocess) -----------------------------------------------------------
def serve() -> None:
    """Run app.py as `python app.py` would, recording every /reconstruct call and the queue settings."""
    import gradio as gr
    import torch

    from app.handlers import Handlers

    log, lock = Path(os.environ[LOG_ENV]), threading.Lock()

    def write(record: dict) -> None:
        with lock, log.open("a") as f:
            f.write(json.dumps(record) + "\n")

    original = Handlers.api_reconstruct
    signature = inspect.signature(original)

    # functools.wraps keeps the signature and annotations Gradio reads to build the endpoint
    @functools.wraps(original)
    def timed(self, *args, **kwargs):
        seed = signature.bind(self, *args, **kwargs).arguments.get("seed")
        start, ok = time.time(), False
        try:
            out = original(self, *args, **kwargs)
            ok = True
            return out
        finally:
            write({"kind": "run", "seed": None if seed is None else int(seed), "start": start,
                   "end": time.time(), "ok": ok, "thread": threading.get_ident()})

    Handlers.api_reconstruct = timed
    launch = gr.Blocks.launch

    def launch_logged(self, *args, **kwargs):  # the settings as served, after app.py's demo.queue(...)
        queue = getattr(self, "_queue", None)
        endpoint = [{"concurrency_id": f.concurrency_id, "concurrency_limit": f.concurrency_limit}
                    for f in self.fns.values() if f.api_name == "reconstruct"]
        write({"kind": "config", "pid": os.getpid(), "gradio": gr.__version__,
               "torch_threads": torch.get_num_threads(), "reconstruct": endpoint,
               "default_concurrency_limit": getattr(queue, "default_concurrency_limit", None),
               "queue_max_size": getattr(queue, "max_size", None)})
        return launch(self, *args, **kwargs)

    gr.Blocks.launch = launch_logged
    runpy.run_path(str(ROOT / "app.py"), run_name="__main__")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m tools.loadtest --serve` in a subprocess; `with Server() as s:` waits until it answers."""

    def __init__(self, pretrained: str | None = None, startup_timeout: float = 240.0):
        self.dir = Path(tempfile.mkdtemp(prefix="asf_loadtest_"))
        self.log, self.out = self.dir / "server.jsonl", self.dir / "server.out"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
                    "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(self.port),
                    LOG_ENV: str(self.log), "PYTHONUNBUFFERED": "1"}
        if pretrained:
            self.env["ASF_PRETRAINED_DIR"] = str(pretrained)
        self.startup_timeout, self.startup_s, self.proc = startup_timeout, None, None

    def __enter__(self) -> Server:
        start = time.perf_counter()
        with self.out.open("wb") as out:  # a file, not a pipe: a full pipe would block the server
            self.proc = subprocess.Popen([sys.executable, "-m", "tools.loadtest", "--serve"], cwd=ROOT,
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT)
        while time.perf_counter() - start < self.startup_timeout:
            if self.proc.poll() is not None:
                tail = self.tail()
                self.__exit__()
                raise RuntimeError(f"the app exited with {self.proc.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(self.url + "config", timeout=5) as r:
                    if r.status == 200:
                        self.startup_s = time.perf_counter() - start
                        return self
            except OSError:
                time.sleep(0.5)
        tail = self.tail()
        self.__exit__()
        raise RuntimeError(f"the app did not answer within {self.startup_timeout:.0f} s:\n{tail}")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)  # its log was read inside the with block

    def tail(self, n: int = 4000) -> str:
        return self.out.read_text(errors="replace")[-n:] if self.out.exists() else ""

    def records(self) -> list[dict]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [json.loads(line) for line in lines if line.strip()]


def _status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])  # "VmRSS:   123456 kB"
    except (OSError, ValueError, IndexError):
        pass
    return None


class RssSampler(threading.Thread):
    """(time.time(), VmRSS KiB) of one process every RSS_EVERY_S seconds until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True, name="rss-sampler")
        self.pid, self.samples, self.halt = pid, [], threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            kib = _status_kib(self.pid, "VmRSS")
            if kib is not None:
                self.samples.append((time.time(), kib))
            self.halt.wait(RSS_EVERY_S)

    def at(self, t: float) -> int | None:
        """RSS in KiB at the last sample at or before t."""
        before = [kib for ts, kib in self.samples if ts <= t]
        return before[-1] if before else None


# ---- clients ----------------------------------------------------------------------------------------
def _expected(image: Path, seed: int, density: float, size: int = 32) -> tuple[np.ndarray, int]:
    """The masked input the server builds for this seed (observed pixels on grey) and its pixel count."""
    from app import images

    prepared = images.prepare(str(image), size)
    mask = images.make_mask("random", density, seed, size)
    return images.observed_view(prepared.image, mask), int(mask.sum())


def _decode(path) -> tuple[str, np.ndarray, str | None]:
    """(mode, pixels as (S, S, 3) uint8, format) of an image file, read whole."""
    from PIL import Image

    with Image.open(path) as im:
        return im.mode, np.asarray(im.convert("RGB")), im.format


def check_result(path, info, masked: np.ndarray, observed: int) -> list[str]:
    """What is wrong with one /reconstruct answer (empty when nothing is)."""
    problems = []
    if not path or not Path(path).is_file():
        return [f"no image file: {path!r}"]
    if Path(path).stat().st_size == 0:
        return [f"empty image file: {Path(path).name}"]
    try:
        mode, out, fmt = _decode(path)
    except (OSError, ValueError, SyntaxError) as e:  # PIL: unidentified or truncated, bad chunks
        return [f"image does not decode: {type(e).__name__}: {e}"]
    size = info.get("size", 32) if isinstance(info, dict) else 32
    if fmt != "PNG":
        problems.append(f"image is {fmt}, expected PNG")
    if mode != "RGB" or out.shape != (size, size, 3):
        problems.append(f"image is {mode} {out.shape}, expected RGB ({size}, {size}, 3)")
    elif out.shape == masked.shape and not (out != masked).any():
        problems.append("image equals the masked input")
    psnr = info.get("psnr") if isinstance(info, dict) else None
    if isinstance(psnr, bool) or not isinstance(psnr, (int, float)) or not np.isfinite(psnr):
        problems.append(f"metrics have no numeric PSNR: {psnr!r}")
    if isinstance(info, dict) and info.get("observed") not in (None, observed):
        problems.append(f"{info.get('observed')} pixels observed, the seed's mask has {observed}")
    return problems


Compare = Callable[[int, np.ndarray], dict]  # (seed, pixels of a whole answer) -> fields for its record


def _one_request(client, settings: dict, seed: int, timeout: float, compare: Compare | None = None) -> dict:
    """Send one request, poll its queue status, check the answer; `compare` also sees its pixels."""
    from gradio_client import handle_file
    from gradio_client.utils import Status

    rec = {"seed": seed, "ok": False, "error": None, "max_rank": None, "max_queue_size": None}
    rec["submit"] = time.time()
    try:
        job = client.submit(handle_file(str(settings["image"])), settings["arch"], settings["density"], seed,
                            settings["steps"], settings["solver"], api_name="/reconstruct")
        while not job.done():
            if time.time() - rec["submit"] > timeout:
                job.cancel()
                raise TimeoutError(f"no result after {timeout:.0f} s")
            st = job.status()
            if st.code == Status.IN_QUEUE and st.rank is not None:
                rec["max_rank"] = max(rec["max_rank"] or 0, st.rank)
                rec["max_queue_size"] = max(rec["max_queue_size"] or 0, st.queue_size or 0)
            elif st.code == Status.PROCESSING and "processing" not in rec:
                rec["processing"] = time.time()  # as the client hears it
            time.sleep(POLL_S)
        path, info = job.result(timeout=timeout)
        rec["done"] = time.time()
        rec["latency_s"] = rec["done"] - rec["submit"]
        masked, observed = _expected(settings["image"], seed, settings["density"])
        problems = check_result(path, info, masked, observed)
        rec["psnr"] = info.get("psnr") if isinstance(info, dict) else None
        rec["file"] = Path(path).name if path else None  # the server's file name, kept by the client
        rec["ok"], rec["error"] = not problems, "; ".join(problems) or None
        if compare is not None and not problems:
            rec.update(compare(seed, _decode(path)[1]))
            rec["ok"] = not rec.get("mismatch")
    except Exception as e:  # one failed request is a counted error, not the end of the run
        rec["done"] = time.time()
        rec["error"] = f"{type(e).__name__}: {e}"
    return rec


def _client_thread(cid: int, url: str, settings: dict, seeds: list[int], barrier: threading.Barrier,
                   out: list[dict], timeout: float, compare: Compare | None = None) -> None:
    from gradio_client import Client

    client, error = None, None
    try:
        client = Client(url, verbose=False, download_files=settings["downloads"])
    except Exception as e:
        error = f"client: {type(e).__name__}: {e}"
    try:
        barrier.wait(timeout)  # every client connected before the clock starts
    except threading.BrokenBarrierError:
        pass
    for seed in seeds:
        rec = _one_request(client, settings, seed, timeout, compare) if client else \
            {"seed": seed, "ok": False, "error": error, "submit": time.time(), "done": time.time()}
        out.append({"client": cid, **rec})


# ---- the run ----------------------------------------------------------------------------------------
def default_arch(pretrained: str | None = None) -> str:
    """The first learned architecture with a checkpoint (app.inference order), else thin-plate spline."""
    from app.inference import Reconstructor, arch_specs

    return next((m for m in Reconstructor(pretrained).methods() if m in arch_specs()), "tps")


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if values else None


def _mib(kib: float | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def _fmt(value) -> str:
    """Three significant digits for the table; the JSON keeps the full figures."""
    if value is None:
        return "n/a"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _overlaps(runs: list[dict]) -> tuple[int, int]:
    """(pairs of consecutive executions that overlap, most executions running at one moment)."""
    runs = sorted(runs, key=lambda r: r["start"])
    pairs = sum(b["start"] < a["end"] for a, b in itertools.pairwise(runs))
    events = sorted([(r["start"], 1) for r in runs] + [(r["end"], -1) for r in runs])  # ends sort first
    most = running = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return pairs, most


def _memory(rss: RssSampler, done: list[float], clients: int, pid: int) -> dict:
    window = min(clients, len(done))
    t_window, t_end = (done[window - 1], done[-1]) if done else (None, None)
    after, end = (rss.at(t_window), rss.at(t_end)) if done else (None, None)  # KiB
    span = [(sum(d <= ts for d in done), kib / 1024) for ts, kib in rss.samples if done and ts >= t_window]
    slope = None
    if len({n for n, _ in span}) >= 2:  # MiB per 100 requests, by least squares over the span
        slope = round(float(np.polyfit([n for n, _ in span], [m for _, m in span], 1)[0]) * 100, 2)
    growth = None if after is None or end is None else end - after
    grows = None if growth is None else growth > max(GROWTH_FRACTION * after, GROWTH_MIB * 1024)
    return {"peak_rss_mib": _mib(max((kib for _, kib in rss.samples), default=None)),
            "vm_hwm_mib": _mib(_status_kib(pid, "VmHWM")),
            "rss_start_mib": _mib(rss.samples[0][1] if rss.samples else None),
            "rss_after_first_window_mib": _mib(after), "first_window_requests": window,
            "rss_end_mib": _mib(end), "growth_mib": _mib(growth),
            "slope_mib_per_100_requests": slope, "grows": grows,
            "rss_at_each_answer_mib": [_mib(rss.at(d)) for d in done],  # the curve behind the verdict
            "criterion": f"grows if RSS(end) - RSS(after first {window} requests) > "
                         f"max({GROWTH_FRACTION:.0%} of it, {GROWTH_MIB:.0f} MiB)",
            "samples": len(rss.samples)}


def run_loadtest(clients: int = 16, requests: int = 5, arch: str | None = None, steps: int = 20,
                 solver: str = "euler", density: float = 0.2, image: str | Path = SAMPLE,
                 pretrained: str | None = None, timeout: float = 900.0) -> dict:
    """Start the app, load it, stop it; returns the report (see the module docstring)."""
    arch = arch or default_arch(pretrained)
    settings = {"image": Path(image), "arch": arch, "density": density, "steps": steps, "solver": solver,
                "downloads": tempfile.mkdtemp(prefix="asf_loadtest_dl_")}
    loadavg = getattr(os, "getloadavg", lambda: None)
    load_start = loadavg()
    with Server(pretrained) as server:
        rss = RssSampler(server.proc.pid)
        rss.start()
        warm: list[dict] = []  # one request first: model load and first-call costs, reported apart
        _client_thread(-1, server.url, settings, [0], threading.Barrier(1), warm, timeout)
        barrier, out = threading.Barrier(clients), []
        threads = [threading.Thread(target=_client_thread, daemon=True, args=(
            c, server.url, settings, list(range(1 + c * requests, 1 + (c + 1) * requests)), barrier, out,
            timeout)) for c in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(2 * RSS_EVERY_S)  # one more sample after the last answer
        rss.halt.set()
        rss.join()
        memory = _memory(rss, sorted(r["done"] for r in out), clients, server.proc.pid)
        logged = server.records()
        startup_s = server.startup_s
    shutil.rmtree(settings["downloads"], ignore_errors=True)
    config = next((r for r in logged if r["kind"] == "config"), {})
    runs = {r["seed"]: r for r in logged if r["kind"] == "run"}
    for rec in warm + out:  # the server's view of each request, matched by its (distinct) seed
        run = runs.get(rec["seed"])
        if run:
            rec["server_start"], rec["server_end"] = run["start"], run["end"]
    timed = [runs[r["seed"]] for r in out if r["seed"] in runs]
    pairs, most = _overlaps(list(runs.values()))
    ok = [r for r in out if r["ok"]]
    lat = [r["latency_s"] for r in ok]
    service = [r["end"] - r["start"] for r in timed]
    wait = [r["server_start"] - r["submit"] for r in out if "server_start" in r]
    t0, t1 = min(r["submit"] for r in out), max(r["done"] for r in out)
    ranks = [r["max_rank"] for r in out if r.get("max_rank") is not None]
    sizes = [r["max_queue_size"] for r in out if r.get("max_queue_size") is not None]
    errors = [f"seed {r['seed']}: {r['error']}" for r in warm + out if not r["ok"]]
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "load_avg_start": load_start, "load_avg_end": loadavg(),
                    "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                    "python": platform.python_version(), "platform": platform.platform()},
        "settings": {"clients": clients, "requests_per_client": requests, "arch": arch, "steps": steps,
                     "solver": solver, "density": density, "image": Path(image).name,
                     "seeds": f"1..{clients * requests} (warm-up: 0)"},
        "server": {**{k: v for k, v in config.items() if k != "kind"}, "startup_s": round(startup_s, 2)},
        "cold_first_request_s": round(warm[0]["latency_s"], 3) if warm[0].get("latency_s") else None,
        "requests": len(out), "ok": len(ok), "errors": len(errors), "error_messages": errors[:20],
        "latency_s": {"p50": _pct(lat, 50), "p95": _pct(lat, 95), "max": _pct(lat, 100),
                      "mean": round(float(np.mean(lat)), 4) if lat else None},
        "server_run_s": {"p50": _pct(service, 50), "p95": _pct(service, 95)},
        "queue_wait_s": {"p50": _pct(wait, 50), "p95": _pct(wait, 95)},
        "wall_s": round(t1 - t0, 3),
        "throughput_rps": round(len(ok) / (t1 - t0), 4) if t1 > t0 else None,
        "server_busy_fraction": round(sum(service) / (t1 - t0), 3) if t1 > t0 else None,
        "queue": {"executions_logged": len(runs), "overlapping_pairs": pairs, "max_concurrent": most,
                  "max_rank_seen": max(ranks, default=None), "requests_that_saw_a_rank": len(ranks),
                  "max_queue_size_seen": max(sizes, default=None)},
        "memory": memory,
        "per_request": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                        for r in sorted(out, key=lambda r: r["seed"])],
    }


def failed(report: dict) -> bool:
    q = report["queue"]
    if report.get("mode") == "mix":
        return bool(report["failures"] or report["mismatches"] or q["overlapping_pairs"]
                    or q["max_concurrent"] > 1 or q["executions_logged"] < report["requests"] + report[
                        "reference"]["requests"])
    return bool(report["errors"] or q["overlapping_pairs"] or q["max_concurrent"] > 1
                or q["executions_logged"] < report["requests"] + 1)



# ---- identical + different requests at once (--mix) ------------------------------------------------
def _group(recs: list[dict]) -> dict:
    return {"requests": len(recs), "ok": sum(r["ok"] for r in recs),
            "failures": sum(bool(r["error"]) for r in recs),
            "mismatches": sum(bool(r.get("mismatch")) for r in recs),
            "distinct_files": len({r["file"] for r in recs if r.get("file")})}


def run_mixed(identical: int = 8, different: int = 8, requests: int = 2, arch: str | None = None,
              steps: int = 20, solver: str = "euler", density: float = 0.2, image: str | Path = SAMPLE,
              pretrained: str | None = None, timeout: float = 900.0, tolerance: int = 0) -> dict:
    """References from one client, then I identical + D different clients at once (module docstring)."""
    arch = arch or default_arch(pretrained)
    settings = {"image": Path(image), "arch": arch, "density": density, "steps": steps, "solver": solver,
                "downloads": tempfile.mkdtemp(prefix="asf_loadtest_dl_")}
    seeds = [[0] * requests for _ in range(identical)]  # seed 0: the one identical request
    seeds += [list(range(1 + d * requests, 1 + (d + 1) * requests)) for d in range(different)]
    distinct = sorted({s for client in seeds for s in client})
    refs: dict[int, np.ndarray] = {}

    def keep(seed: int, pixels: np.ndarray) -> dict:
        refs[seed] = pixels
        return {}

    def compare(seed: int, pixels: np.ndarray) -> dict:
        ref = refs.get(seed)
        if ref is None:
            return {"mismatch": f"no single-client reference for seed {seed}"}
        diff = int(np.abs(pixels.astype(np.int16) - ref).max())  # uint8 levels
        bad = diff > tolerance
        return {"max_abs_diff": diff, "differing_pixels": int((pixels != ref).any(-1).sum()),
                "mismatch": f"differs from the single-client result by up to {diff} levels" if bad else None}

    load_start = getattr(os, "getloadavg", lambda: None)()
    with Server(pretrained) as server:
        reference: list[dict] = []
        t_ref = time.time()
        _client_thread(-1, server.url, settings, distinct, threading.Barrier(1), reference, timeout, keep)
        ref_wall = time.time() - t_ref
        barrier, out = threading.Barrier(len(seeds)), []
        threads = [threading.Thread(target=_client_thread, daemon=True, args=(
            c, server.url, settings, client, barrier, out, timeout, compare))
            for c, client in enumerate(seeds)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        logged = server.records()
        startup_s = server.startup_s
    shutil.rmtree(settings["downloads"], ignore_errors=True)
    for rec in out:
        rec["group"] = "identical" if rec["client"] < identical else "different"
    config = next((r for r in logged if r["kind"] == "config"), {})
    runs = [r for r in logged if r["kind"] == "run"]  # seeds repeat here: a list, not keyed by seed
    pairs, most = _overlaps(runs)
    lat = [r["latency_s"] for r in out if r.get("latency_s") is not None]
    t0, t1 = min(r["submit"] for r in out), max(r["done"] for r in out)
    diffs = [r["max_abs_diff"] for r in out if "max_abs_diff" in r]
    messages = [f"reference seed {r['seed']}: {r['error']}" for r in reference if not r["ok"]]
    messages += [f"client {r['client']} ({r['group']}) seed {r['seed']}: {r['error'] or r['mismatch']}"
                 for r in out if not r["ok"]]
    ref_group = _group(reference)
    return {
        "mode": "mix",
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "load_avg_start": load_start,
                    "load_avg_end": getattr(os, "getloadavg", lambda: None)(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                    "python": platform.python_version(), "platform": platform.platform()},
        "settings": {"identical_clients": identical, "different_clients": different,
                     "requests_per_client": requests, "arch": arch, "steps": steps, "solver": solver,
                     "density": density, "image": Path(image).name, "tolerance": tolerance,
                     "seeds": f"identical: 0; different: 1..{different * requests}"},
        "server": {**{k: v for k, v in config.items() if k != "kind"}, "startup_s": round(startup_s, 2)},
        "reference": {**ref_group, "wall_s": round(ref_wall, 3),
                      "cold_first_request_s": round(reference[0]["latency_s"], 3)
                      if reference and reference[0].get("latency_s") else None},
        # a reference that failed fails the run: its requests then count as mismatches as well
        "requests": len(out), "ok": sum(r["ok"] for r in out),
        "failures": ref_group["failures"] + sum(bool(r["error"]) for r in out),
        "mismatches": sum(bool(r.get("mismatch")) for r in out),
        "by_group": {g: _group([r for r in out if r["group"] == g]) for g in ("identical", "different")},
        "max_abs_diff": max(diffs, default=None), "compared": len(diffs),
        "error_messages": messages[:20],
        "latency_s": {"p50": _pct(lat, 50), "p95": _pct(lat, 95), "max": _pct(lat, 100)},
        "wall_s": round(t1 - t0, 3),
        "throughput_rps": round(len(out) / (t1 - t0), 4) if t1 > t0 else None,
        "queue": {"executions_logged": len(runs), "executions_failed": sum(not r["ok"] for r in runs),
                  "overlapping_pairs": pairs, "max_concurrent": most},
        "per_request": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                        for r in sorted(out, key=lambda r: (r["client"], r["submit"]))],
    }

# ---- output -----------------------------------------------------------------------------------------
def _mix_rows(report: dict) -> list[tuple[str, str]]:
    s, q, ref, lat, f = report["settings"], report["queue"], report["reference"], report["latency_s"], _fmt
    groups = [(f"{g} clients", f"{b['ok']} ok, {b['failures']} failed, {b['mismatches']} mismatched of "
                               f"{b['requests']}; {b['distinct_files']} distinct files")
              for g, b in report["by_group"].items()]
    return [
        ("failures / mismatches", f"{report['failures']} / {report['mismatches']} (of {report['requests']} "
                                  f"concurrent + {ref['requests']} reference requests)"),
        *groups,
        ("largest pixel difference", f"{f(report['max_abs_diff'])} uint8 levels over {report['compared']} "
                                     f"compared images (tolerance {s['tolerance']})"),
        ("single-client references", f"{ref['ok']} ok of {ref['requests']} in {f(ref['wall_s'])} s "
                                     f"(cold first {f(ref['cold_first_request_s'])} s)"),
        ("latency p50 / p95 / max", f"{f(lat['p50'])} / {f(lat['p95'])} / {f(lat['max'])} s "
                                    "(submit -> result)"),
        ("throughput", f"{f(report['throughput_rps'])} requests/s over {f(report['wall_s'])} s"),
        ("executions at once", f"max {q['max_concurrent']}, overlapping pairs {q['overlapping_pairs']} "
                               f"({q['executions_logged']} logged, {q['executions_failed']} raised)"),
        ("setting", f"{s['identical_clients']} identical + {s['different_clients']} different clients x "
                    f"{s['requests_per_client']} requests, {s['arch']}, {s['steps']} {s['solver']} steps, "
                    f"density {s['density']}; app start {f(report['server']['startup_s'])} s"),
    ]


def rows(report: dict) -> list[tuple[str, str]]:
    if report.get("mode") == "mix":
        return _mix_rows(report)
    s, q, m, lat = report["settings"], report["queue"], report["memory"], report["latency_s"]
    run, wait, f = report["server_run_s"], report["queue_wait_s"], _fmt
    return [
        ("requests ok / failed", f"{report['ok']} / {report['errors']} "
                                 f"(of {report['requests']} + 1 warm-up)"),
        ("latency p50 / p95 / max", f"{f(lat['p50'])} / {f(lat['p95'])} / {f(lat['max'])} s "
                                    "(submit -> result)"),
        ("throughput", f"{f(report['throughput_rps'])} requests/s over {_fmt(report['wall_s'])} s"),
        ("server run p50 / p95", f"{f(run['p50'])} / {f(run['p95'])} s"),
        ("queue wait p50 / p95", f"{f(wait['p50'])} / {f(wait['p95'])} s"),
        ("server busy", f"{f(report['server_busy_fraction'])} of the wall time"),
        ("executions at once", f"max {q['max_concurrent']}, overlapping pairs {q['overlapping_pairs']} "
                               f"({q['executions_logged']} logged)"),
        ("largest queue rank seen", f"{f(q['max_rank_seen'])} (0-based; queue size "
                                    f"{f(q['max_queue_size_seen'])})"),
        ("cold first request", f"{f(report['cold_first_request_s'])} s; app start "
                               f"{_fmt(report['server']['startup_s'])} s"),
        ("server RSS peak", f"{f(m['peak_rss_mib'])} MiB sampled, VmHWM {f(m['vm_hwm_mib'])} MiB"),
        ("RSS first window -> end", f"{f(m['rss_after_first_window_mib'])} -> {f(m['rss_end_mib'])} MiB "
                                    f"(growth {f(m['growth_mib'])} MiB, slope "
                                    f"{f(m['slope_mib_per_100_requests'])} MiB/100 req)"),
        ("memory grows", f"{m['grows']} ({m['criterion']})"),
        ("setting", f"{s['clients']} clients x {s['requests_per_client']} requests, {s['arch']}, "
                    f"{s['steps']} {s['solver']} steps, density {s['density']}"),
    ]


def table(report: dict) -> str:
    width = max(len(k) for k, _ in rows(report))
    lines = [f"{k:<{width}}  {v}" for k, v in rows(report)]
    lines += [f"  error: {e}" for e in report["error_messages"]]
    return "\n".join([*lines, "FAILED" if failed(report) else "PASSED"])


def _mix_markdown(report: dict, note: str = "") -> str:
    mach, s = report["machine"], report["settings"]
    load = " / ".join(f"{x:.2f}" for x in mach["load_avg_start"]) if mach["load_avg_start"] else "n/a"
    verdict = "; ".join(report["error_messages"][:5]) or "every answer whole and equal to its reference."
    body = ["# Concurrent identical and different `/reconstruct` requests", "",
            (f"Measured {report['date']} with `{report.get('command', 'python -m tools.loadtest --mix')}`: "
             "the real `app.py` in a subprocess on 127.0.0.1. One client first sends each distinct request "
             f"once and keeps the result; then {s['identical_clients']} clients send the same request "
             f"(seed 0) and {s['different_clients']} send distinct seeds, all at once, and every answer is "
             "decoded and compared with the single-client result of its request."), "",
            f"- Machine: {mach['cpu_count']} CPUs, load average (1/5/15 min) {load} at the start; "
            f"Gradio {report['server'].get('gradio')}, Python {mach['python']}.",
            *([f"- {note}"] if note else []), "",
            "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows(report)], "",
            f"**{'FAILED' if failed(report) else 'PASSED'}**: {verdict}", "",
            ("A *failure* is an answer that is not a whole S×S RGB PNG (missing, empty, truncated, wrong "
             "size) or an error; a *mismatch* is a whole image whose pixels differ from the reference by "
             "more than the tolerance. Per-request figures are in the JSON file beside this one.")]
    return "\n".join(body) + "\n"


def markdown(report: dict, note: str = "") -> str:
    if report.get("mode") == "mix":
        return _mix_markdown(report, note)
    mach, srv = report["machine"], report["server"]
    limits = ", ".join(f"`{e['concurrency_id']}` limit {e['concurrency_limit']}"
                       for e in srv.get("reconstruct", []))
    load = {k: " / ".join(f"{x:.2f}" for x in mach[k]) if mach[k] else "n/a"
            for k in ("load_avg_start", "load_avg_end")}
    verdict = "; ".join(report["error_messages"][:5]) or "no failed request, no overlapping execution."
    clients, run_p50 = report["settings"]["clients"], report["server_run_s"]["p50"]
    # every client keeps one request outstanding and there is one model slot: each waits for the others
    expect = (f"With one model slot and {clients} clients each keeping one request outstanding, a request "
              f"waits for about {clients - 1} others: {clients} x server run p50 = "
              f"{_fmt(clients * run_p50)} s, against a measured latency p50 of "
              f"{_fmt(report['latency_s']['p50'])} s.") if run_p50 else ""
    body = ["# Load test of `/reconstruct`", "",
            (f"Measured {report['date']} with `{report.get('command', 'python -m tools.loadtest')}`: "
             "the real `app.py` in a "
             "subprocess on 127.0.0.1, one warm-up request, then every client thread with its own "
             "`gradio_client.Client` sending its requests one after another."), "",
            (f"- Machine: {mach['cpu_count']} CPUs ({mach['cpus_usable']} usable), load average "
             f"(1/5/15 min) {load['load_avg_start']} at the start and {load['load_avg_end']} at the end; "
             f"OMP_NUM_THREADS={mach['omp_num_threads']}, server torch threads {srv.get('torch_threads')}, "
             f"Gradio {srv.get('gradio')}, Python {mach['python']}."),
            (f"- Concurrency as served: `/reconstruct` {limits or 'n/a'}; queue default_concurrency_limit "
             f"{srv.get('default_concurrency_limit')}, max_size {srv.get('queue_max_size')}."),
            *([f"- {note}"] if note else []), "",
            "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows(report)], "",
            f"**{'FAILED' if failed(report) else 'PASSED'}**: {verdict}", "",
            *([expect, ""] if expect else []),
            ("Latency is client-side, from `submit` to the downloaded result; *server run* is the time "
             "inside the `/reconstruct` handler; *queue wait* is submit -> handler start. Per-request "
             "figures are in the JSON file beside this one.")]
    return "\n".join(body) + "\n"


def _mix_counts(text: str) -> tuple[int, int]:
    """'8+8' -> (8, 8): identical and different clients."""
    try:
        identical, different = (int(x) for x in text.split("+"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I+D such as 8+8, got {text!r}") from None
    if identical < 0 or different < 0 or identical + different == 0:
        raise argparse.ArgumentTypeError(f"expected two counts >= 0, not both 0, got {text!r}")
    return identical, different


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=5, help="per client")
    p.add_argument("--arch", default=None, help="default: first learned model with a checkpoint; 'tps' too")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--solver", default="euler")
    p.add_argument("--density", type=float, default=0.2)
    p.add_argument("--image", default=str(SAMPLE))
    p.add_argument("--pretrained", default=None,
                   help="checkpoint folder (default $ASF_PRETRAINED_DIR, else pretrained/)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per request")
    p.add_argument("--mix", type=_mix_counts, default=None, metavar="I+D",
                   help="I clients sending one identical request and D sending different ones, at once, "
                        "each answer compared with its single-client result (e.g. 8+8)")
    p.add_argument("--tolerance", type=int, default=0, help="with --mix: uint8 levels an answer may differ")
    p.add_argument("--json", default=None, metavar="OUT")
    p.add_argument("--markdown", default=None, metavar="OUT")
    p.add_argument("--note", default="", help="a line for the markdown (e.g. what else shares the CPUs)")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the server subprocess
    a = p.parse_args(argv)
    if a.serve:
        serve()
        return 0
    if a.mix:
        report = run_mixed(*a.mix, a.requests, a.arch, a.steps, a.solver, a.density, a.image, a.pretrained,
                           a.timeout, a.tolerance)
    else:
        report = run_loadtest(a.clients, a.requests, a.arch, a.steps, a.solver, a.density, a.image,
                              a.pretrained, a.timeout)
    shown = [x for x in (sys.argv[1:] if argv is None else argv)  # the note is shown apart
             if x not in ("--note", a.note) and not x.startswith("--note=")]
    threads = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    report["command"] = f"{threads}python -m tools.loadtest {' '.join(shown)}".strip()
    print(table(report))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1) + "\n")
    if a.markdown:
        Path(a.markdown).write_text(markdown(report, a.note))
    return 1 if failed(report) else 0


if __name__ == "__main__":
    sys.exit(main())
