import sys
from pathlib import Path

import pandas as pd

from oodpose import analysis, figures
from oodpose.data.cache import Cache

sys.stderr = sys.stdout = open(snakemake.log[0], "w")
metrics = pd.read_csv(snakemake.input.metrics)
missing = analysis.missing_cells(snakemake.params.cells, metrics)
out = snakemake.output
figures.figure1(metrics, Path(out.figure1), missing)
figures.figure3ab(metrics, Path(out.figure3ab), missing)
figures.learning_curves(metrics, Path(out.curves), missing)
figures.figure5b(metrics, Path(out.figure5b), missing)

dataset = snakemake.wildcards.dataset
examples = figures.ood_examples(
    metrics,
    Cache(snakemake.input.cache),
    lambda backbone, split, fraction: (
        f"results/{dataset}/{backbone}/imagenet/split{split}_frac{fraction}/predictions.h5"
    ),
)
figures.figure3c(examples, Path(out.figure3c), missing)
