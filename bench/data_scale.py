"""Data at scale (issue 15): from the command to the first optimizer step on MMFineReason-1.8M, measured and
extrapolated — today's single-process uncached path side by side with the prepared-once path.

    python bench/data_scale.py                  # 1,000 and 4,000 rows, num_proc 2, ~10 min on 2 cores
    python bench/data_scale.py --rows 3000 --num-proc 16 --stream-rows 10000,100000   # a real node

Data: MMFineReason-shaped rows in a parquet file — a JPEG "diagram" of 384–1024 px a side (lines, boxes, text on
white; ~40–60 KB like the ~100 GB release; 300 distinct ones, reused), a question with ``<image>``, a log-normal
response of ~2,230 words (~2,900 tokens of the real tokenizer; the tiny tokenizer makes ~4x more tokens of them,
but the cost of counting is per *word* — measured: a 1k and an 8k vocabulary cost the same per row) drawn Zipf-like
from a 31k-word vocabulary, so the per-piece counter keeps meeting new words, and ~1% bad rows (truncated JPEG
bodies, garbage bytes, empty responses).

Every arm runs in its own process (cold = empty ``datasets`` and length caches) on two files, ``--rows`` and
``--scale`` x ``--rows`` distinct rows, and is reported as a per-row slope (the difference of the two times over
the difference of the rows: what grows with the data) and a fixed cost (imports, process pools, cache lookups: paid
once). Extrapolating a one-size time per row would multiply fixed costs by 1.8M/rows.

* ``check``: the up-front row check — ``full`` (before: every image decoded, one process), ``header`` (open the
  header only) in 1 and ``--num-proc`` processes, and ``warm`` (the ``datasets`` cache of a previous run);
* ``lengths``: the token-budget length pass — ``uncached`` (before: the tokenizer, one process, every start,
  every rank), the length index ``cold`` in 1 and ``--num-proc`` processes (per-piece token counts,
  data/batching/token_counts.py), and ``warm`` (read back);
* ``sampler_seconds_1p8m``: building the token-budget sampler's first epoch over 1.8M lengths drawn like the
  rows' (measured at full size, not extrapolated);
* ``first_step_seconds``: wall time from ``accelerate launch`` (2 CPU processes, gloo) of a tiny-model SFT with
  ``tokens_per_batch`` to the first trained step on the small file, cold / warm (requeue) / streaming, plus the
  same launch with the full image check in one process;
* ``peak_rss_mb`` of each arm, and the streaming arm's resident memory after ``--stream-rows`` rows (flat = no growth);
* ``disk_mb``: what the up-front check leaves on disk for the large file, against the parquet: ``datasets``' own
  prepared copy and our checked rows (images included: a single ``image`` column cannot become the ``images``
  list without a rewrite). Streaming writes neither.

Extrapolation to R = 1,800,000 rows on one node with C = 16 cores and 8 ranks (``first_step_minutes_1p8m_16cores``),
per-row figures being the slopes:

    startup  = first_step_seconds.warm - rows x (check.warm + lengths.warm)      (imports, model, DDP, fixed costs)
    cold     = startup + R x (check.header_1p + lengths.cold_1p) / (C x efficiency) + sampler
               efficiency = the measured speed-up of --num-proc processes over 1, / --num-proc (capped at 1)
    warm     = startup + R x (check.warm + lengths.warm) + sampler
    streaming= startup + buffer x (check.header_1p + lengths.cold_1p)         (one 1,024-row buffer per rank)
    before   = startup + R x (check.full + lengths.uncached) + sampler     (each rank alone, one process, every start)

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REAL_ROWS = 1_800_000
NODE_CORES = 16
NODE_RANKS = 8
MEAN_TOKENS = 2900
IMAGE_TOKENS = 400  # a 384-1024 px diagram at max_pixels 768^2: 150-576 tokens
WORDS = ("the angle ABC equals forty degrees so the opposite side is longer than the adjacent one hence by the "
         "law of sines we find x equals seven point five and the area of triangle is half base times height").split()
LATEX = ["$", "\\frac{", "}{", "}", "\\sqrt{", "^2", "=", "+", "-", "\\cdot", "(", ")", ",", ".", "\n\n", "\\angle", "°"]
DISTINCT_IMAGES = 300  # drawn, then reused: decode / header costs depend on the size, not on distinctness
VOCABULARY = 30_000  # distinct words a trace draws from (Zipf): the per-piece counter meets new pieces all along
MAX_PIXELS = 589824
MAX_LENGTH = 32768
LAUNCH_LENGTH = 8192  # the launches' rows: what is timed is the way to step 1, not a 32K CPU step (minutes here)


# ---------------------------------------------------------------------------------------------- data
def diagram(rng: random.Random) -> bytes:
    from PIL import Image, ImageDraw

    w, h = rng.randint(384, 1024), rng.randint(384, 1024)
    image = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(8, 30)):
        xy = [rng.randrange(w), rng.randrange(h), rng.randrange(w), rng.randrange(h)]
        color = tuple(rng.randrange(200) for _ in range(3))
        if rng.random() < 0.5:
            draw.line(xy, fill=color, width=rng.randint(1, 4))
        else:
            draw.rectangle([min(xy[0], xy[2]), min(xy[1], xy[3]), max(xy[0], xy[2]), max(xy[1], xy[3])], outline=color)
        draw.text((rng.randrange(w), rng.randrange(h)), rng.choice(WORDS).upper(), fill=color)
    noise = Image.effect_noise((w // 4, h // 4), 24).resize((w, h)).convert("RGB")  # scan grain: not flat
    image = Image.blend(image, noise, 0.12)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=80)
    return out.getvalue()


def build_rows(path: Path, n: int, seed: int = 0) -> dict:
    """``n`` MMFineReason-shaped rows in ``path`` (parquet); about 1% bad."""
    import datasets

    rng = random.Random(seed)
    vocab = _vocabulary()
    weights = [1 / (k + 1) for k in range(len(vocab))]  # Zipf: a few words everywhere, a long tail
    images = [diagram(rng) for _ in range(min(n, DISTINCT_IMAGES))]
    rows, bad = [], 0
    for i in range(n):
        data = images[i % len(images)]
        words = " ".join(rng.choices(vocab, cum_weights=_cumulative(weights), k=trace_words(rng)))
        response = f"<think>{words}</think> <answer>{i % 10}</answer>"
        kind = i % 100
        if kind == 37:
            data, bad = data[: len(data) // 2], bad + 1  # truncated body (found late, by the collator)
        elif kind == 71:
            data, bad = b"\x00garbage", bad + 1
        elif kind == 89:
            response, bad = "", bad + 1
        rows.append({"id": f"row-{i}", "image": {"bytes": data, "path": None},
                     "question": f"<image>In the figure, find x for problem {i}.", "answer": str(i % 10),
                     "qwen3vl_235b_thinking_response": response})
    features = datasets.Features({"id": datasets.Value("string"), "image": datasets.Image(),
                                  "question": datasets.Value("string"), "answer": datasets.Value("string"),
                                  "qwen3vl_235b_thinking_response": datasets.Value("string")})
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(path))
    return {"rows": n, "bad_rows": bad, "mb": round(path.stat().st_size / 2**20, 1)}


def trace_words(rng: random.Random) -> int:
    """Words of one trace: log-normal, a mean of ~2,900 real tokens at ~1.3 tokens a word."""
    sigma = 0.8
    mu = math.log(MEAN_TOKENS / 1.3) - sigma**2 / 2
    return max(5, int(rng.lognormvariate(mu, sigma)))


def _vocabulary() -> list[str]:
    rng = random.Random(1234)
    made = {"".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 11)))
            for _ in range(VOCABULARY)}
    return WORDS + LATEX + sorted(made) + [str(k) for k in range(1000)]


_CUMULATIVE: dict[int, list[float]] = {}


def _cumulative(weights: list[float]) -> list[float]:
    if len(weights) not in _CUMULATIVE:
        _CUMULATIVE[len(weights)] = list(itertools.accumulate(weights))
    return _CUMULATIVE[len(weights)]


# ---------------------------------------------------------------------------------------------- arms
def _collator():
    from mmfinereason.data.batching.collator import MultimodalCollator
    from mmfinereason.modeling.loading import load_processor

    return MultimodalCollator(load_processor("tiny"), MAX_LENGTH, max_pixels=MAX_PIXELS)


def arm(name: str, rows: str, num_proc: int, cache: str, extra: str) -> dict:
    """One measurement, in this (fresh) process: {'seconds', ...}."""
    from mmfinereason.data.io.loading import load_examples

    image_check = "full" if name == "check_full" else "header"
    num = num_proc if name.endswith("_np") else None
    if name.startswith("check"):
        start = time.perf_counter()
        dataset = load_examples(rows, image_check=image_check, num_proc=num, max_skip_rate=0.05)
        return {"seconds": time.perf_counter() - start, "kept": len(dataset)}
    if name == "sampler":  # at full size: 1.8M lengths drawn like the rows' (real-tokenizer tokens + image)
        from mmfinereason.data.batching.sampler import TokenBudgetBatchSampler

        mean = int(extra)
        rng = random.Random(0)
        lengths = [min(MAX_LENGTH, max(64, int(trace_words(rng) * mean / (MEAN_TOKENS / 1.3)))) for _ in range(REAL_ROWS)]
        start = time.perf_counter()
        sampler = TokenBudgetBatchSampler(lengths, 2 * MAX_LENGTH, row_length=MAX_LENGTH, seed=0)
        batches = len(sampler)
        next(iter(sampler))
        return {"seconds": time.perf_counter() - start, "batches": batches}
    if name == "stream":  # before any map-style load: its RSS is the stream's own
        from mmfinereason.data.batching.streaming import StreamingTokenBudget

        collator = _collator()
        stream = load_examples(rows, streaming=True, image_check="header", max_skip_rate=0.05)
        batcher = StreamingTokenBudget(stream, collator, 2 * MAX_LENGTH, row_length=MAX_LENGTH, buffer_size=256,
                                       seed=0, rank=0, world_size=1)
        start, seen, marks = time.perf_counter(), 0, {}
        targets = sorted(int(x) for x in extra.split(","))
        for batch in batcher:
            seen += len(batch)
            if seen >= targets[len(marks)]:
                marks[str(targets[len(marks)])] = _current_rss_mb()
                if len(marks) == len(targets):
                    break
        return {"seconds": time.perf_counter() - start, "rss_mb_after_rows": marks}
    dataset = load_examples(rows, image_check="header", max_skip_rate=0.05)
    collator = _collator()
    if name == "lengths_uncached":  # before: the tokenizer counts every token (no per-piece shortcut)
        from mmfinereason.data.batching import lengths as lengths_module
        from mmfinereason.data.batching.lengths import example_lengths
        from mmfinereason.data.batching.token_counts import TokenCounter

        exact = TokenCounter(collator.tokenizer)
        exact.fast = False
        lengths_module.counter_for = lambda tokenizer: exact
        start = time.perf_counter()
        lengths = example_lengths(dataset, collator)
    elif name.startswith("lengths"):
        from mmfinereason.data.batching.length_index import load_or_build

        start = time.perf_counter()
        lengths, built = load_or_build(dataset, collator, num_proc=num, cache_dir=extra)
        assert built == (name != "lengths_warm"), (name, built)
    else:
        raise ValueError(name)
    tokens = [n for n in lengths if n]
    return {"seconds": time.perf_counter() - start, "mean_tokens": sum(tokens) / max(1, len(tokens))}


def _current_rss_mb() -> float:
    """Resident memory now (not the peak: a stream must not grow, whatever the imports peaked at)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def disk_footprint(parquet: Path, cache: Path) -> dict:
    """MB of the source parquet, of ``datasets``' prepared copy of it and of the checked rows under ``cache``
    (one ``HF_DATASETS_CACHE``), and the whole on-disk total as a multiple of the parquet."""
    mb = lambda files: round(sum(f.stat().st_size for f in files) / 2**20, 1)  # noqa: E731
    arrow = list(cache.rglob("*.arrow"))
    checked = [f for f in arrow if f.name.startswith("cache-")]  # map / filter outputs, named by fingerprint
    prepared = [f for f in arrow if f not in checked]
    sizes = {"parquet": mb([parquet]), "prepared_arrow": mb(prepared), "checked_rows": mb(checked)}
    sizes["total_over_parquet"] = round(sum(sizes.values()) / sizes["parquet"], 2)
    return sizes


