# Two commands do all set-up on a fresh machine with Python 3: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)  ## extract features of the bundled sample videos and show what was written
	$(BIN)/python -m featx.demo

test: $(STAMP)  ## run the test suite
	$(BIN)/python -m pytest -q

bench: $(STAMP)  ## speed benchmark (see README)
	$(BIN)/python benchmarks/bench_extract.py

clean:
	rm -rf $(VENV) demo_out
