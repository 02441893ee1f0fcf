rule train:
    input:
        cache=rules.prepare.output[0],
        weights=weights_input,
        schedules=schedules_input,
    output:
        model=f"{CELL_DIR}/model.pt",
    log:
        f"{CELL_LOGS}/train.log",
    benchmark:
        f"{CELL_BENCHMARKS}/train.tsv"
    # The longest jobs first: the last to start are short, so no core or GPU idles long at the end.
    priority: train_minutes
    group:
        TRAIN_GROUP
    conda:
        "../envs/oodpose.yaml"
    threads: config["training"]["threads"]
    resources:
        gpu=1,
        mem_mb=train_mem_mb,
        runtime=train_runtime,
    params:
        out=lambda wildcards, output: os.path.dirname(output.model),
        settings=training_settings,
        architecture=backbone_architecture,
    script:
        "../workflow/scripts/train.py"
