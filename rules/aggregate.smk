rule aggregate:
    input:
        metrics=lambda wildcards: cell_files(wildcards, "metrics.csv"),
    output:
        metrics=SUMMARY + "/metrics.csv",
        summary=SUMMARY + "/summary.csv",
        regressions=report(
            SUMMARY + "/regressions.csv",
            caption="../report/regressions.rst",
            category="Statistics",
        ),
        paired=SUMMARY + "/pretrained_vs_scratch.csv",
        table1=SUMMARY + "/table1.csv",
        table1_md=report(
            SUMMARY + "/table1.md", caption="../report/table1.rst", category="Table 1"
        ),
    log:
        "results/logs/{dataset}/aggregate.log",
    conda:
        "../envs/oodpose.yaml"
    params:
        cells=lambda wildcards: study_cells(wildcards.dataset),
    script:
        "../workflow/scripts/aggregate.py"
