from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/aggregate.smk"
include: "rules/report.smk"


localrules:
    all,
    synthesize,
    fetch_weights,
    download_horse10,
    prepare,
    aggregate,
    figures,
    partial,


rule all:
    input:
        study_outputs(),


rule partial:
    input:
        study_outputs("partial_summary"),
