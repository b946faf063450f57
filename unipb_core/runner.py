"""Evaluate one cell (model x method x ratio x seed x dataset) into the results store, resumably.

Every sample becomes one record, written as soon as it is scored; samples already recorded for the cell's
config hash are skipped, so a killed run resumes at its next sample and never duplicates one. A sample that
raises is recorded with its error text and the cell goes on (or stops, with ``stop_on_error``).

Work is not repeated: each sample is claimed in the store (a lease) before it is computed, so concurrent runs
on one store split the samples between them; and a cell whose samples are all recorded is marked complete
under its run key (``cell_key``: the cell's settings plus cheap fingerprints of the checkpoint files and local
data files), so a rerun skips it before loading a model or a dataset.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from . import __version__, data
from .confighash import config_hash, weights_fingerprint
from .environment import environment_record
from .flops import LMDims, prefill_flops
from .instrument import instrument
from .models import FamilyAdapter, load_model
from .models.loading import TINY_RANDOM_SPECS, TINY_SPECS, ensure_tiny, trained_tiny_dir
from .pruning import PruningEngine, get, method_class
from .store import ResultStore
from .timing import SampleTimer
from .vocabulary import BASELINE_CATEGORY, RANDOM_CATEGORY, VANILLA

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Cell:
    """One configuration to evaluate. ``dataset`` is a registry key; ``dimension`` filters the synthetic
    suite (one cell per dimension, named ``synthetic/<dimension>`` in the records)."""

    model: str
    method: str
    ratio: float
    seed: int
    dataset: str
    split: str | None = None
    dimension: str | None = None
    limit: int | None = None
    subsample: bool = False
    data_path: str | None = None
    revision: str | None = None
    method_params: dict[str, Any] = field(default_factory=dict)
    positions: str = "original"
    max_new_tokens: int | None = None
    attn_implementation: str = "sdpa"
    dtype: str | None = None
    batch_size: int = 1  # how many samples run together; results do not depend on it (not in the config hash)

    @property
    def dataset_label(self) -> str:
        return f"{self.dataset}/{self.dimension}" if self.dataset == "synthetic" and self.dimension else self.dataset

    @property
    def category(self) -> str:
        if self.method == VANILLA:
            return BASELINE_CATEGORY
        cls = method_class(self.method)
        return RANDOM_CATEGORY if self.method.startswith("random_") else cls.category

    @property
    def label(self) -> str:
        ratio = "" if self.method == VANILLA else f" r={self.ratio:.3f}"
        return f"{self.model} {self.method}{ratio} seed={self.seed} {self.dataset_label}"


def cell_config(cell: Cell, model: FamilyAdapter, spec: Any) -> dict[str, Any]:
    """Everything that can change a per-sample result (the config hash covers exactly this).

    ``limit``/``subsample`` choose *which* samples run, not how each is computed, so they are left out:
    a larger limit later reuses every finished sample. ``code_version`` is the package version (bumped when
    results change); the git commit goes into the environment record instead, so a docs commit does not
    invalidate finished work.
    """
    method = None if cell.method == VANILLA else get(cell.method, **cell.method_params)
    dimension = cell.dimension or data.DATASET_DIMENSION.get(cell.dataset, "")
    return {
        "model": cell.model,
        "family": model.family,
        "weights": weights_fingerprint(model.model),
        "method": cell.method,
        "category": cell.category,
        "method_params": {} if method is None else method.params(),
        "family_notes": {} if method is None else method.notes_for(model.family),
        "ratio": 0.0 if method is None else float(cell.ratio),
        "positions": cell.positions,
        "seed": int(cell.seed),
        "dataset": cell.dataset_label,
        "dataset_version": spec.version,
        "revision": cell.revision,
        "split": cell.split or spec.split,
        "dimension": dimension,
        "prompt_template": {"chat_template": model.processor.chat_template, "dataset": spec.version},
        "generation": {"do_sample": False, "num_beams": 1, "max_new_tokens": _max_new_tokens(cell, spec)},
        "attn_implementation": cell.attn_implementation,
        "dtype": str(model.dtype).replace("torch.", ""),
        "code_version": __version__,
    }


def _max_new_tokens(cell: Cell, spec: Any) -> int:
    return int(cell.max_new_tokens or spec.max_new_tokens)


def _tokens_per_layer(model: FamilyAdapter, n_text: int, n_visual: int, summary: dict | None) -> list[int]:
    per_layer = summary["visual_per_layer"] if summary and summary["visual_per_layer"] else None
    visual = per_layer or [n_visual] * model.num_layers
    return [n_text + v for v in visual]


def evaluate_sample(
    model: FamilyAdapter, spec: Any, sample: data.Sample, engine: PruningEngine | None, max_new_tokens: int
) -> dict[str, Any]:
    """Run one sample and return its record (see ``ResultStore.write``)."""
    timer = SampleTimer(model.device)
    if engine is not None:
        engine.begin_sample(sample.id, timer=timer)
    with timer.interval("total"):
        with timer.interval("preprocess"):
            inputs = model.build_inputs(sample.images, spec.to_prompt(sample))
        if engine is not None:
            engine.begin_sample(sample.id, timer=timer, grids=model.visual_grids(inputs))
        with instrument(model, timer):
            out = model.generate(inputs, max_new_tokens=max_new_tokens)
    summary = engine.summary() if engine is not None else None
    peak, _source = timer.peak_memory()
    return _record(model, spec, sample, out, summary, timer.result(), peak)


def evaluate_batch(
    model: FamilyAdapter, spec: Any, samples: list[data.Sample], engine: PruningEngine | None, max_new_tokens: int
) -> list[dict[str, Any]]:
    """Run samples as one left-padded batch and return one record per sample, in order.

    Predictions, scores and kept tokens are each sample's own (the engine prunes every sample as at batch size
    1). The intervals are measured once, for the whole batch; each record's ``timings`` holds the per-sample
    share (``interval / batch size``, so throughput sums stay right), labelled by ``timings["batch"]``: the batch
    size, the batch's id (its first sample) and, in the first sample's record only, the batch's own intervals.
    ``peak_mem_bytes`` is the batch's peak.
    """
    if len(samples) == 1:
        return [evaluate_sample(model, spec, samples[0], engine, max_new_tokens)]
    timer = SampleTimer(model.device)
    keys = [s.id for s in samples]
    if engine is not None:
        engine.begin_batch(keys, timer=timer)
    with timer.interval("total"):
        with timer.interval("preprocess"):
            inputs = model.build_batch([(s.images, spec.to_prompt(s)) for s in samples])
        if engine is not None:
            engine.begin_batch(keys, timer=timer, grids=model.batch_grids(inputs))
        with instrument(model, timer):
            outs = model.generate_batch(inputs, max_new_tokens=max_new_tokens)
    summaries = engine.summaries() if engine is not None else [None] * len(samples)
    peak, _source = timer.peak_memory()
    intervals = timer.result()
    records = []
    for i, (sample, out, summary) in enumerate(zip(samples, outs, summaries, strict=True)):
        timings = batch_shares(intervals, len(samples), keys[0], first=i == 0)
        records.append(_record(model, spec, sample, out, summary, timings, peak))
    return records


def batch_shares(intervals: dict[str, float], size: int, batch_id: str, first: bool) -> dict[str, Any]:
    """A batch sample's ``timings``: each interval's per-sample share, plus the ``batch`` label (module docs)."""
    label: dict[str, Any] = {"size": int(size), "id": str(batch_id), "basis": "per-sample share: interval / size"}
    if first:
        label["intervals"] = dict(intervals)
    return {**{name: seconds / size for name, seconds in intervals.items()}, "batch": label}


def _record(model, spec, sample, out, summary, timings, peak) -> dict[str, Any]:
    score = spec.score(sample, out.text)
    dims = LMDims.from_config(model.text_config)
    kept = summary or {"n_visual": out.n_visual, "stages": [], "visual_per_layer": [out.n_visual] * model.num_layers}
    kept = {**kept, "visual_kept_mean": sum(kept["visual_per_layer"]) / max(len(kept["visual_per_layer"]), 1)}
    return {
        "sample_id": sample.id,
        "prediction": out.text,
        "correct": float(score.correct),
        "parsed": bool(score.parsed),
        "extracted": score.extracted,
        "score": sample.record_fields(),
        "kept": kept,
        "tokens_generated": out.n_generated,
        "n_visual": out.n_visual,
        "n_text": out.n_text,
        "timings": timings,
        "peak_mem_bytes": int(peak),
        "flops": prefill_flops(dims, _tokens_per_layer(model, out.n_text, out.n_visual, summary)),
    }


def length_order(samples: list[data.Sample], spec: Any) -> list[data.Sample]:
    """Samples grouped by similar length (image count, then prompt characters), so a batch pads little.

    A stable sort: equal lengths keep their dataset order. Cheap (no tokenising, no image decoding); the
    visual-token count of dynamic-resolution families is not known before the processor runs.
    """
    return sorted(samples, key=lambda s: (len(s.images), len(spec.to_prompt(s))))


def load_cell_samples(cell: Cell) -> list[data.Sample]:
    return data.load(
        cell.dataset,
        path=cell.data_path,
        revision=cell.revision,
        split=cell.split,
        limit=cell.limit,
        seed=cell.seed if cell.subsample else 0,
        subsample=cell.subsample,
        dimension=cell.dimension,
    )


def checkpoint_dir(spec: str) -> Path | None:
    """The local folder a model spec loads from, without loading it (None: a hub id not in the local cache).

    Raises the loader's errors for a tiny spec whose weights are missing.
    """
    if spec in TINY_SPECS:
        return trained_tiny_dir(spec.split(":", 1)[1])
    if spec in TINY_RANDOM_SPECS:
        return ensure_tiny(spec.split(":", 1)[1])
    if Path(spec).is_dir():
        return Path(spec)
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(spec, "config.json")
    return Path(cached).parent if isinstance(cached, str) else None


def _files_fingerprint(path: Path) -> str:
    """Names, sizes and modification times of the files under ``path`` (cheap: no file is read)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for f in files:
        st = f.stat()
        digest.update(f"{f.relative_to(path) if f != path else f.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def cell_key(cell: Cell) -> str | None:
    """A cell's run key: what decides its config hash that is known before the model loads.

    Hashes the cell's settings, the package and dataset versions, the resolved dtype, and fingerprints of the
    checkpoint folder and of a local data path (names, sizes, mtimes). None when the checkpoint is a hub id
    that is not in the local cache: such a cell is never skipped early. Hub data without a pinned revision is
    identified by its name only, so pin ``revisions`` to pick up an updated hub dataset.
    """
    folder = checkpoint_dir(cell.model)
    if folder is None:
        return None
    dtype = cell.dtype or ("bfloat16" if torch.cuda.is_available() else "float32")  # load_model's default
    data_fp = _files_fingerprint(Path(cell.data_path)) if cell.data_path and Path(cell.data_path).exists() else None
    settings = {k: v for k, v in asdict(cell).items() if k != "batch_size"}  # results do not depend on it
    payload = {
        "cell": settings, "dtype": dtype, "checkpoint": _files_fingerprint(folder), "data": data_fp,
        "dataset_version": data.get(cell.dataset).version, "code_version": __version__,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


@dataclass
class CellResult:
    """What one ``evaluate_cell`` call did.

    ``n_new`` samples were computed by this call (``n_errors`` of them failed); ``n_skipped`` were already
    recorded; ``n_busy`` were being computed by another run (their leases were live). ``errors`` holds the
    first line of the first distinct error messages; ``stopped`` is True when ``stop_on_error`` ended the cell
    early.
    """

    cell: Cell
    config_hash: str
    n_samples: int
    n_new: int
    n_errors: int
    n_skipped: int = 0
    n_busy: int = 0
    errors: list[str] = field(default_factory=list)
    stopped: bool = False

    @property
    def n_computed(self) -> int:
        """Samples this call computed successfully."""
        return self.n_new - self.n_errors

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self.cell), "config_hash": self.config_hash, "n_samples": self.n_samples,
                "n_new": self.n_new, "n_errors": self.n_errors, "n_skipped": self.n_skipped, "n_busy": self.n_busy,
                "errors": list(self.errors), "stopped": self.stopped}  # fmt: skip


