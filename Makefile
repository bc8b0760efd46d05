# One entry point for people and CI. `make test` works on a fresh clone: it builds .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint fmt typecheck pytest bench demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# BENCH_SIZE=small|full, BENCH_JSON=path (default .bench/results.json)
bench: $(STAMP)
	$(BIN)/python -m bench

# Receiver + gateway + emulated devices on this machine (demo/). Ctrl-C stops it; SECONDS=N runs
# N seconds, then prints the summary and fails on any reading lost or duplicated. DEMO_PORT=N
# picks the receiver's port (default: a free one).
demo: $(STAMP)
	$(BIN)/python -m demo $(if $(SECONDS),--seconds $(SECONDS)) $(if $(DEMO_PORT),--port $(DEMO_PORT))

clean:
	rm -rf $(VENV) .bench .mypy_cache .pytest_cache .ruff_cache
