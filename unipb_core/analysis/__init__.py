"""The study's findings as pure functions over the tidy per-sample records (see docs/analysis.md).

Each finding function takes one DataFrame (schema in ``SCHEMA``) and returns a ``Finding``; plot helpers return
matplotlib Figures.
"""

from .efficiency import agreement_with_unpruned, pareto_front
from .finding import Finding
from .official import headline_scores, official_metrics, official_tables, store_metrics
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
from .records import SCHEMA
from .sensitivity import task_sensitivity
from .summary import findings_table
from .variance import ratio_dominance
from .winners import no_single_winner

__all__ = [
    "DEFAULT_RANDOM_FOR",
    "SCHEMA",
    "Finding",
    "Overview",
    "agreement_with_unpruned",
    "findings_table",
    "headline_scores",
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
    "ratio_dominance",
    "run_overview",
    "store_metrics",
    "task_sensitivity",
]
