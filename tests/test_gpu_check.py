"""bench/gpu_check.py runs on CPU in its dry-run mode: every part reports, skipped with a reason, one JSON line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture()
def gpu_check(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import gpu_check

    return gpu_check


def test_dry_run_prints_one_json_line_with_every_part(gpu_check, capsys, tmp_path):
    report = gpu_check.main(["--dry-run", "--work", str(tmp_path)])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 1 and json.loads(lines[0]) == json.loads(json.dumps(report, default=str))
    assert set(report["parts"]) == set(gpu_check.PARTS) and report["ok"]
    for part in report["parts"].values():
        assert part["status"] == "skipped" and part["reason"]
    if "torch" in sys.modules and not sys.modules["torch"].cuda.is_available():
        assert all(p["reason"] == "no CUDA device" for p in report["parts"].values())
    assert sum(gpu_check.TIMEOUTS.values()) <= 600  # the whole check within 10 minutes


def test_unknown_part_is_refused(gpu_check):
    with pytest.raises(SystemExit):
        gpu_check.main(["--dry-run", "--parts", "varlen,nope"])
