"""A grid of GSPO study cells (issue 17): SFT models x settings x GSPO seeds, then the settings compared.

    PYTHONPATH=. python bench/gspo_study_grid.py --out outputs/study18 --sft-seeds 2 3 4 \
        --setting shipped= --setting lr15=train.learning_rate=1.5e-4 --margin 0.3

For each SFT seed: train ``recipes/tiny/sft.yaml`` at that ``train.seed`` (all threads), evaluate it alone (the
baseline cell), then run every setting at every GSPO seed with ``bench/gspo_study.py``, ``--parallel`` cells at a
time with one thread each (what the study's tables were measured with). Finished pieces (a saved model, a
``summary.json``) are skipped, so an interrupted grid picks up where it stopped. Last, with two or more settings,
each setting is compared with the first by ``bench/compare_recipes.py``. ``--dry-run`` prints the commands.

Why a script and not a shell loop: the order matters (a cell's ``--baseline`` must exist before it starts) and a
grid takes hours, so it has to resume; the study's rules are only as good as the runs being repeatable by others.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass
class Run:
    """One command of the grid, the log it writes, and whether it gets every thread (SFT) or one (cells)."""

    command: list[str]
    folder: Path  # what it produces; its log is FOLDER.log
    all_threads: bool = False

    @property
    def log(self) -> Path:
        return Path(f"{self.folder}.log")

    def env(self) -> dict | None:
        return None if self.all_threads else one_thread()


def one_thread() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))}


def plan(out: Path, sft_seeds: list[str], settings: list[tuple[str, list[str]]], gspo_seeds: list[str],
         sft_recipe: str) -> list[tuple[str, list[Run]]]:
    """The grid as stages run in order, each a list of runs that may go side by side; finished ones left out."""
    stages = []
    for s in sft_seeds:
        sft = out / f"sft{s}"
        if not (sft / "model.safetensors").exists():
            command = [sys.executable, "-m", "mmfinereason", "sft", sft_recipe, f"train.seed={s}", f"train.output_dir={sft}"]
            stages.append((f"SFT model train.seed={s}", [Run(command, sft, all_threads=True)]))
        study = [sys.executable, str(HERE / "gspo_study.py"), "--sft", str(sft)]
        base = out / f"sft{s}-base"
        if not (base / "summary.json").exists():
            stages.append((f"baseline of sft{s}", [Run([*study, "--out", str(base), "--eval-only"], base)]))
        cells = []
        for g in gspo_seeds:
            for name, overrides in settings:
                cell = out / f"sft{s}-{name}-s{g}"
                if not (cell / "summary.json").exists():
                    command = [*study, "--out", str(cell), "--baseline", str(base), f"train.seed={g}", *overrides]
                    cells.append(Run(command, cell))
        if cells:
            stages.append((f"GSPO cells from sft{s}", cells))
    return stages


def run(job: Run) -> int:
    with open(job.log, "w") as f:
        return subprocess.run(job.command, stdout=f, stderr=subprocess.STDOUT, env=job.env()).returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--sft-seeds", nargs="+", required=True, help="train.seed of each SFT model")
    parser.add_argument("--gspo-seeds", nargs="+", default=["42", "1", "2"])
    parser.add_argument("--setting", action="append", required=True, metavar="NAME=OVERRIDE[,OVERRIDE…]",
                        help="a GSPO setting: a name and its recipe overrides (none for the shipped recipe)")
    parser.add_argument("--sft-recipe", default="recipes/tiny/sft.yaml")
    parser.add_argument("--parallel", type=int, default=2, help="cells at a time, one thread each")
    parser.add_argument("--margin", type=float, help="passed to compare_recipes.py: check the decision rule")
    parser.add_argument("--dry-run", action="store_true")
    a = parser.parse_args()
    settings = []
    for text in a.setting:
        name, _, overrides = text.partition("=")
        if not name or "-" in name:
            parser.error(f"--setting {text!r}: give NAME=OVERRIDES with a NAME without '-' (it names folders)")
        settings.append((name, [o for o in overrides.split(",") if o]))
    a.out.mkdir(parents=True, exist_ok=True)
    for title, jobs in plan(a.out, a.sft_seeds, settings, a.gspo_seeds, a.sft_recipe):
        print(f"== {title}: {len(jobs)} run{'s' * (len(jobs) != 1)}", flush=True)
        if a.dry_run:
            print("\n".join(" ".join(job.command) for job in jobs))
            continue
        with ThreadPoolExecutor(max(1, a.parallel)) as pool:
            codes = list(pool.map(run, jobs))
        failed = [str(job.log) for job, code in zip(jobs, codes) if code]
        if failed:
            sys.exit(f"{len(failed)} run(s) failed, see {', '.join(failed)}; rerun the same command to resume")
    for name, _ in settings[1:]:
        compare = [sys.executable, str(HERE / "compare_recipes.py"),
                   "--reference", str(a.out / f"sft*-{settings[0][0]}-s*"), "--candidate", str(a.out / f"sft*-{name}-s*"),
                   "--baselines", str(a.out / "sft*-base"), *(["--margin", str(a.margin)] if a.margin is not None else [])]
        print(f"== {name} against {settings[0][0]}", flush=True)
        if a.dry_run:
            print(" ".join(compare))
        else:
            subprocess.run(compare, env=one_thread(), check=True)


if __name__ == "__main__":
    main()
