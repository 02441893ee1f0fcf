import sys

from oodpose.backbones import get_backbone
from oodpose.models import fetch_weights

sys.stderr = sys.stdout = open(snakemake.log[0], "w")
fetch_weights(get_backbone(snakemake.wildcards.backbone, snakemake.params.table), snakemake.output[0])
