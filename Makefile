# Two commands do all set-up on a fresh machine: `make run` (train on data/sample_text.txt) and
# `make test`. Both create .venv first. torch is pinned for installs (a CPU build on this machine).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0

.PHONY: setup run test fault-probe clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_PIN)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

run: setup
	$(BIN)/pico-llm train --time-budget 60

# The tests, then the CPU-sensitive ones again as an AVX2-only CPU (no AVX-512, no native bfloat16)
# where this one has AVX-512: on an AVX2-only CPU that would only repeat them (34 s on a Zen 3)
test: setup
	$(BIN)/python -m pytest
	if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then \
		ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 $(BIN)/python -m pytest -m cpu_sensitive; \
	fi

# The long fault probe: 100 kill -9 at random moments, each resumed and compared bit for bit
fault-probe: setup
	PICO_FAULT_KILLS=100 $(BIN)/python -m pytest tests/test_faults.py -k kill_at_random_moments -s

clean:
	rm -rf $(VENV) experiments/results .pytest_cache
