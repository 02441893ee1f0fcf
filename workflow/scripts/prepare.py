from oodpose.data.cache import prepare_cache
from oodpose.logs import rule_log
from oodpose.settings import DatasetSettings

with rule_log(snakemake.log[0]):
    prepare_cache(snakemake.input.dataset, snakemake.output[0], DatasetSettings(**snakemake.params.settings))
