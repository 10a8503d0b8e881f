# Two entry points (see README): `make demo` runs the study, `make test` runs the tests.
# Both create .venv on first use (`make setup`), from the lock files in requirements/:
#   TORCH=cpu  (default) requirements/cpu.txt, torch 2.13.0+cpu, the CPU wheel these
#              machines carry in $PIP_FIND_LINKS (elsewhere from $(TORCH_CPU_INDEX))
#   TORCH=cuda requirements/cuda.txt, PyPI's torch 2.13.0 (CUDA) and its nvidia-* wheels
#              (`TORCH=torch`, the old spelling, means cuda)
# The choice sticks: later targets reuse the installed variant until TORCH says otherwise.
# INSTALLER=uv (default; the system uv, else one bootstrapped with pip into .cache/) or
# INSTALLER=pip (pip only, slower). `make lock` regenerates requirements/*.txt.
# uv compiles every installed module to bytecode at setup (~35 s on 2 cores): without it, a
# machine that never writes .pyc files (PYTHONDONTWRITEBYTECODE, as these machines set it)
# compiles torch, pandas and seaborn from source in every process, ~7 s per kernel start.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(BIN)/.installed
TORCH ?= $(or $(shell cat $(STAMP) 2>/dev/null),cpu)
INSTALLER ?= uv
PRESET ?= cpu
SEEDS ?= 4
# each condition's control has gate seeds: runs that test only whether it rises and are never
# compared (moe_core.analysis.verdicts.gate_seeds; the calibration simulates the same design:
# moe_core.analysis.calibration.GATE_SEEDS): baseline@reference_lr (the reference's schedule)
# on GATE_SEEDS, baseline (the corrected schedule) on BASELINE_GATE_SEEDS. Two controls need
# seeds of their own each (a seed two arms ran is a gate seed of neither)
GATE_SEEDS ?= 100,101,102,103
BASELINE_GATE_SEEDS ?= 104,105,106,107
JOBS ?= 2

# --- the torch variant and its lock file -------------------------------------------------
ifneq ($(filter cpu torch==2.13.0,$(TORCH)),)
VARIANT := cpu
else ifneq ($(filter cuda torch,$(TORCH)),)
VARIANT := cuda
else
$(error TORCH=$(TORCH): use TORCH=cpu or TORCH=cuda (other torch versions: edit requirements/*.in, then make lock))
endif
LOCK := requirements/$(VARIANT).txt
# the lock files are resolved for this Python on Linux x86_64 (the CPU wheel is cp311)
LOCK_PYTHON ?= 3.11
LOCK_PLATFORM ?= x86_64-manylinux_2_28
# torch's pin in the lock (2.13.0+cpu, or 2.13.0 for cuda, written === there so that a
# local +cpu wheel can never stand in for the CUDA build)
TORCH_PIN = $(shell sed -n 's/^torch=*//p' $(LOCK))
# where the CPU wheel is looked for: the folders in $PIP_FIND_LINKS, else the PyTorch CPU index
FIND_LINKS ?= $(PIP_FIND_LINKS)
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
LOCAL_CPU_TORCH = $(firstword $(wildcard $(addsuffix /torch-$(shell sed -n 's/^torch==//p' \
    requirements/cpu.in)-*.whl,$(FIND_LINKS))))

# --- uv: the system one, else uv==$(UV_VERSION) installed with pip into a bootstrap venv ---
UV_VERSION ?= 0.13.9
UV_BOOTSTRAP := .cache/uv-bootstrap
ifeq ($(origin UV),undefined)
UV := $(or $(shell command -v uv 2>/dev/null),$(UV_BOOTSTRAP)/bin/uv)
endif
UV_PIP = $(UV) pip

# a stamp written for the other variant (or by the pre-lock Makefile) forces a reinstall
ifneq ($(shell cat $(STAMP) 2>/dev/null),$(VARIANT))
$(STAMP): FORCE
endif

.PHONY: setup lock demo quick placebo valsample noise calibration lab test lint bench clean FORCE

setup: $(STAMP)

$(STAMP): pyproject.toml $(LOCK) | $(if $(filter uv,$(INSTALLER)),$(filter $(UV_BOOTSTRAP)/%,$(UV)))
	@v=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])') && \
	    [ "$$v" = "$(LOCK_PYTHON)" ] || { echo "$(PYTHON) is Python $$v;" \
	    "$(LOCK) is resolved for Python $(LOCK_PYTHON): use PYTHON=python$(LOCK_PYTHON)" >&2; exit 1; }
