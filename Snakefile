from snakemake.utils import min_version

from oodpose.settings import read_config_file

min_version("9.0")


# The paper's study, unless the command line names a config: then that config alone, with the schema's
# defaults (no key of config/config.yaml leaks into a laptop study).
if not workflow.overwrite_configfiles:
    # a YAML mistake named by line and column, before Snakemake's own parse says only that one exists
    read_config_file("config/config.yaml")

    configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/search.smk"
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
    individuals,
    partial,
    search,
    select_schedules,
    summarise_search,


rule all:
    input:
        study_outputs(),
        search_outputs(),


rule search:
    input:
        search_outputs(),


rule partial:
    input:
        study_outputs("partial_summary"),
