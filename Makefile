# realmix: `make demo` trains RealMix and a supervised baseline on the embedded digits data;
# `make test` runs the test suite. Both create .venv and install requirements.txt first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export ML_DATA ?= $(CURDIR)/data
export PYTHONPATH := $(CURDIR)
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: venv test test-all demo reproduce benchmark clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

# Every command at tiny size; runs marked `slow` (real-size training) are left to test-all.
test: venv
	$(BIN)/python -m pytest -q -m "not slow" --durations=10 tests

test-all: venv
	$(BIN)/python -m pytest -q --durations=10 tests

demo: venv
	$(BIN)/python scripts/demo.py

reproduce: venv
	$(BIN)/python scripts/reproduce.py

benchmark: venv
	$(BIN)/python scripts/benchmark.py

clean:
	rm -rf $(VENV) .pytest_cache
