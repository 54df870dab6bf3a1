# Two commands on a fresh machine: `make demo` (install + the main job) and `make test` (install + the suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install chromium postgres demo test bench-install bench-gateway clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned and installed first so pip takes the CPU build, never a multi-GB CUDA one.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[all]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/protege demo

# The dashboard test loads the page in a real headless browser: Debian's chromium.
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	  else echo "chromium is missing and installing it needs root: run 'sudo make chromium'; the dashboard test fails without it" >&2; fi; }

# The store tests start their own PostgreSQL server (tests/pg_support.py) from Debian's server binaries.
postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; \
	  else echo "PostgreSQL's server binaries are missing and installing them needs root: run 'sudo make postgres'; the store tests fail without them" >&2; fi; }

test: $(STAMP) chromium postgres
	$(PY) -m pytest

# BFCL's data and checker for bench/bfcl*.py; --no-deps: its checker needs none of the LLM SDKs it lists.
bench-install: $(STAMP)
	$(PY) -m pip install --quiet --no-deps bfcl-eval==2026.3.23

bench-gateway: $(STAMP)
	$(PY) bench/gateway.py

clean:
	rm -rf $(VENV) protege-demo .pytest_cache
