# `make test` and `make demo` create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: venv test demo lint bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

lint: venv
	$(PY) -m ruff check src tests benchmarks

test: venv lint
	$(PY) -m pytest $(PYTEST_ARGS)

demo: venv
	$(VENV)/bin/shapeood demo

bench: venv
	$(PY) benchmarks/bench_detectors.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
