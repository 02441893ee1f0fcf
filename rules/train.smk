rule train:
    input:
        cache="results/{dataset}/cache",
    output:
        model=CELL + "/model.pt",
    log:
        "results/logs/" + CELL + "/train.log",
    benchmark:
        "results/benchmarks/" + CELL + "/train.tsv"
    conda:
        "../envs/oodpose.yaml"
    threads: config["training"].get("threads", 2)
    resources:
        gpu=1,
        mem_mb=train_mem_mb,
        runtime=train_runtime,
    params:
        out=CELL,
        settings=training_settings,
        backbones_table=config["backbones_table"],
    script:
        "../workflow/scripts/train.py"
