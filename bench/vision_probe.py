"""What a model's image tokens hold, read by a small probe instead of by its language model (issue 17).

    PYTHONPATH=. python bench/vision_probe.py --model outputs/demo/sft
    PYTHONPATH=. python bench/vision_probe.py --model outputs/demo/sft --compare-untrained   # 6 min, 1 busy core

Why: on the bundled task GSPO ends near 73% whatever the SFT model (docs/gspo-study-task-v9.md), held by count
(~55%) and shape (~60%), where the model's own listing of the shapes is wrong; with the vision tower frozen only the
language model's reading of the tower's tokens can change. Whether those tokens hold the answers at all decides
whether that reading is the limit or the tower is. So this trains a probe on the tokens exactly as the language
model receives them (the merger's output and the deepstack features, per image), on the ``train`` split's images,
and scores it on the 500 held-out items: the count of each kind and each colour, the kind and colour of the
largest shape, and through them the answers of count, shape, colour (the colour named, not the option letter) and
compare items. The probe is a DeepSets reader, a small MLP per token summed over the image's tokens, then one linear
head per target: counting is a sum over the image, which is what attention over the image tokens can compute too.
What the probe reads is a lower bound on what the tokens hold, and an upper bound on nothing: an answer
the probe gets and the model does not is room for the language model; one neither gets says little alone, hence
``--compare-untrained`` (the same probe on a randomly initialised tower: what survives no training at all).
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import torch
from torch import nn

# Classes 0..9 for every count target: count items draw at most 9 shapes; compare items up to 10, but ten of one
# kind or colour never occur in the splits' rows this probe reads (targets_of refuses one rather than mislabel it).
COUNTS = 10
CLASSES = {"largest_kind": 3, "largest_color": 4}  # the other targets are counts: COUNTS classes


def targets_of(scene) -> dict[str, int]:
    """The probe's targets for one row of the task: counts per kind and colour, the largest shape's kind and colour."""
    from mmfinereason.toy.task import COLORS, SHAPES

    kinds, colors = Counter(it.kind for it in scene.items), Counter(it.color for it in scene.items)
    largest = max(scene.items, key=lambda it: it.r)
    out = {f"count_{k}": kinds[k] for k in SHAPES} | {f"count_{c}": colors[c] for c in COLORS}
    if max(out.values()) >= COUNTS:
        raise ValueError(f"a count of {max(out.values())} is past the probe's {COUNTS} classes: raise COUNTS")
    return out | {"largest_kind": SHAPES.index(largest.kind), "largest_color": list(COLORS).index(largest.color)}


def question_answer(scene, predicted: dict[str, int]) -> bool | None:
    """Whether the probe's targets answer the row's question right (None: a question they do not decide)."""
    from mmfinereason.toy.task import COLORS, SHAPES

    words = scene.question.split()
    if scene.source == "toy_count":
        kind = next(k for k in SHAPES if f"{k}s" in words)
        return str(predicted[f"count_{kind}"]) == scene.answer
    if scene.source == "toy_shape":
        return SHAPES[predicted["largest_kind"]] == scene.answer
    if scene.source == "toy_color":  # the colour named; the option letter is a lookup in the text, not the image
        return list(COLORS)[predicted["largest_color"]] == max(scene.items, key=lambda it: it.r).color
    if scene.source == "toy_compare":
        a, b = words[3], words[6]  # "Are there more RED shapes than BLUE shapes in the image? ..."
        return ("yes" if predicted[f"count_{a}"] > predicted[f"count_{b}"] else "no") == scene.answer
    return None


def image_tokens(model, processor, images, batch: int = 64) -> list[torch.Tensor]:
    """Each image's tokens as the language model receives them: merger output beside every deepstack feature."""
    out = []
    for start in range(0, len(images), batch):
        inputs = processor.image_processor(images=images[start : start + batch], return_tensors="pt")
        with torch.no_grad():
            features = model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
        for i, tokens in enumerate(features.pooler_output):
            out.append(torch.cat([tokens, *(deep[i] for deep in features.deepstack_features)], dim=-1))
    return out


class DeepSetsProbe(nn.Module):
    """An MLP on each token, summed over the image's tokens, then a linear head per target."""

    def __init__(self, width: int, heads: dict[str, int], hidden: int = 128):
        super().__init__()
        self.token = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, classes) for name, classes in heads.items()})

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = (self.token(tokens) * mask.unsqueeze(-1)).sum(1)
        return {name: head(pooled) for name, head in self.heads.items()}


