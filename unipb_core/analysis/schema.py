"""The two accepted input schemas and the check every analysis entry point runs first (imports nothing above it).

Per-sample records (the store's rows, ``SCHEMA``) or cell-level results (one row per model, method, ratio, seed,
dataset with a score, ``CELL_SCHEMA``); see ``records.prepare``.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

SCHEMA: dict[str, str] = {
    "model": "str, model spec such as 'tiny:llava'",
    "method": "str, pruning method key; 'vanilla' is the unpruned baseline",
    "category": "str, optional: 'baseline' | 'random' | 'vit' | 'llm' | 'hybrid' (default from the method name)",
    "ratio": "float, share of visual tokens removed (0.0 for vanilla)",
    "seed": "int, selection seed",
    "dataset": "str, dataset key",
    "dimension": "str, ability dimension (comprehensive, ocr, multidisciplinary, hallucination, math, instruction)",
    "sample_id": "str, sample id within its dataset",
    "correct": "float in [0, 1], per-sample score",
    "parsed": "bool, whether an answer could be extracted",
    "prediction": "str, the model's answer text",
    "t_prefill": "float seconds, first forward pass",
    "t_llm_prefill": "float seconds, decoder layers of the first forward pass",
    "t_total": "float seconds, whole sample",
    "t_method": "float seconds, the pruning routine",
    "flops": "float, analytic FLOPs",
    "error": "optional; None when the sample ran, else the error text (such rows are excluded and counted)",
}

CELL_SCHEMA: dict[str, str] = {
    "model": "str, model name",
    "method": "str, method name; aliases such as 'Random (ViT)' or 'random-pre' are mapped (analysis.naming)",
    "ratio": "float, share of visual tokens removed (0 or empty for the unpruned baseline)",
    "seed": "int, optional (default 0)",
    "dataset": "str, dataset key",
    "dimension": "str, optional; default from the dataset key (data.DATASET_DIMENSION)",
    "score": "float in [0, 1], the cell's score",
    "n": "int, optional, samples behind the score (enables unpaired per-cell tests)",
    "category": "str, optional: baseline | random | vit | llm | hybrid; default from the method registry",
    "chance": "float in [0, 1], optional, the score of guessing (default analysis.naming.CHANCE)",
}


def require_columns(df: pd.DataFrame, columns: Iterable[str]) -> None:
    """Fail early, naming the missing columns and the accepted schema.

    Raises
    ------
    TypeError
        If ``df`` is not a DataFrame.
    ValueError
        If any of ``columns`` is absent.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"records must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        schema = "; ".join(f"{name}: {desc}" for name, desc in SCHEMA.items())
        raise ValueError(
            f"records are missing column(s) {missing}. Accepted schema, one row per "
            f"(model, method, ratio, seed, dataset, sample_id): {schema}"
        )
