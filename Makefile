# Two commands on a fresh machine: `make train` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Offline machines with a prepared TFDS copy beside the checkout use it; elsewhere TFDS
# downloads MNIST into its default folder on first use.
SHARED_TFDS := $(wildcard ../shared/data/tensorflow_datasets)
TFDS_DATA_DIR ?= $(SHARED_TFDS)
export TFDS_DATA_DIR

.PHONY: setup train test reproduce benchmark clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/.installed

OUT ?= runs/default

train: setup
	$(BIN)/jaxmlp train --out $(OUT) $(ARGS)

test: setup
	$(BIN)/python -m pytest -q -n auto $(PYTEST_ARGS)

reproduce: setup
	$(BIN)/python scripts/reproduce_seed.py $(ARGS)

benchmark: setup
	$(BIN)/python scripts/benchmark.py $(ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
