"""The synthetic suite: procedurally drawn images with known answers for all six ability dimensions.

Runs offline, in seconds, and gives tiny models something they can learn (``train``) and be tested on
(``test``). Every sample is a pure function of (split, seed, dimension, index): its random stream is seeded by
that tuple, so the splits draw from disjoint streams and any sample can be regenerated alone. Answers are
short (a word, a number, yes/no, a letter, or a word in a required format).

| dimension         | tasks (category)                                   | answer            |
|-------------------|----------------------------------------------------|-------------------|
| comprehensive     | colour / shape of one large object; left-or-right  | word              |
| ocr               | read 1-3 large characters                          | text              |
| multidisciplinary | which bar of a 2-3 bar chart is tallest/shortest   | option letter     |
| hallucination     | "Is there a <shape>?" (half present, half absent)  | yes / no          |
| math              | count 1-6 shapes; add two rendered digits          | number            |
| instruction       | name the colour under a format constraint          | formatted word    |
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from unipb_core.data.dimensions import ALL_DIMENSIONS, DIMENSIONS
from unipb_core.data.prompts import LETTER_HINT, join, options_block
from unipb_core.data.registry import register
from unipb_core.data.sample import Sample
from unipb_core.data.spec import DatasetSpec, LoadOptions
from unipb_core.data.synthetic_draw import (
    COLOURS,
    SHAPES,
    canvas,
    centre_box,
    draw_bars,
    draw_shape,
    draw_text,
    grid_boxes,
)
from unipb_core.metrics.aggregate import accuracy, finish, parse_failure_rate, per_category_accuracy, split_by
from unipb_core.metrics.extract import LETTERS, extract_number, extract_option, extract_word, extract_yes_no, words
from unipb_core.metrics.instruction import compile_constraint
from unipb_core.metrics.score import Judge, SampleScore, score_with_rules

SPLITS = ("train", "test")
DEFAULT_PER_DIMENSION = 50
# Characters that no font renders alike (no O/0, I/1/L, S/5, B/8, Z/2, G/6, Q).
OCR_CHARS = "ACDEFHJKMNPRTUVWXY3479"
CONSTRAINTS = {  # instruction text -> how the expected answer is written
    "Answer in all capital letters.": str.upper,
    "Answer in lowercase letters, using one word.": str.lower,
    "Answer with one word and end with an exclamation mark.": lambda word: word + "!",
}
Task = Callable[[random.Random, int, int], dict[str, Any]]


def _colour_or_shape(rng: random.Random, size: int, i: int) -> dict[str, Any]:
    image, draw = canvas(size)
    colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    draw_shape(draw, shape, centre_box(rng, size), colour)
    if i % 2 == 0:
        q, answer, category, vocab = "What colour is the shape in the image?", colour, "colour", list(COLOURS)
    else:
        q, answer, category, vocab = "What shape is shown in the image?", shape, "shape", list(SHAPES)
    q += " Answer with one word."
    return dict(image=image, question=q, answer=answer, category=category, meta={"kind": "word", "vocab": vocab})


def _left_right(rng: random.Random, size: int, i: int) -> dict[str, Any]:
    image, draw = canvas(size)
    first, second = rng.sample(list(COLOURS), 2)
    shape = rng.choice(SHAPES)
    side = size * rng.uniform(0.3, 0.4)
    y0 = rng.uniform(0, size - side)
    left, right = (0.05 * size, y0, 0.05 * size + side, y0 + side), (0.95 * size - side, y0, 0.95 * size, y0 + side)
    first_left = rng.random() < 0.5
    draw_shape(draw, shape, left if first_left else right, first)
    draw_shape(draw, shape, right if first_left else left, second)
    q = f"Is the {first} {shape} to the left or to the right of the {second} {shape}? Answer with one word."
    answer = "left" if first_left else "right"
    meta = {"kind": "word", "vocab": ["left", "right"], "colours": [first, second]}
    return dict(image=image, question=q, answer=answer, category="position", meta=meta)


def _comprehensive(rng: random.Random, size: int, i: int) -> dict[str, Any]:
    return _left_right(rng, size, i) if i % 3 == 2 else _colour_or_shape(rng, size, i)


def _ocr(rng: random.Random, size: int, i: int) -> dict[str, Any]:
    image, _ = canvas(size)
    text = "".join(rng.choice(OCR_CHARS) for _ in range(1 + i % 3))
    draw_text(image, text, rng, height=rng.uniform(0.25, 0.4))
    q = "What text is written in the image? Answer with the text only."
    return dict(image=image, question=q, answer=text, category="read", meta={"kind": "text"})


def _bars(rng: random.Random, size: int, i: int) -> dict[str, Any]:
    image, draw = canvas(size)
    n = 2 + i % 2
    colours = rng.sample(list(COLOURS), n)
    # Heights at least 0.2 apart, so the extreme bar is obvious at a glance.
    heights = [0.25 + 0.2 * k + rng.uniform(0, 0.1) for k in rng.sample(range(n), n)]
    draw_bars(draw, size, heights, colours)
    tallest = i % 4 < 2
    target = colours[heights.index(max(heights) if tallest else min(heights))]
    options = rng.sample(colours, n)
    q = f"Which bar in the chart is the {'tallest' if tallest else 'shortest'}?"
    answer = LETTERS[options.index(target)]
    return dict(image=image, question=q, options=options, answer=answer, category="bar_chart", meta={"kind": "letter"})


def _presence(rng: random.Random, size: int, i: int) -> dict[str, Any]:
    image, draw = canvas(size)
    target = rng.choice(SHAPES)
    others = [s for s in SHAPES if s != target]
    present = i % 2 == 0  # exactly balanced yes/no, as POPE is
    drawn = rng.sample(others, rng.randint(0, 1)) + ([target] if present else rng.sample(others, 1))
    for shape, box in zip(drawn, grid_boxes(rng, size, len(drawn)), strict=True):
        draw_shape(draw, shape, box, rng.choice(list(COLOURS)))
    q = f"Is there a {target} in the image? Answer yes or no."
    return dict(image=image, question=q, answer="yes" if present else "no", category="presence", meta={"kind": "yesno"})


def _math(rng: random.Random, size: int, i: int) -> dict[str, Any]:
    image, draw = canvas(size)
    if i % 2 == 0:
        n, shape, colour = rng.randint(1, 6), rng.choice(SHAPES), rng.choice(list(COLOURS))
        for box in grid_boxes(rng, size, n):
            draw_shape(draw, shape, box, colour)
        q = f"How many {shape}s are in the image? Answer with a number."
        return dict(image=image, question=q, answer=str(n), category="count", meta={"kind": "number"})
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    draw_text(image, f"{a}+{b}", rng, height=0.3)
    q = "What is the sum of the two numbers shown in the image? Answer with a number."
    return dict(image=image, question=q, answer=str(a + b), category="add", meta={"kind": "number"})


def _instruction(rng: random.Random, size: int, i: int) -> dict[str, Any]:
    image, draw = canvas(size)
    colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    draw_shape(draw, shape, centre_box(rng, size), colour)
    constraint = list(CONSTRAINTS)[i % len(CONSTRAINTS)]
    q = f"What colour is the {shape}? {constraint}"
    meta = {"kind": "instruction", "target": colour, "constraint": constraint, "vocab": list(COLOURS)}
    return dict(image=image, question=q, answer=CONSTRAINTS[constraint](colour), category="format", meta=meta)


TASKS: dict[str, Task] = {
    "comprehensive": _comprehensive,
    "ocr": _ocr,
    "multidisciplinary": _bars,
    "hallucination": _presence,
    "math": _math,
    "instruction": _instruction,
}


def _read_text(text: str, gold: str) -> str:
    """OCR answers: a word that spells the gold ("The text is K7."), else the words joined ("K 7" -> "K7")."""
    tokens = [t.upper() for t in words(text)]
    return gold if gold in tokens else "".join(tokens)


@register
class Synthetic(DatasetSpec):
    name = "synthetic"
    hub_id = ""  # generated, never downloaded
    split = "test"
    VERSION = "2"  # v2: the official yes/no and option readers (VLMEvalKit) by default
    max_new_tokens = 16
    dimension = ALL_DIMENSIONS  # spans all six: each Sample names its own
    headline_metric = "score"  # mean of the per-dimension accuracies

    def generate(self, split: str, per_dimension: int, seed: int, dimensions: Sequence[str], size: int) -> list[Sample]:
        """``per_dimension`` samples of each dimension, ordered by dimension then index."""
        samples = []
        for dimension in dimensions:
            for i in range(per_dimension):
                rng = random.Random(f"unipb-synthetic|{split}|{seed}|{dimension}|{i}")
                fields = TASKS[dimension](rng, size, i)
                image = fields.pop("image")
                sample_id = f"{split}-s{seed}-{dimension}-{i:05d}"
                fields["meta"]["group"] = sample_id
                samples.append(Sample(id=sample_id, images=[image], dataset=self.name, dimension=dimension, **fields))
        return samples

    def load_samples(self, options: LoadOptions) -> list[Sample]:
        """Generate the suite: ``options.limit`` is the number of samples *per dimension* (default 50); ``path``,
        ``revision`` and ``subsample`` do not apply (every sample is already an independent random draw)."""
        split = options.split or self.split
        if split not in SPLITS:
            raise ValueError(f"synthetic: unknown split {split!r}; expected one of {SPLITS}")
        dimensions = DIMENSIONS if options.dimension is None else (options.dimension,)
        per_dimension = DEFAULT_PER_DIMENSION if options.limit is None else options.limit
        return self.generate(split, per_dimension, options.seed, dimensions, options.image_size)

    def to_prompt(self, sample: Sample) -> str:
        if sample.options:
            return join(sample.question, options_block(sample.options), LETTER_HINT)
        return sample.question

    def score(self, sample: Sample, prediction: str, judge: Judge | None = None) -> SampleScore:
        kind = sample.meta["kind"]
        if kind == "instruction":
            # Half for the right colour, half for obeying the format: MIA-Bench-style component credit.
            colour = extract_word(prediction, sample.meta["vocab"])
            if not colour:
                return SampleScore(0.0, False, "")
            obeyed = compile_constraint(sample.meta["constraint"])(prediction.strip())
            return SampleScore(0.5 * (colour == sample.meta["target"]) + 0.5 * obeyed, True, prediction.strip())
        extract: Callable[[str], str] = {
            "word": lambda text: extract_word(text, sample.meta["vocab"]),
            "text": lambda text: _read_text(text, sample.answer),
            "number": extract_number,
            "yesno": extract_yes_no,
            "letter": lambda text: extract_option(text, sample.options),
        }[kind]
        return score_with_rules(extract, lambda ans: float(ans == sample.answer), sample, prediction, judge)

    def aggregate(
        self, samples: Sequence[Sample], scores: Sequence[SampleScore], judge: Judge | None = None
    ) -> dict[str, float | str]:
        """Accuracy and parse-failure rate per dimension and category; headline = mean over dimensions."""
        metrics: dict[str, float] = {}
        for dimension, (_, dim_scores) in split_by([s.dimension for s in samples], samples, scores).items():
            metrics[f"{dimension}/accuracy"] = accuracy(dim_scores)
            metrics[f"{dimension}/parse_failure_rate"] = parse_failure_rate(dim_scores)
        metrics.update(per_category_accuracy("category", [s.category for s in samples], scores))
        per_dim = [metrics[f"{d}/accuracy"] for d in DIMENSIONS if f"{d}/accuracy" in metrics]
        metrics["accuracy"] = accuracy(scores)
        metrics["score"] = sum(per_dim) / len(per_dim) if per_dim else float("nan")
        return finish(self.name, metrics, samples, scores, metrics["score"], judge)
