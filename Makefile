# Two entry points for a fresh machine (Python 3.11+):
#   make report   install, run the embedded default grid, render the report
#   make test     install, run the test suite
PYTHON ?= python3
VENV   ?= .venv
PARAMS ?= params/smoke.yaml
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test report bench bench-batch lint clean-reports

install: $(STAMP)

# Re-install whenever the pinned dependencies change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

report: install
	HF_HUB_OFFLINE=1 $(BIN)/unipb report $(PARAMS)

lint: install
	$(BIN)/ruff check unipb_core tests benchmarks
	$(BIN)/ruff format --check unipb_core tests benchmarks

# Speed-ups measured side by side with the FLOPs-ideal ones (CSV + plot in reports/benchmarks/).
BENCH_ARGS ?=
bench: install
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/run.py $(BENCH_ARGS)
# Throughput and latency vs batch size, vanilla and each method (reports/benchmarks/batch_speed.csv).
bench-batch: install
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/batch.py $(BENCH_ARGS)
