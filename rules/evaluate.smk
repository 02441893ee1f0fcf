rule evaluate:
    input:
        model="results/{dataset}/{backbone}/{init}/split{split}_frac{fraction}/model.pt",
        cache="results/{dataset}/cache",
    output:
        metrics="results/{dataset}/{backbone}/{init}/split{split}_frac{fraction}/metrics.csv",
        predictions="results/{dataset}/{backbone}/{init}/split{split}_frac{fraction}/predictions.h5",
    log:
        "results/logs/{dataset}/{backbone}/{init}/split{split}_frac{fraction}/evaluate.log",
    benchmark:
        "results/benchmarks/{dataset}/{backbone}/{init}/split{split}_frac{fraction}/evaluate.tsv"
    conda:
        "../envs/oodpose.yaml"
    threads: config["training"].get("threads", 2)
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    params:
        train_dir=lambda wildcards, input: os.path.dirname(input.model),
    script:
        "../workflow/scripts/evaluate.py"
