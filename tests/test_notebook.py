"""examples/quickstart.ipynb: stored without outputs, and executed top to bottom with a real Jupyter kernel."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"
KERNEL = "mmfinereason-test"

# Appended to the in-memory copy only: what the run produced, as one JSON line.
REPORT_CELL = """
import json
print("NOTEBOOK_RESULT " + json.dumps({
    "untrained": untrained.accuracy, "sft": after_sft.accuracy, "gspo": after_gspo.accuracy,
    "sft_steps": len([e for e in trainer.state.log_history]), "curves": [str(p) for p in written["combined"]],
    "rollouts": len(responses), "rewards": sorted(set(accuracy)),
}))
"""


def test_notebook_is_stored_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "no code cells"
    for cell in code:
        assert cell.get("outputs") == [] and cell.get("execution_count") is None, "strip outputs before committing"


def _kernel_spec(tmp_path: Path, monkeypatch) -> None:
    """A kernelspec for *this* interpreter, found through JUPYTER_PATH: no global registration, no stale
    'python3' kernel from another environment."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "mmfinereason (test)", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))


@pytest.mark.slow
@pytest.mark.timeout(2700)
def test_quickstart_runs_top_to_bottom(tmp_path, monkeypatch, tiny_dir):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")

    _kernel_spec(tmp_path, monkeypatch)
    out = tmp_path / "out"
    monkeypatch.setenv("MMFINEREASON_NOTEBOOK_OUT", str(out))  # the kernel inherits this environment
    monkeypatch.setenv("MMFINEREASON_CACHE", str(Path(tiny_dir).parent))

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(REPORT_CELL))
    client = nbclient.NotebookClient(
        # per cell: a loaded 2-core box (CI next to two training runs) took over 20 minutes for the SFT cell
        nb, kernel_name=KERNEL, timeout=2400, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any failing cell

    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                texts.append(output["text"])
            elif "data" in output and "text/plain" in output["data"]:
                texts.append(output["data"]["text/plain"])
    text = "\n".join(texts)
    [line] = [ln for ln in text.splitlines() if ln.startswith("NOTEBOOK_RESULT ")]
    result = json.loads(line.split(" ", 1)[1])

    assert result["sft"] >= result["untrained"] + 0.15, result  # SFT learns the task even in this short run
    assert result["gspo"] >= result["sft"] - 0.15, result  # 12 GSPO steps: noise, not collapse
    assert result["rollouts"] == 12 and set(result["rewards"]) <= {0.0, 1.0}
    png, svg = map(Path, result["curves"])
    assert png == out / "curves.png" and png.stat().st_size > 10_000 and svg.is_file()
    for stage in ("sft", "gspo"):
        assert (out / stage / "log_history.jsonl").is_file() and (out / stage / "curves.png").is_file()
    # the console: compact lines, not transformers' dicts
    assert any(ln.startswith("step ") and "loss" in ln for ln in text.splitlines()), text[-3000:]
    assert any(ln.startswith("step ") and "reward" in ln for ln in text.splitlines()), text[-3000:]
    assert "{'loss'" not in text
    # an inline picture
    assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
