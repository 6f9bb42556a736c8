PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEVSTAMP:= $(VENV)/.installed-dev

VIDGATE ?= $(BIN)/vidgate

.PHONY: run dev-key test install dev bench lint clean

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
	@$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) dev-key
	@echo "API key:    $$(head -n1 var/dev-key)"
	@echo "Playground: http://127.0.0.1:8000/"
	@echo "Try:        curl -s http://127.0.0.1:8000/v1/videos -H \"Authorization: Bearer $$(head -n1 var/dev-key)\" -F prompt='a red fox'"
	exec $(VIDGATE) serve

## make dev-key: keep a working key in var/dev-key (readable by you only); the key is passed to
## vidgate through a file, never as an argument, so `ps` never shows it
dev-key:
	@mkdir -p var
	@umask 077; $(VIDGATE) keys check --key-file var/dev-key >/dev/null 2>&1 \
	  || { $(VIDGATE) keys create --name dev > var/dev-key.new && mv var/dev-key.new var/dev-key \
	       || { rm -f var/dev-key.new; exit 1; }; }
	@chmod 600 var/dev-key

## make test: install the dev extras and run the whole suite
test: $(DEVSTAMP)
	$(BIN)/python -m pytest -q -n 3 -m 'not serial'
	$(BIN)/python -m pytest -q -m serial

lint: $(DEVSTAMP)
	$(BIN)/ruff check vidgate tests bench
	$(BIN)/mypy vidgate

bench: $(DEVSTAMP)
	$(BIN)/python bench/status_read.py

clean:
	rm -rf $(VENV) var .pytest_cache
