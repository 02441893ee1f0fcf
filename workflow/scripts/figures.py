import sys
from pathlib import Path

import numpy as np
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

# Figure 3C: two OOD frames for the weakest and strongest pretrained backbone of the first split.
cache = Cache(snakemake.input.cache)
cells = analysis.final(metrics)
pretrained = cells[(cells["init"] == "imagenet") & (cells["fraction"] == cells["fraction"].max())]
pretrained = pretrained.sort_values("imagenet_top1")
examples = []
if len(pretrained):
    split, fraction = int(pretrained["split"].min()), int(pretrained["fraction"].max())
    ood = cache.frames(split, fraction, "test_ood")
    rows = ood[np.linspace(0, len(ood) - 1, 2).astype(int)] if len(ood) else []
    for backbone in dict.fromkeys([pretrained["backbone"].iloc[0], pretrained["backbone"].iloc[-1]]):
        cell = Path(f"results/{snakemake.wildcards.dataset}/{backbone}/imagenet/split{split}_frac{fraction}")
        predictions = pd.read_hdf(cell / "predictions.h5")
        for row in rows:
            frame = cache.index["frame"].iat[row]
            pred = predictions.loc[frame].to_numpy().reshape(-1, 3)[:, :2]
            h, w = cache.index.loc[row, ["height", "width"]]
            examples.append((f"{backbone}\n{frame}", cache.images[row, :h, :w], cache.keypoints[row], pred))
figures.figure3c(examples, Path(out.figure3c), missing)
