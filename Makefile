# postline — every target sets up .venv itself.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: venv demo test lint unit bench openapi docs clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: venv
	$(BIN)/postline demo

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

unit: venv
	$(BIN)/pytest -q tests/unit

bench: venv
	$(BIN)/python bench/run_all.py

docs: openapi

openapi: venv
	$(BIN)/postline openapi > docs/reference/openapi.json
	$(BIN)/postline config reference --update README.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
