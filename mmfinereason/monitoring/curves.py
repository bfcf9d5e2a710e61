"""Training curves as pictures: ``mmfinereason plot RUN_DIR [RUN_DIR …]`` and the end of every training run.

Each run dir's log history (:mod:`.history`) becomes a grid of small panels, one metric per panel, x = optimizer
step. Which panels a run gets depends on its stage (read from its saved ``recipe.yaml``) and on what it logged:
a panel with no data is left out, so a run without held-out accuracy during training simply has no such panel.

* SFT: loss, learning rate, gradient norm, real tokens/s, padding ratio, token accuracy (teacher-forced),
  held-out accuracy per source (``eval.every_n_steps`` and the accuracy after training).
* GSPO: reward and rollout accuracy per source, format rate, completion length (mean / max) and share clipped at
  ``max_completion_length``, zero-variance and filtered groups (dynamic sampling), clip ratios, entropy,
  learning rate, tokens/s, held-out accuracy per source.

Several run dirs: runs of the same stage are overlaid (one line style per run, one colour per source or
metric), runs of different stages get a section each — ``plot outputs/demo/sft outputs/demo/gspo`` draws the
whole demo in one picture. Colours follow the source, the same in every panel.

matplotlib is used through its object API (``Figure`` + the Agg canvas): no pyplot, no GUI backend, nothing
changed in a notebook's own matplotlib setup; the notebook shows the written PNG.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mmfinereason.errors import UserError
from mmfinereason.monitoring.history import read_log_history, stage_of

CURVES_FILE = "curves"  # RUN_DIR/curves.png and RUN_DIR/curves.svg
ALL = "all"  # the overall series of a per-source panel

# Panel kinds: "keys" draws each listed key present; "sources" draws PREFIX (overall, as ``all``) and every
# PREFIX/<source> key. Keys are matched exactly.


@dataclass(frozen=True)
class Panel:
    title: str
    ylabel: str
    keys: tuple[str, ...] = ()
    sources: str | None = None  # per-source prefix, e.g. "reward" draws reward and reward/<source>
    percent: bool = False  # values are fractions in [0, 1]: axis in %
    labels: dict[str, str] = field(default_factory=dict)  # legend names for keys


HELD_OUT = Panel("held-out accuracy", "accuracy", sources="eval_accuracy", percent=True)
LEARNING_RATE = Panel("learning rate", "learning rate", keys=("learning_rate",))
TOKENS = Panel("throughput", "real tokens / s", keys=("tokens_per_second",))

PANELS: dict[str, tuple[Panel, ...]] = {
    "sft": (
        Panel("training loss", "loss (per token)", keys=("loss",)),
        LEARNING_RATE,
        Panel("gradient norm", "grad norm (before clipping)", keys=("grad_norm",)),
        TOKENS,
        Panel("padding", "padding share of batch tokens", keys=("padding_ratio",), percent=True),
        Panel("token accuracy", "next-token accuracy (teacher-forced)", keys=("mean_token_accuracy",), percent=True),
        HELD_OUT,
    ),
    "gspo": (
        Panel("reward", "mean reward", sources="reward"),
        Panel("rollout accuracy", "correct rollouts", sources="accuracy", percent=True),
        Panel("format rate", "well-formed rollouts", keys=("format_rate",), percent=True),
        Panel(
            "completion length", "tokens", keys=("completions/mean_length", "completions/max_length"),
            labels={"completions/mean_length": "mean", "completions/max_length": "max"},
        ),
        Panel("clipped completions", "share at max_completion_length", keys=("completions/clipped_ratio",), percent=True),
        Panel(
            "prompt groups", "share of groups",
            keys=("dynamic_sampling/frac_zero_variance_groups", "dynamic_sampling/frac_filtered", "frac_reward_zero_std"),
            percent=True,
            labels={
                "dynamic_sampling/frac_zero_variance_groups": "zero-variance",
                "dynamic_sampling/frac_filtered": "filtered out",
                "frac_reward_zero_std": "zero-variance (TRL)",
            },
        ),
        Panel(
            "clip ratios", "share of tokens clipped",
            keys=("clip_ratio/region_mean", "clip_ratio/low_mean", "clip_ratio/high_mean"),
            percent=True,
            labels={"clip_ratio/region_mean": "region", "clip_ratio/low_mean": "low", "clip_ratio/high_mean": "high"},
        ),
        Panel("entropy", "mean token entropy (nats)", keys=("entropy",)),
        LEARNING_RATE,
        TOKENS,
        HELD_OUT,
    ),
}

RUN_STYLES = ("-", "--", ":", "-.")
KEY_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
SOURCE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                 "#bcbd22", "#7f7f7f")


def require_matplotlib():
    """Import matplotlib, or say how to install it (a dependency of mmfinereason, missing in a broken install)."""
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError(
            "training curves need matplotlib, a dependency of mmfinereason that is not installed here: "
            "pip install 'matplotlib>=3.7' (or reinstall: pip install -e .)"
        ) from e
    return matplotlib


@dataclass
class Run:
    """One run dir's log history, ready to plot."""

    path: Path
    label: str
    stage: str
    history: list[dict[str, Any]]

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(steps, values) of every entry that logged ``key`` as a finite number."""
        xs, ys = [], []
        for e in self.history:
            v = e.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and e.get("step") is not None:
                xs.append(e["step"])
                ys.append(float(v))
        return xs, ys

    def sources(self, prefix: str) -> list[str]:
        pattern = re.compile(re.escape(prefix) + r"/(.+)$")
        return sorted({m.group(1) for e in self.history for k in e if (m := pattern.match(k))})


def load_run(run_dir: str | Path, label: str | None = None) -> Run:
    path = Path(run_dir)
    history = read_log_history(path)
    return Run(path=path, label=label or _short_label(path), stage=stage_of(path, history), history=history)


def _short_label(path: Path) -> str:
    parts = path.resolve().parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else str(path)


def _lines(panel: Panel, runs: Sequence[Run]) -> list[tuple[Run, str, str]]:
    """(run, key, series name) for every series of the panel that has data."""
    out = []
    for run in runs:
        if panel.sources:
            candidates = [(panel.sources, ALL)] + [(f"{panel.sources}/{s}", s) for s in run.sources(panel.sources)]
        else:
            candidates = [(k, panel.labels.get(k, k)) for k in panel.keys]
        out += [(run, key, name) for key, name in candidates if run.series(key)[0]]
    return out


def _colors(names: Sequence[str], palette: Sequence[str]) -> dict[str, str]:
    """One colour per series name, in order; the overall series (``all``) is black."""
    others = [n for n in names if n != ALL]
    return {ALL: "black", **{name: palette[i % len(palette)] for i, name in enumerate(others)}}


def _draw_panel(ax, panel: Panel, lines, runs: Sequence[Run], source_colors: dict[str, str], last_step: int) -> None:
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    # colour = the series (source or metric), line style = the run (explained by the section's run legend)
    colors = source_colors if panel.sources else _colors(list(dict.fromkeys(n for _, _, n in lines)), KEY_COLORS)
    run_index = {id(r): i for i, r in enumerate(runs)}
    for run, key, name in lines:
        xs, ys = run.series(key)
        few = len(xs) <= 12
        ax.plot(
            xs, ys,
            linestyle=RUN_STYLES[run_index[id(run)] % len(RUN_STYLES)],
            color=colors[name],
            linewidth=2.0 if name == ALL else 1.3,
            marker="o" if few else None,
            markersize=3.5 if few else 0,
            zorder=3 if name == ALL else 2,  # the overall line on top of the per-source ones
            label=name,
        )
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel("optimizer step", fontsize=8)
    ax.set_xlim(0, max(last_step, 1) * 1.03)  # one step axis for the whole section: panels line up
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(panel.ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.3)
    if panel.percent:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    if not panel.percent:  # 1e-4 learning rates as "1e-4" at the axis top, never an offset like "+1.0003"
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4), useOffset=False)
    if panel.sources:  # the section's legend names the sources (the same colours in every panel)
        return
    # one legend entry per metric (line styles of several runs are explained by the section's legend)
    unique: dict[str, Any] = {}
    for handle, label in zip(*ax.get_legend_handles_labels()):
        unique.setdefault(label, handle)  # the first run's (solid) line
    if len(unique) > 1:
        ax.legend(unique.values(), unique.keys(), fontsize=6.5, loc="best", framealpha=0.7, handlelength=1.6)


def _section_panels(stage: str, runs: Sequence[Run]) -> list[tuple[Panel, list]]:
    chosen = []
    for panel in PANELS.get(stage, PANELS["sft"]):
        lines = _lines(panel, runs)
        if lines:
            chosen.append((panel, lines))
    return chosen


def draw(runs: Sequence[Run], *, columns: int = 4, title: str | None = None):
    """A matplotlib ``Figure`` (Agg canvas) with one section per stage; runs of a stage overlaid."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    if not runs:
        raise UserError("nothing to plot: no run dirs given")
    stages = list(dict.fromkeys(r.stage for r in runs))
    sections = []
    for stage in stages:
        members = [r for r in runs if r.stage == stage]
        panels = _section_panels(stage, members)
        if panels:
            sections.append((stage, members, panels))
    if not sections:
        names = ", ".join(str(r.path) for r in runs)
        raise UserError(f"nothing to plot: no known metric was logged in {names}")
    all_sources = sorted({s for r in runs for p in ("reward", "accuracy", "eval_accuracy") for s in r.sources(p)})
    source_colors = _colors([ALL, *all_sources], SOURCE_COLORS)

    rows_per = [math.ceil(len(p) / columns) for _, _, p in sections]
    width, row_height, header = 3.6 * columns, 2.7, 0.8
    fig = Figure(figsize=(width, sum(rows_per) * row_height + header * len(sections) + (0.4 if title else 0)))
    FigureCanvasAgg(fig)
    subfigs = fig.subfigures(len(sections), 1, height_ratios=[r * row_height + header for r in rows_per], squeeze=False)
    for (stage, members, panels), rows, sub in zip(sections, rows_per, subfigs[:, 0]):
        heading = stage.upper() + " — " + ", ".join(r.label for r in members)
        sub.suptitle(heading, fontsize=11, fontweight="bold", x=0.01, ha="left")
        axes = sub.subplots(rows, columns, squeeze=False)
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        last_step = max((e.get("step") or 0) for r in members for e in r.history)
        for ax, (panel, lines) in zip(axes.flat, panels):
            _draw_panel(ax, panel, lines, members, source_colors, last_step)
        # one legend per section, in the heading's band: the colour of each source, the line style of each run
        names = list(dict.fromkeys(n for panel, lines in panels if panel.sources for _, _, n in lines))
        names = [ALL] * (ALL in names) + sorted(n for n in names if n != ALL)
        handles = [Line2D([], [], color=source_colors[n], linewidth=2.0 if n == ALL else 1.3) for n in names]
        labels = ["all sources" if n == ALL else n for n in names]
        if len(members) > 1:
            handles += [Line2D([], [], color="gray", linestyle=RUN_STYLES[i % len(RUN_STYLES)]) for i in range(len(members))]
            labels += [r.label for r in members]
        if handles:
            sub.legend(handles, labels, loc="upper right", ncol=len(handles), fontsize=8, frameon=False,
                       bbox_to_anchor=(0.99, 1.0), handlelength=1.8, columnspacing=1.2)
        height = rows * row_height + header  # inches; the heading gets its own band above the panel titles
        sub.subplots_adjust(left=0.06, right=0.99, bottom=0.16 / rows + 0.02, top=1 - 0.8 / height,
                            wspace=0.32, hspace=0.55)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


