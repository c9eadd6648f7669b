# The two commands: `make book` and `make test`. Both build .venv first when it is
# missing or older than requirements.txt / pyproject.toml.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SHARED_DATA := $(abspath ../shared/data)

# Tests and CI read the real data files from ../shared/data when it is there.
ifneq ($(wildcard $(SHARED_DATA)),)
export ANNOTATED_DATA ?= $(SHARED_DATA)
endif

.PHONY: help venv export check-export test lint test-fast book book-smoke bench clean

help:
	@echo "make book   build the HTML book into _build/html (cpu profile, warnings are errors)"
	@echo "make test   run every test, the notebook tests (smoke profile) and ruff"
	@echo "make export regenerate annotated/ from book/"
	@echo "make bench  run the benchmarks and record them in results/"

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

export: $(STAMP)
	$(BIN)/python tools/export.py

check-export: $(STAMP)
	$(BIN)/python tools/export.py --check

lint: $(STAMP)
	$(BIN)/ruff check tools tests annotated benchmarks

# The whole suite: unit/property tests, exporter check, and every chapter in
# _toc.yml re-executed by nbval in the smoke profile (see conftest.py).
test: $(STAMP) check-export lint
	ANNOTATED_PROFILE=smoke $(BIN)/python -m pytest --nbval-lax --nbval-current-env \
		--durations=15 -p no:cacheprovider $(PYTEST_ARGS)

# Unit tests only (no notebooks): the quick loop while writing code.
test-fast: $(STAMP)
	ANNOTATED_PROFILE=smoke $(BIN)/python -m pytest tests -p no:cacheprovider $(PYTEST_ARGS)

# The published book: every chapter executed in the cpu profile, warnings are errors.
book: $(STAMP) export
	ANNOTATED_PROFILE=$${ANNOTATED_PROFILE:-cpu} $(BIN)/jupyter-book build \
		--warningiserror --keep-going --builder html .

# The same build in the smoke profile, into _build/smoke (CI: a broken reference cannot land).
book-smoke: $(STAMP) check-export
	rm -rf _build/smoke
	ANNOTATED_PROFILE=smoke $(BIN)/jupyter-book build --warningiserror --keep-going \
		--path-output _build/smoke --builder html .

bench: $(STAMP)
	$(BIN)/python benchmarks/attention.py

clean:
	rm -rf _build .pytest_cache .ruff_cache .jupyter_cache
