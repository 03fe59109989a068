# Two entry points for a fresh Debian/Ubuntu machine: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 0.0.0.0
PORT ?= 8080

.PHONY: serve test install install-test chromium lint clean

$(BIN)/netra: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	@touch $@

install: $(BIN)/netra

install-test: install
	$(BIN)/pip install --quiet -e '.[test]'

serve: install
	$(BIN)/netra serve --host $(HOST) --port $(PORT)

# Debian's Chromium drives the browser tests; Playwright never downloads a browser here.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "installing Debian's chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

lint: install-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src/netra

test: install-test chromium lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) test-output
