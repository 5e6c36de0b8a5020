# Two commands do all set-up on a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-properties install system-deps bench bench-tls bench-cluster fuzz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## run: start the engine on its defaults (MLLP 127.0.0.1:2575, data in ./var)
run: install
	$(BIN)/swf serve

## system-deps: Debian packages the integration tests use (installs only what is missing)
system-deps:
	.ci/system-deps

## test: install everything and run the whole suite (pytest exit 5, no tests, fails too); SWF_REQUIRE_TOOLS=1:
## a test whose tool (chromium, Orthanc, DCMTK ...) is missing fails instead of being skipped
test: install system-deps
	SWF_REQUIRE_TOOLS=1 $(BIN)/python -m pytest -q

## test-properties: the API property run at 200 examples per operation (make test runs 25)
test-properties: install
	SWF_PROPERTY_EXAMPLES=200 $(BIN)/python -m pytest -q tests/integration/test_api_properties.py

## bench: every benchmark against real peers it installs and starts (bench/README.md); results in bench/RESULTS.md
bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

## bench-tls: C-STORE rate over DICOM TLS vs plain, engine and DCMTK storescp (bench/storage_tls.py)
bench-tls: install
	$(BIN)/python bench/storage_tls.py $(BENCH_ARGS)

## fuzz: every fuzz target in turn (tests/fuzz, atheris coverage-guided + grammar mutators), FUZZ_INPUTS in all
##       (default 10^6, 10-15 min here; FUZZ_ENGINE=grammar without atheris); a table of inputs, crashes, hangs, peak RSS
FUZZ_INPUTS ?= 1000000
fuzz: install
	$(BIN)/python -m tests.fuzz.runner --inputs $(FUZZ_INPUTS) $(FUZZ_ARGS)

## bench-cluster: ingest and MWL rate with one and two instances on PostgreSQL behind HAProxy, failover time (bench/cluster.py)
bench-cluster: install system-deps
	$(BIN)/python bench/cluster.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
