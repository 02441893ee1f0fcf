import sys

from oodpose.data.synthetic import generate

sys.stderr = sys.stdout = open(snakemake.log[0], "w")
s = snakemake.params.settings
generate(
    snakemake.output[0],
    n_individuals=s.get("individuals", 30),
    total_frames=s.get("frames", 8100),
    n_train_individuals=s.get("train_individuals", 10),
    seed=s.get("seed", 0),
    workers=snakemake.threads,
)
