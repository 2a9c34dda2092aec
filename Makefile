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

.PHONY: setup demo test quick lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

# After the grid (progress bars on a terminal), each demo step prints its output and appends it, with the command,
# to analysis/demo.md: the numbers the README quotes from the demo come from that file.
DEMO_MD := analysis/demo.md
define demo_step
	@printf '\n```\n$$ %s\n' '$(1)' >> $(DEMO_MD)
	@$(1) > .demo-step.out 2>&1; status=$$?; cat .demo-step.out; cat .demo-step.out >> $(DEMO_MD); \
		rm -f .demo-step.out; printf '```\n' >> $(DEMO_MD); exit $$status
endef

demo: setup
	@mkdir -p analysis
	@printf '# make demo\n\nWritten by `make demo` at commit %s on %s (%s CPU cores).\n' \
		"$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$$(date -u +%Y-%m-%d)" "$$(nproc)" > $(DEMO_MD)
	$(BIN)/scalerec grid --preset demo --workers $(WORKERS)
	$(call demo_step,$(BIN)/scalerec runs)
	$(call demo_step,$(BIN)/scalerec fit-laws runs --out analysis)
	$(call demo_step,$(BIN)/scalerec predict --N 100K --T 3M)
	$(call demo_step,$(BIN)/scalerec predict --flops 1e13 --dataset-interactions 100K)
	@echo "report: analysis/report.md   figures: analysis/figures/*.png   runs: runs/   this session: $(DEMO_MD)"

test: setup
	$(BIN)/python -m pytest -q

# The edit-run loop: everything but the end-to-end, replicate, kill, notebook and Dask tests.
quick: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs/*/ analysis/laws.json analysis/report.md analysis/demo.md analysis/figures
