# Front door: `make test` and `make demo` set up everything they need from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test demo lint format soak bench browsers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,sfm]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools
	$(BIN)/lint-imports --no-cache
	$(BIN)/python tools/architecture.py --check

format: $(STAMP)
	$(BIN)/ruff format src tests bench tools
	$(BIN)/ruff check --fix src tests bench tools

# The browser tests drive Debian's chromium (Playwright's own download is never used).
browsers:
	@if [ ! -x $(CHROMIUM) ]; then \
		echo "installing Debian's chromium for the browser tests"; \
		$(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	fi

test: lint browsers
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/plantimager demo

# The 64-node chaos soak (tests/soak: ten minutes of faults, about 11 minutes in all); its output and table are shown as it runs.
# PLANTIMAGER_SOAK_SEED=N repeats the faults of an earlier run (the seed is printed).
soak: $(STAMP)
	$(BIN)/pytest -m slow -s $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/rpc.py
	$(BIN)/python bench/capture.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/camera.py
	$(BIN)/python bench/spool_memory.py
	$(BIN)/python bench/web.py
	$(BIN)/python bench/scan.py
	$(BIN)/python bench/matching.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
