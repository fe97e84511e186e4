# The two commands a newcomer needs: `make demo` and `make test`.
# Everything else here is what they call.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp

.PHONY: demo test check lint typecheck unit bench clean system-deps

demo: $(STAMP)
	$(BIN)/wgw demo

test: system-deps $(STAMP) lint typecheck
	$(BIN)/pytest

# The fast half: no broker, no database.
unit: $(STAMP)
	$(BIN)/pytest -m "not broker and not db"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/wgw bench

system-deps:
	@sh scripts/system-deps.sh

$(STAMP): pyproject.toml
	@sh scripts/python-env.sh "$(PYTHON)" "$(VENV)"
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache artifacts
