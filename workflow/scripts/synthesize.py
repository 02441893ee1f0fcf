from oodpose.data.synthetic import generate
from oodpose.logs import rule_log
from oodpose.settings import SyntheticSettings

with rule_log(snakemake.log[0]):
    generate(snakemake.output[0], SyntheticSettings(**snakemake.params.settings), workers=snakemake.threads)
