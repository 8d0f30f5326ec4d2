# Two commands set everything up: `make run` and `make test`. Both build the virtual environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Start central on the embedded SQLite default and a demo node on a simulated board, with demo
## data; print URLs and credentials. Ctrl-C stops both.
run: $(STAMP)
	@mkdir -p var
	@$(BIN)/locker-node demo --folder var/node --port 8080 > var/node.log 2>&1 & node=$$!; \
	trap 'kill $$node 2>/dev/null; wait $$node 2>/dev/null' EXIT INT TERM; \
	for i in $$(seq 50); do grep -q "kiosk listening" var/node.log 2>/dev/null && break; sleep 0.2; done; \
	echo ""; echo "Locker node (standalone demo bank DEMO-NODE, log in var/node.log)"; \
	grep -E "^(kiosk|carrier|courier code|reservation)" var/node.log | sed 's/^/  /'; \
	$(BIN)/locker-central demo

## Lint, type-check and run the whole test suite.
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/allocation.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
