# Two entry points for a fresh machine with python3 and make:
#   make demo   the init reaping an orphan and forwarding a signal as PID 1
#   make test   lint, types, the API reference and the whole test suite
# Each creates .venv and installs what it needs.

PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed-test

.PHONY: demo test lint typecheck docs unit clean bench soak

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

# The API reference from the docstrings, in build/docs/index.html: any
# warning (-W) or unresolved reference (-n) fails it. -E re-reads every page,
# so a warning is reported again on every run, not only on the first.
docs: $(STAMP)
	$(VENV)/bin/sphinx-build -E -W --keep-going -n -q -b html docs build/docs

unit: $(STAMP)
	$(VENV)/bin/pytest

test: lint typecheck docs unit

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
