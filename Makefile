# Two entry points (see README): `make demo` sets up and runs the main job, `make test` sets up and runs the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test bench browser

$(BIN)/mvpfarm: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/mvpfarm

demo: setup
	$(BIN)/mvpfarm sweep run examples/demo.toml examples/digits-accuracy.toml --results results

test: setup browser
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 $(BIN)/python -m pytest -q -ra

# Headless Chromium renders the sweep report in tests/test_report_browser.py: Debian's package,
# installed through apt when missing and we are root (as CI is); otherwise that test is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    { apt-get install -y -q chromium >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; }; } || \
	  echo "make test: no chromium on PATH; the report's browser test will be skipped"

bench: setup
	$(BIN)/python bench/profile_speed.py
