"""The two-stage demo: the tiny Qwen3-VL on the embedded task, SFT then GSPO, on CPU in minutes.

``mmfinereason demo`` (or :func:`run_demo` from Python) runs the shipped recipes ``recipes/tiny/sft.yaml`` and
``recipes/tiny/gspo.yaml`` through the same pipeline as the real ones, and measures held-out accuracy on the same
items three times: untrained, after SFT, after GSPO. Nothing is downloaded: the model is built offline and the
task is drawn procedurally (:mod:`mmfinereason.toy`).

Recipes are the paths given, else the shipped ones (:func:`mmfinereason.recipe.shipped.find_recipe`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from mmfinereason.recipe.loader import Recipe, RecipeError, load_recipe
from mmfinereason.recipe.shipped import find_recipe
from mmfinereason.evaluation.accuracy import AccuracyReport
from mmfinereason.monitoring.history import append_log_entry

SFT_RECIPE = "tiny/sft.yaml"
GSPO_RECIPE = "tiny/gspo.yaml"


@dataclass
class DemoResult:
    """Held-out accuracy at each stage and where each model was saved."""

    untrained: AccuracyReport
    after_sft: AccuracyReport
    after_gspo: AccuracyReport
    sft_dir: str
    gspo_dir: str
    seconds: dict[str, float]
    curves: list[str] = field(default_factory=list)  # both stages in one picture, then each run's own

    def table(self) -> str:
        stages = (("untrained", self.untrained), ("after SFT", self.after_sft), ("after GSPO", self.after_gspo))
        sources = sorted({s for _, r in stages for s in r.per_source()})
        lines = [f"{'held-out accuracy':<20}" + "".join(f"{s:>13}" for s in sources) + f"{'all':>9}"]
        for name, report in stages:
            per = report.per_source()
            cells = "".join(f"{100 * per[s][0]:>12.1f}%" if s in per else f"{'-':>13}" for s in sources)
            lines.append(f"{name:<20}{cells}{100 * report.accuracy:>8.1f}%")
        return "\n".join(lines)

    def reasoning_ceilings(self) -> dict[str, float | None]:
        """Per stage, the accuracy had every answer followed from the model's own listing of the shapes
        (:mod:`mmfinereason.toy.diagnosis`; ``None`` for held-out items that are not the toy task's)."""
        from mmfinereason.toy.diagnosis import reasoning_ceiling

        return {"after SFT": reasoning_ceiling(self.after_sft.predictions),
                "after GSPO": reasoning_ceiling(self.after_gspo.predictions)}

    def headroom(self) -> str | None:
        """What GSPO added, split into better listings (seeing) and answers that follow them (reasoning), against
        the room reasoning alone had (issue 17: the room differs between SFT models), overall and per source."""
        from mmfinereason.toy.diagnosis import attribute_gain, gain_table

        ceilings = self.reasoning_ceilings()
        if ceilings["after SFT"] is None or ceilings["after GSPO"] is None:
            return None
        split = attribute_gain(self.after_sft.predictions, self.after_gspo.predictions)
        parts = split["all"]
        room = ceilings["after SFT"] - self.after_sft.accuracy
        text = (f"reasoning ceiling (the accuracy had each answer followed the model's own listing): "
                f"SFT {100 * ceilings['after SFT']:.1f}%, GSPO {100 * ceilings['after GSPO']:.1f}%\n"
                f"GSPO added {100 * parts['gain']:+.1f}: {100 * parts['seeing']:+.1f} from its listings (seeing), "
                f"{100 * parts['reasoning']:+.1f} from answers that follow them (reasoning)\n")
        if room <= 0.01:
            text += "the SFT model was already at its reasoning ceiling: its errors were all of seeing"
        else:
            text += f"reasoning alone could have added {100 * room:+.1f} points to the SFT model"
        return text + "\n" + gain_table(split)

    def paired(self) -> str:
        """GSPO against SFT item by item, per source: items fixed and broken, the change with its 95% interval
        over the items, and a sign test (:mod:`mmfinereason.evaluation.paired`: whether +2 on 500 items is more
        than noise; the interval does not cover another GSPO seed, which moves the result by more)."""
        from mmfinereason.evaluation.paired import paired_by_group, paired_table

        groups = paired_by_group(self.after_sft.predictions, self.after_gspo.predictions)
        return (paired_table(groups, "GSPO vs SFT, item by item") + "\n(the interval is over the items drawn; "
                "another GSPO seed moves the result by more: docs/gspo-study-task-v9.md)")


def _same_eval(gspo: Recipe, sft: Recipe) -> Recipe:
    """The GSPO recipe evaluated exactly like the SFT one (same held-out items, same generation settings)."""
    data = dataclasses.replace(gspo.data, eval=list(sft.data.eval), min_pixels=sft.data.min_pixels,
                               max_pixels=sft.data.max_pixels, system_prompt=sft.data.system_prompt)
    return dataclasses.replace(gspo, data=data, eval=dataclasses.replace(sft.eval, before_training=False))


def run_demo(
    output_dir: str | Path = "outputs/demo",
    *,
    sft_recipe: str | Path | None = None,
    gspo_recipe: str | Path | None = None,
    sft_overrides: Sequence[str] = (),
    gspo_overrides: Sequence[str] = (),
    verbose: bool = True,
) -> DemoResult:
    """SFT then GSPO on the embedded task; returns (and prints) held-out accuracy untrained → SFT → GSPO."""
    from mmfinereason.pipelines.gspo import run_gspo
    from mmfinereason.pipelines.sft import run_sft

    out = Path(output_dir)
    sft_dir, gspo_dir = out / "sft", out / "gspo"
    sft = load_recipe(
        sft_recipe or find_recipe(SFT_RECIPE),
        [*sft_overrides, f"train.output_dir={sft_dir}", "eval.before_training=true", "eval.after_training=true"],
    )
    gspo = load_recipe(
        gspo_recipe or find_recipe(GSPO_RECIPE),
        [*gspo_overrides, f"model.name_or_path={sft_dir}", f"train.output_dir={gspo_dir}", "eval.after_training=true"],
    )
    if not sft.data.eval:
        raise RecipeError(f"{sft.source_path}: the demo needs held-out items (data.eval)")
    gspo = _same_eval(gspo, sft)
    say = print if verbose else (lambda *a, **k: None)
    say(f"demo: SFT ({sft.source_path}, seed {sft.train.seed}) then GSPO ({gspo.source_path}, seed {gspo.train.seed})")

    start = time.perf_counter()
    sft_result = run_sft(sft)
    sft_seconds = time.perf_counter() - start
    if sft_result.accuracy_after is not None:  # GSPO's held-out curve starts where SFT ended (same items)
        append_log_entry(gspo_dir, {**sft_result.accuracy_after.metrics(), "step": 0})
    start = time.perf_counter()
    gspo_result = run_gspo(gspo)
    gspo_seconds = time.perf_counter() - start

    result = DemoResult(
        untrained=sft_result.accuracy_before,
        after_sft=sft_result.accuracy_after,
        after_gspo=gspo_result.accuracy_after,
        sft_dir=str(sft_dir),
        gspo_dir=str(gspo_dir),
        seconds={"sft": sft_seconds, "gspo": gspo_seconds, "total": sft_seconds + gspo_seconds},
    )
    say("\n" + "=" * 72)
    say(result.table())
    say(
        f"\n{len(result.untrained.predictions)} held-out items; untrained {100 * result.untrained.accuracy:.1f}% -> "
        f"SFT {100 * result.after_sft.accuracy:.1f}% -> GSPO {100 * result.after_gspo.accuracy:.1f}%"
    )
    say(result.paired())
    headroom = result.headroom()
    if headroom:
        say(headroom)
    say(f"SFT model:  {sft_dir}   ({sft_seconds / 60:.1f} min)")
    say(f"GSPO model: {gspo_dir}   ({gspo_seconds / 60:.1f} min)")
    result.curves = _demo_curves(out, [sft_dir, gspo_dir], [sft_result.curves, gspo_result.curves])
    for path in result.curves:
        say(f"curves:     {path}")
    return result


def _demo_curves(out: Path, run_dirs: list[Path], per_run: list[list[str]]) -> list[str]:
    """``OUT/curves.png``: SFT and GSPO in one picture (``mmfinereason plot OUT/sft OUT/gspo``), then each run's."""
    from mmfinereason.monitoring.curves import plot_runs

    own = [paths[0] for paths in per_run if paths]
    try:
        combined = plot_runs(run_dirs, out / "curves.png", each=False)["combined"]
    except (ImportError, ValueError, OSError) as e:
        logging.getLogger(__name__).warning("no combined training curves in %s: %s", out, e)
        return own
    return [str(combined[0]), *own]
