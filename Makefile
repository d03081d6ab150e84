# Two entry points (see README): `make demo` sets up and runs the main job, `make test` sets up and runs the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test bench

$(BIN)/mvpfarm: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/mvpfarm

demo: setup
	$(BIN)/mvpfarm sweep run examples/demo.toml examples/digits-accuracy.toml --results results

test: setup
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 $(BIN)/python -m pytest -q -ra

bench: setup
	$(BIN)/python bench/profile_speed.py
