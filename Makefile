# FRP Assign: `make run` (dashboard on the demo database), `make test` (everything).
VENV    ?= .venv
PY      := $(VENV)/bin/python
PORT    ?= 8501
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: run test install browser lint typecheck format check demo bench clean screenshots chaos

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# Debian's Chromium for the browser tests (Playwright's own download cannot work here).
browser:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }
	@test -x /usr/bin/chromium || { echo "chromium did not install" >&2; exit 1; }

run: install
	$(VENV)/bin/frp demo --if-missing
	$(VENV)/bin/frp serve --port $(PORT)  # the dashboard as deployed (cli/serve.py)

demo: install
	$(VENV)/bin/frp demo --force

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The engine and the store are typed; mypy checks them (settings in pyproject.toml).
typecheck: install
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: install browser lint typecheck
	$(VENV)/bin/pytest -n 2 $(PYTEST_ARGS)

check: test

# The chaos test alone, longer than the suite's share: STEPS random steps, SEED to choose
# (or repeat) the run; docs/testing.md, "Chaos".
STEPS ?= 1000
SEED  ?= 20261206
chaos: install
	FRP_CHAOS_STEPS=$(STEPS) FRP_CHAOS_SEED=$(SEED) $(VENV)/bin/pytest -q -s -p no:cacheprovider \
		tests/test_chaos.py

bench: install
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis

# Refresh the README's screenshots (docs/screenshots/*.png) from the browser tests.
screenshots: install browser
	FRP_SCREENSHOTS=docs/screenshots $(VENV)/bin/pytest -q -p no:cacheprovider \
		tests/browser/test_pages.py -k "page_loads or simulation_runs or the_map"
