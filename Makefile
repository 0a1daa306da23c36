# Two entry points (the README's two commands):
#   make demo  — create .venv (CPU torch on a machine without a GPU), install, score the shipped demo data
#   make test  — lint, format check, type check, the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# On a machine without a GPU, pin the CPU wheel first: a bare `torch` requirement pulled in by
# trl / sentence-transformers would otherwise resolve to a multi-GB CUDA build.
TORCH_CPU := torch==2.13.0

.PHONY: setup demo test lint clean train-safety train-value train-value-tfidf train-request-harm

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		$(BIN)/python -m pip install -q torch; \
	else \
		$(BIN)/python -m pip install -q $(TORCH_CPU); \
	fi
	$(BIN)/python -m pip install -q -e ".[dev,serve,ray]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/safeladder score --output out/demo_scores.jsonl --overwrite

# The shipped verifiers' recipes (../shared/data beside the checkout). They refresh the copies
# inside the package; `git diff --stat safeladder/defaults` shows what changed.
train-safety: $(STAMP)
	$(BIN)/python scripts/write_shift_pools.py
	$(BIN)/safeladder train configs/train/safety.yaml --output-dir safeladder/defaults/safety --overwrite

train-value: $(STAMP)
	$(BIN)/safeladder train configs/train/value.yaml --output-dir safeladder/defaults/value --overwrite

train-value-tfidf: $(STAMP)
	$(BIN)/safeladder train configs/train/value_tfidf.yaml --output-dir safeladder/defaults/value_tfidf --overwrite

# The two judges of a request behind the default reward's `unwarranted_refusal` term (~1.5 min).
train-request-harm: $(STAMP)
	$(BIN)/safeladder train configs/train/request_harm_tfidf.yaml --output-dir safeladder/defaults/request_harm_tfidf --overwrite
	HF_HUB_OFFLINE=1 $(BIN)/safeladder train configs/train/request_harm_minilm.yaml --output-dir safeladder/defaults/request_harm_minilm --overwrite

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
