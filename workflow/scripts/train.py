import os

from oodpose.fused import train_with_group
from oodpose.logs import rule_log
from oodpose.settings import TrainConfig
from oodpose.study import Cell, SearchCell
from oodpose.train import train

# Snakemake removes a job's log before each attempt; a resumed cell's history is its train_log.csv
with rule_log(snakemake.log[0]):
    os.environ["HF_HUB_OFFLINE"] = "1"  # weights come from the job's input file; compute nodes may be offline
    settings = TrainConfig(
        **snakemake.params.settings,
        cache=snakemake.input.cache,
        out=snakemake.params.out,
        threads=snakemake.threads,
        cuda_graphs=snakemake.config["training"]["cuda_graphs"],  # how it runs: not a rerun trigger
        weights=snakemake.input.weights[0] if snakemake.input.weights else None,
        backbones_table=snakemake.config["backbones_table"],  # its path: not a rerun trigger, its rows are
    )
    if snakemake.config["training"]["fuse"]:  # which cells the job trains: not a rerun trigger either
        cell = (SearchCell if hasattr(snakemake.wildcards, "schedule") else Cell).of(snakemake.wildcards)
        train_with_group(settings, cell, snakemake.config)
    else:
        train(settings)
