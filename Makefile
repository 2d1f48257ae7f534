# make demo: the whole study on the generated toy world (CPU, minutes). make test: the test suite.
# Both create .venv and install the exact pins first.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CORES  ?= 2
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export NO_ALBUMENTATIONS_UPDATE := 1
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions

.PHONY: setup demo toy-models readme-table test test-demo test-reruns test-distributed test-slurm lint dry-run clean-demo

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	DS_BUILD_OPS=0 $(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	snakemake --profile profiles/demo --cores $(CORES)
	@echo; cat results/demo/tables/table1_main.md
	@echo; cat results/demo/tables/vqav2_question_types.md
	@echo; echo "Results under results/demo/. In a new shell, run 'source .venv/bin/activate' before the README's snakemake commands."

# Retrain the toy base models the demo ships in toy_models/ (LLM and CLIP, on the demo world's corpora; ~15 min)
# and copy them in place of the shipped ones.
toy-models: $(STAMP)
	snakemake results/demo/toy_models/llm_metrics.json results/demo/toy_models/vision_metrics.json \
		--profile profiles/demo --cores $(CORES) --configfile config/demo.yaml config/demo_base_models.yaml
	python -m workflow_scripts.toyworld.ship resources/toy/models toy_models results/demo/toy_models

# Copy the demo's Table 1 and VQAv2-per-type table (from results/demo/, after `make demo`) into README.md.
readme-table: $(STAMP)
	python -m workflow_scripts.report.readme README.md results/demo/tables/table1_main.md \
		results/demo/tables/vqav2_question_types.md

test: $(STAMP)
	pytest -q -m "not reruns and not long and not slurm and not distributed and not demo"

# After `make demo`: the thresholds that show the miniature reads the picture (tests/test_demo_results.py).
test-demo: $(STAMP)
	pytest -q -m demo

# Reruns of a finished smoke workflow after one change each (forced cell, changed keys, deleted outputs), and
# the longer workflow variants (successive-halving LR selection).
test-reruns: $(STAMP)
	pytest -q -m "reruns or long"

# Every training path with 2 workers under torchrun (gloo on CPU) against 1 worker, kills and resumes included,
# and the smoke workflow with 2 stand-in GPUs per training job.
test-distributed: $(STAMP)
	pytest -q -m distributed

# The smoke workflow through profiles/slurm on a one-node SLURM cluster that tests/slurm/cluster.sh installs
# (Debian packages, as root) and starts on this machine; the cluster is stopped again however the tests end.
test-slurm: $(STAMP)
	tests/slurm/cluster.sh start
	pytest -q -s -m slurm tests/test_slurm.py; status=$$?; tests/slurm/cluster.sh stop; exit $$status

lint: $(STAMP)
	ruff check .
	snakemake --lint --configfile config/demo.yaml

dry-run: $(STAMP)
	snakemake -n --quiet rules

clean-demo:
	rm -rf resources/toy results/demo
