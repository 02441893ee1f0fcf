rule evaluate:
    input:
        model=rules.train.output.model,
        cache=rules.prepare.output[0],
    output:
        metrics=f"{CELL_DIR}/metrics.csv",
        predictions=f"{CELL_DIR}/predictions.h5",
    log:
        f"{CELL_LOGS}/evaluate.log",
    benchmark:
        f"{CELL_BENCHMARKS}/evaluate.tsv"
    conda:
        "../envs/oodpose.yaml"
    threads: config["training"]["threads"]
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    params:
        train_dir=lambda wildcards, input: os.path.dirname(input.model),
        test_scale=config["evaluation"]["test_scale"],
        batchnorm=config["evaluation"]["batchnorm"],
    script:
        "../workflow/scripts/evaluate.py"


rule evaluate_corrupted:
    input:
        model=rules.train.output.model,
        cache=rules.prepare.output[0],
        corrupted=corrupted_sets,
    output:
        f"{CELL_DIR}/metrics_corrupted.csv",
    log:
        f"{CELL_LOGS}/evaluate_corrupted.log",
    benchmark:
        f"{CELL_BENCHMARKS}/evaluate_corrupted.tsv"
    conda:
        "../envs/oodpose.yaml"
    threads: config["training"]["threads"]
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    params:
        train_dir=lambda wildcards, input: os.path.dirname(input.model),
        test_scale=config["evaluation"]["test_scale"],
        batchnorm=config["evaluation"]["batchnorm"],
    script:
        "../workflow/scripts/evaluate_corrupted.py"
