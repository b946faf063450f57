"""The study's findings as pure functions over results (see docs/analysis.md).

Each finding function takes one DataFrame, per-sample records (``SCHEMA``) or cell-level results
(``CELL_SCHEMA``), and returns a ``Finding`` that says which it got; plot helpers return matplotlib Figures.
``read_results`` brings an external CSV into that shape; names are mapped in ``naming``.
"""

from . import naming
from .efficiency import agreement_with_unpruned, pareto_front
from .finding import Finding
from .official import headline_scores, headline_table, official_metrics, official_tables, store_metrics
from .overview import Overview, run_overview
from .plots import (
    plot_accuracy_vs_ratio,
    plot_dimension_sensitivity,
    plot_kept_tokens,
    plot_pareto,
    plot_relative_heatmap,
    plot_variance_decomposition,
)
from .random_baseline import DEFAULT_RANDOM_FOR, random_baseline_strength
from .records import cell_scores, input_level
from .results_csv import read_results
from .schema import CELL_SCHEMA, SCHEMA
from .sensitivity import task_sensitivity
from .summary import compute_findings, findings_table, views_table
from .variance import ratio_dominance
from .winners import no_single_winner

__all__ = [
    "CELL_SCHEMA",
    "DEFAULT_RANDOM_FOR",
    "SCHEMA",
    "Finding",
    "Overview",
    "agreement_with_unpruned",
    "cell_scores",
    "compute_findings",
    "findings_table",
    "headline_scores",
    "headline_table",
    "input_level",
    "naming",
    "no_single_winner",
    "official_metrics",
    "official_tables",
    "pareto_front",
    "plot_accuracy_vs_ratio",
    "plot_dimension_sensitivity",
    "plot_kept_tokens",
    "plot_pareto",
    "plot_relative_heatmap",
    "plot_variance_decomposition",
    "random_baseline_strength",
    "read_results",
    "ratio_dominance",
    "run_overview",
    "store_metrics",
    "task_sensitivity",
    "views_table",
]
