# Two commands on a fresh machine: `make train` and `make test`. Each sets up .venv itself,
# from requirements.lock: the exact versions (and file hashes) the test suite passed with.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Offline machines with a prepared TFDS copy beside the checkout use it; elsewhere TFDS
# downloads MNIST into its default folder on first use.
SHARED_TFDS := $(wildcard ../shared/data/tensorflow_datasets)
TFDS_DATA_DIR ?= $(SHARED_TFDS)
export TFDS_DATA_DIR
# Bytecode is written even where the environment says not to (PYTHONDONTWRITEBYTECODE=1 on
# some machines): without it every test process and every jaxmlp command the tests start
# compiles jaxmlp, and pytest re-rewrites every test module, from source (collection 9.2 s
# against 3.4 s here).
export PYTHONDONTWRITEBYTECODE :=

.PHONY: setup browser train lint test test-offline lock reproduce benchmark clean

$(BIN)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $@

setup: $(BIN)/.installed

OUT ?= runs/default

train: setup
	$(BIN)/jaxmlp train --out $(OUT) $(ARGS)

# The browser tests' Chromium (Debian's package), installed when missing and this machine
# allows it (root, apt-get); elsewhere those tests skip and say why (under CI=true they fail).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Chromium for the browser tests (apt-get install chromium)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends chromium) >/tmp/jaxmlp-apt.log 2>&1 || \
		echo "could not install Chromium (/tmp/jaxmlp-apt.log says why): the browser tests skip"; \
	else echo "no Chromium (apt-get install chromium): the browser tests skip"; fi

# ruff's checks and mypy's types (pyproject.toml configures both), before every test run.
lint: setup
	$(BIN)/ruff check jaxmlp scripts tests
	$(BIN)/mypy

test: setup browser lint
	$(BIN)/python -m pytest -q -n auto --dist worksteal $(PYTEST_ARGS)

# The tests that need no data and no browser, run as if there were no data (a missing-data
# skip fails here); `make test` runs the browser tests.
test-offline: setup
	CI=true JAXMLP_TEST_DATA=/nonexistent TFDS_DATA_DIR=/nonexistent \
		$(BIN)/python -m pytest -q -n auto --dist worksteal -m "not mnist and not browser" $(PYTEST_ARGS)

# Re-resolves pyproject.toml's ranges against today's registry into requirements.lock.
# Then run `make test`; commit the new lock only if it passes.
LOCK_VENV := .lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install --quiet -e ".[test,lint,export]"
	$(LOCK_VENV)/bin/python -m pip freeze --exclude-editable > $(LOCK_VENV)/pins.in
	$(LOCK_VENV)/bin/python -m pip --version | awk '{print "pip==" $$2}' >> $(LOCK_VENV)/pins.in
	echo 'setuptools>=77' >> $(LOCK_VENV)/pins.in  # what pyproject.toml builds with
	$(LOCK_VENV)/bin/python -m pip install --quiet uv
	$(LOCK_VENV)/bin/uv pip compile $(LOCK_VENV)/pins.in --generate-hashes --no-annotate \
		--no-header --quiet --python-version 3.11 -o requirements.lock
	rm -rf $(LOCK_VENV)

reproduce: setup
	$(BIN)/python scripts/reproduce_seed.py $(ARGS)

benchmark: setup
	$(BIN)/python scripts/benchmark.py $(ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
