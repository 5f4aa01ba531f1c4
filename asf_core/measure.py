"""Process-level measurement helpers shared by the benchmarks (asf_core.bench, asf_core.compare):
resident memory from /proc, its high-water mark and reset, a median, and one measurement run in a
fresh process so that its peak memory is its own.
"""

from __future__ import annotations

import json
import subprocess
import sys


def status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss() -> int:
    hwm = status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    import resource  # ru_maxrss is in KiB on Linux, bytes on macOS

    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so a peak read later belongs to what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else 0.5 * (xs[len(xs) // 2 - 1] + xs[len(xs) // 2])


def run_isolated(spec: dict, timeout: float, entry: tuple[str, ...] = ("asf_core.bench", "measure")) -> dict:
    """`python -m <entry> SPEC` in a fresh process (so its peak memory is its own): its last JSON line."""
    cmd = [sys.executable, "-m", *entry, json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"reason": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return {"reason": f"exit code {proc.returncode}: {tail}"}
    return json.loads(lines[-1])
