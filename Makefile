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
	$(BIN)/winnow dashboard out/demo --out out/demo/report.html

# Headless Chromium for tests/test_dashboard.py: Debian's package, driven by Playwright for Python
# through executable_path (no browser download).
/usr/bin/chromium:
	apt-get install -y chromium || (apt-get update && apt-get install -y chromium)

test: install lmplz /usr/bin/chromium
	$(BIN)/python -m pytest -q -ra tests  # -ra: every skip and its reason; CI=true fails unstated skips (tests/conftest.py)

# Every bench/*.py in turn (output kept in out/bench/NAME.log), then one table of their RESULT lines.
bench: install lmplz
	@set -o pipefail; mkdir -p out/bench; rm -f out/bench/results.txt; \
	for b in bench/*.py; do n=$$(basename $$b .py); echo "== $$b"; $(BIN)/python $$b | tee out/bench/$$n.log || exit 1; \
	  grep '^RESULT ' out/bench/$$n.log | tail -1 | sed "s/^RESULT/$$n/" >> out/bench/results.txt; done; \
	echo; echo "== RESULT of every benchmark (out/bench/results.txt)"; printf '%-10s %-28s %s\n' bench name value; \
	awk '{for (i = 2; i <= NF; i++) {split($$i, kv, "="); printf "%-10s %-28s %s\n", $$1, kv[1], kv[2]}}' out/bench/results.txt

clean:
	rm -rf out build *.egg-info
