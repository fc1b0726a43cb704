# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench install clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ssl-zoo train experiment=zoo_demo hydra.sweep.dir=outputs/demo

# Two workers, each with half the cores (tests/conftest.py): most of a test's time is one core's (starting a
# command, Python); worksteal evens out the long tests. A single test: pytest tests/x.py::name (one process).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist worksteal -m slow

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/simclr_throughput.py
	$(BIN)/python bench/image_step.py
	$(BIN)/python bench/text_throughput.py
	$(BIN)/python bench/attention_cpu.py
	$(BIN)/python bench/speech_features.py
	$(BIN)/python bench/serve_load.py

clean:
	rm -rf outputs multirun
