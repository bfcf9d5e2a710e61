"""The bundled verifiable visual task: procedurally drawn shapes, questions with checkable answers.

Why a task of our own: nothing can be downloaded at run time on the machines we test on, yet every stage of
the recipe (SFT, GSPO, eval, pass-rate selection) needs images, questions, teacher traces and gold answers in
the MMFineReason schema. This module draws them, deterministically from a seed, in exactly that schema:

* ``question`` starts with ``<image>``;
* ``qwen3vl_235b_thinking_response`` is ``<think>…</think>`` followed by a short written solution that ends
  with ``Therefore, the final answer is <answer>X</answer>.``;
* ``source`` names the sub-task (used for per-domain mixing and metrics), ``pass_rate`` is filled.

Sub-tasks (``source``), one per answer type:

=================  =============================================  ===============
source             question                                       answer type
=================  =============================================  ===============
``toy_color``      colour of the (single / largest) shape, A–D     option letter
``toy_count``      how many shapes of a named kind                integer
``toy_shape``      which kind of shape is the largest             word
``toy_compare``    are there more X than Y shapes                 yes / no
=================  =============================================  ===============

Every think trace first lists the shapes in reading order, then answers from that list (task v8). Compare names
the question's two colours first and lists the colours with the running lead of one over the other (task v9). The list makes perception and reasoning separately measurable: ``bench/gspo_study.py`` reports, per
source, how often a model's listing is right and how often its answer follows from its own listing.

``difficulty`` (0 = easy … 2 = hard, or ``None`` for a mix) raises the number of distractor shapes, the
counts to reach and shrinks the shapes. ``pass_rate`` is a deterministic stand-in for the paper's
"Qwen3-VL-4B success over 4 tries": the fraction of 4 simulated tries that a solver with a per-difficulty
skill would get right, quantised to {0, .25, .5, .75, 1} like the real column.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from mmfinereason.errors import UserError

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
}
SHAPES = ("circle", "square", "triangle")
SOURCES = ("toy_color", "toy_count", "toy_shape", "toy_compare")
# Image sizes (width, height): several sizes and aspect ratios, all small enough for CPU training.
SIZES = ((96, 96), (128, 96), (96, 128), (160, 96), (128, 128), (112, 80))
# Probability that a simulated solver gets an item right, by difficulty: gives `pass_rate` its spread.
_SOLVER_SKILL = (0.9, 0.6, 0.3)


@dataclass(frozen=True)
class Item:
    """One drawn shape: kind, colour name, centre and radius in pixels."""

    kind: str
    color: str
    x: int
    y: int
    r: int


def _draw(items: list[Item], size: tuple[int, int], rng: random.Random) -> Image.Image:
    background = tuple(rng.randint(235, 255) for _ in range(3))
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    for it in items:
        box = (it.x - it.r, it.y - it.r, it.x + it.r, it.y + it.r)
        fill = COLORS[it.color]
        if it.kind == "circle":
            draw.ellipse(box, fill=fill)
        elif it.kind == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(it.x, it.y - it.r), (it.x - it.r, it.y + it.r), (it.x + it.r, it.y + it.r)], fill=fill)
    return image


def _place(n: int, size: tuple[int, int], radius: tuple[int, int], rng: random.Random) -> list[tuple[int, int, int]]:
    """Non-overlapping positions (rejection sampling with a bounded number of tries)."""
    w, h = size
    placed: list[tuple[int, int, int]] = []
    for _ in range(400):
        if len(placed) == n:
            break
        r = rng.randint(*radius)
        x, y = rng.randint(r + 2, w - r - 3), rng.randint(r + 2, h - r - 3)
        if all((x - px) ** 2 + (y - py) ** 2 > (r + pr + 3) ** 2 for px, py, pr in placed):
            placed.append((x, y, r))
    return placed


def _place_exactly(n: int, size: tuple[int, int], radius: tuple[int, int], rng: random.Random):
    """``n`` non-overlapping positions, or None when a few tries cannot fit them all.

    Why not keep what fits: for a comparison, truncating the draw changes its answer, always toward 'yes'.
    """
    for _ in range(8):
        spots = _place(n, size, radius, rng)
        if len(spots) == n:
            return spots
    return None


def _radius(difficulty: int) -> tuple[int, int]:
    return ((22, 30), (12, 17), (8, 12))[difficulty]


def _options(correct: str, pool: list[str], difficulty: int, rng: random.Random) -> tuple[list[str], str]:
    """Options in a fixed order on easy / medium items, shuffled on hard ones.

    Shuffled options make the letter a lookup in the question text on top of the visual judgement — a skill
    the tiny model acquires slowly; keeping it for hard items only leaves stage 2 something to improve.
    """
    options = list(pool)
    if difficulty == 2:
        rng.shuffle(options)
    letter = "ABCD"[options.index(correct)]
    return options, letter


def _reading_order(items: list[Item]) -> list[Item]:
    """Left to right (then top to bottom), not drawing order: each next shape in a listing is then a function of
    the image, so the trace teaches a scan instead of asking the model to guess an arbitrary permutation."""
    return sorted(items, key=lambda it: (it.x, it.y))


def _listing(items: list[Item]) -> str:
    """Every shape in reading order, as the think traces list them: 'a red circle, a blue square'."""
    return ", ".join(f"a {it.color} {it.kind}" for it in _reading_order(items))


def _color_item(difficulty: int, size, rng):
    """Colour of the largest shape (easy: the only shape)."""
    n = 1 + difficulty
    spots = _place(n, size, _radius(difficulty), rng)
    spots.sort(key=lambda s: -s[2])
    # Make the target clearly the largest.
    x, y, r = spots[0]
    spots[0] = (x, y, r + 4) if n > 1 else (x, y, r)
    colors = [rng.choice(list(COLORS)) for _ in spots]
    items = [Item(rng.choice(SHAPES), c, x, y, r) for (x, y, r), c in zip(spots, colors)]
    target = items[0]
    options, letter = _options(target.color, list(COLORS), difficulty, rng)
    which = "the shape" if n == 1 else "the largest shape"
    opts = "\n".join(f"{'ABCD'[i]}. {o}" for i, o in enumerate(options))
    question = f"What is the colour of {which} in the image?\nOptions:\n{opts}"
    # Task v8: the trace lists every shape first (as count's does), so each item supervises what the vision
    # tower sees of every shape, not of one, and the answer is a choice among what the model has written.
    think = (
        f"I list the shapes from left to right: {_listing(items)}. {which.capitalize()} is the {target.color} "
        f"{target.kind}. The colour {target.color} is option {letter}."
    )
    solution = f"The {which[4:]} is {target.color}, which is option {letter}."
    return items, question, letter, think, solution


def _count_item(difficulty: int, size, rng):
    kind = rng.choice(SHAPES)
    target = rng.randint(1, (3, 5, 6)[difficulty])
    distractors = rng.randint(0, (1, 2, 3)[difficulty])
    spots = _place(target + distractors, size, _radius(difficulty), rng)
    target = min(target, len(spots))  # what fits: small counts are the common answers (few large shapes fit)
    others = [k for k in SHAPES if k != kind]
    items = [
        Item(kind if i < target else rng.choice(others), rng.choice(list(COLORS)), x, y, r)
        for i, (x, y, r) in enumerate(spots)
    ]
    rng.shuffle(items)
    plural = kind + "s"
    question = f"How many {plural} are in the image? Answer with a number."
    think = f"I list the shapes from left to right: {_listing(items)}. Counting only the {plural}, I get {target}."
    solution = f"There are {target} {plural} in the image."
    return items, question, str(target), think, solution


def _shape_item(difficulty: int, size, rng):
    n = 1 + difficulty
    spots = _place(n, size, _radius(difficulty), rng)
    spots.sort(key=lambda s: -s[2])
    x, y, r = spots[0]
    spots[0] = (x, y, r + 4) if n > 1 else (x, y, r)
    items = [Item(rng.choice(SHAPES), rng.choice(list(COLORS)), x, y, r) for x, y, r in spots]
    target = items[0]
    which = "the shape" if n == 1 else "the largest shape"
    question = f"What kind of shape is {which} in the image? Answer with one word: circle, square or triangle."
    think = f"I list the shapes from left to right: {_listing(items)}. {which.capitalize()} is the {target.color} {target.kind}."
    solution = f"The {which[4:]} is a {target.kind}."
    return items, question, target.kind, think, solution


def _signed(n: int) -> str:
    """A lead as the compare traces write it: '+2', '0', '-1'."""
    return f"{n:+d}" if n else "0"


def _compare_item(difficulty: int, size, rng):
    a, b = rng.sample(list(COLORS), 2)
    top = (3, 4, 5)[difficulty]
    # Half the items answer 'yes'. Drawing both counts freely, bumping ties to 'yes' and truncating to the
    # shapes that fit made ~2/3 of them 'yes' (task v5): the SFT model's compare accuracy was mostly that prior,
    # and GSPO drifted onto the majority wherever the model could not count the colours (issue 17) — an answer
    # attractor the task itself had planted. Ties are 'no' items ("not more"); a draw that does not fit is redrawn.
    more = rng.random() < 0.5
    spots = None
    while spots is None:  # terminates: (1, 0) and (0, 1) always fit
        na, nb = rng.randint(0, top), rng.randint(0, top)
        if na + nb > 0 and (na > nb) == more:
            spots = _place_exactly(na + nb, size, _radius(difficulty), rng)
    items = [Item(rng.choice(SHAPES), a if i < na else b, x, y, r) for i, (x, y, r) in enumerate(spots)]
    rng.shuffle(items)
    answer = "yes" if na > nb else "no"
    question = f"Are there more {a} shapes than {b} shapes in the image? Answer yes or no."
    # The trace, task v9 (issue 17): name the question's two colours, then walk the shapes in reading order keeping
    # the lead of the first colour over the second ("red +1, blue 0, red +1"), and answer from its sign.
    # * Names first. Task v8 listed the colours, then wrote "So 2 red and 1 blue": the demo's SFT model took those
    #   names from its own list (the first listed colour in 86% of answers), named the question's pair in order on
    #   16% of items, and its answers were coin flips (54.4%) although its list held the right comparison on 94%.
    #   At the start of the answer the question holds the only colour words in context, an easy copy.
    # * A running lead, not two counts. Counting one colour over a list is a search back through the whole list;
    #   with the names first but the counts kept, the SFT model's counts followed its list on 52-62% of items and
    #   compare stayed at 60.8%. Each lead is the previous one +-1: a local step. SFT compare: 88.8%.
    # Colours only: every shape here is one of the two colours asked about; the kinds would push hard items past the
    # 96-token budget (the longest trace is 92 tokens).
    lead, steps = 0, []
    for it in _reading_order(items):
        lead += 1 if it.color == a else -1
        steps.append(f"{it.color} {_signed(lead)}")
    think = (
        f"I compare {a} with {b}. The lead of {a} from left to right: {', '.join(steps)}. "
        f"So {a} leads by {_signed(lead)}."
    )
    solution = f"{a.capitalize()} leads {b} by {_signed(lead)}, so the answer is {answer}."
    return items, question, answer, think, solution


_MAKERS = {"toy_color": _color_item, "toy_count": _count_item, "toy_shape": _shape_item, "toy_compare": _compare_item}


def _pass_rate(difficulty: int, rng: random.Random) -> float:
    return sum(rng.random() < _SOLVER_SKILL[difficulty] for _ in range(4)) / 4


@dataclass(frozen=True)
class Scene:
    """What one row of the task shows and asks, before it is drawn: the shapes themselves, for probes of what a
    model's image tokens hold (``bench/vision_probe.py``) as well as for the row."""

    source: str
    difficulty: int
    size: tuple[int, int]
    items: list[Item]
    question: str
    answer: str
    think: str
    solution: str


