# Two entry points for a fresh machine with python3 and make:
#   make demo   the init reaping an orphan and forwarding a signal as PID 1
#   make test   lint, types and the whole test suite
# Each creates .venv and installs what it needs.

PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed-test

.PHONY: demo test lint typecheck unit clean bench soak

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	bash examples/demo.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(VENV)/bin/pytest

test: lint typecheck unit

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .hypothesis

# make bench [EARLY=N]: nucleus-trio against tini, dumb-init and catatonit
# (needs root; see benchmarks/README.md). Results in benchmarks/results/.
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(VENV)/bin/python benchmarks/bench.py $(if $(EARLY),--early $(EARLY))

# make soak [SOAK_ARGS="--orphans N --signals N --soak-seconds S"]: the stress
# suite's long mode (an hour by default; see stress/stress.py). The summary
# table goes to stress/results/long.md, every figure to long.json.
soak: $(STAMP)
	$(VENV)/bin/python stress/stress.py --mode long --json stress/results/long.json --markdown stress/results/long.md $(SOAK_ARGS)
