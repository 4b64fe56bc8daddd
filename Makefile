# Two commands do all set-up on a fresh machine: `make run` (train on data/sample_text.txt) and
# `make test`. Both create .venv first. torch is pinned for installs (a CPU build on this machine).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0

.PHONY: setup run test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_PIN)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

run: setup
	$(BIN)/pico-llm train --time-budget 60

test: setup
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) experiments/results .pytest_cache
