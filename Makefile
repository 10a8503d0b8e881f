# Two entry points (see README): `make demo` runs the study, `make test` runs the tests.
# Both create .venv on first use. TORCH picks the torch build: the default is the
# CPU wheel these machines carry; on a CUDA machine use e.g. `make demo TORCH=torch`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
PRESET ?= cpu
SEEDS ?= 4
JOBS ?= 2

.PHONY: setup demo quick lab test lint bench clean

setup: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

# the inflection study (parameters/suites.yaml: study) x $(SEEDS) seeds, then
# reports/inflection_report.html
demo: setup
	$(BIN)/moe-suite run --suite study --preset $(PRESET) --seeds $(SEEDS) --jobs $(JOBS) --out runs/study

# the quick variant: the reference's --quick suite, 2 seeds
quick: setup
	$(BIN)/moe-suite run --quick --preset $(PRESET) --seeds 2 --jobs $(JOBS) --out runs/quick

# JupyterLab on the repository; its python3 kernel is this .venv's Python (LAB_ARGS, e.g.
# LAB_ARGS="--no-browser --port 8890", are passed on)
lab: setup
	$(BIN)/jupyter lab --ServerApp.root_dir=. $(LAB_ARGS)

test: setup
	$(BIN)/python -m pytest -q tests
	MOE_NOTEBOOK_PRESET=smoke $(BIN)/python -m pytest -q --nbval-lax -p no:cacheprovider notebooks/train_experiment.ipynb
	# the report notebook under nbval, on a smoke suite (a control that rises and one intervention)
	dir=$$(mktemp -d) && $(BIN)/moe-suite run -e baseline@reference_lr no_lb@reference_lr \
	    baseline --preset smoke --seeds 2 --jobs 2 --no-report --out $$dir/runs >/dev/null && \
	    MOE_REPORT_RUNS=$$dir/runs $(BIN)/python -m pytest -q --nbval-lax -p no:cacheprovider \
	    notebooks/inflection_report.ipynb; status=$$?; rm -rf $$dir; exit $$status

lint: setup
	$(BIN)/ruff check moe_core tests benchmarks

bench: setup
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/bench_moe.py

clean:
	rm -rf runs reports/*.html .pytest_cache
