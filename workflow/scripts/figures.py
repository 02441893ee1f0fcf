from pathlib import Path

import pandas as pd

from oodpose.data.cache import Cache
from oodpose.figures import draw_figures, figure_corruptions
from oodpose.logs import rule_log
from oodpose.study import Cell

with rule_log(snakemake.log[0]):
    predictions = {  # the rule lists each summary cell's predictions in `summary_cells` order
        Cell.of(cell): path
        for cell, path in zip(snakemake.params.summary_cells, snakemake.input.predictions, strict=True)
    }
    draw_figures(
        pd.read_csv(snakemake.input.metrics),
        snakemake.params.cells,
        Cache(snakemake.input.cache),
        predictions,
        Path(snakemake.output.figure1).parent,
    )
    if "severity" in snakemake.input.keys():  # the study has Horse-C
        figure_corruptions(pd.read_csv(snakemake.input.severity), Path(snakemake.output.corruptions))
