# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

LOCKVENV ?= .venv-lock
# the pinned tool that writes requirements.lock (`make lock`)
PIP_TOOLS ?= pip-tools==7.6.2

.PHONY: demo test lint typecheck pytest prometheus bench soak lock clean

# The venv installs exactly requirements.lock (pinned, hash-checked, no resolving), then syncd itself
# without its dependencies and without an isolated build (setuptools and wheel come from the lock too).
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Refresh the lock from the ranges in pyproject.toml (newest versions that satisfy them); commit the result.
lock:
	test -x $(LOCKVENV)/bin/pip-compile || { $(PYTHON) -m venv $(LOCKVENV) && \
		$(LOCKVENV)/bin/pip install --quiet '$(PIP_TOOLS)'; }
	$(LOCKVENV)/bin/pip-compile --quiet --upgrade --extra dev --extra postgres --all-build-deps \
		--allow-unsafe --generate-hashes --strip-extras --no-emit-find-links --no-emit-index-url \
		--output-file requirements.lock pyproject.toml

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
