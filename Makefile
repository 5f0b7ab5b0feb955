# dasctl: `make demo` runs the main job on the local emulator; `make test` runs every test.
# Both install what they need first (a .venv with dasctl and all extras, and the few Debian tools
# the terminal tests and benchmarks use), so a fresh clone needs nothing else.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# Workers for `make test` (pytest-xdist). Most of the suite's time is real-time audio paced to the
# emulator, not CPU, so more workers than cores pays (measured in docs/contributing.md); 0 = no xdist.
PYTEST_WORKERS ?= 8

.PHONY: install system-deps test demo bench lint clean fixtures

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo 'make: installing dasctl and its extras into $(VENV) (log: $(VENV)/install.log)' >&2
	@{ $(BIN)/python -m pip install --disable-pip-version-check --upgrade pip \
		&& $(BIN)/python -m pip install --disable-pip-version-check -c constraints.txt -e '.[server,dev,postgres]'; } \
		> $(VENV)/install.log 2>&1 \
		|| { tail -n 30 $(VENV)/install.log >&2; echo 'make: installing dasctl into $(VENV) failed' >&2; exit 1; }
	@$(BIN)/python -c 'import dasctl, socketio, aiohttp, soundfile, soxr, webrtcvad, av, pytest, xdist, psycopg' \
		|| { echo 'make: dasctl is installed but does not import (see $(VENV)/install.log)' >&2; exit 1; }
	@touch $(STAMP)

# tmux drives the terminal tests; ffmpeg and sox are the benchmarks' baselines.
system-deps:
	@bash scripts/system-deps.sh

# pytest's own exit status is make's: 5 (no tests collected) fails the target like any other.
test: install system-deps
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal --durations=15 $(PYTEST_ARGS)

demo: install
	@bash scripts/demo.sh

bench: install system-deps
	@bash benchmarks/run-all.sh

lint: install
	$(BIN)/ruff check dasctl tests benchmarks
	$(BIN)/mypy dasctl

fixtures:
	@bash tests/data/make-fixtures.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .demo
