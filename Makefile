# speechbrain-mossformer: `make quickstart` and `make test` create .venv when
# it is missing and install everything into it.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# torch 2.14.1 + torchaudio 2.11.0 + speechbrain 1.1.2 import and run on a
# CPU-only machine (PyPI's torchaudio 2.11 fails beside a CPU-only torch).
PINNED := torch==2.14.1 torchaudio==2.11.0 speechbrain==1.1.2

.PHONY: install quickstart test clean

install: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(PINNED)
	$(PY) -m pip install --quiet -e ".[dev,onnx,plot]"
	touch $(STAMP)

quickstart: install
	$(PY) -m speechbrain_mossformer.quickstart

test: install
	$(PY) -m pytest -q tests
	$(PY) -m pytest -q --doctest-modules speechbrain_mossformer

clean:
	rm -rf $(VENV) quickstart_output tests/tmp *.egg-info
