# One entry point for people and CI. `make test` works on a fresh clone: it builds .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint fmt typecheck pytest bench demo soak clean

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

# The chaos soak (docs/soak.md): the demo's plant under kill -9, outages, broker restarts, a faulty
# network and a noisy serial line, with a per-device ledger. SOAK_SECONDS=N per store (default 90),
# SOAK_STORE=sqlite|postgres|both, SOAK_OUTAGE_MAX_S=N (longest receiver outage, default 8),
# SOAK_SEED=N.
soak: $(STAMP)
	$(BIN)/python -m soak --seconds $(or $(SOAK_SECONDS),90) --store $(or $(SOAK_STORE),both) \
		--outage-max-s $(or $(SOAK_OUTAGE_MAX_S),8) --seed $(or $(SOAK_SEED),1) \
		--json .soak/soak.json

# Everything .gitignore lists (tests/test_hygiene.py checks the two agree): after `make clean`,
# `git status --ignored` shows nothing.
clean:
	rm -rf $(VENV) .bench .soak .demo .artifacts demo-run .hypothesis .mypy_cache .pytest_cache \
		.ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
