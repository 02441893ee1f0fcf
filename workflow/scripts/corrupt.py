from oodpose.corruptions import corrupt_cache
from oodpose.logs import rule_log

with rule_log(snakemake.log[0]):
    corrupt_cache(
        snakemake.input.cache,
        snakemake.output[0],
        snakemake.wildcards.corruption,
        int(snakemake.wildcards.severity),
        workers=snakemake.threads,
    )