def padded(token_lists: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width, longest = token_lists[0].shape[-1], max(len(t) for t in token_lists)
    tokens, mask = torch.zeros(len(token_lists), longest, width), torch.zeros(len(token_lists), longest)
    for i, t in enumerate(token_lists):
        tokens[i, : len(t)], mask[i, : len(t)] = t, 1.0
    return tokens, mask


def train_probe(tokens, mask, labels: dict[str, torch.Tensor], heads: dict[str, int], epochs: int, seed: int):
    torch.manual_seed(seed)
    probe = DeepSetsProbe(tokens.shape[-1], heads)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=2e-3, weight_decay=1e-2)
    n = tokens.shape[0]
    for _ in range(epochs):
        for idx in torch.randperm(n).split(128):
            logits = probe(tokens[idx], mask[idx])
            loss = sum(nn.functional.cross_entropy(logits[k], labels[k][idx]) for k in heads)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return probe.eval()


def probe_model(model, processor, train_scenes, train_images, test_scenes, test_images, epochs: int, seed: int) -> dict:
    """Train the probe on one model's tokens of the training images; its accuracy per target and per question."""
    train_truth = [targets_of(s) for s in train_scenes]
    names = list(train_truth[0])
    heads = {k: CLASSES.get(k, COUNTS) for k in names}
    train_tokens, train_mask = padded(image_tokens(model, processor, train_images))
    labels = {k: torch.tensor([t[k] for t in train_truth]) for k in names}
    probe = train_probe(train_tokens, train_mask, labels, heads, epochs, seed)
    test_tokens, test_mask = padded(image_tokens(model, processor, test_images))
    with torch.no_grad():
        predicted = {k: v.argmax(-1).tolist() for k, v in probe(test_tokens, test_mask).items()}
    truth = [targets_of(s) for s in test_scenes]
    per_target = {k: sum(predicted[k][i] == t[k] for i, t in enumerate(truth)) / len(truth) for k in names}
    per_source: dict[str, list[bool]] = {}
    for i, scene in enumerate(test_scenes):
        right = question_answer(scene, {k: predicted[k][i] for k in names})
        per_source.setdefault(scene.source, []).append(bool(right))
    questions = {source: sum(r) / len(r) for source, r in sorted(per_source.items())}
    questions["all"] = sum(sum(r) for r in per_source.values()) / len(test_scenes)
    return {"targets": per_target, "questions": questions}


def scenes_and_images(split: str, rows: int):
    from mmfinereason.toy.splits import SPLIT_SEEDS
    from mmfinereason.toy.task import draw_scene, make_scene

    drawn = [make_scene(i, SPLIT_SEEDS[split]) for i in range(rows)]  # each row's scene made once, then drawn
    return [scene for scene, _ in drawn], [draw_scene(scene, rng) for scene, rng in drawn]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a model folder of the tiny recipes (e.g. outputs/demo/sft)")
    parser.add_argument("--train-rows", type=int, default=8000, help="images of the train split the probe learns from")
    parser.add_argument("--test-rows", type=int, default=500, help="held-out items (the demo's 500)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare-untrained", action="store_true", help="also probe a randomly initialised tower")
    a = parser.parse_args()

    from transformers import AutoConfig, Qwen3VLForConditionalGeneration

    from mmfinereason.config import ModelConfig
    from mmfinereason.modeling.loading import load_pretrained, load_processor

    start = time.perf_counter()
    processor = load_processor(a.model)
    train_scenes, train_images = scenes_and_images("train", a.train_rows)
    test_scenes, test_images = scenes_and_images("test", a.test_rows)
    models = {"trained": load_pretrained(ModelConfig(name_or_path=a.model, dtype="float32")).eval()}
    if a.compare_untrained:
        torch.manual_seed(a.seed)
        models["untrained"] = Qwen3VLForConditionalGeneration(AutoConfig.from_pretrained(a.model)).eval()
    results = {name: probe_model(m, processor, train_scenes, train_images, test_scenes, test_images, a.epochs, a.seed)
               for name, m in models.items()}
    columns = list(results)
    print(f"{'probe accuracy on ' + str(a.test_rows) + ' held-out images':<44}" + "".join(f"{c:>11}" for c in columns))
    for section in ("targets", "questions"):
        for key in results[columns[0]][section]:
            cells = "".join(f"{100 * results[c][section][key]:>10.1f}%" for c in columns)
            print(f"  {section[:-1] + ' ' + key:<42}{cells}")
    print(json.dumps({"model": a.model, "train_rows": a.train_rows, "test_rows": a.test_rows, "epochs": a.epochs,
                      "seconds": round(time.perf_counter() - start, 1), **results}))


if __name__ == "__main__":
    main()
