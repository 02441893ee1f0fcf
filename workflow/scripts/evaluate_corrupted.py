from oodpose.evaluate import evaluate_corrupted
from oodpose.logs import rule_log

with rule_log(snakemake.log[0]):
    evaluate_corrupted(
        snakemake.params.train_dir,
        snakemake.input.cache,
        snakemake.input.corrupted,
        snakemake.output[0],
        threads=snakemake.threads,
        test_scale=snakemake.params.test_scale,
        batchnorm=snakemake.params.batchnorm,
    )