MAX_ERRORS_KEPT = 3  # distinct error messages a CellResult keeps for the run summary


def evaluate_cell(
    cell: Cell,
    store: ResultStore,
    model: FamilyAdapter | None = None,
    samples: list[data.Sample] | None = None,
    progress: bool = True,
    stop_on_error: bool = False,
    on_sample: Callable[[str], None] | None = None,
) -> CellResult:
    """Evaluate every not-yet-recorded sample of ``cell`` into ``store``.

    A cell marked complete under its ``cell_key`` returns at once, before a model or dataset loads. Each
    other sample is claimed first (``ResultStore.claim``): recorded ones are skipped, ones another run is
    computing are left to it (and retried once at the end of the cell, in case that run died). A sample that
    raises is recorded with its error; with ``stop_on_error`` the cell then stops. ``on_sample`` is called
    with ``"computed"``, ``"failed"``, ``"skipped"`` or ``"busy"`` per sample (for a grid-wide progress bar).
    """
    run_key = cell_key(cell)
    marked = store.completed([run_key]) if run_key else {}
    if run_key in marked:
        stored_hash, n = marked[run_key]
        for _ in range(n):
            if on_sample:
                on_sample("skipped")
        return CellResult(cell, stored_hash, n, 0, 0, n_skipped=n)
    model = model or load_model(cell.model, dtype=cell.dtype, attn_implementation=cell.attn_implementation)
    spec = data.get(cell.dataset)
    samples = samples if samples is not None else load_cell_samples(cell)
    config = cell_config(cell, model, spec)
    key = config_hash(config)
    store.register_cell(key, config, environment_record(model.model))
    done = store.done_ids(key)
    todo = [s for s in samples if s.id not in done]
    result = CellResult(cell, key, len(samples), 0, 0, n_skipped=len(samples) - len(todo))
    for _ in range(result.n_skipped):
        if on_sample:
            on_sample("skipped")
    max_new = _max_new_tokens(cell, spec)
    engine_cm = (
        contextlib.nullcontext(None)
        if cell.method == VANILLA
        else PruningEngine(model, get(cell.method, **cell.method_params), cell.ratio, cell.seed, cell.positions)
    )
    bar = tqdm(total=len(samples), initial=result.n_skipped, desc=cell.label, disable=not progress, leave=False)

    def count(status: str) -> None:
        bar.update(1)
        bar.set_postfix(computed=result.n_computed, skipped=result.n_skipped, failed=result.n_errors)
        if on_sample:
            on_sample(status)

    try:
        with engine_cm as engine, torch.inference_mode():
            busy: list[data.Sample] = []
            claimed: list[data.Sample] = []

            def flush() -> bool:
                """Evaluate the claimed samples as one batch; True when the cell must stop."""
                failed = _evaluate_batch_into(store, key, model, spec, claimed, engine, max_new, result)
                for sample in claimed:
                    count("failed" if sample.id in failed else "computed")
                claimed.clear()
                return bool(failed) and stop_on_error

            # Batches are filled in length order; resume, leases and records stay per sample.
            ordered = length_order(todo, spec) if cell.batch_size > 1 else todo
            # The second pass re-claims the samples another run held: a dead run's leases are taken over.
            for attempt, queue in enumerate((ordered, busy)):
                for sample in list(queue):
                    status = store.claim(key, sample.id)
                    if status == "done":
                        result.n_skipped += 1
                        count("skipped")
                        continue
                    if status == "busy":
                        if attempt == 0:
                            busy.append(sample)
                        else:
                            result.n_busy += 1
                            count("busy")
                        continue
                    claimed.append(sample)
                    if len(claimed) >= cell.batch_size and flush():
                        result.stopped = True
                        return result
                if claimed and flush():
                    result.stopped = True
                    return result
    finally:
        bar.close()
        store.release(key)  # leases left by an interrupted loop
    if result.n_errors == 0 and result.n_busy == 0 and run_key:
        store.mark_complete(run_key, key, len(samples))
    return result


