import sys

from oodpose.data.horse10 import BENCHMARK_URL, EXPECTED, download_horse10

sys.stderr = sys.stdout = open(snakemake.log[0], "w")
dataset = snakemake.params.dataset
download_horse10(
    snakemake.output[0],
    benchmark_url=dataset.get("benchmark_url", BENCHMARK_URL),
    expected=dataset.get("expect", EXPECTED),
)
