rule synthesize:
    output:
        directory("results/{dataset}/dataset"),
    log:
        "results/logs/{dataset}/synthesize.log",
    benchmark:
        "results/benchmarks/{dataset}/synthesize.tsv"
    conda:
        "../envs/oodpose.yaml"
    threads: 2
    params:
        settings=lambda wildcards: dataset_settings(wildcards.dataset, "synthetic"),
    script:
        "../workflow/scripts/synthesize.py"


rule prepare:
    input:
        dataset_inputs,
    output:
        directory("results/{dataset}/cache"),
    log:
        "results/logs/{dataset}/prepare.log",
    benchmark:
        "results/benchmarks/{dataset}/prepare.tsv"
    conda:
        "../envs/oodpose.yaml"
    threads: 2
    params:
        dataset=lambda wildcards: dataset_settings(wildcards.dataset),
        fractions=STUDY["fractions"],
    script:
        "../workflow/scripts/prepare.py"


rule fetch_weights:
    output:
        "resources/weights/{backbone}.safetensors",
    log:
        "results/logs/weights/{backbone}.log",
    conda:
        "../envs/oodpose.yaml"
    params:
        table=config["backbones_table"],
    script:
        "../workflow/scripts/fetch_weights.py"


rule download_horse10:
    output:
        directory("data/{download}"),
    log:
        "results/logs/{download}/download.log",
    wildcard_constraints:
        download="|".join(DOWNLOADS) or "^$",
    conda:
        "../envs/oodpose.yaml"
    params:
        dataset=lambda wildcards: dataset_settings(wildcards.download),
    script:
        "../workflow/scripts/download_horse10.py"
