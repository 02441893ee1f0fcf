from pathlib import Path

from oodpose.aggregate import aggregate
from oodpose.logs import rule_log

with rule_log(snakemake.log[0]):
    aggregate(
        snakemake.input.metrics,
        snakemake.wildcards.dataset,
        snakemake.params.backbones,
        snakemake.params.schedules,
        snakemake.params.cells,
        snakemake.params.horse10,
        Path(snakemake.output.metrics).parent,
        snakemake.input.corrupted,
    )
