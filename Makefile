# Two commands do everything on a fresh machine: `make test` and `make bench`.
# Both create .venv on first use (torch==2.13.0 first: its CPU wheel is on disk here; any
# other version downloads gigabytes), then reuse it until pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
THREADS ?= 2

.PHONY: setup test bench lint model clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check hap baselines benchmarks tests

# QUICK=1: 94% and 98% only, one seed, one pyperf process without warm-up (a few minutes), into
# results/quick and plots/quick. The committed reference run lives in results/reference and
# plots/reference; `make bench` writes results/ and plots/ afresh (and resumes a killed sweep).
OUT := $(if $(QUICK),results/quick,results)
PLOTS := $(if $(QUICK),plots/quick,plots)
PYPERF_ARGS := $(if $(QUICK),--processes 1 --warmups 0,--processes 2 --warmups 1)

bench: $(STAMP)
	mkdir -p $(OUT) $(PLOTS)
	$(VENV)/bin/hap baseline --task ioi --threads $(THREADS) --json > $(OUT)/baseline_ioi.json
	$(VENV)/bin/hap bench $(if $(QUICK),--quick,) --threads $(THREADS) --out $(OUT)/sweep.csv --plots $(PLOTS)
	rm -f $(OUT)/runtime.tmp.json
	$(PY) benchmarks/runtime.py $(PYPERF_ARGS) --values 1 --quiet --threads $(THREADS) -o $(OUT)/runtime.tmp.json
	mv $(OUT)/runtime.tmp.json $(OUT)/runtime.json
	$(PY) -m pyperf show --quiet $(OUT)/runtime.json

# Retrain the embedded default model (about 7 minutes on 2 cores); overwrites hap/assets/default.
model: $(STAMP)
	$(PY) -m hap.train

clean:
	rm -rf $(VENV) .pytest_cache
