# postline — every target sets up .venv itself.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# Programs the tests run that must not share postline's environment: openapi-python-client
# pins httpx and typer below the versions postline uses.
TOOLS := .venv-tools
OPENAPI_CLIENT := openapi-python-client>=0.29,<0.30

.PHONY: venv tools demo test lint unit faults bench soak openapi docs clean

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

# Extra options of `postline demo`: make demo ARGS=--keep (ARGS="--messages 2000 --keep").
demo: venv
	$(BIN)/postline demo $(ARGS)

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# The unit, integration, contract, migration and regression tests run in two processes
# (files kept whole per process); end-to-end, fleet and fault tests, which start servers and
# time what they see, run one at a time; the fault scenarios marked `long` run in `make faults`.
test: lint tools
	$(BIN)/pytest -q -n 2 --dist loadfile tests/unit tests/integration tests/contract tests/migration tests/regression
	$(BIN)/pytest -q -m "not long" tests/e2e tests/fleet tests/faults

unit: venv
	$(BIN)/pytest -q tests/unit

# Hostile clients and failing parts, with the long profile of the SMTP fuzzer and of
# schemathesis (many more examples, random seeds): a few minutes to an hour.
faults: venv
	POSTLINE_FUZZ=long $(BIN)/pytest -q -p no:cacheprovider --timeout=3600 tests/faults

bench: venv
	$(BIN)/python bench/run_all.py

# 30 minutes of mixed traffic on one node; fails when RSS, descriptors, the store or the
# queue's age keep growing (bench/soak.py --fleet 2 for two nodes on PostgreSQL + Redis).
soak: venv
	$(BIN)/python bench/soak.py

docs: openapi

openapi: venv
	$(BIN)/postline openapi > docs/reference/openapi.json
	$(BIN)/postline config reference --update README.md

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
