# Two commands for a newcomer:  `make demo`  (set up, train the demo grid, fit the laws, predict)
#                               `make test`  (set up, run the tests)
# The set-up installs torch==2.13.0 first (a CPU wheel on the project's machines) so that the package's own
# range (torch>=2.2) installs nothing more. GPU users: make demo TORCH_SPEC="torch==2.13.0" after installing a
# CUDA build of torch into .venv, or any TORCH_SPEC pip understands.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
BIN := $(VENV)/bin

.PHONY: setup demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/scalerec grid --preset demo --workers $(WORKERS)
	$(BIN)/scalerec runs
	$(BIN)/scalerec fit-laws runs --out analysis
	$(BIN)/scalerec predict --N 100K --T 3M
	$(BIN)/scalerec predict --flops 1e13 --dataset-interactions 100K
	@echo "report: analysis/report.md   figures: analysis/figures/*.png   runs: runs/"

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs/*/ analysis/laws.json analysis/report.md analysis/figures
