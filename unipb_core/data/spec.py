"""The dataset contract: a ``DatasetSpec`` per benchmark maps its rows to Samples, prompts, scores, aggregates.

A subclass sets a few class attributes (hub id, split, required columns, generation length) and writes
``from_row`` / ``from_tsv`` (row -> Sample) plus the scoring hooks; loading, column checks, subsetting and
image decoding are shared here. Specs hold no state: one instance per dataset lives in the registry.
"""

from __future__ import annotations

import ast
import copy
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from unipb_core.data.dimensions import check_dimension
from unipb_core.data.images import decode_image
from unipb_core.data.prompts import LETTER_HINT, join, with_options
from unipb_core.data.sample import Sample
from unipb_core.data.select import select
from unipb_core.data.sources import Table, read_table
from unipb_core.metrics.aggregate import accuracy, finish, per_category_accuracy
from unipb_core.metrics.extract import extract_option, extract_yes_no
from unipb_core.metrics.score import Judge, SampleScore, score_with_rules


def is_missing(value: Any) -> bool:
    """None, NaN, "" and the "nan" that VLMEvalKit TSVs and pandas write for empty cells."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in ("", "nan")


def parse_list(value: Any) -> list[Any]:
    """A list column as a list: HF lists pass through; TSV cells hold ``"['a', 'b']"`` or JSON text."""
    if is_missing(value):
        return []
    if isinstance(value, list | tuple):
        return list(value)
    if hasattr(value, "tolist"):
        return list(value.tolist())
    text = str(value).strip()
    if not text.startswith("["):
        return [text]
    try:
        return list(json.loads(text))
    except ValueError:
        pass
    try:
        return list(ast.literal_eval(text))  # Python repr, as VLMEvalKit writes: "['a', 'b']"
    except (ValueError, SyntaxError) as err:
        raise ValueError(f"cannot read a list from {text[:60]!r}") from err


@dataclass(frozen=True)
class LoadOptions:
    """What ``unipb_core.data.load`` was asked for (see its docstring): one object that every spec reads."""

    path: str | Path | None = None
    revision: str | None = None
    config: str | None = None
    split: str | None = None
    limit: int | None = None
    seed: int = 0
    subsample: bool = False
    dimension: str | None = None
    image_size: int = 336

    def __post_init__(self) -> None:
        if self.dimension is not None:
            check_dimension(self.dimension)  # a typo must fail, not filter everything away


class DatasetSpec(ABC):
    """One benchmark: where its samples come from, how answers are prompted, scored and aggregated."""

    name: ClassVar[str]
    dimension: ClassVar[str]  # one of DIMENSIONS (``ALL_DIMENSIONS`` for a suite whose Samples name their own)
    hub_id: ClassVar[str]
    config: ClassVar[str | None] = None
    split: ClassVar[str] = "test"
    VERSION: ClassVar[str] = "1"  # bump whenever a prompt, extraction rule or metric changes
    max_new_tokens: ClassVar[int] = 16
    columns: ClassVar[tuple[str, ...]] = ()  # required columns in the Hugging Face schema
    tsv_columns: ClassVar[tuple[str, ...]] = ()  # required columns in the VLMEvalKit TSV
    image_column: ClassVar[str] = "image"  # image column of the HF schema (TSVs always use "image")
    # The aggregate key of the headline metric, the number papers quote for this dataset (see docs/datasets.md).
    headline_metric: ClassVar[str] = "accuracy"
    # "" when the numbers follow the dataset's official (judge-free) rules; otherwise what stands in for the
    # official judge, shown next to every number of this dataset.
    judge_free: ClassVar[str] = ""
    # ``meta`` keys the aggregate reads (group keys of paired metrics): records must carry them to be re-aggregated.
    aggregate_needs: ClassVar[tuple[str, ...]] = ()
    # Scoring rules a user may switch away from the official one: name -> (official default, what the other
    # value does). The registered spec always follows the official rules; ``variant`` makes a deviating copy.
    RULES: ClassVar[dict[str, tuple[Any, str]]] = {}

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable (one shared instance per dataset)")

    def rule(self, name: str) -> Any:
        """The value of scoring rule ``name`` for this spec (the official default unless this is a variant)."""
        return self.__dict__.get("_rules", {}).get(name, self.RULES[name][0])

    def variant(self, **rules: Any) -> DatasetSpec:
        """A copy of this spec scoring with deliberate deviations from the official rules (see ``RULES`` and
        docs/datasets.md), e.g. ``data.get("pope").variant(lenient_yes_no=True)``. Its ``version`` names the
        deviations, so its results never share a config hash with official ones."""
        unknown = sorted(set(rules) - set(self.RULES))
        if unknown:
            accepted = ", ".join(f"{k} (official: {v[0]!r})" for k, v in self.RULES.items()) or "none"
            raise ValueError(f"{self.name}: unknown scoring rule(s) {unknown}; accepted: {accepted}")
        new = copy.copy(self)
        object.__setattr__(new, "_rules", {**self.__dict__.get("_rules", {}), **rules})
        return new

    def __repr__(self) -> str:
        return f"<DatasetSpec {self.name} {self.hub_id} split={self.split} version={self.version}>"

    def metric_scale(self, key: str, samples: Sequence[Sample]) -> float | None:
        """The maximum of aggregate metric ``key`` on its official scale for these ``samples`` (100 for
        percentages, 1 for ``*_rate`` and ``*_share`` fractions), or None for a count with no fixed scale.

        Datasets whose official numbers are not percentages (MME's 0-2800 score, OCRBench's score out of
        1000) override this.
        """
        if key.endswith(("_rate", "_share")):
            return 1.0
        return 100.0

    @property
    def version(self) -> str:
        """``"<name>/v<VERSION>"``: written into every result so changed scoring never mixes with old records;
        a variant appends its deviations (``"pope/v2+lenient_yes_no=True"``)."""
        rules = {k: v for k, v in self.__dict__.get("_rules", {}).items() if v != self.RULES[k][0]}
        return f"{self.name}/v{self.VERSION}" + "".join(f"+{k}={v!r}" for k, v in sorted(rules.items()))

    @abstractmethod
    def load_samples(self, options: LoadOptions) -> list[Sample]:
        """The Samples ``unipb_core.data.load`` returns for ``options``."""

    @abstractmethod
    def to_prompt(self, sample: Sample) -> str:
        """The text prompt: question, options and answer-format instruction (no chat template, no image)."""

    @abstractmethod
    def score(self, sample: Sample, prediction: str, judge: Judge | None = None) -> SampleScore:
        """Score one raw model output; a judge, if given, is only asked when the rules read nothing."""

    @abstractmethod
    def aggregate(
        self, samples: Sequence[Sample], scores: Sequence[SampleScore], judge: Judge | None = None
    ) -> dict[str, float | str]:
        """Official metric(s) plus ``n``, ``parse_failure_rate``, ``headline`` (0-100) and ``judge`` if used."""


class TableSpec(DatasetSpec):
    """A benchmark stored as a table of rows (all ten real datasets): the shared load and score pipeline."""

    @abstractmethod
    def from_row(self, row: dict[str, Any], position: int) -> Sample:
        """Map one row of the Hugging Face schema to a Sample (images are attached later)."""

    @abstractmethod
    def from_tsv(self, row: dict[str, Any], position: int) -> Sample:
        """Map one row of the VLMEvalKit TSV to a Sample (images are attached later)."""

    @abstractmethod
    def extract(self, sample: Sample, text: str) -> str:
        """The answer read from ``text`` by the dataset's rules, or "" when none can be read."""

    def make(self, **fields: Any) -> Sample:
        """A Sample of this dataset; ``meta["group"]`` defaults to the sample's own id (no pairing)."""
        sample = Sample(images=[], dataset=self.name, dimension=self.dimension, **fields)
        sample.meta.setdefault("group", sample.id)
        return sample

    def need(self, row: dict[str, Any], field: str, row_id: str) -> Any:
        """``row[field]``, or a ValueError naming dataset, row and field when the value is missing."""
        value = row.get(field)
        if is_missing(value):
            raise ValueError(f"{self.name}: row {row_id!r}: field {field!r} is empty")
        return value

    def load_samples(self, options: LoadOptions) -> list[Sample]:
        """Read rows, check columns, map to Samples, select a subset, then decode only the kept images.

        ``options.image_size`` is unused for real datasets (their images are served as stored).
        """
        if options.dimension is not None and options.dimension != self.dimension:
            return []
        split = options.split or self.split
        table = read_table(
            self.name,
            options.path,
            hub_id=self.hub_id,
            config=options.config or self.config,
            split=split,
            revision=options.revision,
            config_given=options.config is not None,
        )
        hf = table.fmt == "hf"
        self._check_columns(table, self.columns if hf else self.tsv_columns)
        convert = self.from_row if hf else self.from_tsv
        image_field = self.image_column if hf else "image"
        samples = [self._convert(convert, row, i) for i, row in enumerate(table.rows)]
        self._check_unique(samples, table.source)
        keep = select([s.meta["group"] for s in samples], options.limit, seed=options.seed, subsample=options.subsample)
        for i in keep:
            samples[i].images = [
                decode_image(table.rows[i][image_field], dataset=self.name, row_id=samples[i].id, field=image_field)
            ]
        return [samples[i] for i in keep]

    def _convert(self, convert: Callable[[dict[str, Any], int], Sample], row: dict[str, Any], position: int) -> Sample:
        """``convert(row, position)``, adding the dataset and row to errors that do not name them yet."""
        try:
            return convert(row, position)
        except (ValueError, TypeError, KeyError) as err:
            if str(err).startswith(f"{self.name}:"):
                raise
            raise ValueError(f"{self.name}: row {position}: {type(err).__name__}: {err}") from err

    def _check_columns(self, table: Table, required: Sequence[str]) -> None:
        missing = [c for c in required if c not in table.columns]
        if missing:
            fmt = "Hugging Face" if table.fmt == "hf" else "VLMEvalKit TSV"
            raise ValueError(
                f"{self.name}: {table.source} has no column(s) {missing} (missing from every row, from row 0 on); "
                f"the {fmt} format needs {list(required)}; found {table.columns}"
            )

    def _check_unique(self, samples: Sequence[Sample], source: str) -> None:
        seen: set[str] = set()
        duplicates = [s.id for s in samples if s.id in seen or seen.add(s.id)]
        if duplicates:
            raise ValueError(f"{self.name}: {source} repeats sample ids {duplicates[:5]}; ids key the results store")

    def match(self, sample: Sample, extracted: str) -> float:
        """Score of an extracted answer against the gold, in [0, 1]."""
        return float(extracted == sample.answer)

    def score(self, sample: Sample, prediction: str, judge: Judge | None = None) -> SampleScore:
        return score_with_rules(
            lambda text: self.extract(sample, text), lambda ans: self.match(sample, ans), sample, prediction, judge
        )

    def aggregate(
        self, samples: Sequence[Sample], scores: Sequence[SampleScore], judge: Judge | None = None
    ) -> dict[str, float | str]:
        """Accuracy overall and per category; datasets with an official aggregate override this."""
        metrics = {"accuracy": accuracy(scores)}
        metrics.update(per_category_accuracy("category", [s.category for s in samples], scores))
        return finish(self.name, metrics, samples, scores, metrics["accuracy"], judge)


