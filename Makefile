# Two commands for a newcomer:  make run  (portal with demo data)  and  make test.
# Both create .venv and install the project into it on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast install browser demo clean messages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/portal demo
	$(BIN)/portal serve

# Browser tests need Debian's chromium; as root we install it, otherwise we say how.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = "0" ]; then \
		echo "Installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "The browser tests need Chromium: run 'sudo apt-get install chromium', then 'make test' again." >&2; \
		exit 1; \
	fi

test: $(STAMP) browser
	$(BIN)/python -m pytest

# For quick loops while coding: everything except the browser tests (no Chromium
# needed). `make test` stays the whole suite, and CI runs that.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not browser"

clean:
	rm -rf $(VENV) var .pytest_cache

# After changing text in templates or Python: refresh the catalog template and merge it
# into the Spanish catalog (then translate the new entries in messages.po).
messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k _ --no-location --sort-output --project=portal -o src/portal/i18n/messages.pot .
	$(BIN)/pybabel update -i src/portal/i18n/messages.pot -d src/portal/i18n/locale --no-fuzzy-matching --ignore-obsolete
