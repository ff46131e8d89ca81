# The two commands of the README: `make preview` and `make test`. Both bootstrap .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STACK  ?= kind
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: preview test lint venv clean

preview: $(VENV)/.runtime ## offline preview of the default (kind) stack
	$(BIN)/platformctl preview --stack $(STACK)

test: $(VENV)/.dev ## the whole test suite
	scripts/install-system-packages.sh
	$(BIN)/python -m pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check infra components tests

venv: $(VENV)/.dev

$(VENV)/.runtime: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
	$(PIP) --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	touch $@

clean:
	rm -rf build .pytest_cache
