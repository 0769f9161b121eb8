"""What the documentation shows runs: the README's Python blocks and the quickstart example."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.test_layout import ROOT


def python_blocks(markdown: str, section: str) -> list[str]:
    """The ```python blocks of one ``## section`` of a Markdown text."""
    start = markdown.index(f"## {section}\n")
    end = markdown.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", markdown[start : end if end > 0 else None], re.S)


def run_python(code: str, cwd, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


def test_the_readme_use_it_from_python_blocks_run(tmp_path):
    blocks = python_blocks((ROOT / "README.md").read_text(), "Use it from Python")
    assert len(blocks) == 3 and any("hpcars.fit(" in b for b in blocks) and any("ars.tell(" in b for b in blocks)
    code = "\n".join(blocks).replace("iterations=300", "iterations=30").replace("iterations=200", "iterations=30")
    code = code.replace("range(300)", "range(30)")
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "runs" / "line" / "summary.json").exists() and (tmp_path / "runs" / "early").is_dir()


def test_the_quickstart_trains_both_tasks_and_draws_the_figure(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "quickstart.py"),
            "--digits-iterations",
            "2",
            "--swimmer-iterations",
            "1",
            "--runs",
            str(tmp_path),
            "--out",
            str(tmp_path / "q.png"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "q.png").stat().st_size > 1000
    assert (tmp_path / "quickstart-digits" / "summary.json").exists()
    assert (tmp_path / "quickstart-swimmer" / "summary.json").exists()
