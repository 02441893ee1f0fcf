from oodpose.backbones import get_backbone
from oodpose.logs import rule_log
from oodpose.models import fetch_weights

with rule_log(snakemake.log[0]):
    backbone = get_backbone(snakemake.wildcards.backbone, snakemake.config["backbones_table"])
    fetch_weights(backbone, snakemake.output[0])
