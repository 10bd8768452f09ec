# The two commands of the README:  make demo  (main job)  and  make test  (test suite).
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/grace_smollm2_cpu.yaml

.PHONY: setup demo test test-slow lint
setup: $(VENV)/.grace-installed

$(VENV)/.grace-installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)

demo: setup  ## STS before -> GRACE training on the embedded default model -> STS after (re-running starts over)
	$(PY) scripts/train_grace.py --config $(CONFIG) --overwrite_output_dir true $(ARGS)

test: setup  ## fast suite (tiny models; no slow tests)
	$(PY) -m pytest -q $(ARGS)

test-slow: setup  ## the real default model (minutes)
	$(PY) -m pytest -q -m slow $(ARGS)

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
