# Two commands: `make demo` (a short search on the built-in digits data) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test install bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)

$(VENV)/.installed: $(PY) pyproject.toml
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m dartsnas demo

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/search_step.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
