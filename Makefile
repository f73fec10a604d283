# The README's two commands: `make demo` and `make test`. Both create .venv if it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
STAMP_TEST := $(VENV)/.installed-test

.PHONY: demo test lint bench clean

# torch first: `pip install torch==2.13.0` takes the CPU wheel on this machine's disk; asked
# for later through the project's dependencies it could pull a multi-GB CUDA build instead.
$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(PY)
	$(PIP) install -q -e '.[test]'
	touch $@ $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mmaif demo -o demo_out

test: $(STAMP_TEST)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP_TEST)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) benchmarks/vifb_reference.py

clean:
	rm -rf demo_out .pytest_cache build *.egg-info src/*.egg-info
