"""Params YAML -> validated grid -> cells, run in-process or on Ray.

Every params file is checked before any model loads, in two steps that each raise ``ParamsError`` with one
line naming the key, the value and what is accepted: ``validate`` (``load_params``) checks every key's type
and value and every method parameter against its dataclass field; ``prepare`` (run by ``run``) checks the
store path, each model's config (layer indices of the methods) and loads the data of the unfinished cells.
The grid always adds the unpruned baseline (``vanilla``) and the seeded random baselines.
"""

from __future__ import annotations

import difflib
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from . import data
from .models.loading import KNOWN_CHECKPOINTS, TINY_RANDOM_SPECS, TINY_SPECS
from .pruning import available as available_methods
from .runner import VANILLA, Cell, CellResult, cell_key, checkpoint_dir, evaluate_cell, load_cell_samples
from .store import ResultStore, StoreError, check_writable

RANDOM_BASELINES = ("random_pre", "random_intra")
EXECUTORS = ("local", "ray")


class ParamsError(ValueError):
    """A params file that cannot run (names the key and what is accepted)."""


@dataclass(frozen=True)
class Params:
    """A grid, with defaults; every field is a key of the params YAML (see params/smoke.yaml)."""

    models: tuple[str, ...] = TINY_SPECS
    datasets: tuple[str, ...] = ("synthetic",)
    dimensions: tuple[str, ...] = ()  # filters datasets to these dimensions; splits the synthetic suite
    split: str | None = None
    methods: tuple[str, ...] = ()  # empty = every registered method
    ratios: tuple[float, ...] = (0.667, 0.778, 0.889)
    seeds: tuple[int, ...] = (0,)
    limit: int | None = None
    subsample: bool = False
    max_new_tokens: int | None = None
    positions: str = "original"
    attn_implementation: str = "sdpa"
    dtype: str | None = None
    batch_size: int = 1  # samples per forward; recorded with the timings, not in the config hash (results equal)
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    data_paths: dict[str, str] = field(default_factory=dict)
    revisions: dict[str, str] = field(default_factory=dict)
    executor: str = "local"
    store: str = "reports/results.sqlite"


DTYPES = ("float32", "float16", "bfloat16")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")
POSITIONS = ("original", "contiguous")


