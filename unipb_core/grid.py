"""Params YAML -> validated grid -> cells, run in-process or on Ray.

Every params file is checked before any model loads: unknown keys (typos), unknown models, methods,
datasets or dimensions, and ratios outside [0, 1) are rejected with the key and the accepted values.
The grid always adds the unpruned baseline (``vanilla``) and the seeded random baselines.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from . import data
from .models.loading import KNOWN_CHECKPOINTS, TINY_RANDOM_SPECS, TINY_SPECS
from .pruning import available as available_methods
from .runner import VANILLA, Cell, CellResult, evaluate_cell, load_cell_samples
from .store import ResultStore

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
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    data_paths: dict[str, str] = field(default_factory=dict)
    revisions: dict[str, str] = field(default_factory=dict)
    executor: str = "local"
    store: str = "reports/results.sqlite"


def _fail(key: str, value: Any, accepted: list[str] | tuple[str, ...]) -> None:
    close = difflib.get_close_matches(str(value), [str(a) for a in accepted], n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ParamsError(f"params key {key!r}: {value!r} is not accepted.{hint} Accepted: {', '.join(map(str, accepted))}")


def _as_tuple(key: str, value: Any) -> tuple:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    if value is None:
        return ()
    return (value,)


def validate(raw: dict[str, Any]) -> Params:
    """Check a parsed params mapping and return ``Params`` (raises ``ParamsError``)."""
    if not isinstance(raw, dict):
        raise ParamsError(f"a params file must be a mapping of keys to values, got {type(raw).__name__}")
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
    for model in params.models:
        named = (*TINY_SPECS, *TINY_RANDOM_SPECS, *KNOWN_CHECKPOINTS)
        if not (model in named or Path(model).is_dir()):
            _fail("models", model, [*named, "<a local checkpoint directory>"])
    for name in params.datasets:
        if name not in data.available():
            _fail("datasets", name, data.available())
    for dim in params.dimensions:
        if dim not in data.DIMENSIONS:
            _fail("dimensions", dim, data.DIMENSIONS)
    methods = [VANILLA, *available_methods()]
    for name in params.methods:
        if name not in methods:
            _fail("methods", name, methods)
    for name in params.method_params:
        if name not in _methods(params):  # an empty method list means every registered method
            _fail("method_params", name, _methods(params))
    for ratio in params.ratios:
        if not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
            raise ParamsError(f"params key 'ratios': {ratio!r} is outside [0, 1) (the share of visual tokens removed)")
    if not params.seeds or not all(isinstance(s, int) for s in params.seeds):
        raise ParamsError(f"params key 'seeds': {list(params.seeds)!r}; expected a non-empty list of integers")
    if params.limit is not None and (not isinstance(params.limit, int) or params.limit < 1):
        raise ParamsError(f"params key 'limit': {params.limit!r}; expected a positive integer or null")
    if params.executor not in EXECUTORS:
        _fail("executor", params.executor, EXECUTORS)
    if params.positions not in ("original", "contiguous"):
        _fail("positions", params.positions, ("original", "contiguous"))
    if not params.models or not params.datasets:
        raise ParamsError("params keys 'models' and 'datasets' must each name at least one entry")
    # Method parameters are checked by instantiating each method now, before any model loads.
    from .pruning import get

    for name in _methods(params):
        try:
            get(name, **params.method_params.get(name, {}))
        except ValueError as exc:
            raise ParamsError(f"params key 'method_params': {exc}") from exc
    return params


def load_params(path: str | os.PathLike, **overrides: Any) -> Params:
    """Read, override (CLI / papermill values win) and validate a params YAML."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError as exc:
        raise ParamsError(f"params file {str(path)!r} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ParamsError(f"params file {str(path)!r} is not valid YAML: {exc}") from exc
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
                "dtype": params.dtype,
            }  # fmt: skip
            cells.append(Cell(method=VANILLA, ratio=0.0, seed=params.seeds[0], **common))
            for method in methods:
                seeds = params.seeds if method in RANDOM_BASELINES else params.seeds[:1]
                for ratio in params.ratios:
                    for seed in seeds:
                        mp = params.method_params.get(method, {})
                        cells.append(Cell(method=method, ratio=float(ratio), seed=seed, method_params=mp, **common))
    return cells


def run_local(cells: list[Cell], store: ResultStore, progress: bool = True) -> list[CellResult]:
    """Run cells in this process, loading each model once and each dataset once per model."""
    from tqdm.auto import tqdm

    from .models import load_model

    results, model, model_key, samples_cache = [], None, None, {}
    for cell in tqdm(cells, desc="cells", disable=not progress):
        key = (cell.model, cell.dtype, cell.attn_implementation)
        if key != model_key:
            model, model_key = (
                load_model(cell.model, dtype=cell.dtype, attn_implementation=cell.attn_implementation),
                key,
            )
        data_key = (cell.dataset, cell.dimension, cell.split, cell.limit, cell.subsample, cell.data_path, cell.revision)
        if data_key not in samples_cache:
            samples_cache[data_key] = load_cell_samples(cell)
        results.append(evaluate_cell(cell, store, model=model, samples=samples_cache[data_key], progress=progress))
    return results


def run_ray(cells: list[Cell], store: ResultStore, progress: bool = True) -> list[CellResult]:
    """Run each cell as a Ray task (one GPU per cell when GPUs exist); workers write the same store."""
    import ray
    import torch

    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        gpus = 1 if torch.cuda.is_available() else 0
        task = ray.remote(num_gpus=gpus, num_cpus=1)(evaluate_cell)
        refs = [task.remote(cell, store, None, None, False) for cell in cells]
        from tqdm.auto import tqdm

        results = []
        for ref in tqdm(refs, desc="cells (ray)", disable=not progress):
            results.append(ray.get(ref))
        return results
    finally:
        if started:
            ray.shutdown()


def run(params: Params, progress: bool = True) -> list[CellResult]:
    """Expand and run a grid with the params' executor; returns one result per cell."""
    store = ResultStore(params.store)
    cells = expand(params)
    runner = run_ray if params.executor == "ray" else run_local
    return runner(cells, store, progress=progress)
