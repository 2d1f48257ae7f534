# The LayerNorm-tuning study (Zhao et al., ICLR 2024) as one workflow.
#   snakemake --cores all --resources gpu=4            the paper's experiment (config.yaml)
#   snakemake --configfile config/demo.yaml --cores 2  the same DAG on the generated toy world
from snakemake.utils import min_version

min_version("9.0")

# A --configfile replaces config.yaml rather than being merged into it (merging would mix the paper's
# models into the demo's).
if not config:

    configfile: "config.yaml"


report: "rules/captions/workflow.rst"


include: "rules/common.smk"
include: "rules/inputs.smk"
include: "rules/fetch.smk"
include: "rules/toy.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/ablations.smk"


rule all:
    input:
        all_targets(),
    default_target: True
