# One entry point for people and CI. `make test` works on a fresh clone: it builds .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Two workers, tests handed out one at a time (the slow e2e tests spread over both).
# PYTEST_ARGS= (empty) runs in one process; add -p no:xdist to drop the plugin.
PYTEST_ARGS ?= -n 2 --dist worksteal

.PHONY: test lint fmt typecheck pytest bench demo soak clean dist wheelhouse install-test \
	container-base container-test pi-check

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

# The one install path (docs/install.md): dist/ gets the wheel and the sdist; the wheelhouse holds
# the wheel with every dependency of every role, so a gateway installs with no index
# (pip install --no-index --find-links). WHEELHOUSE_PLATFORM=manylinux2014_aarch64 (say) fetches
# another machine's wheels, for Python $(WHEELHOUSE_PYTHON).
WHEELHOUSE_PYTHON ?= 3.11
# SOURCE_DATE_EPOCH (the last commit's time) makes the wheel's bytes depend only on its contents,
# so an unchanged tree builds the same wheel and the container build reuses its cached layers.
dist: $(STAMP)
	rm -rf dist/tierless-* build
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 315532800) \
		$(BIN)/python -m build --outdir dist .

wheelhouse: dist
	rm -rf dist/wheelhouse
	$(BIN)/python -m pip download --quiet --only-binary=:all: --dest dist/wheelhouse \
		$(if $(WHEELHOUSE_PLATFORM),--platform $(WHEELHOUSE_PLATFORM) --python-version $(WHEELHOUSE_PYTHON)) \
		"tierless[agent,cloud,postgres,provisioning,zstd] @ file://$$(ls $(CURDIR)/dist/tierless-*.whl)"

# Not part of `make test` (they take minutes): .ci/run runs them after it.
# install-test: the wheel from the wheelhouse into fresh venvs, offline, every command's --help.
install-test: wheelhouse
	TIERLESS_DEPLOY_TESTS=1 $(BIN)/pytest -q -p no:cacheprovider tests/deploy/test_install.py

# container-test: the receiver's image built on a local Debian base (container-base), run for
# real against PostgreSQL with the commands of docs/deploy-cloud.md, which it reads from there.
BASE_IMAGE ?= tierless-base:bookworm
container-base:
	BASE_IMAGE=$(BASE_IMAGE) deploy/container/base-image.sh

container-test: $(STAMP) container-base
	TIERLESS_DEPLOY_TESTS=1 BASE_IMAGE=$(BASE_IMAGE) $(BIN)/pytest -q -p no:cacheprovider \
		tests/deploy/test_container.py

# pi-check: the gateway installed from the wheel and run on arm64 and armhf Debian bookworm roots
# under qemu-user-static (docs/operations.md, *Raspberry Pi*). Needs root. The roots are built
# once per machine into $(PI_ROOTS) (deploy/pi/pi-root.sh) and reused; PI_ARCHS=arm64 (say) checks
# one. On demand, not in CI: it takes longer than ten minutes on a fresh machine.
PI_ROOTS ?= /var/cache/tierless-pi
PI_ARCHS ?= arm64 armhf
pi-check: dist
	PI_ROOTS=$(PI_ROOTS) deploy/pi/pi-root.sh $(PI_ARCHS)
	TIERLESS_DEPLOY_TESTS=1 PI_ROOTS=$(PI_ROOTS) $(BIN)/pytest -q -s -p no:cacheprovider \
		$(foreach a,$(PI_ARCHS),"tests/deploy/test_pi.py::test_gateway_on_arm[$(a)]")

# Everything .gitignore lists (tests/test_hygiene.py checks the two agree): after `make clean`,
# `git status --ignored` shows nothing.
clean:
	rm -rf $(VENV) .bench .soak .demo .artifacts demo-run .hypothesis .mypy_cache .pytest_cache \
		.ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