def run_arm(name: str, rows: Path, num_proc: int, env: dict, extra: str = "") -> dict:
    cmd = [sys.executable, __file__, "--arm", name, "--rows-file", str(rows), "--num-proc", str(num_proc),
           "--extra", extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"arm {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def first_step(rows: Path, out: Path, env: dict, settings: list[str]) -> float:
    """Seconds from `accelerate launch` (2 CPU processes) to the first trained step of a tiny SFT."""
    trace = out / "trace"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
           str(random.randint(20000, 40000)), "-m", "mmfinereason", "sft", "recipes/tiny/sft.yaml",
           f"train.output_dir={out}", f"data.train.0.path={rows}", "data.train.0.split=train",
           "data.train.0.limit=null", "data.packing=true", f"data.max_length={LAUNCH_LENGTH}",
           f"data.tokens_per_batch={LAUNCH_LENGTH}", f"data.max_pixels={MAX_PIXELS}", "data.max_skip_rate=0.05",
           "train.max_steps=1", "train.use_cpu=true", "train.save_strategy=no", "eval.before_training=false",
           "eval.after_training=false", "data.eval=[]", *settings]
    out.mkdir(parents=True)
    env = {**env, "OMP_NUM_THREADS": "1", "MMFINEREASON_TRACE_IDS": str(trace)}
    log = open(out.parent / f"{out.name}.log", "w")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    marker = trace / "trained_ids.rank0.jsonl"
    while not (marker.is_file() and marker.stat().st_size):
        if proc.poll() is not None:
            raise RuntimeError(f"launch exited ({proc.returncode}) before step 1; see {log.name}")
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    proc.wait(timeout=600)
    return seconds


