# Two commands do all the set-up on a fresh machine:
#   make install   creates .venv and installs the package (editable) with runtime, test and
#                  cross-check dependencies, all pinned in setup.cfg
#   make test      runs the whole test suite with .venv
PYTHON ?= python3
VENV := .venv
PIP := $(VENV)/bin/python -m pip

.PHONY: install test quick clean-venv compat-matrix

install:
	$(PYTHON) -m venv $(VENV)
	# Chainer 7.8.1 is an sdist whose setup.py imports pkg_resources (removed in setuptools 82).
	# Build it against setuptools 73 installed in the venv, without pip's build isolation; this
	# works the same on pip 23 and pip 26. Everything else installs from wheels.
	$(PIP) install --disable-pip-version-check "setuptools==73.0.1" "wheel==0.45.1"
	$(PIP) install --disable-pip-version-check --no-build-isolation "chainer==7.8.1"
	$(PIP) install --disable-pip-version-check -e ".[test,crosscheck]"
	# a plain `import chainer` (before chainer_va) then works too: a one-line .pth runs chainer_import_hook
	$(VENV)/bin/python -m chainer_import_hook install
	$(VENV)/bin/python -c "import chainer, chainer_va, tfp_flows, rl, numpy; print('installed; numpy', numpy.__version__)"

test:
	$(VENV)/bin/python -m pytest -n 2 --dist loadgroup

quick:
	bash reproduce/table1.sh --quick

clean-venv:
	rm -rf $(VENV)

# Not part of CI: re-check the Chainer compat layer on the other supported stacks
# (numpy 1.26 on Python 3.11; numpy 2.4 on Python 3.12 with setuptools >= 82, no pkg_resources).
# Needs python3.12 on PATH (or PY312=/path/to/python3.12).
PY312 ?= python3.12
compat-matrix:
	rm -rf build/venv-np126 build/venv-py312
	$(PYTHON) -m venv build/venv-np126
	build/venv-np126/bin/python -m pip install -q setuptools==73.0.1 wheel numpy==1.26.4 pytest==9.2.0 packaging
	build/venv-np126/bin/python -m pip install -q --no-build-isolation chainer==7.8.1
	PYTHONPATH=$(CURDIR) build/venv-np126/bin/python -m pytest -p no:cacheprovider -q tests/test_compat.py tests/test_schedules.py
	$(PY312) -m venv build/venv-py312
	build/venv-py312/bin/python -m pip install -q setuptools==73.0.1 wheel numpy==2.4.6 pytest==9.2.0 packaging
	build/venv-py312/bin/python -m pip install -q --no-build-isolation chainer==7.8.1
	build/venv-py312/bin/python -m pip install -q "setuptools>=82"
	PYTHONPATH=$(CURDIR) build/venv-py312/bin/python -m pytest -p no:cacheprovider -q tests/test_compat.py tests/test_schedules.py
