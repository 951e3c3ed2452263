# Two commands do all set-up on a fresh machine with Python 3: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --disable-pip-version-check
# featx and its run-time dependencies only, as `pip install .` gives them; `compat` puts the checkout
# itself on sys.path, so `import featx` finds the package even from the folder that holds the checkout
EDITABLE := --config-settings editable_mode=compat -e
RUNTIME := $(VENV)/.runtime-stamp
# plus the test extra
TESTING := $(VENV)/.test-stamp

.PHONY: demo test runtime-check ffmpeg-libs bench clean

$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) $(EDITABLE) .
	touch $@

$(TESTING): $(RUNTIME)
	$(PIP) $(EDITABLE) '.[test]'
	touch $@

demo: $(RUNTIME)  ## extract features of the bundled sample videos and show what was written
	$(BIN)/python -m featx.demo

# In a fresh venv (CI's clean clone) this runs before the test extra is installed, so a module that
# featx needs at run time but only the test extra brings fails it.
runtime-check: $(RUNTIME)  ## the installed command and the demo, with the run-time dependencies only
	$(BIN)/featx --help > /dev/null
	$(BIN)/python -m featx.demo

# torchcodec (--decoder torchcodec, in the test extra) loads FFmpeg's shared libraries from the system:
# installed with apt-get where they are missing and this runs as root; otherwise its tests are skipped.
ffmpeg-libs:
	@$(PYTHON) -c "import ctypes.util, sys; sys.exit(ctypes.util.find_library('avcodec') is None)" 2>/dev/null || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg > /dev/null; } || \
	echo "note: FFmpeg's shared libraries are not installed: --decoder torchcodec cannot run here"

test: runtime-check ffmpeg-libs  ## the run-time check, then the test extra and the test suite (what CI runs)
	$(MAKE) --no-print-directory $(TESTING)
	$(BIN)/python -m pytest -q --durations=10  # the ten slowest tests at the end

bench: $(RUNTIME)  ## speed benchmark (see README)
	$(BIN)/python benchmarks/bench_extract.py

clean:
	rm -rf $(VENV) demo_out