def _evaluate_batch_into(
    store: ResultStore,
    key: str,
    model: FamilyAdapter,
    spec: Any,
    samples: list[data.Sample],
    engine: PruningEngine | None,
    max_new: int,
    result: CellResult,
) -> set[str]:
    """Compute claimed samples (one batch) and write their records; returns the ids that failed.

    A batch that raises is retried sample by sample, so an error is recorded for the sample that causes it
    (with its own message) and the others of the batch still get their results.
    """
    if len(samples) > 1:
        try:
            records = evaluate_batch(model, spec, samples, engine, max_new)
        except Exception as exc:  # one bad sample must not fail its batch: fall back to batch size 1 below
            records, batch_error = None, f"{type(exc).__name__}: {exc}".splitlines()[0]
        if records is not None:
            result.n_new += len(samples)
            for record in records:
                store.write(key, record)
            return set()
    failed = {s.id for s in samples if _evaluate_into(store, key, model, spec, s, engine, max_new, result)}
    if len(samples) > 1 and not failed:  # every sample runs alone: the batch path itself failed
        warnings.warn(f"{result.cell.label}: a batch of {len(samples)} failed ({batch_error}); its samples ran one "
                      "at a time", RuntimeWarning, stacklevel=2)  # fmt: skip
    return failed


