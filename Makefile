# make demo: the whole study on the generated toy world (CPU, minutes). make test: the test suite.
# Both create .venv and install the exact pins first.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CORES  ?= 2
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export NO_ALBUMENTATIONS_UPDATE := 1
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions

.PHONY: setup demo demo-grounded readme-table test test-reruns test-distributed test-slurm lint dry-run clean-demo

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

# The demo at the budget where it follows the paper's stage-1 recipe and grounds short answers (~30 min).
demo-grounded: $(STAMP)
	snakemake --profile profiles/demo --cores $(CORES) --configfile config/demo.yaml config/demo_grounded.yaml
	@echo; cat results/demo_grounded/tables/table1_main.md
	@echo; cat results/demo_grounded/tables/vqav2_question_types.md

# Copy the demo's Table 1 and VQAv2-per-type table (from results/demo/, after `make demo`) into README.md; the
# grounded miniature's too where `make demo-grounded` has run.
readme-table: $(STAMP)
	python -m workflow_scripts.report.readme README.md results/demo/tables/table1_main.md \
		results/demo/tables/vqav2_question_types.md
	if [ -f results/demo_grounded/tables/table1_main.md ]; then \
		python -m workflow_scripts.report.readme --run demo_grounded README.md \
			results/demo_grounded/tables/table1_main.md results/demo_grounded/tables/vqav2_question_types.md; fi

test: $(STAMP)
	pytest -q -m "not reruns and not long and not slurm and not distributed"

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
	rm -rf resources/toy results/demo resources/toy_grounded results/demo_grounded
