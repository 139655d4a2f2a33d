# The two commands a new user needs: `make run` (the main job) and `make test`.
# Each installs what it needs first (a .venv with the package and its cpu+dev extras).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
# Reinstall whenever pyproject.toml changes. uv installs the same releases as pip from the
# same sources (tools/pip_index_args.py passes pip's configuration on) in a fifth of the
# time; pip takes over if uv fails. Neither byte-compiles: that is one file at a time, all
# 20,000 of them, where a run imports about 3,000. Instead the recipes below let Python
# write each module's bytecode the first time any process imports it
# (PYTHONDONTWRITEBYTECODE, which this machine sets, is unexported), so the modules a run
# uses are compiled once, by the first process that needs them, and every later process
# and Ray worker reads the cached bytecode.
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
RUN_DIR ?= runs/ml-100k
export OMP_NUM_THREADS ?= 1
export PYTHONUNBUFFERED := 1
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install chromium run serve test test-slow test-cluster bench bench-prepare bench-encode bench-train bench-index bench-serve sweep lint format clean

# The flags go through a variable first, so a failure to read pip's configuration stops the
# uv install (and pip takes over) instead of letting uv run without this machine's sources.
UV_INSTALL = $(PY) -m pip install 'uv>=0.9,<1' && flags=$$($(PY) tools/pip_index_args.py) && \
  $(VENV)/bin/uv pip install --python $(PY) $$flags -e '.[cpu,dev]'
PIP_INSTALL = $(PY) -m pip install --upgrade pip && $(PY) -m pip install --no-compile -e '.[cpu,dev]'

install: $(STAMP)

$(STAMP): pyproject.toml
	@echo "installing into $(VENV) (the installer's output: $(VENV)/install.log)"
	@$(PYTHON) -m venv $(VENV)
	@{ $(UV_INSTALL); } > $(VENV)/install.log 2>&1 || { \
	  echo "uv could not install (its output: $(VENV)/install.log); installing with pip"; \
	  { $(PIP_INSTALL); } >> $(VENV)/install.log 2>&1 || { tail -40 $(VENV)/install.log; \
	  echo "install failed: the whole log is $(VENV)/install.log"; exit 1; }; }
	@rm -f $(VENV)/.installed-*
	@touch $@

run: install  ## the main job on the embedded default: the whole ml-100k pipeline, local Ray
	$(PY) ray_jobs/pipeline.py --dataset ml-100k --out $(RUN_DIR)

sweep: install  ## the Ray Tune sweep of w_r (and alpha) on the run made by `make run`
	$(PY) tune/sweep_wr.py --run $(RUN_DIR)

SERVE_MODE ?= graph
# Serve's fast path (docs/benchmarks.md): HAProxy ingress and gRPC between replicas.
SERVE_ENV := RAY_SERVE_THROUGHPUT_OPTIMIZED=1 RAY_SERVE_ENABLE_HA_PROXY=1

serve: install  ## the Serve app (SERVE_MODE=graph|fused) on the run made by `make run`, on localhost:8000 (Ctrl-C stops it)
	$(SERVE_ENV) MTMH_RUN=$(RUN_DIR) MTMH_SERVE_MODE=$(SERVE_MODE) $(VENV)/bin/serve run serve_app:graph

test: install chromium  ## fast tests (slow and GPU tests are skipped; see test-slow)
	$(PY) -m pytest

# The explore page's browser test drives Debian's Chromium. Installed here when missing and
# this user may (root or passwordless sudo); otherwise that one test skips and says why.
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; \
	  else echo "note: no chromium and no root: the browser test will skip (apt-get install chromium)"; exit 0; fi; \
	  echo "installing Debian's chromium for the browser test"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test-slow: install
	$(PY) -m pytest -m 'slow and not cluster'

# A multi-node Ray cluster on this machine: every job through `ray job submit`, Serve on it,
# node/driver/replica faults, and the fake-provider autoscaler (docs/cluster.md, ~20 min).
test-cluster: install
	$(PY) -m pytest -m cluster tests/test_cluster.py -v

bench: bench-prepare bench-encode bench-train bench-index bench-serve  ## every benchmark (see bench/README.md)

bench-prepare: install
	$(PY) bench/prepare_bench.py

bench-encode: install
	$(PY) bench/encode_bench.py

bench-train: install
	$(PY) bench/train_bench.py

bench-index: install
	$(PY) bench/index_bench.py

bench-serve: install  ## needs the run made by `make run`
	$(PY) bench/serve_load.py --run $(RUN_DIR)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
