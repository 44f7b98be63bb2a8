# vpnkit developer entry points.  `make test` and `make run` work on a fresh
# Debian machine: they create .venv, install the package (non-editable, as a
# user would) and, as root, the Debian packages the end-to-end tests drive
# and those the C accelerator's build needs.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEBS := iproute2 busybox isc-dhcp-client iputils-ping procps curl iperf3 slirp4netns util-linux dnsutils tcpdump qemu-system-x86 tinyproxy openssl openssh-server openssh-client nmap
# (openssh-server: the vpnkit-gvproxy tests start their own sshd in a guest
# namespace; on a machine with systemd its package also enables the system's.)
# Commands that prove the Debian packages above are present.
DEB_COMMANDS := ip busybox ping pgrep curl iperf3 slirp4netns prlimit tc dig sysctl tcpdump qemu-system-x86_64 tinyproxy openssl sshd ssh ssh-keygen nmap
# Prints the Debian packages building the C accelerator still needs, for the
# Python the venv runs: its compiler, libc's headers and its own headers
# (pyenv and python.org builds ship theirs; Debian's python3.X needs
# python3.X-dev).
BUILD_NEEDS := import os, shutil, sys, sysconfig; \
	cc = (sysconfig.get_config_var("CC") or "cc").split()[0]; \
	headers = os.path.join(sysconfig.get_paths()["include"], "Python.h"); \
	need = [] if shutil.which(cc) else ["gcc"]; \
	need += [] if os.path.exists("/usr/include/stdlib.h") else ["libc6-dev"]; \
	need += [] if os.path.exists(headers) else ["python%d.%d-dev" % sys.version_info[:2]]; \
	print(*need)

.PHONY: test unit e2e run install speedups debs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Dependencies are installed once per change of setup.cfg; the package itself
# is reinstalled on every run so the tests exercise exactly this checkout.
$(VENV)/.deps: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q '.[test]'
	touch $@

install: $(VENV)/.deps speedups
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --force-reinstall .

# The optional C accelerator (vpnkit/_speedups.c) is also built in place, so
# the unit tests (which import this checkout) exercise it and check it
# against pure Python.  What the build needs is installed as root; a build
# that fails stops here with the compiler's errors.  VPNKIT_NO_SPEEDUPS=1
# leaves the accelerator out (and its tests skip).
speedups: | $(BIN)/python
ifneq ($(VPNKIT_NO_SPEEDUPS),1)
	@need="$$($(BIN)/python -c '$(BUILD_NEEDS)')" || exit 1; \
	if [ -z "$$need" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "building vpnkit/_speedups.c needs the Debian packages $$need:" \
	    "install them, or set VPNKIT_NO_SPEEDUPS=1 to leave the accelerator out" >&2; \
	  exit 1; fi; \
	echo "installing $$need to build vpnkit/_speedups.c"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $$need >/dev/null
	rm -f vpnkit/_speedups*.so
	$(BIN)/python setup.py -q build_ext --inplace
	@$(BIN)/python -c 'import vpnkit._speedups' || { \
	  echo "vpnkit/_speedups.c did not build (see above); set VPNKIT_NO_SPEEDUPS=1" \
	    "to leave the accelerator out" >&2; exit 1; }
endif

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
	rm -rf $(VENV) build *.egg-info vpnkit/_speedups*.so
