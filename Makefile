# brokergate: `make demo` runs the whole stack on the paper broker; `make test` passes every test.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench chaos lint install redis-binary clean constraints

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Test-only oracles whose exact pins would downgrade the product's own libraries.
NO_DEPS_PKGS := fyers-apiv3==3.2.0 NorenRestApiPy==0.0.22

# Reinstall only when the project's dependencies change. constraints.txt pins every package to
# the version the tests passed with, so a fresh machine installs what passed.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,bench]'
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps $(NO_DEPS_PKGS)
	touch $(STAMP)

# After changing a dependency: resolve afresh in a scratch venv and pin the result (then run the
# tests and commit constraints.txt with pyproject.toml).
constraints:
	rm -rf .venv-constraints && $(PY) -m venv .venv-constraints
	.venv-constraints/bin/python -m pip install -q --upgrade pip
	.venv-constraints/bin/python -m pip install -q '.[test,bench]'
	.venv-constraints/bin/python -m pip install -q --no-deps $(NO_DEPS_PKGS)
	{ sed -n '/^#/p' constraints.txt; .venv-constraints/bin/python -m pip freeze --exclude brokergate; } > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf .venv-constraints

install: $(STAMP) redis-binary

# Tests start a private redis-server of their own; install Debian's when it is missing.
redis-binary:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "redis-server missing: installing Debian's redis-server"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }
	@command -v redis-server >/dev/null 2>&1 || { echo "redis-server is required and could not be installed"; exit 1; }

lint: install
	$(BIN)/ruff check .

test: install
	$(BIN)/ruff check .
	$(BIN)/mypy common
	$(BIN)/python -m pytest -q -n 2

demo: install
	$(BIN)/python -m examples.demo

bench: install
	$(BIN)/python -m bench

chaos: install
	$(BIN)/python -m pytest -q -m chaos tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
