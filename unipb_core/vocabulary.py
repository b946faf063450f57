"""Names every layer shares, defined once at the bottom of the import graph (no imports).

The runner writes them into each cell's config, the grid adds the baselines by them, and the analysis reads
them back from the records: ``analysis`` stays free of the runner's torch imports.
"""

VANILLA = "vanilla"  # method key of the unpruned baseline: no engine, ratio 0
BASELINE_CATEGORY = "baseline"  # category recorded for the vanilla cells
RANDOM_CATEGORY = "random"  # category recorded for the seeded random baselines
