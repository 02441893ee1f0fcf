from oodpose.backbones import get_backbone
from oodpose.logs import rule_log
from oodpose.models import fetch_weights

with rule_log(snakemake.log[0]):
    fetch_weights(get_backbone(snakemake.wildcards.backbone, snakemake.params.table), snakemake.output[0])
