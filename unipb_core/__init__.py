"""UniPruneBench workbook core: models, pruning, data, metrics, timing, store, runner, analysis."""

__version__ = "0.1.0"