def save_figure(fig, output: str | Path, dpi: int = 100) -> list[Path]:
    """Write ``output`` as PNG (``dpi``) and SVG (the suffix is replaced); returns both paths."""
    base = Path(output)
    base = base.with_suffix("") if base.suffix in (".png", ".svg") else base
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = [base.with_suffix(".png"), base.with_suffix(".svg")]
    import matplotlib

    fig.savefig(paths[0], dpi=dpi)
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text: smaller, searchable, selectable
        fig.savefig(paths[1])
    return paths


def write_run_curves(run_dir: str | Path) -> list[Path]:
    """``RUN_DIR/curves.png`` and ``curves.svg`` for one run; returns the paths."""
    run = load_run(run_dir)
    return save_figure(draw([run]), Path(run_dir) / CURVES_FILE)


def plot_runs(
    run_dirs: Sequence[str | Path],
    output: str | Path | None = None,
    *,
    labels: Sequence[str] | None = None,
    each: bool = True,
    dpi: int = 100,
) -> dict[str, list[Path]]:
    """``mmfinereason plot``: each run's own ``curves.png`` / ``.svg`` (``each``), and with several run dirs a
    combined picture at ``output`` (default: ``curves`` in the run dirs' common parent folder).

    Returns ``{run_dir or "combined": [png, svg]}``.
    """
    if labels is not None and len(labels) != len(run_dirs):
        raise UserError(f"{len(labels)} labels for {len(run_dirs)} run dirs: give --label once per run dir, in order")
    runs = [load_run(d, labels[i] if labels else None) for i, d in enumerate(run_dirs)]
    written: dict[str, list[Path]] = {}
    if each or len(runs) == 1 and output is None:
        for run in runs:
            written[str(run.path)] = save_figure(draw([run]), run.path / CURVES_FILE, dpi)
    if len(runs) > 1 or output is not None:
        target = Path(output) if output is not None else _common_parent([r.path for r in runs]) / CURVES_FILE
        written["combined"] = save_figure(draw(runs), target, dpi)
    return written


def _common_parent(paths: Sequence[Path]) -> Path:
    import os

    resolved = [str(p.resolve()) for p in paths]
    common = Path(os.path.commonpath(resolved))
    return common.parent if str(common) in resolved else common
