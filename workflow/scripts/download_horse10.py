from oodpose.data.horse10 import BENCHMARK_URL, EXPECTED, download_horse10
from oodpose.logs import rule_log

with rule_log(snakemake.log[0]):
    dataset = snakemake.params.dataset
    download_horse10(
        snakemake.output[0],
        benchmark_url=dataset.get("benchmark_url", BENCHMARK_URL),
        expected=dataset.get("expect", EXPECTED),
        sha256=dataset.get("benchmark_sha256"),  # None: the files at the pinned commit
    )
