# The README's two commands are `make run` and `make test`. Everything else is a helper for them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: run test install install-dev lint typecheck unit e2e-real e2e-live bench docs clean controlplane real-cluster

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The product (vk-eci) and the test bed (vk-eci-sandbox, in sandbox/) are two distributions; a checkout installs both.
install: $(BIN)/python
	$(BIN)/pip install --quiet -e . -e ./sandbox

$(STAMP): pyproject.toml sandbox/pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]' -e ./sandbox
	touch $(STAMP)

install-dev: $(STAMP)

## make run: the all-in-one sandbox (API server, ECI simulator, daemon)
run: install
	$(BIN)/vk-provider sandbox --dir .sandbox

lint: install-dev
	$(BIN)/ruff check vk_provider sandbox tests bench
	$(BIN)/ruff format --check vk_provider sandbox tests bench

typecheck: install-dev
	$(BIN)/mypy

unit: install-dev
	$(BIN)/python -m pytest -q

## make e2e-real: tests/e2e again, against upstream's control plane (docs/testing.md)
e2e-real: install-dev controlplane
	VK_E2E_TIER=real $(BIN)/python -m pytest -q -p no:cacheprovider tests/e2e

## make e2e-live: tests/e2e against your cluster (KUBECONFIG) and real ECI (docs/operations.md#live-end-to-end-tests)
e2e-live: install-dev
	$(BIN)/python -m tests.e2e.live

## make real-cluster: upstream's control plane, the ECI simulator and the daemon, for a person (like `make run`)
real-cluster: install-dev controlplane
	$(BIN)/python -m tests.controlplane --dir .real-cluster

## make test: everything CI checks (the unit run includes tests/e2e on the sandbox tier)
test: lint typecheck unit e2e-real

docs: install-dev
	$(BIN)/vk-provider config-docs > docs/configuration.md

## make controlplane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (the real tier's worker
## nodes, with its own default stages beside it) from tools/controlplane's pinned Go modules, and metrics-server
## from tools/metrics-server's, into $(CONTROLPLANE_BIN) (ignored). Go's build cache makes a second run a no-op.
CONTROLPLANE_BIN ?= .cache/controlplane/bin
KUBE_VERSION := $(shell awk '$$1=="k8s.io/kubernetes" {print $$2; exit}' tools/controlplane/go.mod)
KUBE_MINOR   := $(word 2,$(subst ., ,$(KUBE_VERSION)))
VERSION_PKGS := k8s.io/component-base/version k8s.io/client-go/pkg/version
CONTROLPLANE_LDFLAGS := -s -w $(foreach p,$(VERSION_PKGS),-X $(p).gitVersion=$(KUBE_VERSION) \
	-X $(p).gitMajor=1 -X $(p).gitMinor=$(KUBE_MINOR) -X $(p).gitTreeState=clean -X $(p).buildDate=1970-01-01T00:00:00Z)

# metrics-server has a module of its own (tools/metrics-server: v0.8.0 does not run on the control plane's k8s.io
# libraries, docs/testing.md) and carries its own version, where upstream's build sets it.
METRICS_SERVER_VERSION := $(shell awk '$$1=="sigs.k8s.io/metrics-server" {print $$2; exit}' tools/metrics-server/go.mod)
METRICS_SERVER_LDFLAGS := -s -w -X k8s.io/client-go/pkg/version.gitVersion=$(METRICS_SERVER_VERSION) \
	-X k8s.io/client-go/pkg/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.buildDate=1970-01-01T00:00:00Z

# kwok is a `tool` of tools/controlplane's go.mod; its stages are the ones kwokctl gives it by default (a Node made
# Ready and kept so with a Lease, pods made Running, finished and deleted).
KWOK_CMD    := sigs.k8s.io/kwok/cmd/kwok
KWOK_STAGES := node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
	pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml

controlplane:
	cd tools/controlplane && GOTOOLCHAIN=local GOFLAGS=-mod=readonly nice -n 19 \
		go build -trimpath -ldflags '$(CONTROLPLANE_LDFLAGS)' -o $(abspath $(CONTROLPLANE_BIN))/ ./cmd/... $(KWOK_CMD)
	stages=$$(cd tools/controlplane && GOTOOLCHAIN=local GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage \
		&& for f in $(KWOK_STAGES); do cat $$stages/$$f; echo ---; done > $(CONTROLPLANE_BIN)/kwok-stages.yaml
	cd tools/metrics-server && GOTOOLCHAIN=local GOFLAGS=-mod=readonly nice -n 19 \
		go build -trimpath -ldflags '$(METRICS_SERVER_LDFLAGS)' -o $(abspath $(CONTROLPLANE_BIN))/ \
		sigs.k8s.io/metrics-server/cmd/metrics-server

bench: install-dev
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .sandbox .real-cluster .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info sandbox/build sandbox/*.egg-info
