"""Two settings of the GSPO study compared over matched cells (issue 17): is the candidate better than the
reference beyond the spread of the runs, and does a decision rule written down in advance hold?

    PYTHONPATH=. python bench/compare_recipes.py \
        --reference 'outputs/study18/sft*-a100-s*' --candidate 'outputs/study18/sft*-lr15-s*' \
        --baselines 'outputs/study18/sft*-base' --margin 0.3

Each argument is a glob of ``bench/gspo_study.py`` cell folders (``summary.json`` + ``predictions.jsonl``). Cells
match on (SFT model, ``train.seed``); a cell without a match is named on stderr, not dropped silently. Baselines
are ``--eval-only`` cells of the SFT models: with them each cell also gets its gain over its SFT model, and
``--margin M`` checks the session-17 rule: the candidate's worst gain is no lower than the reference's worst, and
its mean gain no lower than the reference's mean by more than M points. Pairs from one SFT model (its GSPO seeds)
are also averaged first and compared over the SFT models, since a change's effect has moved more across SFT models
than across seeds (:mod:`mmfinereason.evaluation.replicated`). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
import sys
from pathlib import Path


def read_cell(folder: str) -> dict:
    """A study cell: its SFT model, seed, accuracy and predictions."""
    from mmfinereason.evaluation.accuracy import Prediction

    path = Path(folder)
    summary = json.loads((path / "summary.json").read_text())
    with open(path / "predictions.jsonl") as f:
        predictions = [Prediction.from_record(json.loads(line)) for line in f if line.strip()]
    seeds = [o.split("=", 1)[1] for o in summary["overrides"] if o.startswith("train.seed=")]
    return {"name": path.name, "sft": str(Path(summary["sft"])), "seed": seeds[-1] if seeds else "recipe",
            "accuracy": summary["accuracy"], "trained": "optimizer_steps" in summary, "predictions": predictions}


def cells_of(pattern: str, trained: bool) -> dict[tuple[str, str], dict]:
    """The cells a glob names, by (SFT model, seed); two cells under one key is an error."""
    cells: dict[tuple[str, str], dict] = {}
    folders = sorted(f for f in glob.glob(pattern) if (Path(f) / "summary.json").exists())
    if not folders:
        sys.exit(f"no finished study cell (folder with summary.json) matches {pattern!r}")
    for folder in folders:
        cell = read_cell(folder)
        if cell["trained"] != trained:
            continue
        key = (cell["sft"], cell["seed"]) if trained else (cell["sft"], "")
        if key in cells:
            sys.exit(f"{cells[key]['name']} and {cell['name']} are both {key}: narrow the glob {pattern!r}")
        cells[key] = cell
    return cells


def short(sft: str) -> str:
    """``outputs/study18/sft2`` -> ``study18/sft2``: enough to tell the SFT models apart in a table."""
    return "/".join(Path(sft).parts[-2:])


def main() -> None:
    from mmfinereason.evaluation.paired import paired_difference
    from mmfinereason.evaluation.replicated import compare_replicated

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True, help="glob of the reference setting's cells")
    parser.add_argument("--candidate", required=True, help="glob of the candidate setting's cells")
    parser.add_argument("--baselines", help="glob of --eval-only cells of the SFT models (for gains)")
    parser.add_argument("--margin", type=float, help="points: check the worst-gain / mean-gain rule")
    a = parser.parse_args()
    reference, candidate = cells_of(a.reference, True), cells_of(a.candidate, True)
    baselines = cells_of(a.baselines, False) if a.baselines else {}
    keys = sorted(reference.keys() & candidate.keys())
    for key in sorted(reference.keys() ^ candidate.keys()):
        lone = (reference.get(key) or candidate.get(key))["name"]
        print(f"unmatched (no cell of the other setting with this SFT model and seed): {lone}", file=sys.stderr)
    if a.margin is not None and not baselines:
        sys.exit("--margin needs --baselines: the rule is about gains over the SFT models")
    comparison = compare_replicated(
        (f"{short(s)} seed {seed}", reference[s, seed]["predictions"], candidate[s, seed]["predictions"], short(s))
        for s, seed in keys)

    gains: dict[str, list[float]] = {"reference": [], "candidate": []}
    print(f"{'SFT model':<16}{'seed':>6}{'reference':>11}{'candidate':>11}{'paired':>8}{'fixed':>7}{'broke':>7}"
          f"{'gain ref':>10}{'gain cand':>11}")
    for pair, (s, seed) in zip(comparison.pairs, keys):
        row = (f"{short(s):<16}{seed:>6}{100 * reference[s, seed]['accuracy']:>11.1f}"
               f"{100 * candidate[s, seed]['accuracy']:>11.1f}{100 * pair.change.difference:>+8.1f}"
               f"{pair.change.fixed:>7}{pair.change.broken:>7}")
        if (s, "") in baselines:
            base = baselines[s, ""]["predictions"]
            g = [paired_difference(base, cell[s, seed]["predictions"]).difference for cell in (reference, candidate)]
            gains["reference"].append(g[0])
            gains["candidate"].append(g[1])
            row += f"{100 * g[0]:>+10.1f}{100 * g[1]:>+11.1f}"
        print(row)
    print(comparison.describe(groups="SFT models"))
    result = {"pairs": len(keys), "comparison": comparison.to_dict()}
    if gains["reference"]:
        for side, g in gains.items():
            result[f"{side}_gain"] = {"mean": statistics.fmean(g), "worst": min(g), "all": g}
        print(f"gain over the SFT models ({len(gains['reference'])} pairs with a baseline): reference mean "
              f"{100 * result['reference_gain']['mean']:+.1f} worst {100 * result['reference_gain']['worst']:+.1f}; "
              f"candidate mean {100 * result['candidate_gain']['mean']:+.1f} worst "
              f"{100 * result['candidate_gain']['worst']:+.1f}")
    if a.margin is not None:
        if len(gains["reference"]) < len(keys):
            sys.exit("--margin: some pairs have no baseline cell of their SFT model; the rule needs every pair's gain")
        worst_ok = result["candidate_gain"]["worst"] >= result["reference_gain"]["worst"]
        mean_ok = result["candidate_gain"]["mean"] >= result["reference_gain"]["mean"] - a.margin / 100
        result["rule"] = {"margin_points": a.margin, "worst_no_lower": worst_ok, "mean_within_margin": mean_ok,
                          "holds": worst_ok and mean_ok}
        print(f"rule (candidate's worst gain >= reference's worst, mean gain >= reference's - {a.margin} points): "
              f"{'holds' if worst_ok and mean_ok else 'fails'}")
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
