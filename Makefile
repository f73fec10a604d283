# The README's two commands: `make demo` and `make test`. Both create .venv if it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
STAMP_TEST := $(VENV)/.installed-test

.PHONY: demo test test-slow test-all lint bench clean

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

# the fast lane (every test not marked slow); test-slow: the rest; test-all: both (CI)
test: $(STAMP_TEST)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP_TEST)
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

test-all: test test-slow

lint: $(STAMP_TEST)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) benchmarks/vifb_reference.py

clean:
	rm -rf demo_out .pytest_cache build *.egg-info src/*.egg-info
