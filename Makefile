# The two commands of the README: `make preview` and `make test`. Both bootstrap .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STACK  ?= kind
STACKS := minikube kind onprem gpu-cloud
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: preview test policy checkov demo ci lint venv clean images e2e

preview: $(VENV)/.runtime ## offline preview of the default (kind) stack
	$(BIN)/platformctl preview --stack $(STACK)

test: $(VENV)/.dev ## the whole test suite
	scripts/install-system-packages.sh
	$(BIN)/python -m pytest

policy: $(VENV)/.runtime ## the policy pack, offline, on every shipped stack
	@for stack in $(STACKS); do \
	  echo "== $$stack"; $(BIN)/platformctl policy check --stack $$stack || exit 1; \
	done

checkov: $(VENV)/.runtime .venv-checkov/.installed ## scan every shipped stack's manifests
	@for stack in $(STACKS); do $(BIN)/platformctl preview --stack $$stack > /dev/null || exit 1; done
	.venv-checkov/bin/checkov --config-file policies/checkov.yaml $(foreach stack,$(STACKS),-d build/$(stack)/manifests)

demo: $(VENV)/.dev ## the kind stack's data plane locally: Redis, mock workers, gateway, traffic
	scripts/install-system-packages.sh
	$(BIN)/python -m infra.demo

# The platform's own images (gateway, mock worker), tagged exactly as STACK's manifests reference them
# (`images.registry`, `images.tag`). Needs a Docker engine; then `kind load docker-image`, `minikube image
# load` or `docker push` them (README, "Running it for real").
DOCKER ?= docker
images: $(VENV)/.runtime ## docker build of the gateway and mock-worker images for STACK
	@$(BIN)/platformctl images --stack $(STACK) | while read -r name dockerfile ref; do \
	  echo "== $$name -> $$ref"; $(DOCKER) build -f "$$dockerfile" -t "$$ref" . || exit 1; \
	done

e2e: $(VENV)/.dev ## every stack applied to a real control plane (builds it from Go modules, cached)
	e2e/run.sh

ci: test lint policy checkov e2e ## what .ci/run runs

.venv-checkov/.installed: policies/requirements-ci.txt
	test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check -r policies/requirements-ci.txt
	touch $@

lint: $(VENV)/.dev
	$(BIN)/ruff check infra components policies services tests bench e2e

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
