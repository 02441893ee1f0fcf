from oodpose.evaluate import evaluate
from oodpose.logs import rule_log

with rule_log(snakemake.log[0]):
    evaluate(
        snakemake.params.train_dir,
        snakemake.input.cache,
        snakemake.output.predictions,
        snakemake.output.metrics,
        threads=snakemake.threads,
        test_scale=snakemake.params.test_scale,
        batchnorm=snakemake.params.batchnorm,
    )
