"""Run logs stay out of the repository: none is tracked, and .gitignore keeps new ones out (issue 16)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_no_run_logs_are_tracked_and_new_ones_are_ignored():
    tracked = [p for p in _git("ls-files", "--cached").stdout.splitlines() if p.endswith((".log", ".out"))]
    deleted = set(_git("ls-files", "--deleted").stdout.splitlines()) | set(
        _git("diff", "--cached", "--name-only", "--diff-filter=D").stdout.splitlines()
    )
    assert [p for p in tracked if p not in deleted] == []
    for path in ("launch/slurm/job.log", "outputs.log", "launch/slurm/slurm-123.out"):
        assert _git("check-ignore", "-q", "--no-index", path).returncode == 0, f"{path} is not ignored"
