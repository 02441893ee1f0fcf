import sys

from oodpose.data.cache import DatasetSettings, prepare_cache

sys.stderr = sys.stdout = open(snakemake.log[0], "w")
d = snakemake.params.dataset
settings = DatasetSettings(
    fractions=tuple(snakemake.params.fractions),
    scale_bodyparts=tuple(d["scale_bodyparts"]) if "scale_bodyparts" in d else None,
    labels=d.get("labels"),
    individuals=d.get("individuals"),
    n_splits=d.get("n_splits", 3),
    n_train_individuals=d.get("n_train_individuals", 10),
    seed=d.get("seed", 0),
)
prepare_cache(snakemake.input[0], snakemake.output[0], settings)
