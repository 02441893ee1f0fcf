rule evaluate:
    input:
        model=CELL + "/model.pt",
        cache="results/{dataset}/cache",
    output:
        metrics=CELL + "/metrics.csv",
        predictions=CELL + "/predictions.h5",
    log:
        "results/logs/" + CELL + "/evaluate.log",
    benchmark:
        "results/benchmarks/" + CELL + "/evaluate.tsv"
    conda:
        "../envs/oodpose.yaml"
    threads: config["training"].get("threads", 2)
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    params:
        train_dir=CELL,
    script:
        "../workflow/scripts/evaluate.py"
