# Two entry points (see README): `make demo` runs the main job, `make test` runs every check.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mlops-installed
SYSTEM_TOOLS := prometheus wrk
PYTEST_ARGS ?=

.PHONY: demo demo-rollback test test-fast venv train retrain lint system-deps clean

# The virtualenv is created once; dependencies are reinstalled only when pyproject.toml changes.
$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	  || { echo "Python >= 3.11 is required (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

venv: $(STAMP)

models/fraud-scorer-1.0.0.onnx: examples/train.py | $(STAMP)
	$(BIN)/python examples/train.py --version 1.0.0 > /dev/null

models/fraud-scorer-1.1.0.onnx: examples/train.py | $(STAMP)
	$(BIN)/python examples/train.py --version 1.1.0 > /dev/null

train: models/fraud-scorer-1.0.0.onnx models/fraud-scorer-1.1.0.onnx
	@$(BIN)/python -c 'import json; r = json.load(open("models/fraud-scorer-1.0.0.json")); \
	  print("trained", r["name"], r["version"], "- accuracy", r["value"], "(the spec baseline)")'

# The example spec's drift hook (`on_drift: make retrain`, run in the workspace by
# `mlops drift --run-hook`): trains the next patch version of the drifted example model with
# examples/train.py. The hook sets MLOPS_DRIFT_MODEL and MLOPS_DRIFT_VERSION; RETRAIN_VERSION
# picks the version by hand, RETRAIN_OUT where models/ and data/ go (default: here).
RETRAIN_OUT ?= .
retrain: | $(STAMP)
	@model="$${MLOPS_DRIFT_MODEL:-fraud-scorer}"; \
	if [ "$$model" != fraud-scorer ]; then \
	  echo "make retrain: only the example model fraud-scorer can be retrained here, not $$model"; \
	  exit 2; fi; \
	version="$${RETRAIN_VERSION:-$$(MLOPS_DRIFT_VERSION="$${MLOPS_DRIFT_VERSION:-1.0.0}" \
	  $(BIN)/python -c 'import os, semver; \
	    print(semver.Version.parse(os.environ["MLOPS_DRIFT_VERSION"]).bump_patch())')}"; \
	echo "retraining $$model $$version (drifted: $${MLOPS_DRIFT_VERSION:-not given})"; \
	$(BIN)/python examples/train.py --version "$$version" --out "$(RETRAIN_OUT)" > /dev/null; \
	echo "wrote $(RETRAIN_OUT)/models/$$model-$$version.onnx: point spec.model.version and"; \
	echo "artifact at it (baseline.value: $(RETRAIN_OUT)/models/$$model-$$version.json), then mlops plan"

demo: train
	$(BIN)/mlops validate --check-files specs/
	PYTHON=$(BIN)/python bash scripts/demo.sh

# The automatic-rollback scenario (README): an erroring canary is rolled back under load.
demo-rollback: venv
	PYTHON=$(BIN)/python bash scripts/demo-rollback.sh

# apt-get only when a tool is missing and we are root; otherwise say so and carry on
# (tests that need the tool skip themselves).
system-deps:
	@missing=""; for tool in $(SYSTEM_TOOLS); do \
	  command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "system-deps: installing$$missing with apt-get (--no-install-recommends)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing; \
	elif [ -n "$${CI:-}" ]; then echo "CI needs:$$missing (install them as root)"; exit 1; \
	else echo "note:$$missing not installed and not root: skipping apt-get"; fi

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict mlops/ tests/ bench/
	$(BIN)/lint-imports

# Slow tests run too. pytest exits 5 when nothing was collected; the grep also fails a run
# in which every test was skipped.
test: venv system-deps lint
	@log=$$(mktemp); trap 'rm -f $$log' EXIT; \
	$(BIN)/python -m pytest -q $(PYTEST_ARGS) 2>&1 | tee $$log; \
	grep -Eq '[0-9]+ passed' $$log || { echo "make test: no test ran"; exit 1; }

# The unit tier, for the edit-test loop: no slow-marked tests and nothing under tests/e2e
# (no apt-get, no lint). `make test` stays the full suite CI runs.
FAST_SELECT := -m 'not slow' --ignore=tests/e2e
test-fast: venv
	$(BIN)/python -m pytest -q $(FAST_SELECT) $(PYTEST_ARGS)

clean:
	rm -rf models data .mlops .pytest_cache .mypy_cache .ruff_cache

# The parsers of untrusted input under fuzzing (tests/fuzz, hypothesis), with 10x the
# examples CI runs, the batching property included; per-target counts and failures are
# printed at the end. The last run's figures: bench/RESULTS-fuzz.md.
.PHONY: fuzz
fuzz: venv
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q -p no:cacheprovider tests/fuzz \
	  --hypothesis-show-statistics --durations=0 $(PYTEST_ARGS)

# Every benchmark in bench/ (engine side by side with MLServer, plan at scale, registry,
# rollout, images, drift, ...) and one table of each figure against its goal:
# bench/results.md, with the last soak and fuzz results. QUICK=1: quick settings.
.PHONY: bench
bench: venv system-deps
	$(BIN)/python -m pip install -q -e '.[bench]'  # granian, for the bare-handler comparison
	QUICK=$${QUICK:-} $(BIN)/python bench/run.py

# Promote/rollback cycles under steady load for SOAK_SECONDS (default 600): failed requests,
# memory, descriptors and threads of the engine and the controller; then SOAK_CRASH_POINTS
# (default 200) random crash points (tests/e2e/test_crash_points.py). bench/RESULTS-soak.md.
.PHONY: soak
soak: venv
	$(BIN)/python bench/soak.py
