import os

from oodpose.logs import rule_log
from oodpose.settings import TrainConfig
from oodpose.train import train

with rule_log(snakemake.log[0], append=True):  # a resumed job keeps its history
    os.environ["HF_HUB_OFFLINE"] = "1"  # weights come from the job's input file; compute nodes may be offline
    train(
        TrainConfig(
            **snakemake.params.settings,
            cache=snakemake.input.cache,
            out=snakemake.params.out,
            threads=snakemake.threads,
            cuda_graphs=snakemake.config["training"]["cuda_graphs"],  # how it runs: not a rerun trigger
            weights=snakemake.input.weights[0] if snakemake.input.weights else None,
            backbones_table=snakemake.config["backbones_table"],  # its path: not a rerun trigger, its rows are
        )
    )