def _evaluate_into(
    store: ResultStore,
    key: str,
    model: FamilyAdapter,
    spec: Any,
    sample: data.Sample,
    engine: PruningEngine | None,
    max_new: int,
    result: CellResult,
) -> bool:
    """Compute one claimed sample and write its record; returns True when it failed."""
    result.n_new += 1
    try:
        record = evaluate_sample(model, spec, sample, engine, max_new)
    except Exception as exc:  # a failing sample is recorded, never fatal for the cell
        result.n_errors += 1
        message = f"{type(exc).__name__}: {exc}"
        first_line = message.splitlines()[0] if message else type(exc).__name__
        if first_line not in result.errors and len(result.errors) < MAX_ERRORS_KEPT:
            result.errors.append(first_line)
        store.write(key, {"sample_id": sample.id, "error": f"{message}\n{traceback.format_exc(limit=4)}"})
        return True
    store.write(key, record)
    return False


def cell_summary(results: list[CellResult], store: ResultStore) -> pd.DataFrame:
    """One row per evaluated cell: what the run did (new / skipped samples) and the cell's numbers so far.

    Accuracy, parsed share, mean kept visual tokens and median prefill time (ms) are over all of the cell's
    stored samples that ran without error. ``unipb run`` prints it; ``evaluate.ipynb`` shows it.
    """
    import numpy as np
    import pandas as pd

    rows = pd.DataFrame(
        [
            {
                "model": r.cell.model,
                "method": r.cell.method,
                "ratio": r.cell.ratio,
                "seed": r.cell.seed,
                "dataset": r.cell.dataset_label,
                "config_hash": r.config_hash,
                "samples": r.n_samples,
                "new": r.n_new,
                "errors": r.n_errors,
            }
            for r in results
        ]
    )
    if rows.empty:
        return rows
    frame = store.frame(config_hash=list(rows["config_hash"]))
    ok = frame[frame["error"].isna()]
    kept = ok["kept"].map(lambda k: (k or {}).get("visual_kept_mean", np.nan))
    numbers = (
        ok.assign(kept_mean=kept)
        .groupby("config_hash")
        .agg(accuracy=("correct", "mean"), parsed=("parsed", "mean"), kept_visual=("kept_mean", "mean"),
             prefill_ms=("t_prefill", "median"))
    )  # fmt: skip
    numbers["prefill_ms"] *= 1000
    return rows.merge(numbers, left_on="config_hash", right_index=True, how="left")
