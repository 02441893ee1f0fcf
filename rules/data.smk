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
        settings=lambda wildcards: asdict(
            synthetic_settings(dataset_config(wildcards.dataset))
        ),
    script:
        "../workflow/scripts/synthesize.py"


rule prepare:
    input:
        dataset=lambda wildcards: dataset_path(wildcards.dataset),
        files=dataset_files_input,
        individuals=individuals_input,
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
        settings=lambda wildcards: asdict(
            dataset_settings(dataset_config(wildcards.dataset))
        ),
    script:
        "../workflow/scripts/prepare.py"


rule corrupt:
    input:
        cache=rules.prepare.output[0],
    output:
        directory(CORRUPTED_DIR),
    log:
        "results/logs/{dataset}/corrupted/{corruption}/severity{severity}.log",
    benchmark:
        "results/benchmarks/{dataset}/corrupted/{corruption}/severity{severity}.tsv"
    conda:
        "../envs/horse-c.yaml"
    threads: config["training"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../workflow/scripts/corrupt.py"


rule fetch_weights:
    output:
        "resources/weights/{backbone}.safetensors",
    log:
        "results/logs/weights/{backbone}.log",
    benchmark:
        "results/benchmarks/weights/{backbone}.tsv"
    conda:
        "../envs/oodpose.yaml"
    params:
        # the row's weight source: another source fetches again; the table's path is no rerun trigger
        source=lambda wildcards: BACKBONES[wildcards.backbone].weights,
    script:
        "../workflow/scripts/fetch_weights.py"


rule download_horse10:
    output:
        directory("data/{download}"),
    log:
        "results/logs/{download}/download.log",
    benchmark:
        "results/benchmarks/{download}/download.tsv"
    wildcard_constraints:
        download="|".join(DOWNLOADS) or "^$",
    conda:
        "../envs/oodpose.yaml"
    params:
        dataset=lambda wildcards: dataset_config(wildcards.download),
    script:
        "../workflow/scripts/download_horse10.py"