# ---------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--scale", type=int, default=4, help="the large file has scale x rows")
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--stream-rows", default="", help="e.g. 10000,100000 (default: rows,10*rows)")
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--arm", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rows-file", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--extra", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        result = arm(args.arm, args.rows_file, args.num_proc, os.environ.get("HF_DATASETS_CACHE", ""), args.extra)
        print(json.dumps({**result, "peak_rss_mb": round(_rss_mb())}))
        return

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="data_scale-"))
    work.mkdir(parents=True, exist_ok=True)
    n, p = args.rows, args.num_proc
    sizes = {"small": n, "large": n * args.scale}
    files = {size: work / f"rows-{rows}.parquet" for size, rows in sizes.items()}
    data = {size: build_rows(files[size], rows, seed=i) for i, (size, rows) in enumerate(sizes.items())}
    rows = files["small"]
    base = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

    def env_with(cache: str, index: str | None = None) -> dict:
        env = {**base, "HF_DATASETS_CACHE": str(work / cache)}
        if index is not None:
            env["MMFINEREASON_LENGTH_INDEX"] = str(work / index)
        return env

    per_row, fixed, rss = {}, {}, {}

    def measure(key: str, name: str, cache: str, index: str = "") -> dict:
        """The arm on both files: per-row slope and fixed cost."""
        seconds = {}
        for size, path in files.items():
            extra = str(work / f"{index}-{size}") if index else ""
            result = run_arm(name, path, p, env_with(f"{cache}-{size}"), extra)
            seconds[size] = result["seconds"]
            rss[key] = max(rss.get(key, 0), result["peak_rss_mb"])
        per_row[key] = max(0.0, (seconds["large"] - seconds["small"]) / (sizes["large"] - sizes["small"]))
        fixed[key] = max(0.0, seconds["small"] - sizes["small"] * per_row[key])
        print(f"{key}: {per_row[key] * 1000:.3f} ms/row + {fixed[key]:.2f} s fixed, peak RSS {rss[key]} MB",
              file=sys.stderr, flush=True)
        return result

    measure("check.full", "check_full", "ds_full")
    measure("check.header_1p", "check_header", "ds_1p")
    measure("check.header_np", "check_header_np", "ds_np")
    disk = disk_footprint(files["large"], work / "ds_np-large")
    print(f"disk: {disk}", file=sys.stderr, flush=True)
    measure("check.warm", "check_header", "ds_np")
    lengths = measure("lengths.uncached", "lengths_uncached", "ds_np")
    measure("lengths.cold_1p", "lengths_cold", "ds_np", "idx_1p")
    measure("lengths.cold_np", "lengths_cold_np", "ds_np", "idx_np")
    measure("lengths.warm", "lengths_warm", "ds_np", "idx_np")
    sampler = run_arm("sampler", rows, p, env_with("ds_np-small"), str(MEAN_TOKENS + IMAGE_TOKENS))
    print(f"sampler over {REAL_ROWS:,} lengths: {sampler['seconds']:.1f} s", file=sys.stderr, flush=True)
    stream_rows = args.stream_rows or f"{n},{10 * n}"
    stream = run_arm("stream", files["large"], p, env_with("ds_np-large"), stream_rows)

    # First step under accelerate launch, 2 processes; the length index goes to MMFINEREASON_LENGTH_INDEX.
    def launch_env(cache: str, index: str) -> dict:
        return env_with(cache, index)

    now = [f"data.num_proc={p}", "data.image_check=header"]
    steps = {
        "cold": first_step(rows, work / "run_cold", launch_env("ds_launch", "idx_launch"), now),
        "warm": first_step(rows, work / "run_warm", launch_env("ds_launch", "idx_launch"), now),
        "streaming": first_step(rows, work / "run_stream", launch_env("ds_stream", "idx_stream"),
                                [*now, "data.streaming=true", "data.packing_buffer_size=64"]),
        # today's settings (full check, one process) on a cold cache; the length pass is now built once per node
        "full_check_1proc_cold": first_step(rows, work / "run_before", launch_env("ds_before", "idx_before"),
                                            ["data.image_check=full"]),
    }

    speedup = (per_row["check.header_1p"] + per_row["lengths.cold_1p"]) / (
        per_row["check.header_np"] + per_row["lengths.cold_np"])
    efficiency = min(1.0, speedup / p)
    startup = max(0.0, steps["warm"] - n * (per_row["check.warm"] + per_row["lengths.warm"]))
    cold_row = per_row["check.header_1p"] + per_row["lengths.cold_1p"]
    sampler_s = sampler["seconds"]
    minutes = {
        "cold": (startup + REAL_ROWS * cold_row / (NODE_CORES * efficiency) + sampler_s) / 60,
        "warm": (startup + REAL_ROWS * (per_row["check.warm"] + per_row["lengths.warm"]) + sampler_s) / 60,
        "streaming": (startup + 1024 * cold_row) / 60,
        "before": (startup + REAL_ROWS * (per_row["check.full"] + per_row["lengths.uncached"]) + sampler_s) / 60,
    }
    marks = stream["rss_mb_after_rows"]
    first, last = marks[min(marks, key=int)], marks[max(marks, key=int)]
    result = {
        "data": data,
        "method": "per-row figures are slopes between the small and the large file; fixed costs apart",
        "num_proc": p,
        "cpu_cores_here": os.cpu_count(),
        "mean_tokens_tiny_tokenizer": round(lengths["mean_tokens"]),
        "ms_per_row": {k: round(v * 1000, 3) for k, v in per_row.items()},
        "fixed_seconds": {k: round(v, 2) for k, v in fixed.items()},
        "sampler_seconds_1p8m": round(sampler_s, 1),
        "num_proc_speedup": round(speedup, 2),
        "peak_rss_mb": {k: round(v) for k, v in rss.items()},
        "disk_mb": disk,
        "streaming_rss_mb_after_rows": {k: round(v) for k, v in marks.items()},
        "streaming_rss_growth": round(last / first - 1, 3),
        "first_step_seconds_here": {k: round(v, 1) for k, v in steps.items()},
        "startup_seconds": round(startup, 1),
        "first_step_minutes_1p8m_16cores": {k: round(v, 2) for k, v in minutes.items()},
        "goal_met": minutes["cold"] <= 10 and minutes["warm"] <= 1 and minutes["streaming"] <= 1,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
