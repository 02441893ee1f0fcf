from pathlib import Path

from oodpose.data.cache import Cache
from oodpose.logs import rule_log
from oodpose.search import select_schedules

with rule_log(snakemake.log[0]):
    select_schedules(
        snakemake.input.metrics,
        snakemake.params.cells,
        snakemake.params.table,
        Cache(snakemake.input.cache),
        snakemake.params.held_out,
        Path(snakemake.output.schedules).parent,
    )
