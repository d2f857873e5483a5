# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/syncd demo

lint: $(STAMP)
	$(BIN)/ruff check syncd tests $(wildcard bench)
	$(BIN)/ruff format --check syncd tests $(wildcard bench)

typecheck: $(STAMP)
	$(BIN)/mypy syncd

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python -m bench

soak: $(STAMP)
	SYNCD_SOAK_CYCLES=200 $(BIN)/pytest -q tests/reliability -k soak

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
