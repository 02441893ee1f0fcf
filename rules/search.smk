# The learning-schedule search (docs/search.md): search cells train and evaluate with the study's own rules, in
# their own folders; select_schedules chooses per backbone and init. A checkpoint, so that a study with
# `schedules: searched` waits for its schedules.tsv and then takes the choices into its training params.


use rule train as search_train with:
    input:
        cache=rules.prepare.output[0],
        weights=weights_input,
    output:
        model=f"{SEARCH_CELL_DIR}/model.pt",
    log:
        f"{SEARCH_LOGS}/train.log",
    benchmark:
        f"{SEARCH_BENCHMARKS}/train.tsv"
    group:
        SEARCH_TRAIN_GROUP


use rule evaluate as search_evaluate with:
    input:
        model=rules.search_train.output.model,
        cache=rules.prepare.output[0],
    output:
        metrics=f"{SEARCH_CELL_DIR}/metrics.csv",
        predictions=f"{SEARCH_CELL_DIR}/predictions.h5",
    log:
        f"{SEARCH_LOGS}/evaluate.log",
    benchmark:
        f"{SEARCH_BENCHMARKS}/evaluate.tsv"


checkpoint select_schedules:
    input:
        metrics=search_inputs(rules.search_evaluate.output.metrics),
        cache=rules.prepare.output[0],
    output:
        schedules=report(
            f"{SEARCH_DIR}/schedules.tsv",
            caption="../report/schedules.rst",
            category="5. Schedule search",
        ),
        scores=f"{SEARCH_DIR}/scores.csv",
        validation_horses=f"{SEARCH_DIR}/validation_horses.csv",
        figures=report(
            expand(
                f"{SEARCH_DIR}/figures/{{backbone}}_{{init}}.png",
                backbone=SEARCH["backbones"],
                init=SEARCH["inits"],
                allow_missing=True,
            ),
            caption="../report/schedule_heatmap.rst",
            category="5. Schedule search",
        ),
    log:
        f"results/logs/{SEARCH_DIR.removeprefix('results/')}/select_schedules.log",
    benchmark:
        f"results/benchmarks/{SEARCH_DIR.removeprefix('results/')}/select_schedules.tsv"
    conda:
        "../envs/oodpose.yaml"
    params:
        cells=lambda wildcards: search_cells(wildcards.dataset, wildcards.selection),
        table=search_table_schedules,
        held_out=SEARCH["validation_individuals"],
    script:
        "../workflow/scripts/select_schedules.py"


rule summarise_search:
    input:
        schedules=search_choice(rules.select_schedules.output.schedules),
        figures=search_choice(rules.select_schedules.output.figures),
    output:
        schedules="results/{dataset}/{summary}/search/schedules.tsv",
        figures=expand(
            "results/{dataset}/{summary}/search/{backbone}_{init}.png",
            backbone=SEARCH["backbones"],
            init=SEARCH["inits"],
            allow_missing=True,
        ),
    log:
        "results/logs/{dataset}/{summary}/summarise_search.log",
    benchmark:
        "results/benchmarks/{dataset}/{summary}/summarise_search.tsv"
    conda:
        "../envs/oodpose.yaml"
    shell:
        "cp {input.schedules} {input.figures} $(dirname {output.schedules}) > {log} 2>&1"
