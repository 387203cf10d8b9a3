# Two commands matter: `make demo` and `make test`. Each creates .venv when missing and installs
# the project with every extra and the dev tools first, so both work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test lint generate check-generated bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/heurmetrics demo

test: install
	$(PY) -m pytest

lint: install
	$(BIN)/ruff check heurmetrics tests benchmarks migrations
	$(BIN)/mypy
	$(BIN)/lint-imports

# Regenerate the committed Grafana dashboards and Prometheus rules from heurmetrics.monitoring.
generate: install
	$(BIN)/heurmetrics dashboards build
	$(BIN)/heurmetrics alerts build

# Fails when the committed dashboards/ or alerts/ differ from what the code generates.
check-generated: generate
	git diff --exit-code -- dashboards alerts

bench: install
	$(PY) benchmarks/bench_hot_path.py
	$(PY) benchmarks/bench_persistence.py
	$(PY) benchmarks/bench_performance.py
	$(PY) benchmarks/bench_walkforward.py
	$(PY) benchmarks/bench_load.py
	$(PY) benchmarks/bench_stats.py
	$(PY) benchmarks/bench_replicas.py
	$(PY) benchmarks/bench_scrape.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist build heurmetrics-demo.db*
