# realmix: `make demo` trains RealMix and a supervised baseline on the embedded digits data;
# `make test` runs the test suite; `make lint` checks style. Each creates .venv and installs
# the project into it (editable, with its test and lint tools) first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export ML_DATA ?= $(CURDIR)/data

.PHONY: venv test test-all lint format demo reproduce benchmark parity-env parity-check clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

# Every command at tiny size; runs marked `slow` (real-size training) are left to test-all.
# Three pytest workers on two cores: a quarter of the workers' time went to waiting (on a trainer's
# checkpoint, a signal, a subprocess), 21.5 min wall for 33 CPU-min with two (2026-12-08, Intel Xeon).
TEST_WORKERS ?= 3
test: venv
	$(BIN)/python -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist worksteal --durations=10 tests

test-all: venv
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=10 tests

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: venv
	$(BIN)/python scripts/demo.py

reproduce: venv
	$(BIN)/python scripts/reproduce.py

benchmark: venv
	$(BIN)/python scripts/benchmark.py

# USB (PyPI semilearn), the reference implementation the parity harness compares with, in a venv of
# its own: never a dependency of the project, of `make test` or of CI (docs/parity.md).
PARITY_VENV := .venv-parity
USB_VERSION := 0.3.2
parity-env: venv $(PARITY_VENV)/.installed

$(PARITY_VENV)/.installed: scripts/parity/requirements.txt
	rm -rf $(PARITY_VENV)
	$(PYTHON) -m venv $(PARITY_VENV)
	$(PARITY_VENV)/bin/pip install --quiet --upgrade pip
	$(PARITY_VENV)/bin/pip install --quiet -r scripts/parity/requirements.txt
	$(PARITY_VENV)/bin/pip install --quiet --no-deps semilearn==$(USB_VERSION)
	$(PARITY_VENV)/bin/python -m scripts.parity.usb
	touch $@

# The step-level check of every algorithm both codebases have (docs/parity.md).
parity-check: parity-env
	$(BIN)/python -m scripts.parity.step_check

clean:
	rm -rf $(VENV) $(PARITY_VENV) .pytest_cache
