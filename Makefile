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

.PHONY: help venv export check-export test lint test-fast book book-smoke bench clean \
	chromium check-html check-html-smoke full check-chapter

help:
	@echo "make book   build the HTML book into _build/html (cpu profile, warnings are errors)"
	@echo "make test   run every test, the notebook tests (smoke profile) and ruff"
	@echo "make export regenerate annotated/ from book/"
	@echo "make bench  run the benchmarks and record them in results/"
	@echo "make full CHAPTER=05_transformer [NPROC=4]  one chapter in the full profile (resumable)"
	@echo "make check-html  open every page of _build/html in headless Chromium, offline; screenshots"

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
# Chapters run with the execution cache (_config.yml); tools/book_cache.py clears it when
# annotated/, the environment, the data or the profile changed. The build time is logged.
book: $(STAMP) export
	@start=$$(date +%s); \
	export ANNOTATED_PROFILE=$${ANNOTATED_PROFILE:-cpu}; \
	$(BIN)/python tools/book_cache.py guard _build/.jupyter_cache && \
	$(BIN)/jupyter-book build --warningiserror --keep-going --builder html . && \
	$(BIN)/python tools/book_cache.py log _build $$start

# The same build in the smoke profile, into _build/smoke (CI: a broken reference cannot land).
book-smoke: $(STAMP) check-export
	rm -rf _build/smoke
	ANNOTATED_PROFILE=smoke $(BIN)/jupyter-book build --warningiserror --keep-going \
		--path-output _build/smoke --builder html .

# Debian's Chromium for the browser check (no browser download: Playwright drives this one).
chromium:
	@test -x /usr/bin/chromium || { \
		echo "installing Debian's chromium for the browser check"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null \
		|| { echo "could not install chromium (apt-get failed)" >&2; exit 1; }; }

# Every page of the built book in headless Chromium with the network off: fails on console
# errors, failed requests, unrendered math or charts, broken images or links. Screenshots
# go to _build/screenshots (SITE= and SHOTS= choose other folders).
SITE  ?= _build/html
SHOTS ?= $(dir $(SITE:/=))screenshots
check-html: $(STAMP) chromium
	$(BIN)/python tools/check_html.py $(SITE) --out $(SHOTS)

# The same on the smoke build (CI, after `make book-smoke`).
check-html-smoke: $(STAMP) chromium
	$(BIN)/python tools/check_html.py _build/smoke/_build/html --out _build/smoke/screenshots

# One chapter in the full profile (a GPU, or a long CPU run): `make full CHAPTER=05_transformer`.
# Its training checkpoints every epoch under checkpoints/, so running the same command again after
# an interruption resumes it. NPROC=N runs it data-parallel in N processes under torchrun (one per
# GPU; gloo processes on a CPU). Results: results/<chapter>.full.json; the executed notebook:
# _build/full/<chapter>.ipynb.
CHAPTER ?=
NPROC   ?= 1
# The chapters and the data-parallel ones: tools/chapters.py reads them from _toc.yml.
TOOLS_PYTHON = $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
CHAPTERS = $(shell $(TOOLS_PYTHON) tools/chapters.py --list chapters)
DDP_CHAPTERS = $(shell $(TOOLS_PYTHON) tools/chapters.py --list data-parallel)
check-chapter:
	@test -n "$(filter $(CHAPTER),$(CHAPTERS))" || { \
		echo "make full CHAPTER=<chapter>: got '$(CHAPTER)'; chapters are: $(CHAPTERS)" >&2; exit 2; }
	@test "$(NPROC)" = 1 -o -n "$(filter $(CHAPTER),$(DDP_CHAPTERS))" || { \
		echo "NPROC=$(NPROC): $(CHAPTER) trains in one process; data-parallel chapters are: $(DDP_CHAPTERS)" >&2; \
		exit 2; }

full: check-chapter $(STAMP) export
	ANNOTATED_PROFILE=full $(if $(filter 1,$(NPROC)),$(BIN)/python,$(BIN)/torchrun --standalone --nproc_per_node $(NPROC)) \
		tools/run_chapter.py book/$(CHAPTER).md _build/full/$(CHAPTER).ipynb --timeout 0

bench: $(STAMP)
	$(BIN)/python benchmarks/attention.py
	$(BIN)/python benchmarks/vit_throughput.py
	$(BIN)/python benchmarks/vit_augment.py
	$(BIN)/python benchmarks/decoding.py

clean:
	rm -rf _build .pytest_cache .ruff_cache .jupyter_cache