ifeq ($(INSTALLER),uv)
	$(UV) venv --quiet --clear --seed --python $(PYTHON) --no-python-downloads $(VENV)
ifeq ($(VARIANT),cpu)
	$(if $(LOCAL_CPU_TORCH),,$(UV_PIP) install --python $(BIN)/python --no-deps \
	    --index-url $(TORCH_CPU_INDEX) "torch==$(TORCH_PIN)")
	$(UV_PIP) sync --compile-bytecode --python $(BIN)/python $(foreach d,$(FIND_LINKS),--find-links $(d)) $(LOCK)
else
	$(UV_PIP) sync --compile-bytecode --python $(BIN)/python $(LOCK)
endif
	$(UV_PIP) install --python $(BIN)/python --quiet --no-deps -e .
	$(UV_PIP) check --python $(BIN)/python
else ifeq ($(INSTALLER),pip)
	$(PYTHON) -m venv --clear $(VENV)
	$(if $(filter cpu,$(VARIANT)),$(if $(LOCAL_CPU_TORCH),,$(BIN)/python -m pip install --quiet \
	    --no-deps --index-url $(TORCH_CPU_INDEX) "torch==$(TORCH_PIN)"))
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
else
	$(error INSTALLER=$(INSTALLER): use INSTALLER=uv or INSTALLER=pip)
endif
	@v=$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("torch"))') && \
	    [ "$$v" = "$(TORCH_PIN)" ] || { echo "torch $$v was installed, $(LOCK) says $(TORCH_PIN)" >&2; exit 1; }
	echo $(VARIANT) > $@

$(UV_BOOTSTRAP)/bin/uv:
	$(PYTHON) -m venv $(UV_BOOTSTRAP)
	$(UV_BOOTSTRAP)/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

# requirements/{cpu,cuda}.txt from pyproject.toml (dependencies and the test extra) and
# requirements/{cpu,cuda}.in (torch's build); exact versions, no paths or index URLs
LOCK_ARGS = --extra test --python-version $(LOCK_PYTHON) --python-platform $(LOCK_PLATFORM) \
    --no-python-downloads --custom-compile-command "make lock" --quiet
lock: | $(filter $(UV_BOOTSTRAP)/%,$(UV))
	$(UV) pip compile pyproject.toml requirements/cpu.in $(LOCK_ARGS) -o requirements/cpu.txt \
	    $(if $(LOCAL_CPU_TORCH),$(foreach d,$(FIND_LINKS),--find-links $(d)),\
	    --extra-index-url $(TORCH_CPU_INDEX) --index-strategy unsafe-best-match)
	env -u UV_FIND_LINKS $(UV) pip compile pyproject.toml requirements/cuda.in $(LOCK_ARGS) \
	    -o requirements/cuda.txt
	sed -i 's/^torch==/torch===/' requirements/cuda.txt

# the inflection study (parameters/suites.yaml: study) x $(SEEDS) seeds and the controls' gate
# seeds, then reports/inflection_report.html
demo: setup
	$(BIN)/moe-suite run -e baseline@reference_lr --preset $(PRESET) --seeds $(GATE_SEEDS) --jobs $(JOBS) --out runs/study --no-report
	$(BIN)/moe-suite run -e baseline --preset $(PRESET) --seeds $(BASELINE_GATE_SEEDS) --jobs $(JOBS) --out runs/study --no-report
	$(BIN)/moe-suite run --suite study --preset $(PRESET) --seeds $(SEEDS) --jobs $(JOBS) --out runs/study

# the quick variant: the study's control and its no-balancing-loss arm, 3 seeds
# (parameters/suites.yaml: glance), and the control's gate seeds, then
# reports/inflection_report.html
quick: setup
	$(BIN)/moe-suite run -e baseline@reference_lr --preset $(PRESET) --seeds $(GATE_SEEDS) --jobs $(JOBS) --out runs/quick --no-report
	$(BIN)/moe-suite run --suite glance --preset $(PRESET) --seeds 3 --jobs $(JOBS) --out runs/quick

