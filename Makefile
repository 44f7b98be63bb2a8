# vpnkit developer entry points.  `make test` and `make run` work on a fresh
# Debian machine: they create .venv, install the package (non-editable, as a
# user would) and, as root, the Debian packages the end-to-end tests drive.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEBS := iproute2 busybox iputils-ping procps curl iperf3 slirp4netns util-linux dnsutils qemu-system-x86
# Commands that prove the Debian packages above are present.
DEB_COMMANDS := ip busybox ping pgrep curl iperf3 slirp4netns prlimit tc dig sysctl qemu-system-x86_64

.PHONY: test unit e2e run install debs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Dependencies are installed once per change of setup.cfg; the package itself
# is reinstalled on every run so the tests exercise exactly this checkout.
$(VENV)/.deps: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q '.[test]'
	touch $@

# The optional C accelerator is also built in place, so the unit tests (which
# import this checkout) exercise it and check it against pure Python.
install: $(VENV)/.deps
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --force-reinstall .
	$(BIN)/python setup.py -q build_ext --inplace 2>/dev/null || true

debs:
	@missing=""; for c in $(DEB_COMMANDS); do command -v $$c >/dev/null || missing=yes; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "not root: skipping Debian packages ($(DEBS)); end-to-end tests will skip"; exit 0; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $(DEBS) >/dev/null

test: debs install
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

unit: install
	$(BIN)/python -m pytest -q -p no:cacheprovider tests --ignore=tests/e2e

e2e: debs install
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/e2e

run: install
	$(BIN)/twistd -n --pidfile= vpnkit --ethernet /tmp/ethernet

clean:
	rm -rf $(VENV) build *.egg-info
