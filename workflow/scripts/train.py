import os
import sys

from oodpose.train import TrainConfig, train

sys.stderr = sys.stdout = open(snakemake.log[0], "a")  # appended: a resumed job keeps its history
os.environ["HF_HUB_OFFLINE"] = "1"  # weights come from the job's input file; compute nodes may be offline
w, s = snakemake.wildcards, snakemake.params.settings
ilr, dt, cycles = s["schedule"]
train(
    TrainConfig(
        cache=snakemake.input.cache,
        out=snakemake.params.out,
        backbone=w.backbone,
        init=w.init,
        split=int(w.split),
        fraction=int(w.fraction),
        iterations=s["iterations"],
        ilr=ilr,
        dt=dt,
        cycles=cycles,
        batch_size=s["batch_size"],
        snapshot_every=s["snapshot_every"],
        curve_iterations=list(s["curve_iterations"]),
        seed=s["seed"],
        threads=snakemake.threads,
        amp=snakemake.config["training"].get("amp", True),
        compile=snakemake.config["training"].get("compile", False),
        weights=snakemake.input.weights[0] if snakemake.input.weights else None,
        backbones_table=snakemake.params.backbones_table,
    )
)
