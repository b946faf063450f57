"""The one place that maps outside names onto the analysis' names: method aliases, CSV columns, chance levels.

Results from another harness or a paper's table name the same things differently (``Random (ViT)``,
``random-pre``, ``acc``). Every finding recognises methods, random baselines and stage families through the
functions here, so a name added to ``METHOD_ALIASES`` or ``COLUMN_ALIASES`` is understood everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..vocabulary import BASELINE_CATEGORY, VANILLA

RANDOM_PRE = "random_pre"  # random pruning before the LLM (on the vision tokens)
RANDOM_INTRA = "random_intra"  # random pruning inside the LLM
RANDOM = "random"  # random pruning at an unstated stage (a table that says only "Random")

# Outside name -> method key. Names are compared after ``_fold`` (lower case, runs of space, dash, dot and
# parentheses as one underscore), so "Random (ViT)", "random-vit" and "random_vit" are the same entry.
METHOD_ALIASES: dict[str, str] = {
    "vanilla": VANILLA,
    "baseline": VANILLA,
    "unpruned": VANILLA,
    "full": VANILLA,
    "no_pruning": VANILLA,
    "random": RANDOM,
    "random_pre": RANDOM_PRE,
    "random_vit": RANDOM_PRE,
    "random_pre_llm": RANDOM_PRE,
    "random_intra": RANDOM_INTRA,
    "random_llm": RANDOM_INTRA,
    "random_intra_llm": RANDOM_INTRA,
    "prumerge+": "prumerge_plus",
    "prumerge_plus": "prumerge_plus",
    "prumergeplus": "prumerge_plus",
}

# Random baselines and the stage they prune at; a method is compared with the random baseline of its stage.
RANDOM_STAGE: dict[str, str] = {RANDOM_PRE: "pre-LLM", RANDOM_INTRA: "intra-LLM", RANDOM: "unstated"}
# Method category (the paper's grouping) -> stage family. Hybrid methods act inside the LLM too.
CATEGORY_STAGE: dict[str, str] = {"vit": "pre-LLM", "llm": "intra-LLM", "hybrid": "intra-LLM"}
CATEGORIES = ("baseline", "random", "vit", "llm", "hybrid")
# Pruned-method categories in reading order, with the heading the report gives each (figures, overview).
CATEGORY_LABELS: dict[str, str] = {
    "vit": "ViT-side (before the LLM)",
    "llm": "LLM-side (inside the LLM)",
    "hybrid": "hybrid (both stages)",
    BASELINE_CATEGORY: "simple baselines",
}

# Column of an external table -> column of the analysis. Compared after ``_fold`` like method names.
COLUMN_ALIASES: dict[str, str] = {
    "model": "model",
    "model_name": "model",
    "method": "method",
    "method_name": "method",
    "pruning_method": "method",
    "category": "category",
    "ratio": "ratio",
    "pruning_ratio": "ratio",
    "prune_ratio": "ratio",
    "reduction_ratio": "ratio",
    "seed": "seed",
    "dataset": "dataset",
    "benchmark": "dataset",
    "task": "dataset",
    "dimension": "dimension",
    "ability": "dimension",
    "score": "score",
    "accuracy": "score",
    "acc": "score",
    "n": "n",
    "n_samples": "n",
    "samples": "n",
    "sample_id": "sample_id",
    "correct": "correct",
    "chance": "chance",
}

# Score of guessing, per dataset key (or synthetic label), where the answer format fixes it: yes/no -> 0.5,
# four options -> 0.25. Free-form answers (OCR, numbers, instructions) and mixed formats are taken as 0.
# A ``chance`` column in the results overrides these.
CHANCE: dict[str, float] = {
    "pope": 0.5,
    "hallusionbench": 0.5,
    "mme": 0.5,
    "mmbench": 0.25,
    "seedbench2plus": 0.25,
    "synthetic/hallucination": 0.5,
}


def _fold(name: object) -> str:
    return re.sub(r"[\s\-.()/]+", "_", str(name).strip().lower()).strip("_")


def canonical_method(name: object, aliases: Mapping[str, str] | None = None) -> str:
    """The method key of ``name``: its alias target if it has one, else the folded name itself."""
    table = {_fold(k): v for k, v in (METHOD_ALIASES if aliases is None else {**METHOD_ALIASES, **aliases}).items()}
    folded = _fold(name)
    return table.get(folded, folded)


def canonical_column(name: object, columns: Mapping[str, str] | None = None) -> str | None:
    """The analysis column an external column stands for, or None when it is not one the analysis reads."""
    table = {_fold(k): v for k, v in (COLUMN_ALIASES if columns is None else {**COLUMN_ALIASES, **columns}).items()}
    return table.get(_fold(name))


def is_random(method: str) -> bool:
    """Whether a (canonical) method key is a random-pruning baseline."""
    return method in RANDOM_STAGE


def method_category(method: str) -> str | None:
    """Category of a canonical method key: baseline, random, or the registered method's category (None if unknown)."""
    if method == VANILLA:
        return "baseline"
    if is_random(method):
        return "random"
    from unipb_core.pruning import available, method_class  # importing the package registers every method

    return str(method_class(method).category) if method in available() else None


def dataset_key(name: object) -> str:
    """The dataset key a table's name stands for ("MME" -> "mme", "OCR-Bench" -> "ocrbench"); labels with a
    slash (the synthetic suite's "synthetic/ocr") keep it."""
    head, slash, tail = str(name).strip().lower().partition("/")
    return re.sub(r"[\s\-_.()]+", "", head) + (f"/{tail}" if slash else "")


def chance_level(dataset: str) -> float:
    """Guessing score of ``dataset`` (``CHANCE``), 0 where the answer format does not fix one."""
    return float(CHANCE.get(dataset_key(dataset), 0.0))
