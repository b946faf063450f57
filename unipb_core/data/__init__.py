"""Datasets: the Sample schema, one adapter per benchmark, the synthetic suite and the dimension map.

>>> from unipb_core import data
>>> samples = data.load("pope", path="POPE.tsv", limit=100)
>>> spec = data.get("pope")
>>> scores = [spec.score(s, prediction) for s, prediction in zip(samples, predictions)]
>>> spec.aggregate(samples, scores)["headline"]
"""

from __future__ import annotations

from pathlib import Path

# Explicit imports fill the registry (one module per dataset; the import order is the table order).
from unipb_core.data import (  # noqa: F401
    hallusionbench,
    mathvision,
    mathvista,
    miabench,
    mmbench,
    mme,
    ocrbench,
    pope,
    scienceqa,
    seedbench2plus,
    synthetic,
)
from unipb_core.data.dimensions import DIMENSIONS
from unipb_core.data.registry import available, dataset_dimensions, get
from unipb_core.data.sample import Sample
from unipb_core.data.spec import DatasetSpec, LoadOptions

# Derived from the registry (each spec names its dimension): the one dataset -> dimension map.
DATASET_DIMENSION: dict[str, str] = dataset_dimensions()


def load(
    name: str,
    *,
    path: str | Path | None = None,
    revision: str | None = None,
    config: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    subsample: bool = False,
    dimension: str | None = None,
    image_size: int = 336,
) -> list[Sample]:
    """Load a dataset as Samples with decoded RGB images.

    Parameters
    ----------
    name : str
        Registry key (see :func:`available`).
    path : str or Path, optional
        A local copy: a ``save_to_disk`` directory, a directory of parquet files, one parquet file, or a
        VLMEvalKit ``.tsv`` (base64 images). Without it the hub id of the spec is loaded with ``datasets``.
    revision : str, optional
        Hub revision (commit or tag) to pin; ignored for local paths.
    config : str, optional
        The hub config (``en`` for MMBench, ``ScienceQA-IMG`` for ScienceQA); defaults to the spec's. In a local
        copy of a hub repo it is chosen as ``datasets.load_dataset`` does (the README's ``configs``, else the
        folder layout); an unknown config is an error naming the existing ones.
    split : str, optional
        Defaults to the spec's split (e.g. ``testmini`` for MathVista, ``train``/``test`` for synthetic). An
        unknown split is an error naming the existing ones; a single parquet or TSV file is read whole.
    limit : int, optional
        Keep the first ``limit`` samples, or with ``subsample`` a seeded random subset of whole groups
        (MME image pairs, MMBench circular copies, HallusionBench sets). For ``synthetic`` it is the
        number of samples per dimension.
    seed : int
        Seeds the subsample and the synthetic generator.
    dimension : str, optional
        Keep only samples of this ability dimension (one of :data:`DIMENSIONS`).
    image_size : int
        Side of the square synthetic images; real datasets keep their images as stored.
    """
    spec = get(name)  # unknown names fail here, before any option is looked at
    options = LoadOptions(
        path=path,
        revision=revision,
        config=config,
        split=split,
        limit=limit,
        seed=seed,
        subsample=subsample,
        dimension=dimension,
        image_size=image_size,
    )
    return spec.load_samples(options)


__all__ = [
    "DATASET_DIMENSION",
    "DIMENSIONS",
    "DatasetSpec",
    "LoadOptions",
    "Sample",
    "available",
    "dataset_dimensions",
    "get",
    "load",
]
