# winnow: two commands on a fresh machine (Python 3.10+, make, apt):
#   make demo   build .venv, install winnow, build lmplz, run configs/demo.yaml on real crawl data
#   make test   the same set-up, then the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED_DATA ?= ../shared/data
DEMO_CONFIG := $(if $(wildcard $(SHARED_DATA)),configs/demo.yaml,configs/demo-remote.yaml)

.PHONY: demo test bench install lmplz clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

$(BIN)/lmplz: | $(VENV)/.installed
	bash deploy/build_kenlm.sh $(VENV)

lmplz: $(BIN)/lmplz

demo: install lmplz
	$(BIN)/winnow run $(DEMO_CONFIG)

test: install lmplz
	$(BIN)/python -m pytest -q tests

bench: install lmplz
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf out build *.egg-info