LENIENT_YES_NO = (False, "True: the project's lenient yes/no reader (first word decides when both occur)")
LENIENT_LETTERS = (False, "True: the project's lenient option reader (a bare lowercase letter counts, ...)")


class YesNoSpec(TableSpec):
    """Datasets whose gold answer is "yes"/"no" (MME, POPE, HallusionBench)."""

    VERSION = "2"  # v2: VLMEvalKit's YOrN_Extraction (both words -> Unknown) by default
    prompt_hint: ClassVar[str] = ""
    RULES = {"lenient_yes_no": LENIENT_YES_NO}

    def to_prompt(self, sample: Sample) -> str:
        return join(sample.question, self.prompt_hint)

    def extract(self, sample: Sample, text: str) -> str:
        return extract_yes_no(text, lenient=self.rule("lenient_yes_no"))

    def yes_no(self, row: dict[str, Any], field: str, row_id: str) -> str:
        """The gold answer in ``row[field]`` as "yes"/"no" (datasets write Yes/No), rejecting anything else."""
        value = str(self.need(row, field, row_id)).strip()
        if value.lower() not in ("yes", "no"):
            raise ValueError(f"{self.name}: row {row_id!r}: field {field!r} is {value!r}; expected yes or no")
        return value.lower()


class ChoiceSpec(TableSpec):
    """Multiple-choice datasets whose gold answer is an option letter (MMBench, SEED-2-Plus, ScienceQA)."""

    VERSION = "2"  # v2: VLMEvalKit's can_infer (case-sensitive letters) by default
    RULES = {"lenient_letters": LENIENT_LETTERS}

    def to_prompt(self, sample: Sample) -> str:
        return join(sample.meta.get("context", ""), *with_options(sample.question, sample.options), LETTER_HINT)

    def extract(self, sample: Sample, text: str) -> str:
        return extract_option(text, sample.options, lenient=self.rule("lenient_letters"))

    def letter_options(self, row: dict[str, Any], letters: str = "ABCDE") -> list[str]:
        """Options stored one per letter column (``A``..``E`` or ``choice_A``..), stopping at the first gap."""
        options = []
        for letter in letters:
            value = row.get(letter, row.get(f"choice_{letter}"))
            if is_missing(value):
                break
            options.append(str(value))
        return options
