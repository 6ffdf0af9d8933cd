# A fresh machine needs only Python 3.11 and make: every target installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := $(wildcard plugins/*)
STAMP := $(VENV)/.installed

.PHONY: install demo test soak bench lint clean

install: $(STAMP)

# Reinstall only when the venv is missing or a project file changed.
$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' $(foreach p,$(PLUGINS),-e $(p))
	touch $(STAMP)

demo: install
	$(BIN)/logd demo

# pytest exits 5 when it ran no test: a broken run, not a green one. Soak runs are `make soak`.
# Two workers (pytest-xdist): most tests wait on sockets and subprocesses, so two cores
# finish the suite in about 60 % of the time one does.
test: install
	@$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 -m "not soak"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: no tests ran" >&2; exit 1; fi; exit $$rc

# The reliability suite's long variants (tests/reliability, marked soak): minutes, not seconds.
soak: install
	@$(BIN)/python -m pytest -q -p no:cacheprovider -m soak tests/reliability; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: no tests ran" >&2; exit 1; fi; exit $$rc

bench: install bench/.venv-dlt/.installed
	$(BIN)/python bench/run.py $(if $(QUICK),--quick)

# Row 1's peer, dlt, in a venv of its own under bench/: never a runtime dependency of logd.
bench/.venv-dlt/.installed: bench/dlt_peer/requirements.txt
	test -x bench/.venv-dlt/bin/python || $(PYTHON) -m venv bench/.venv-dlt
	bench/.venv-dlt/bin/python -m pip install --quiet -r bench/dlt_peer/requirements.txt
	touch $@

lint: install
	$(BIN)/ruff check src plugins tests bench
	$(BIN)/ruff format --check src plugins tests bench
	$(BIN)/mypy src $(foreach p,$(PLUGINS),$(p)/src)

clean:
	rm -rf $(VENV) logd-demo .pytest_cache .mypy_cache .ruff_cache bench/.venv-dlt

# Install logd as a systemd service (as root): a venv under /opt/logd with logd and every
# plugin, `logd` on PATH (a symlink in /usr/local/bin), the unit, /etc/logd with the example
# config (never overwritten) and a root-only credentials directory. Step by step, and what
# to do next: docs/deploy.md.
SERVICE_PREFIX ?= /opt/logd
SERVICE_ETC ?= /etc/logd
SERVICE_UNITDIR ?= /etc/systemd/system
SERVICE_BINDIR ?= /usr/local/bin
.PHONY: install-service
install-service:
	@test "$$(id -u)" -eq 0 || { echo "error: run as root: sudo make install-service" >&2; exit 1; }
	test -x $(SERVICE_PREFIX)/venv/bin/python || $(PYTHON) -m venv $(SERVICE_PREFIX)/venv
	$(SERVICE_PREFIX)/venv/bin/python -m pip install --quiet --upgrade pip
	$(SERVICE_PREFIX)/venv/bin/python -m pip install --quiet . $(foreach p,$(PLUGINS),./$(p))
	install -d -m 0755 $(SERVICE_BINDIR)
	ln -sfn $(SERVICE_PREFIX)/venv/bin/logd $(SERVICE_BINDIR)/logd
	install -d -m 0755 $(SERVICE_ETC)
	install -d -m 0700 $(SERVICE_ETC)/credentials
	test -e $(SERVICE_ETC)/config.toml || install -m 0644 config.example.toml $(SERVICE_ETC)/config.toml
	sed 's|/opt/logd|$(SERVICE_PREFIX)|g; s|/etc/logd/|$(SERVICE_ETC)/|g' systemd/logd.service \
		> $(SERVICE_UNITDIR)/logd.service
	chmod 0644 $(SERVICE_UNITDIR)/logd.service
	if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "installed; logd is on PATH as $(SERVICE_BINDIR)/logd. Next: edit $(SERVICE_ETC)/config.toml,"
	@echo "add credentials to $(SERVICE_ETC)/credentials, check with"
	@echo "  logd check-config -c $(SERVICE_ETC)/config.toml --credentials-dir $(SERVICE_ETC)/credentials"
	@echo "then: systemctl enable --now logd    (see docs/deploy.md)"
