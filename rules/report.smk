rule figures:
    input:
        metrics=SUMMARY + "/metrics.csv",
        cache="results/{dataset}/cache",
        predictions=lambda wildcards: cell_files(wildcards, "predictions.h5"),
    output:
        figure1=report(
            SUMMARY + "/figures/figure1.png",
            caption="../report/figure1.rst",
            category="Figures",
        ),
        figure3ab=report(
            SUMMARY + "/figures/figure3ab.png",
            caption="../report/figure3ab.rst",
            category="Figures",
        ),
        figure3c=report(
            SUMMARY + "/figures/figure3c.png",
            caption="../report/figure3c.rst",
            category="Figures",
        ),
        curves=report(
            SUMMARY + "/figures/figure4_5a.png",
            caption="../report/figure4_5a.rst",
            category="Figures",
        ),
        figure5b=report(
            SUMMARY + "/figures/figure5b.png",
            caption="../report/figure5b.rst",
            category="Figures",
        ),
    log:
        "results/logs/{dataset}/figures.log",
    conda:
        "../envs/oodpose.yaml"
    params:
        cells=lambda wildcards: study_cells(wildcards.dataset),
    script:
        "../workflow/scripts/figures.py"
