from oodpose.data.individuals import write_individuals
from oodpose.logs import rule_log

with rule_log(snakemake.log[0]):
    write_individuals(snakemake.input.cache, snakemake.output.table, snakemake.output.figure2)
