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

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

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
