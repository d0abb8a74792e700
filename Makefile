# Two commands do all the set-up on a fresh machine:
#   make install   creates .venv and installs the package (editable) with runtime, test and
#                  cross-check dependencies, all pinned in setup.cfg
#   make test      runs the whole test suite with .venv
PYTHON ?= python3
VENV := .venv
PIP := $(VENV)/bin/python -m pip

.PHONY: install test quick clean-venv

install:
	$(PYTHON) -m venv $(VENV)
	# Chainer 7.8.1 is an sdist whose setup.py imports pkg_resources (removed in setuptools 82).
	# Build it against setuptools 73 installed in the venv, without pip's build isolation; this
	# works the same on pip 23 and pip 26. Everything else installs from wheels.
	$(PIP) install --disable-pip-version-check "setuptools==73.0.1" "wheel==0.45.1"
	$(PIP) install --disable-pip-version-check --no-build-isolation "chainer==7.8.1"
	$(PIP) install --disable-pip-version-check -e ".[test,crosscheck]"
	$(VENV)/bin/python -c "import chainer_va, tfp_flows, rl, numpy; print('installed; numpy', numpy.__version__)"

test:
	$(VENV)/bin/python -m pytest -n 2 --dist loadgroup

quick:
	bash reproduce/table1.sh --quick

clean-venv:
	rm -rf $(VENV)
