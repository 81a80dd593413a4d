# postline — every target sets up .venv itself.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# Programs the tests run that must not share postline's environment: openapi-python-client
# pins httpx and typer below the versions postline uses.
TOOLS := .venv-tools
OPENAPI_CLIENT := openapi-python-client>=0.29,<0.30

.PHONY: venv tools demo test lint unit faults bench openapi docs clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# The OpenAPI document is tested by generating a client from it (tests/integration/api).
tools: $(TOOLS)/bin/openapi-python-client

$(TOOLS)/bin/openapi-python-client:
	test -x $(TOOLS)/bin/python || $(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q --disable-pip-version-check '$(OPENAPI_CLIENT)'

demo: venv
	$(BIN)/postline demo

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: lint tools
	$(BIN)/pytest -q

unit: venv
	$(BIN)/pytest -q tests/unit

# Hostile clients and failing parts, with the long profile of the SMTP fuzzer and of
# schemathesis (many more examples, random seeds): a few minutes to an hour.
faults: venv
	POSTLINE_FUZZ=long $(BIN)/pytest -q -p no:cacheprovider --timeout=3600 tests/faults

bench: venv
	$(BIN)/python bench/run_all.py

docs: openapi

openapi: venv
	$(BIN)/postline openapi > docs/reference/openapi.json
	$(BIN)/postline config reference --update README.md

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
