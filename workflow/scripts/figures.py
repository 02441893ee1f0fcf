from pathlib import Path

import pandas as pd

from oodpose import analysis, figures
from oodpose.data.cache import Cache
from oodpose.logs import rule_log

with rule_log(snakemake.log[0]):
    metrics = pd.read_csv(snakemake.input.metrics)
    missing = analysis.missing_cells(snakemake.params.cells, metrics)
    out = snakemake.output
    figures.figure1(metrics, Path(out.figure1), missing)
    figures.figure3ab(metrics, Path(out.figure3ab), missing)
    figures.figure4_5a(metrics, Path(out.figure4_5a), missing)
    figures.figure5b(metrics, Path(out.figure5b), missing)
    predictions = {  # the rule lists each summary cell's predictions in `summary_cells` order
        (cell["backbone"], cell["init"], cell["split"], cell["fraction"]): path
        for cell, path in zip(snakemake.params.summary_cells, snakemake.input.predictions, strict=True)
    }
    examples = figures.ood_examples(metrics, Cache(snakemake.input.cache), predictions)
    figures.figure3c(examples, Path(out.figure3c), missing)
