# Two commands set up everything on a machine with Python 3.11 and pip:
#   make train   create .venv, install lightsuite, run the default experiment
#   make test    the same environment plus the dev extra, then the whole test suite
#                (the slurm tests run when a SLURM cluster answers: make slurm-up starts one here)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: train test lint format install dev clean slurm-up slurm-down slurm-status results

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

train: install
	$(BIN)/lightsuite-train $(ARGS)

# most tests start the entry points in fresh processes: compile the package once for all of them
# (where PYTHONDONTWRITEBYTECODE is set, each process would compile it again)
# the tests run on one pytest-xdist worker per core (the SLURM tests on one of them, tests/conftest.py)
test: dev
	$(BIN)/python -m compileall -q src
	$(BIN)/python -m pytest -n auto --dist loadgroup $(ARGS)

# the lecture's claims (conf/experiment/claims/): run the sweeps that are not on disk, then write
# docs/results.md; a killed `make results` continues where it stopped (CLAIMS=a,b for some of them)
results: install
	$(BIN)/lightsuite-report --claims=$(or $(CLAIMS),all)

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# a one-node SLURM cluster on this machine (Debian, root): hydra/launcher=slurm and tests/test_slurm.py
slurm-up:
	bash scripts/slurm-local.sh up
slurm-down:
	bash scripts/slurm-local.sh down
slurm-status:
	bash scripts/slurm-local.sh status

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
