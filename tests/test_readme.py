"""The README as a newcomer and the Space read it: front matter, set-up on the first screen, CI running
exactly its test command, its Python example working, and its results table matching the JSONs."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_front_matter_and_first_screen():
    lines = README.splitlines()
    assert lines[0] == "---" and "app_file: app.py" in README.split("---")[1] and "sdk: gradio" in README
    first = "\n".join(lines[:40])
    assert "pip install -r requirements.txt -e . && .venv/bin/python app.py" in first
    assert "pip install -r requirements-dev.txt -e ." in first and "-m pytest" in first
    assert len(lines) <= 200


def test_ci_runs_the_readme_test_command_verbatim():
    command = next(line for line in README.splitlines() if line.startswith("apt-get update"))
    assert command in (ROOT / ".ci/run").read_text()


def test_the_python_example_runs():
    code = re.search(r"## Use the library\n\n```python\n(.*?)```", README, re.S).group(1)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    assert "torch.Size([4, 1, 3, 32, 32])" in out.stdout


def test_the_results_table_is_the_committed_jsons():
    sys.path.insert(0, str(ROOT))
    from tools.results_table import rows

    table = re.search(r"<!-- results: start -->\n(.*?)\n<!-- results: end -->", README, re.S).group(1)
    jsons = [str(ROOT / "docs" / name)
             for name in ("eval_grid_n100.json", "eval_hybrid_n100.json", "eval_unet_n100.json")]
    assert table == "\n".join(rows(jsons))


def test_the_onestep_table_is_the_committed_jsons():
    sys.path.insert(0, str(ROOT))
    from tools.results_table import onestep_rows

    table = re.search(r"<!-- onestep: start -->\n(.*?)\n<!-- onestep: end -->", README, re.S).group(1)
    names = ("eval_onestep_n1000.json", "eval_photos_onestep_n56.json")
    jsons = [str(ROOT / "docs" / name) for name in names]
    assert table == "\n".join(onestep_rows(jsons))
