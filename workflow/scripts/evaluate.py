import sys

from oodpose.evaluate import evaluate

sys.stderr = sys.stdout = open(snakemake.log[0], "w")
evaluate(
    snakemake.params.train_dir,
    snakemake.input.cache,
    snakemake.output.predictions,
    snakemake.output.metrics,
    threads=snakemake.threads,
)
