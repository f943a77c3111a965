# Every target sets itself up idempotently into .venv; a fresh clone needs only `make test` or `make demo`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Passive OpenMP waits: spinning torch threads starve Ray workers and each other on small machines.
export OMP_WAIT_POLICY ?= PASSIVE
# CPU wheel by default; GPU users: create .venv, `pip install torch` (CUDA build) into it, then run make.
TORCH_CPU ?= torch==2.13.0

.PHONY: install test gpu-check lint demo demo-local clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_CPU)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q -rs -p no:cacheprovider $(PYTEST_ARGS)

# On a CUDA machine (CUDA torch in .venv): bf16 training, batched bf16 eval vs CPU, a Ray job given a GPU.
gpu-check: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m gpu -rs

lint: $(STAMP)
	$(BIN)/ruff check .

# The main job: `zoo submit` (embedded Ray) -> catalog + store -> `zoo ls` -> `zoo pull --tag demo`.
demo: $(STAMP)
	BIN=$(BIN) bash demo/run.sh

# The same finetune in one process, with accuracy before and after (no Ray, no catalog).
demo-local: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m zoo.demo

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
