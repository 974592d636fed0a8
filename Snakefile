# s2ecosg: Sentinel-2 → ResNet-50 U-Net land cover → ECOCLIMAP-SG cover file for SURFEX (HARMONIE PGD).
# Run: snakemake --profile profiles/local   (or profiles/slurm on a cluster). See README.md.
from snakemake.utils import min_version

min_version("9.0")


# The config is the files given with --configfile (layered in order, then --config), else config.yaml: never
# config.yaml under a user's file, so what runs is what `s2ecosg check-config <the same files>` prints.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/stage.smk"
include: "rules/labels.smk"
include: "rules/shards.smk"
include: "rules/train.smk"
include: "rules/predict.smk"
include: "rules/cover.smk"
include: "rules/evaluate.smk"


rule all:
    input:
        final_outputs,
    default_target: True
