# Two entry points for a fresh Debian/Ubuntu machine: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 0.0.0.0
PORT ?= 8080
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: serve test bench install install-test install-bench chromium firefox janus clients netns \
  redis lint clean

# The native fan-out and the load tool's counter (src/netra/native_build.py) are compiled at
# install: gcc and Python's headers.
PY_HEADERS := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null)/Python.h

NATIVE := src/netra/native_build.py $(wildcard src/netra/media/fanout.[ch] src/netra/bench/counter.[ch])

$(BIN)/netra: pyproject.toml setup.py $(NATIVE)
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { \
	  echo "installing Debian's python3-venv"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; }
	@if ! command -v gcc >/dev/null || [ ! -f "$(PY_HEADERS)" ]; then \
	  echo "installing Debian's gcc and python3-dev for the native fan-out"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev python3-dev; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	@touch $@

install: $(BIN)/netra

install-test: install
	$(BIN)/pip install --quiet -e '.[test]'

install-bench: install
	$(BIN)/pip install --quiet -e '.[bench]'

serve: install
	$(BIN)/netra serve --host $(HOST) --port $(PORT)

# Debian's Chromium drives the browser tests; Playwright never downloads a browser here.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "installing Debian's chromium"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

# Debian's Firefox ESR, driven over WebDriver BiDi (tests/e2e/firefox.py); no geckodriver.
firefox:
	@if [ ! -x /usr/bin/firefox-esr ]; then \
	  echo "installing Debian's firefox-esr"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq firefox-esr; \
	fi

# Janus (Debian's 1.1.2) is the side-by-side peer of `netra bench --against janus` and of its
# test; gcc builds the small loopback shim it needs (docs/benchmarks.md).
janus:
	@if [ ! -x /usr/bin/janus ] || ! command -v gcc >/dev/null; then \
	  echo "installing Debian's janus and gcc"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq janus gcc libc6-dev; \
	fi

# Debian's redis-server: the cluster's directory (docs/scale-out.md); the tests start their own.
redis:
	@if [ ! -x /usr/bin/redis-server ]; then \
	  echo "installing Debian's redis-server"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; \
	fi

# Real WHIP/WHEP clients nobody here wrote (tests/clients): the whip-whep and
# @eyevinn/webrtc-player npm packages for Chromium, and node-datachannel (libdatachannel, OBS's
# WebRTC stack) for the OBS-like publisher. Pinned in package-lock.json; no browser download.
clients:
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
	  echo "installing Debian's nodejs and npm"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; \
	fi
	@cd tests/clients && \
	if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ] \
	   || [ ! -f bundles/eyevinn-webrtc-player.iife.js ]; then \
	  npm ci --no-audit --no-fund --loglevel=error && npm run --silent build; \
	fi

# Every test runs in a private network namespace that has only loopback, so that no browser or
# peer can even see this machine's addresses (CI runs as root; elsewhere a user namespace).
NETNS := unshare $(if $(filter 0,$(shell id -u)),-n,-rn) sh -c 'ip link set lo up && exec "$$0" "$$@"'

netns:
	@command -v ip >/dev/null || { \
	  echo "installing Debian's iproute2"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2; }

lint: install-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src/netra

# The whole suite on the native fan-out (the default), then the suites that forward media
# again on the Python fan-out, the reference and fallback (src/netra/media/fanout.py).
test: install-test chromium firefox janus clients redis netns lint
	$(NETNS) $(BIN)/python -m pytest -q
	NETRA_FANOUT=python $(NETNS) $(BIN)/python -m pytest -q tests/integration tests/e2e

# The published comparison: Netra and Janus interleaved, three ladders each (~20 min).
bench: install-bench janus
	$(BIN)/netra bench --against janus

clean:
	rm -rf $(VENV) test-output
