rule train:
    input:
        cache="results/{dataset}/cache",
        weights=weights_input,
    output:
        model="results/{dataset}/{backbone}/{init}/split{split}_frac{fraction}/model.pt",
    log:
        "results/logs/{dataset}/{backbone}/{init}/split{split}_frac{fraction}/train.log",
    benchmark:
        "results/benchmarks/{dataset}/{backbone}/{init}/split{split}_frac{fraction}/train.tsv"
    conda:
        "../envs/oodpose.yaml"
    threads: config["training"].get("threads", 2)
    resources:
        gpu=1,
        mem_mb=train_mem_mb,
        runtime=train_runtime,
    params:
        out=lambda wildcards, output: os.path.dirname(output.model),
        settings=training_settings,
        backbones_table=config["backbones_table"],
    script:
        "../workflow/scripts/train.py"
