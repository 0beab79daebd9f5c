# `make demo` and `make test` work on a fresh machine: each creates .venv and installs what it needs.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
INDEX ?= data/index

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export STREAMLIT_BROWSER_GATHER_USAGE_STATS := false
export PREFECT_HOME := $(CURDIR)/.prefect

.PHONY: install demo test test-slow bench bench-bm25 bench-ann bench-embed bench-query clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (the local torch wheel is cp311)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip setuptools wheel
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/sousuo build --corpus data/sample --index $(INDEX)
	$(VENV)/bin/sousuo search "inverted index BM25" --index $(INDEX) -k 3
	$(VENV)/bin/sousuo search "向量检索" --index $(INDEX) -k 3

test: install
	$(PY) -m pytest -q -m "not slow"

test-slow: install
	$(PY) -m pytest -q -m slow

bench: bench-bm25 bench-embed bench-ann bench-query

bench-bm25: install
	$(PY) bench/bm25.py

bench-ann: install
	$(PY) bench/ann.py

bench-embed: install
	$(PY) bench/embed.py

bench-query: install
	$(PY) bench/query.py

clean:
	rm -rf data/cache data/index .prefect tests/artifacts bench/out