def make_scene(
    index: int, seed: int = 0, difficulty: int | None = None, sources=SOURCES
) -> tuple[Scene, random.Random]:
    """Row ``index`` of draw ``seed`` undrawn, and the random stream that goes on to draw it (:func:`make_example`)."""
    rng = random.Random(f"{seed}-{index}")
    source = sources[index % len(sources)]
    # The default mix leans easy: the tiny model learns to see on easy items within the CPU budget, and the
    # medium / hard ones leave stage 2 (GSPO) room to improve.
    level = rng.choice((0, 0, 0, 1, 1, 2)) if difficulty is None else int(difficulty)
    if level not in (0, 1, 2):
        raise ValueError(f"difficulty must be 0, 1, 2 or None, got {difficulty!r}")
    size = rng.choice(SIZES)
    return Scene(source, level, size, *_MAKERS[source](level, size, rng)), rng


def draw_scene(scene: Scene, rng: random.Random) -> Image.Image:
    """The image of a scene from :func:`make_scene`, with the random stream it returned: the row's own image."""
    return _draw(scene.items, scene.size, rng)


def make_example(index: int, seed: int = 0, difficulty: int | None = None, sources=SOURCES) -> dict:
    """One row of the task in the MMFineReason schema (image as a PIL image)."""
    scene, rng = make_scene(index, seed, difficulty, sources)
    source, level, items = scene.source, scene.difficulty, scene.items
    question, answer, think, solution = scene.question, scene.answer, scene.think, scene.solution
    image = draw_scene(scene, rng)
    caption = "An image showing " + ", ".join(f"a {it.color} {it.kind}" for it in items) + "."
    response = f"<think>\n{think}\n</think>\n\n{solution}\nTherefore, the final answer is <answer>{answer}</answer>."
    return {
        "id": f"toy-{seed}-{index}",
        "image": image,
        "question": "<image>\n" + question,
        "answer": answer,
        "qwen3vl_235b_thinking_response": response,
        "caption": caption,
        "source": source,
        "pass_rate": _pass_rate(level, rng),
        "difficulty": level,
    }


def make_dataset(n: int, seed: int = 0, difficulty: int | None = None, sources=SOURCES):
    """``n`` rows of the bundled task as a ``datasets.Dataset`` in the MMFineReason schema.

    Deterministic in ``(n, seed, difficulty)``; different seeds give disjoint-looking draws, so use one seed
    for training and another for held-out evaluation.

    >>> ds = make_dataset(8, seed=1)
    >>> ds[0]["question"].startswith("<image>")
    True
    """
    import datasets

    if n < 0:
        raise UserError(f"the toy task draws n >= 0 rows, got n={n} (a negative --limit?)")
    rows = [make_example(i, seed, difficulty, tuple(sources)) for i in range(n)]
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "image": datasets.Image(),
            "question": datasets.Value("string"),
            "answer": datasets.Value("string"),
            "qwen3vl_235b_thinking_response": datasets.Value("string"),
            "caption": datasets.Value("string"),
            "source": datasets.Value("string"),
            "pass_rate": datasets.Value("float32"),
            "difficulty": datasets.Value("int32"),
        }
    )
    columns = {key: [row[key] for row in rows] for key in features}
    return datasets.Dataset.from_dict(columns, features=features)
