PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEVSTAMP:= $(VENV)/.installed-dev

.PHONY: run test install dev bench lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(DEVSTAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(STAMP)

install: $(STAMP)
dev: $(DEVSTAMP)

## make run: create the venv, install vidgate, print a key and serve on 127.0.0.1:8000
run: $(STAMP)
	@mkdir -p var
	@$(BIN)/vidgate keys check "$$(cat var/dev-key 2>/dev/null)" >/dev/null 2>&1 \
	  || $(BIN)/vidgate keys create --name dev > var/dev-key
	@echo "API key:    $$(head -n1 var/dev-key)"
	@echo "Playground: http://127.0.0.1:8000/"
	@echo "Try:        curl -s http://127.0.0.1:8000/v1/videos -H \"Authorization: Bearer $$(head -n1 var/dev-key)\" -F prompt='a red fox'"
	exec $(BIN)/vidgate serve

## make test: install the dev extras and run the whole suite
test: $(DEVSTAMP)
	$(BIN)/python -m pytest -q

lint: $(DEVSTAMP)
	$(BIN)/ruff check vidgate tests bench
	$(BIN)/mypy vidgate

bench: $(DEVSTAMP)
	$(BIN)/python bench/status_read.py

clean:
	rm -rf $(VENV) var .pytest_cache
