# Two commands: `make demo` (a short search on the built-in digits data) and `make test` (lint and tests).
# `make docs` builds the documentation site.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint docs install bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)

$(VENV)/.installed: $(PY) pyproject.toml
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m dartsnas demo

lint: install
	$(PY) -m ruff check .

test: install lint
	$(PY) -m pytest -q

# the site in build/site; the command-line reference (docs/cli.md) is regenerated from the parser first
docs: install
	$(PY) tools/cli_reference.py
	$(PY) -m mkdocs build --strict

bench: install
	$(PY) benchmarks/search_step.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
