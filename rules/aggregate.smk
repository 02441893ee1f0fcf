rule aggregate:
    input:
        metrics=summary_inputs(rules.evaluate.output.metrics),
        schedules=schedules_input,
        corrupted=horse_c_summary(rules.evaluate_corrupted.output[0]),
    output:
        **horse_c_files(
            {
                "corruption_severity": "results/{dataset}/{summary}/corruptions/severity.csv",
                "corruption_mce": "results/{dataset}/{summary}/corruptions/mce.csv",
                "corruption_regressions": "results/{dataset}/{summary}/corruptions/regressions.csv",
                "corruption_tables": "results/{dataset}/{summary}/corruptions/tables.md",
            }
        ),
        metrics="results/{dataset}/{summary}/metrics.csv",
        summary="results/{dataset}/{summary}/summary.csv",
        regressions=report(
            "results/{dataset}/{summary}/regressions.csv",
            caption="../report/regressions.rst",
            category="4. Statistics",
        ),
        paired="results/{dataset}/{summary}/pretrained_vs_scratch.csv",
        missing="results/{dataset}/{summary}/missing_cells.csv",
        diverged="results/{dataset}/{summary}/diverged_cells.csv",
        schedules="results/{dataset}/{summary}/schedules.csv",
        table1="results/{dataset}/{summary}/table1.csv",
        table1_md=report(
            "results/{dataset}/{summary}/table1.md",
            caption="../report/table1.rst",
            category="2. Table 1",
        ),
        findings="results/{dataset}/{summary}/findings.csv",
        findings_md=report(
            "results/{dataset}/{summary}/findings.md",
            caption="../report/findings.rst",
            category="1. Findings",
        ),
    log:
        "results/logs/{dataset}/{summary}/aggregate.log",
    benchmark:
        "results/benchmarks/{dataset}/{summary}/aggregate.tsv"
    conda:
        "../envs/oodpose.yaml"
    params:
        cells=lambda wildcards: study_cell_table(wildcards.dataset),
        horse10=lambda wildcards: is_horse10(wildcards.dataset),
        backbones=study_backbone_metadata(),  # from the table as it is now: a corrected top-1 reruns this
        schedules=study_schedule_records,
    script:
        "../workflow/scripts/aggregate.py"