# the calibration's noise: the study's runs recorded every 4 steps (the simulator's grid;
# evals and checkpoints change nothing training reads, and no study arm stops early, so these
# are the demo's runs, recorded 4x as densely: ~29 min here), then the fit (~20 s)
noise: setup
	$(BIN)/moe-suite run --suite study --preset $(PRESET) --seeds $(SEEDS) --jobs $(JOBS) \
	    --out runs/study_every4 --no-report --set eval_every=4 --set patience=32 \
	    --set checkpoint_every_evals=24
	$(BIN)/python -m moe_core.analysis.noise_fit runs/study_every4 --out moe_core/analysis/noise_fitted.json

# the calibration table the report quotes (~35 min on 2 cores), then its null rows redrawn
# on fresh streams (~13 min; docs/calibration_plan.md), then stage 2 of
# docs/calibration_plan_next.md: the rows not within tolerance redrawn (~25 min)
calibration: setup
	$(BIN)/python -m moe_core.analysis.calibration --studies 200 --seeds $(SEEDS) --jobs $(JOBS) \
	    --noise moe_core/analysis/noise_fitted.json --out moe_core/analysis/calibration_table.json
	$(BIN)/python -m moe_core.analysis.confirmation --table moe_core/analysis/calibration_table.json \
	    --noise moe_core/analysis/noise_fitted.json --seeds $(SEEDS) --jobs $(JOBS) \
	    --out moe_core/analysis/calibration_confirmation.json
	$(BIN)/python -m moe_core.analysis.second_stage --table moe_core/analysis/calibration_table.json \
	    --confirmation moe_core/analysis/calibration_confirmation.json \
	    --noise moe_core/analysis/noise_fitted.json --seeds $(SEEDS) --jobs $(JOBS) \
	    --out moe_core/analysis/calibration_second_stage.json

# the report's false-effect rate on real runs: 12 replicates of the study's control (its own
# folder: the demo's runs are never pooled with them), split 4 + 4 into a control and a
# placebo intervention (a key the preset never reads) through the report's pipeline
placebo: setup
	$(BIN)/moe-suite run -e baseline@reference_lr --preset $(PRESET) --seeds 12 --jobs $(JOBS) --out runs/placebo --no-report
	$(BIN)/python -m moe_core.analysis.placebo runs/placebo

# the val-text term checked on real runs: the control's compared seeds (the study's own val
# text, run if missing) scored on VAL_SAMPLES other samples of val text, each its own folder;
# the same models (train losses checked equal), other text
VAL_SAMPLES ?= 1 2 3
valsample: setup
	$(BIN)/moe-suite run -e baseline@reference_lr --preset $(PRESET) --seeds $(SEEDS) --jobs $(JOBS) --out runs/study --no-report
	for k in $(VAL_SAMPLES); do $(BIN)/moe-suite run -e baseline@reference_lr --preset $(PRESET) --seeds $(SEEDS) --jobs $(JOBS) --set val_sample=$$k --out runs/val_sample$$k --no-report || exit 1; done
	$(BIN)/python -m moe_core.analysis.val_sample runs/study $(foreach k,$(VAL_SAMPLES),runs/val_sample$(k))

# JupyterLab on the repository; its python3 kernel is this .venv's Python (LAB_ARGS, e.g.
# LAB_ARGS="--no-browser --port 8890", are passed on)
lab: setup
	$(BIN)/jupyter lab --ServerApp.root_dir=. $(LAB_ARGS)

test: setup
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q tests
	MOE_NOTEBOOK_PRESET=smoke $(BIN)/python -m pytest -q --nbval-lax -p no:cacheprovider notebooks/train_experiment.ipynb
	# the report notebook under nbval, on a smoke suite (a control that rises and one intervention)
	dir=$$(mktemp -d) && $(BIN)/moe-suite run -e baseline@reference_lr no_lb@reference_lr \
	    baseline --preset smoke --seeds 2 --jobs 2 --no-report --out $$dir/runs >/dev/null && \
	    MOE_REPORT_RUNS=$$dir/runs $(BIN)/python -m pytest -q --nbval-lax -p no:cacheprovider \
	    notebooks/inflection_report.ipynb; status=$$?; rm -rf $$dir; exit $$status

lint: setup
	$(BIN)/ruff check moe_core tests benchmarks
	$(BIN)/lint-imports --no-cache

bench: setup
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/bench_moe.py

clean:
	rm -rf runs reports/*.html .pytest_cache
