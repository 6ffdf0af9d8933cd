# A fresh machine needs only Python 3.11 and make: every target installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := $(wildcard plugins/*)
STAMP := $(VENV)/.installed

.PHONY: install demo test bench lint clean

install: $(STAMP)

# Reinstall only when the venv is missing or a project file changed.
$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' $(foreach p,$(PLUGINS),-e $(p))
	touch $(STAMP)

demo: install
	$(BIN)/logd demo

# pytest exits 5 when it ran no test: a broken run, not a green one.
test: install
	@$(BIN)/python -m pytest -q -p no:cacheprovider; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: no tests ran" >&2; exit 1; fi; exit $$rc

bench: install
	$(BIN)/python bench/run.py

lint: install
	$(BIN)/ruff check src plugins tests
	$(BIN)/ruff format --check src plugins tests
	$(BIN)/mypy src

clean:
	rm -rf $(VENV) logd-demo .pytest_cache .mypy_cache .ruff_cache