def _fail(key: str, value: Any, accepted: list[str] | tuple[str, ...]) -> None:
    close = difflib.get_close_matches(str(value), [str(a) for a in accepted], n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ParamsError(f"params key {key!r}: {value!r} is not accepted.{hint} Accepted: {', '.join(map(str, accepted))}")


def _expect(key: str, value: Any, what: str) -> None:
    raise ParamsError(f"params key {key!r}: {value!r} is not accepted; expected {what}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_tuple(key: str, value: Any) -> tuple:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    if value is None:
        return ()
    if isinstance(value, dict):
        _expect(key, value, "a list")
    return (value,)


def _check_list(key: str, values: tuple, accepted: list[str] | tuple[str, ...] | None = None) -> None:
    for value in values:
        if not isinstance(value, str):
            _expect(key, value, "a list of names (strings)")
        if accepted is not None and value not in accepted:
            _fail(key, value, accepted)


def _check_mapping(key: str, value: Any, keys: list[str], what: str) -> None:
    """A mapping whose keys are among ``keys`` (e.g. the grid's datasets) and whose values are strings."""
    if not isinstance(value, dict):
        _expect(key, value, f"a mapping of {what}")
    for name, item in value.items():
        if name not in keys:
            _fail(f"{key}.{name}", name, keys)
        if not isinstance(item, str) or not item:
            _expect(f"{key}.{name}", item, "a non-empty string")


def validate(raw: dict[str, Any]) -> Params:
    """Check a parsed params mapping and return ``Params`` (raises ``ParamsError``, one line).

    Checks every key's type and value without loading a model or dataset; ``prepare`` (called by ``run``)
    then checks what needs the model configs, the data and the store.
    """
    if not isinstance(raw, dict):
        raise ParamsError(f"a params file must be a mapping of keys to values, got a {type(raw).__name__}: {raw!r}")
    if not raw:
        raise ParamsError("the params mapping is empty; name at least 'models' and 'datasets' (see params/smoke.yaml)")
    names = [f.name for f in fields(Params)]
    for key in raw:
        if key not in names:
            _fail("<top level>", key, names)
    defaults = Params()
    values: dict[str, Any] = {}
    for f in fields(Params):
        if f.name not in raw:
            continue
        value = raw[f.name]
        default = getattr(defaults, f.name)
        values[f.name] = _as_tuple(f.name, value) if isinstance(default, tuple) else value
    params = Params(**values)
    if not params.models or not params.datasets:
        raise ParamsError("params keys 'models' and 'datasets' must each name at least one entry")
    _check_list("models", params.models)
    named = (*TINY_SPECS, *TINY_RANDOM_SPECS, *KNOWN_CHECKPOINTS)
    for model in params.models:
        if not (model in named or Path(model).is_dir()):
            _fail("models", model, [*named, "<a local checkpoint directory>"])
    _check_list("datasets", params.datasets, data.available())
    _check_list("dimensions", params.dimensions, data.DIMENSIONS)
    _check_list("methods", params.methods, [VANILLA, *available_methods()])
    if params.split is not None and (not isinstance(params.split, str) or not params.split):
        _expect("split", params.split, "a split name (string) or null for each dataset's default")
    if not params.ratios:
        raise ParamsError("params key 'ratios' is empty; expected at least one ratio in [0, 1), e.g. [0.667]")
    for ratio in params.ratios:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
            raise ParamsError(
                f"params key 'ratios': {ratio!r} is not accepted; expected numbers in [0, 1) (the share of visual "
                "tokens removed)"
            )
    if not params.seeds or not all(_is_int(s) and s >= 0 for s in params.seeds):
        _expect("seeds", list(params.seeds), "a non-empty list of non-negative integers")
    if params.limit is not None and (not _is_int(params.limit) or params.limit < 1):
        _expect("limit", params.limit, "a positive integer or null (all samples)")
    if not isinstance(params.subsample, bool):
        _expect("subsample", params.subsample, "true or false")
    if params.max_new_tokens is not None and (not _is_int(params.max_new_tokens) or params.max_new_tokens < 1):
        _expect("max_new_tokens", params.max_new_tokens, "a positive integer or null (each dataset's default)")
    if params.positions not in POSITIONS:
        _fail("positions", params.positions, POSITIONS)
    if not _is_int(params.batch_size) or params.batch_size < 1:
        _expect("batch_size", params.batch_size, "a positive integer (samples per forward; default 1)")
    if params.batch_size > 1 and params.attn_implementation == "flash_attention_2":
        raise ParamsError(
            "params key 'batch_size': batches > 1 run with attn_implementation sdpa or eager (the engine's padded "
            "layer masks are 4-D); set batch_size: 1 for flash_attention_2"
        )
    if params.batch_size > 1 and params.positions == "contiguous":
        raise ParamsError(
            "params key 'batch_size': positions 'contiguous' runs at batch size 1 only; set batch_size: 1 "
            "or positions: original"
        )
    if params.attn_implementation not in ATTN_IMPLEMENTATIONS:
        _fail("attn_implementation", params.attn_implementation, ATTN_IMPLEMENTATIONS)
    if params.dtype is not None and params.dtype not in DTYPES:
        _fail("dtype", params.dtype, [*DTYPES, "null (bfloat16 on GPU, float32 on CPU)"])
    if params.executor not in EXECUTORS:
        _fail("executor", params.executor, EXECUTORS)
    if not isinstance(params.store, str) or not params.store.strip():
        _expect("store", params.store, "a file path for the results database")
    for key in ("models", "datasets", "dimensions", "methods", "ratios", "seeds"):
        values = getattr(params, key)
        twice = [v for i, v in enumerate(values) if v in values[:i]]
        if twice:
            raise ParamsError(f"params key {key!r}: {twice[0]!r} is listed twice; list each entry once")
    _check_mapping("data_paths", params.data_paths, list(params.datasets), "dataset: local path")
    for name, path in params.data_paths.items():
        if not Path(path).expanduser().exists():
            raise ParamsError(f"params key 'data_paths.{name}': {path!r} does not exist")
    _check_mapping("revisions", params.revisions, list(params.datasets), "dataset: hub revision")
    _check_method_params(params)
    if not expand(params):
        raise ParamsError(
            f"the grid selects no cells: no dataset of {list(params.datasets)} has a dimension in "
            f"{list(params.dimensions)} (dimensions of each dataset: see docs/datasets.md)"
        )
    return params


def _check_method_params(params: Params) -> None:
    """Method parameters are checked by instantiating each method now (types from its dataclass fields)."""
    from .pruning import get

    if not isinstance(params.method_params, dict):
        _expect("method_params", params.method_params, "a mapping of method: {parameter: value}")
    methods = _methods(params)  # an empty method list means every registered method
    for name, values in params.method_params.items():
        if name not in methods:
            _fail("method_params", name, methods)
        if not isinstance(values, dict):
            _expect(f"method_params.{name}", values, "a mapping of parameter: value, e.g. {layer: 3}")
    for name in methods:
        try:
            get(name, **params.method_params.get(name, {}))
        except ValueError as exc:
            raise ParamsError(f"params key 'method_params': {exc}") from exc


def load_params(path: str | os.PathLike, **overrides: Any) -> Params:
    """Read, override (CLI / papermill values win; None means "not given") and validate a params YAML.

    The one loader of params files: every problem is a ``ParamsError`` with a one-line message naming the key.
    """
    try:
        text = Path(path).read_text()
    except FileNotFoundError as exc:
        raise ParamsError(f"params file {str(path)!r} does not exist") from exc
    except OSError as exc:
        raise ParamsError(f"params file {str(path)!r} cannot be read ({exc.strerror or exc})") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParamsError(f"params file {str(path)!r} is not valid YAML: {' '.join(str(exc).split())}") from exc
    if raw is None:
        raise ParamsError(f"params file {str(path)!r} is empty; name at least 'models' and 'datasets'")
    if not isinstance(raw, dict):
        raise ParamsError(f"params file {str(path)!r} must be a mapping of keys to values, got a {type(raw).__name__}")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return validate(raw)


def _methods(params: Params) -> list[str]:
    """The pruning methods to run: the listed ones (every registered one when the list is empty), plus the
    seeded random baselines, which every grid carries."""
    listed = [m for m in (params.methods or available_methods()) if m != VANILLA]
    return listed + [b for b in RANDOM_BASELINES if b not in listed]


def _dataset_entries(params: Params) -> list[tuple[str, str | None]]:
    """(dataset, dimension filter) pairs: one per synthetic dimension, one per real dataset."""
    entries = []
    for name in params.datasets:
        if name == "synthetic":
            for dim in params.dimensions or data.DIMENSIONS:
                entries.append((name, dim))
        elif not params.dimensions or data.DATASET_DIMENSION[name] in params.dimensions:
            entries.append((name, None))
    return entries


def expand(params: Params) -> list[Cell]:
    """All cells of the grid: vanilla once, random baselines per seed, other methods at the first seed."""
    methods = _methods(params)
    cells = []
    for model in params.models:
        for dataset, dimension in _dataset_entries(params):
            common = {
                "model": model, "dataset": dataset, "dimension": dimension, "split": params.split,
                "limit": params.limit, "subsample": params.subsample, "data_path": params.data_paths.get(dataset),
                "revision": params.revisions.get(dataset), "positions": params.positions,
                "max_new_tokens": params.max_new_tokens, "attn_implementation": params.attn_implementation,
                "dtype": params.dtype, "batch_size": params.batch_size,
            }  # fmt: skip
            cells.append(Cell(method=VANILLA, ratio=0.0, seed=params.seeds[0], **common))
            for method in methods:
                seeds = params.seeds if method in RANDOM_BASELINES else params.seeds[:1]
                for ratio in params.ratios:
                    for seed in seeds:
                        mp = params.method_params.get(method, {})
                        cells.append(Cell(method=method, ratio=float(ratio), seed=seed, method_params=mp, **common))
    return cells


@dataclass
class Plan:
    """A validated grid, checked against the store, the model configs and the data, ready to run.

    ``done`` maps the positions (in ``cells``) of the cells already complete in the store to their sample
    counts (they are skipped without loading anything); ``samples`` holds the loaded samples of every other
    cell, by ``data_key``.
    """

    params: Params
    cells: list[Cell]
    done: dict[int, int]
    samples: dict[tuple, list[data.Sample]]

    @property
    def n_samples(self) -> int:
        return sum(self.done[i] if i in self.done else len(self.samples[data_key(c)]) for i, c in enumerate(self.cells))


def data_key(cell: Cell) -> tuple:
    """What decides a cell's samples (cells sharing it share one loaded sample list)."""
    return (cell.dataset, cell.dimension, cell.split, cell.limit, cell.subsample, cell.seed if cell.subsample else 0,
            cell.data_path, cell.revision)  # fmt: skip


def _model_config(spec: str) -> dict[str, Any]:
    """A model's config (``config.json`` as a dict), read without loading the model."""
    from .models.loading import MissingWeightsError

    try:
        folder = checkpoint_dir(spec)
    except (MissingWeightsError, ValueError, OSError) as exc:
        raise ParamsError(f"params key 'models': {' '.join(str(exc).split())}") from exc
    if folder is None:  # a hub id not in the local cache: ask the hub for its config
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(spec).to_dict()
        except Exception as exc:  # noqa: BLE001 - the hub client raises many types; all mean "not reachable"
            offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
            why = "HF_HUB_OFFLINE is set and it is not in the local cache" if offline else type(exc).__name__
            raise ParamsError(
                f"params key 'models': {spec!r} cannot be loaded ({why}); download it once with the hub online, "
                "or give a local checkpoint directory"
            ) from exc
    else:
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise ParamsError(f"params key 'models': {spec!r} has no config.json in {str(folder)!r}")
        config = json.loads(config_file.read_text())
    return config


def _check_model(spec: str, cells: list[Cell]) -> None:
    """What a model's config decides: the methods' decoder layers and the position policy."""
    from .models.loading import FAMILIES

    config = _model_config(spec)
    family = FAMILIES.get(config.get("model_type"))
    if family is None:
        _fail("models", f"{spec} (model_type {config.get('model_type')!r})", list(FAMILIES))
    text = config.get("text_config") or config
    if not _is_int(text.get("num_hidden_layers")):
        raise ParamsError(f"params key 'models': {spec!r}: its config names no num_hidden_layers")
    for cell in cells:
        if cell.positions == "contiguous" and family.adapter_class.position_scheme != "rope1d":
            raise ParamsError(
                f"params key 'positions': 'contiguous' is defined for 1-D RoPE families; {spec} ({family.name}) "
                f"uses {family.adapter_class.position_scheme} (accepted for it: original)"
            )
        if cell.method != VANILLA:
            _check_layers(cell, int(text["num_hidden_layers"]))


def _check_layers(cell: Cell, num_layers: int) -> None:
    """The method's stages must lie inside the model (what the engine would find at the first sample)."""
    from .pruning import get
    from .pruning.base import stage_outside

    method = get(cell.method, **cell.method_params)
    try:
        stages = method.plan(576, cell.ratio, num_layers)
    except ValueError as exc:
        raise ParamsError(f"params key 'method_params': {cell.method} on {cell.model}: {exc}") from exc
    outside = stage_outside(stages, num_layers)
    if outside is not None:
        raise ParamsError(
            f"params key 'method_params': {cell.method} acts at decoder layer {outside.layer}, outside "
            f"{cell.model}, which has {num_layers} layers (accepted: 0..{num_layers - 1})"
        )


def _load_data(cell: Cell) -> list[data.Sample]:
    source = f"data_paths.{cell.dataset} = {cell.data_path!r}" if cell.data_path else "the hub"
    source += f", split {cell.split or data.get(cell.dataset).split!r}"
    try:
        samples = load_cell_samples(cell)
    except Exception as exc:  # noqa: BLE001 - any failure to read the data is the user's data or path
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise ParamsError(f"dataset {cell.dataset_label!r} (from {source}): {message}") from exc
    if not samples:
        raise ParamsError(
            f"dataset {cell.dataset_label!r} (from {source}) selects no samples; check "
            "the split, the dimension filter and the data"
        )
    return samples


def prepare(params: Params) -> Plan:
    """Check what ``validate`` cannot before any sample runs, and load the data of the unfinished cells.

    In order: the store path (nothing is written), which cells the store already has complete, each model's
    config (its decoder layer count: the layer indices of every method are checked against it), and every
    dataset the unfinished cells use (split, path, columns, images). Raises ``ParamsError`` (one line).
    Vanilla cells run without the engine, so ``positions`` is checked on every cell of a model: a grid is
    either valid for all its cells or not run.
    """
    try:
        check_writable(params.store)
    except StoreError as exc:
        raise ParamsError(f"params key 'store': {exc}") from exc
    store = ResultStore(params.store)
    cells = expand(params)
    keys = []
    for cell in cells:
        try:
            keys.append(cell_key(cell))
        except (OSError, ValueError):  # an unreadable checkpoint is reported below, with the key named
            keys.append(None)
    try:
        marked = store.completed(k for k in keys if k)
    except (StoreError, sqlite3.DatabaseError) as exc:
        raise ParamsError(f"params key 'store': {' '.join(str(exc).split())}") from exc
    done = {i: marked[k][1] for i, k in enumerate(keys) if k in marked}
    todo = [c for i, c in enumerate(cells) if i not in done]
    for model in dict.fromkeys(c.model for c in todo):
        _check_model(model, [c for c in todo if c.model == model])
    samples = {}
    for cell in todo:
        if data_key(cell) not in samples:
            samples[data_key(cell)] = _load_data(cell)
    return Plan(params, cells, done, samples)


class _Progress:
    """The grid-wide bar: samples done of all, computed / skipped / failed, and the time left estimated from
    the computed samples only (skipped ones take no time, so tqdm's own rate would promise too much)."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        from tqdm.auto import tqdm

        fmt = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"
        self.bar = tqdm(total=total, desc=desc, unit="sample", disable=not enabled, bar_format=fmt)
        self.counts = {"computed": 0, "skipped": 0, "failed": 0, "busy": 0}
        self.start = time.monotonic()

    def __call__(self, status: str, n: int = 1) -> None:
        self.counts[status] += n
        self.bar.update(n)
        ran = self.counts["computed"] + self.counts["failed"]
        left = self.bar.total - self.bar.n
        postfix = {k: v for k, v in self.counts.items() if v or k != "busy"}
        if ran:
            per_sample = (time.monotonic() - self.start) / ran
            postfix["left"] = self.bar.format_interval(per_sample * left)
        self.bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        self.bar.close()


def _skipped_result(cell: Cell, store: ResultStore, n: int) -> CellResult:
    """A cell complete before the run: its result without loading anything (see ``evaluate_cell``)."""
    key = cell_key(cell)
    stored_hash, _ = store.completed([key])[key]
    return CellResult(cell, stored_hash, n, 0, 0, n_skipped=n)


def run_local(plan: Plan, store: ResultStore, progress: bool = True, keep_going: bool = True) -> list[CellResult]:
    """Run a plan in this process, loading each model once (and only for cells that still have work)."""
    from .models import load_model

    bar = _Progress(plan.n_samples, "grid", progress)
    results, model, model_key = [], None, None
    try:
        for i, cell in enumerate(plan.cells):
            if i in plan.done:
                results.append(_skipped_result(cell, store, plan.done[i]))
                bar("skipped", plan.done[i])
                continue
            key = (cell.model, cell.dtype, cell.attn_implementation)
            if key != model_key:
                model = None  # free the previous model before loading the next
                model = load_model(cell.model, dtype=cell.dtype, attn_implementation=cell.attn_implementation)
                model_key = key
            result = evaluate_cell(cell, store, model=model, samples=plan.samples[data_key(cell)], progress=progress,
                                   stop_on_error=not keep_going, on_sample=bar)  # fmt: skip
            results.append(result)
            if result.stopped:
                break
    finally:
        bar.close()
    return results


def _ray_cell(cell: Cell, store: ResultStore, stop_on_error: bool) -> CellResult:
    """A Ray task: ``evaluate_cell`` skips a complete cell before loading its model or data."""
    return evaluate_cell(cell, store, progress=False, stop_on_error=stop_on_error)


def run_ray(plan: Plan, store: ResultStore, progress: bool = True, keep_going: bool = True) -> list[CellResult]:
    """Run each unfinished cell as a Ray task (one GPU per cell when GPUs exist); workers write the same store.

    Cells already complete are not sent to Ray at all (a rerun of a finished grid does not start Ray); a task
    re-checks completion itself before loading anything, for cells another run finished meanwhile.
    """
    bar = _Progress(plan.n_samples, "grid (ray)", progress)
    results = {i: _skipped_result(plan.cells[i], store, n) for i, n in plan.done.items()}
    bar("skipped", sum(plan.done.values()))
    todo = {i: c for i, c in enumerate(plan.cells) if i not in plan.done}
    try:
        if todo:
            results.update(_ray_results(todo, store, bar, keep_going))
    finally:
        bar.close()
    return [results[i] for i in range(len(plan.cells)) if i in results]


def _ray_results(cells: dict[int, Cell], store: ResultStore, bar: _Progress, keep_going: bool) -> dict[int, CellResult]:
    import ray
    import torch

    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        gpus = 1 if torch.cuda.is_available() else 0
        task = ray.remote(num_gpus=gpus, num_cpus=1)(_ray_cell)
        pending = {task.remote(cell, store, not keep_going): i for i, cell in cells.items()}
        results = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            result = ray.get(ready[0])
            results[pending.pop(ready[0])] = result
            for status, n in (("computed", result.n_computed), ("failed", result.n_errors),
                              ("skipped", result.n_skipped), ("busy", result.n_busy)):  # fmt: skip
                if n:
                    bar(status, n)
            if result.stopped:
                for ref in pending:
                    ray.cancel(ref)
                break
        return results
    finally:
        if started:
            ray.shutdown()


def run(params: Params, progress: bool = True, keep_going: bool = True) -> list[CellResult]:
    """Check (``prepare``), then run a grid with the params' executor; returns one result per cell run.

    ``keep_going=False`` stops at the first failed sample (it is recorded; a rerun retries it); the results
    then cover the cells run so far. Every user error is a ``ParamsError`` raised before any sample runs.
    """
    return execute(prepare(params), progress=progress, keep_going=keep_going)


def execute(plan: Plan, progress: bool = True, keep_going: bool = True) -> list[CellResult]:
    """Run a prepared grid (see ``run``) with its params' executor."""
    store = ResultStore(plan.params.store)
    runner = run_ray if plan.params.executor == "ray" else run_local
    return runner(plan, store, progress=progress, keep_going=keep_going)


def summarize(results: list[CellResult]) -> dict[str, Any]:
    """Counts over a run's results: cells, samples computed / skipped / failed / left to another run, the
    first distinct error messages and whether the run stopped at a failure."""
    errors: list[str] = []
    for r in results:
        errors.extend(e for e in r.errors if e not in errors)
    return {
        "cells": len(results),
        "computed": sum(r.n_computed for r in results),
        "skipped": sum(r.n_skipped for r in results),
        "failed": sum(r.n_errors for r in results),
        "busy": sum(r.n_busy for r in results),
        "failed_cells": sum(1 for r in results if r.n_errors),
        "errors": errors[:5],
        "stopped": any(r.stopped for r in results),
    }
