# aigen tasks. Every target installs what is missing first (a virtualenv in .venv).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install serve test gen check-gen lint format bench drills clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## Start the service: gRPC server and Envoy (REST on AIGEN_HTTP_PORT, default 19001).
serve: $(STAMP)
	$(PY) -m aigen.server.serve

## Run every test.
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## Benchmarks (not a test): prints a table, writes bench/out/. PEER=litellm adds the LiteLLM
## proxy row; BENCH_ARGS=--quick for short runs and 200 streams.
bench: $(STAMP)
	$(PY) -m bench.run $(if $(PEER),--peer $(PEER)) $(BENCH_ARGS)

## Long reliability drills: thousands of fuzzed REST requests, crash, faults, abuse, 2,000 streams.
drills: $(STAMP)
	AIGEN_DRILLS=long $(PY) -m pytest tests/test_drills.py -o timeout=1800 $(PYTEST_ARGS)
	$(PY) -m bench.streams --streams 2000 --clients 4

## Regenerate gen/ from proto/.
gen: $(STAMP)
	$(PY) scripts/gen_protos.py
	$(PY) scripts/gen_openapi.py

## Fail when gen/ is not what proto/ generates.
check-gen: gen
	@git add --intent-to-add gen >/dev/null 2>&1 || true
	@git diff --exit-code --stat -- gen || (echo "gen/ is stale: run 'make gen' and commit" >&2; exit 1)

## Proto format and lint (buf), Python lint and format check (ruff).
lint: $(STAMP)
	$(BIN)/buf format --diff --exit-code proto
	$(PY) scripts/gen_protos.py --descriptor-only
	$(BIN)/buf lint gen/aigen.binpb --path aigen
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/buf format -w proto
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
