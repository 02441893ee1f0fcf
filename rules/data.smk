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
        lambda wildcards: dataset_path(wildcards.dataset),
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
