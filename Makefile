# Fresh machine: `make demo` sets up .venv and runs the shipped model on sample photos; `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.maskgate-installed
PYTHON ?= python3

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: setup
	$(VENV)/bin/maskgate demo --out demo_out

test: setup
	$(PY) -m pytest -q -rs

clean:
	rm -rf $(VENV) demo_out
