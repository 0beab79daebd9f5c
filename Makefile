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

.PHONY: install browser demo test test-slow lint-imports bench bench-bm25 bench-ann bench-embed bench-query bench-incremental bench-cluster bench-api bench-suggest bench-scale-zh clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (the local torch wheel is cp311)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip setuptools wheel
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Debian's Chromium for the end-to-end browser test (never `playwright install`: it downloads and fails here),
# and a CJK font so Chinese renders in its screenshots.
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium fonts-noto-cjk)

demo: install
	$(VENV)/bin/sousuo build --corpus data/sample --index $(INDEX) --judgments data/sample
	$(VENV)/bin/sousuo search "向量检索" --index $(INDEX) --mode ltr -k 3
	@echo "HTTP API (native /v1 and an Elasticsearch subset, docs/api.md): $(VENV)/bin/sousuo api --index $(INDEX) --port 9200"
	$(VENV)/bin/sousuo ui --index $(INDEX)

test: install browser lint-imports
	$(PY) -m pytest -q -m "not slow"

# The layer order of pyproject.toml's import contracts: data flows one way, and so do imports.
lint-imports: install
	$(VENV)/bin/lint-imports

test-slow: install
	$(PY) -m pytest -q -m slow

bench: bench-bm25 bench-embed bench-ann bench-query bench-incremental bench-api bench-suggest bench-scale-zh

bench-bm25: install
	$(PY) bench/bm25.py

bench-ann: install
	$(PY) bench/ann.py

bench-embed: install
	$(PY) bench/embed.py

# A synthesized 100,000-document Chinese corpus built with dense.encoder = auto on an empty cache (about 15 minutes).
bench-scale-zh: install
	$(PY) bench/scale_zh.py

bench-query: install
	$(PY) bench/query.py

bench-cluster: install
	$(PY) bench/cluster.py

bench-incremental: install
	$(PY) bench/incremental.py

# `sousuo api` under load on 127.0.0.1 (about 10 minutes on 2 cores); writes docs/benchmarks.md's api section.
bench-api: install
	$(PY) bench/api.py

bench-suggest: install
	$(PY) bench/suggest.py --sample 300

clean:
	rm -rf data/cache data/index .prefect tests/artifacts bench/out
