# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

LOCKVENV ?= .venv-lock
# the pinned tool that writes requirements.lock (`make lock`)
PIP_TOOLS ?= pip-tools==7.6.2

.PHONY: demo test lint typecheck pytest prometheus bench soak lock clean

LOCK_FLAGS := --quiet --all-build-deps --allow-unsafe --generate-hashes --strip-extras \
	--no-emit-find-links --no-emit-index-url

# The venv installs exactly requirements-dev.lock (pinned, hash-checked, nothing resolved), then syncd
# itself without dependencies or an isolated build (setuptools and wheel are in the lock too).
$(STAMP): pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Refresh both locks from the ranges in pyproject.toml (the newest versions they allow): requirements.lock
# for installs (syncd's dependencies, [postgres], the build), requirements-dev.lock for make and CI (the
# same pins plus the [dev] tools). Run `make test`, then commit both files.
lock:
	test -x $(LOCKVENV)/bin/pip-compile || { $(PYTHON) -m venv $(LOCKVENV) && \
		$(LOCKVENV)/bin/pip install --quiet '$(PIP_TOOLS)'; }
	$(LOCKVENV)/bin/pip-compile $(LOCK_FLAGS) --upgrade --extra postgres \
		--output-file requirements.lock pyproject.toml
	$(LOCKVENV)/bin/pip-compile $(LOCK_FLAGS) --upgrade --extra postgres --extra dev \
		--constraint requirements.lock --output-file requirements-dev.lock pyproject.toml

demo: $(STAMP)
	$(BIN)/syncd demo

lint: $(STAMP)
	$(BIN)/ruff check syncd tests $(wildcard bench)
	$(BIN)/ruff format --check syncd tests $(wildcard bench)

typecheck: $(STAMP)
	$(BIN)/mypy syncd

pytest: $(STAMP) prometheus
	$(BIN)/pytest -q

# promtool and prometheus (Debian's `prometheus` package) for tests/deploy; installed only where missing
prometheus:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || .ci/install-prometheus

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python -m bench

soak: $(STAMP)
	SYNCD_SOAK_CYCLES=200 $(BIN)/pytest -q tests/reliability -k soak

clean:
	rm -rf $(VENV) $(LOCKVENV) .mypy_cache .pytest_cache .ruff_cache
