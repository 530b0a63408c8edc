# Two commands set everything up on a fresh clone: `make figures` and `make test`.
# Both create .venv (if absent) and install the package with the pinned CPU stack.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= quick
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: install figures test smoke test-fast lint lab bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23.1"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	$(PY) -m repro.compat install
	touch $(STAMP)

figures: $(STAMP)
	$(PY) -m repro figures --profile $(PROFILE)

# Unit tests, then nbval over notebooks/. pytest's exit code 5 (nothing collected) is a failure.
test: $(STAMP)
	$(PY) -m ruff check repro tests benchmarks notebooks
	$(PY) -m pytest tests notebooks $(NBVAL); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

# The full profile of every notebook, a couple of batches per stage, on the CPU (output: runs/).
smoke: $(STAMP)
	$(PY) -m repro figures --profile full --smoke --device cpu

test-fast: $(STAMP)
	$(PY) -m pytest tests

lint: $(STAMP)
	$(PY) -m ruff check repro tests benchmarks notebooks
	$(PY) -m ruff format --check repro tests benchmarks

# JupyterLab on the notebooks. As root (containers, most headless servers) Jupyter refuses to
# start without --allow-root, which is added then; LAB_ARGS passes more, e.g.
#   make lab LAB_ARGS="--no-browser --ip 0.0.0.0 --port 8888"
LAB_ARGS ?=
ROOT_ARGS := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root,)
lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(ROOT_ARGS) $(LAB_ARGS) notebooks/

bench: $(STAMP)
	$(PY) benchmarks/bench_models.py

clean:
	rm -rf $(VENV) runs figures/quick .pytest_cache
