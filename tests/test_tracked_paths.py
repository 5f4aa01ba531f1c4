"""No committed file names a path of the machine it was made on, a numbered run folder, or the
relative path to the shared data folder: a reader elsewhere cannot follow them, and they date the
text. CI's data lookup is the one place such a path is the point."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {  # where such a path is the point: CI finds the shared data, these tests name and strip them
    ".ci/run",
    "tests/test_tracked_paths.py",
    "tests/test_export.py",
}

PATTERNS = {
    "an absolute path of a machine": re.compile(
        r"(?<![\w.:/-])(?:/tmp/|/var/folders/|/home/\w|/root/|/Users/\w|/work/\w|/mnt/\w|[A-Z]:\\\\Users)"
    ),
    "a numbered run folder": re.compile(r"\bruns/(?:s|session|try|round|v|run)?\d+\b|\bruns/[A-Za-z_]+?\d+/"),
    "the relative path to the shared data": re.compile(r"\.\./shared\b"),
}


def tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: there is no list of tracked files to check")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [name for name in out.decode().split("\0") if name and name not in ALLOWED]


def test_the_patterns_catch_what_they_are_for():
    hits = {
        kind: bool(p.search(text))
        for kind, p in PATTERNS.items()
        for text in [
            {
                "an absolute path of a machine": "wrote /tmp/tmpab12/x.png",
                "a numbered run folder": "--init-from runs/s5/pio/best",
                "the relative path to the shared data": "--data-dir ../shared/data",
            }[kind]
        ]
    }
    assert all(hits.values()), hits
    clean = (
        "python -m asf_core.train --out runs/pio --data-dir DIR; see https://example.org/tmp/x and a/tmp/b"
    )
    assert not any(p.search(clean) for p in PATTERNS.values())


def test_no_tracked_file_names_a_machine_or_run_path():
    found = []
    for name in tracked_files():
        path = ROOT / name
        if not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # weights and images
        for number, line in enumerate(text.splitlines(), 1):
            for kind, pattern in PATTERNS.items():
                if pattern.search(line):
                    found.append(f"{name}:{number}: {kind}: {line.strip()[:100]}")
    assert not found, "\n".join(found)
