# winnow: two commands on a fresh machine (Python 3.10+, make, apt):
#   make demo   build .venv, install winnow, build lmplz, run configs/demo.yaml on real crawl data
#   make test   the same set-up, then the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED_DATA ?= ../shared/data
DEMO_CONFIG := $(if $(wildcard $(SHARED_DATA)),configs/demo.yaml,configs/demo-remote.yaml)

.PHONY: demo test bench install lmplz models clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

$(BIN)/lmplz: | $(VENV)/.installed
	bash deploy/build_kenlm.sh $(VENV)

lmplz: $(BIN)/lmplz

# Perplexity models for the demo's filter stage, trained from the Wikipedia reference text in
# ../shared/data (each `lm train` is a no-op when its inputs are unchanged; ~15 s from scratch).
LM := models/lm
models: install lmplz
	$(BIN)/winnow lm train --lang en --text $(SHARED_DATA)/ref_text/wikitext2/valid.txt \
	    $(SHARED_DATA)/ref_text/wikitext2/test.txt --out $(LM)/en
	$(BIN)/winnow lm train --lang zh --text $(SHARED_DATA)/ref_text/cmrc2018/cmrc2018_contexts_zh.txt \
	    $(SHARED_DATA)/ref_text/drcd/drcd_contexts_zh_hant.txt --out $(LM)/zh
	$(BIN)/winnow lm cutoffs --model en=$(LM)/en --model zh=$(LM)/zh \
	    --in $(SHARED_DATA)/dolma/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz --out $(LM)/cutoffs.csv

demo: install lmplz $(if $(wildcard $(SHARED_DATA)),models)
	$(BIN)/winnow run $(DEMO_CONFIG)

test: install lmplz
	$(BIN)/python -m pytest -q tests

bench: install lmplz
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf out build *.egg-info
