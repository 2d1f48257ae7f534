# make demo: the whole study on the generated toy world (CPU, minutes). make test: the test suite.
# Both create .venv and install the exact pins first.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CORES  ?= 2
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export NO_ALBUMENTATIONS_UPDATE := 1
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions

.PHONY: setup demo test lint dry-run clean-demo

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	DS_BUILD_OPS=0 $(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	snakemake --configfile config/demo.yaml --cores $(CORES)

test: $(STAMP)
	pytest -q

lint: $(STAMP)
	ruff check .
	snakemake --lint --configfile config/demo.yaml

dry-run: $(STAMP)
	snakemake -n --quiet rules

clean-demo:
	rm -rf resources/toy results/toy_models results/plan logs benchmarks/rules
