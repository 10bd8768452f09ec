# The two commands of the README:  make demo  (main job)  and  make test  (test suite).
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/grace_smollm2_cpu.yaml
# torch/OpenMP threads of the demo: one per core (at most 8). Measured 2026-12-05, 20 demo steps: 10.7 s per step with
# 2 threads on a quiet 2-core box, 21.3 s with 1 thread beside another 1-thread job. On a box shared with other work,
# threads beyond the free cores wait on each other (steps up to 14x slower were seen so): there use `make demo THREADS=1`.
THREADS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 8 ] && n=8; echo $$n)

.PHONY: setup demo test test-slow test-ray test-faults test-multiproc lint format
setup: $(VENV)/.grace-installed

$(VENV)/.grace-installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)

demo: setup  ## STS before -> GRACE training on the embedded default model -> STS after (re-running starts over)
	OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS) $(VENV)/bin/grace-rl train --config $(CONFIG) --overwrite_output_dir true $(ARGS)

test: setup  ## fast suite (tiny models; no slow tests)
	$(PY) -m pytest -q $(ARGS)

test-slow: setup  ## the real default model (minutes)
	$(PY) -m pytest -q -m 'slow and not faults' $(ARGS)

test-ray: setup  ## tests that start a local 2-CPU Ray cluster (about 2 min)
	$(PY) -m pytest -q -m 'ray and not faults' $(ARGS)

test-multiproc: setup  ## 2-process runs on the CPU (gloo): torchrun, accelerate launch, ZeRO-3 gather; tiny model (8 min on 2 busy cores)
	$(PY) -m pytest -q -m 'multiproc and not faults' $(ARGS)

test-faults: setup  ## the fault-injection suite; prints the tally (about 4.5 min)
	$(PY) -m pytest -q -m faults $(ARGS)

lint: setup  ## ruff check + format check (what CI and pre-commit run); import contracts (pyproject's [tool.importlinter])
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports

format: setup  ## ruff: fix what is fixable, then format
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .
