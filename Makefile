# Two entry points for a fresh machine with python3 and make:
#   make demo   the init reaping an orphan and forwarding a signal as PID 1
#   make test   lint, types, the API reference and the whole test suite
# Each creates .venv and installs what it needs. make test-all runs the suite
# on every supported Python found here (CI's command).

PYTHON ?= python3
VENV   ?= .venv
STAMP  := $(VENV)/.installed-test

.PHONY: demo test test-all lint typecheck docs unit zipapp release clean bench bench-start bench-fanout bench-sandbox soak e2e

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

# make test-all: make test, then the whole suite again on each other
# supported Python (3.12, 3.13), each in a venv of its own (.venv-3.12, ...).
# A version that this machine lacks is named on one line and left out.
SUPPORTED := 3.12 3.13

test-all: test
	@for version in $(SUPPORTED); do \
	    python=$$(scripts/find-python $$version) || { echo "test-all: Python $$version NOT RUN"; continue; }; \
	    echo "test-all: the suite on Python $$version ($$python)"; \
	    $(MAKE) --no-print-directory unit PYTHON=$$python VENV=.venv-$$version || exit 1; \
	done

# make zipapp: dist/nucleus-trio.pyz, the init in one file for any Python
# 3.11+ with nothing installed (README, "Single-file build").
zipapp: $(STAMP)
	$(VENV)/bin/python scripts/build_zipapp.py --output dist/nucleus-trio.pyz

# make release: the wheel and the .pyz in dist/, in one command.
release: $(STAMP)
	$(VENV)/bin/python -m pip wheel -q --no-deps -w dist .
	$(VENV)/bin/python scripts/build_zipapp.py --output dist/nucleus-trio.pyz

clean:
	rm -rf $(VENV) .venv-3.* build dist .mypy_cache .ruff_cache .hypothesis

# make bench [EARLY=N]: nucleus-trio against tini, dumb-init and catatonit
# (needs root; see benchmarks/README.md). Results in benchmarks/results/.
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(VENV)/bin/python -m benchmarks $(if $(EARLY),--early $(EARLY))
	$(VENV)/bin/python -m benchmarks.start $(START_ARGS)
	$(VENV)/bin/python -m benchmarks.fanout $(FANOUT_ARGS)
	$(VENV)/bin/python -m benchmarks.sandbox $(SANDBOX_ARGS)

# make bench-start [START_ARGS="--runs N --rounds N"]: start latency against
# Python's floor as five runs of 40 interleaved rounds; the worst run's ratio
# is the start-up target's figure (needs root). Results in
# benchmarks/results/start.md and start.json.
bench-start: $(BENCH_STAMP)
	$(VENV)/bin/python -m benchmarks.start $(START_ARGS)

# make bench-fanout [FANOUT_ARGS="--processes N --rounds N"]: 500 short
# processes at once through the supervisor against trio.run_process, about a
# minute, no root needed (also the last step of make bench). Results in
# benchmarks/results/fanout.md and fanout.json.
bench-fanout: $(STAMP)
	$(VENV)/bin/python -m benchmarks.fanout $(FANOUT_ARGS)

# make bench-sandbox [SANDBOX_ARGS="--rounds N"]: the time to start a sandbox
# and run true in it, against unshare --pid --fork --mount-proc and podman run
# --rm (when make e2e's image exists), as root; also the last step of make
# bench. Results in benchmarks/results/sandbox.md and sandbox.json.
bench-sandbox: $(STAMP)
	$(VENV)/bin/python -m benchmarks.sandbox $(SANDBOX_ARGS)

# make soak [SOAK_ARGS="--orphans N --signals N --soak-seconds S"]: the stress
# suite's long mode (an hour by default; see stress/README.md). The summary
# table goes to stress/results/long.md, every figure to long.json.
soak: $(STAMP)
	$(VENV)/bin/python -m stress --mode long --json stress/results/long.json --markdown stress/results/long.md $(SOAK_ARGS)

# make e2e: nucleus-trio as PID 1 of real podman containers, beside tini and
# catatonit (needs root). Installs podman, runc, tini, catatonit and
# debootstrap from Debian's packages where missing, builds the image once
# (build/e2e/, see e2e/README.md) and runs e2e/ with pytest. The stop times
# go to build/e2e/stop-times.md.
e2e: $(STAMP) zipapp
	bash e2e/host-setup.sh
	PYTHON=$(VENV)/bin/python bash e2e/build-image.sh
	$(VENV)/bin/pytest e2e -q
